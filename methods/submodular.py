"""Submodular set functions (submodlib notation), vectorised greedy maximisation, and SHaSaM's MINE and LEARN steps.

Facility location, graph cut and log-determinant functions, their mutual
information and conditional mutual information; the definitions and the
CMI losses of SHaSaM (arXiv 2602.05162): docs/METHODS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FUNCTIONS",
    "MinedSets",
    "facility_location",
    "graph_cut",
    "log_determinant",
    "mutual_information",
    "conditional_mutual_information",
    "greedy_maximize",
    "mine_hard_samples",
    "fl_cmi_loss",
    "gc_cmi_loss",
    "logdet_cmi_loss",
]

FUNCTIONS = ("facility_location", "graph_cut", "log_determinant")

Subset = Tensor | Sequence[int]
SetFunction = Callable[[Subset], Tensor]


def _as_index(A: Subset) -> Tensor:
    if isinstance(A, Tensor):
        return A.nonzero().flatten() if A.dtype == torch.bool else A.long().flatten()
    return torch.as_tensor(list(A), dtype=torch.long)


def _as_mask(A: Subset, n: int, device: torch.device) -> Tensor:
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    mask[_as_index(A).to(device)] = True
    return mask


def _union(*sets: Subset) -> Tensor:
    return torch.unique(torch.cat([_as_index(X) for X in sets]))


# ----------------------------------------------------------------------------- set functions


def facility_location(S: Tensor, A: Subset) -> Tensor:
    """Facility location ``f(A) = Σ_{i∈V} max_{j∈A} s_ij``, ``f(∅) = 0`` (submodlib; Mirchandani & Francis 1990).

    ``S`` is ``(|V|, n)``: rows are the ground set to be represented, columns
    the elements A is drawn from (square when both are V).  It must be
    non-negative, which makes f monotone submodular.
    """
    if bool((S < 0).any()):
        raise ValueError("facility_location needs a non-negative kernel; shift or exponentiate cosine similarities")
    mask = _as_mask(A, S.shape[1], S.device)
    if not bool(mask.any()):
        return S.new_zeros(())
    return S[:, mask].amax(dim=1).sum()


def graph_cut(S: Tensor, A: Subset, lam: float = 0.5) -> Tensor:
    """Graph cut ``f(A) = Σ_{i∈V, j∈A} s_ij − λ Σ_{i,j∈A} s_ij`` (submodlib; Lin & Bilmes 2011).

    Submodular for a non-negative kernel, and also monotone when λ ≤ 0.5 and
    ``S`` is symmetric.
    """
    m = _as_mask(A, S.shape[0], S.device).to(S.dtype)
    return S.sum(dim=0) @ m - lam * (m @ S @ m)


def log_determinant(S: Tensor, A: Subset, eps: float = 1.0) -> Tensor:
    """Log-determinant ``f(A) = log det(S_A + εI)``, ``f(∅) = 0`` (submodlib; Kulesza & Taskar 2012).

    Submodular for a PSD kernel; monotone too when every Schur complement of
    ``S_A + εI`` is ≥ 1, e.g. a PSD kernel with unit diagonal and ε ≥ 1.
    """
    idx = _as_index(A).to(S.device)
    if idx.numel() == 0:
        return S.new_zeros(())
    factor, info = torch.linalg.cholesky_ex(S[idx][:, idx] + eps * torch.eye(len(idx), dtype=S.dtype, device=S.device))
    if bool(info != 0):
        raise ValueError("S_A + eps*I is not positive definite: log_determinant needs a PSD kernel and eps > 0")
    return 2 * factor.diagonal().log().sum()


def mutual_information(f: SetFunction, A: Subset, Q: Subset) -> Tensor:
    """Submodular mutual information ``I_f(A; Q) = f(A) + f(Q) − f(A∪Q)`` (Iyer et al., ALT 2021)."""
    return f(_as_index(A)) + f(_as_index(Q)) - f(_union(A, Q))


def conditional_mutual_information(f: SetFunction, A: Subset, Q: Subset, P: Subset) -> Tensor:
    """Submodular conditional MI ``I_f(A; Q | P) = f(A∪P) + f(Q∪P) − f(A∪Q∪P) − f(P)`` (Iyer et al., ALT 2021)."""
    return f(_union(A, P)) + f(_union(Q, P)) - f(_union(A, Q, P)) - f(_as_index(P))


# ----------------------------------------------------------------------------- greedy maximisation
#
# Each gain oracle keeps the state of B independent greedy runs, run b on its
# own n x n kernel S[b], and returns the marginal gains of all n elements for
# all runs at once.


class _FacilityLocationGains:
    """FL gains ``Σ_{k∈V_b} (s_kj − c_bk)_+`` with ``c_bk = max_{j∈A_b} s_kj`` the current coverage."""

    def __init__(self, S: Tensor, ground: Tensor, **_):
        self.S = S
        self.ground = ground.to(S.dtype)
        self.cover = S.new_zeros(ground.shape)

    def gains(self) -> Tensor:
        return torch.einsum("bk,bkj->bj", self.ground, (self.S - self.cover[:, :, None]).clamp_min(0))

    def add(self, runs: Tensor, chosen: Tensor, active: Tensor) -> None:
        self.cover = torch.where(active[:, None], torch.maximum(self.cover, self.S[runs, :, chosen]), self.cover)


class _GraphCutGains:
    """GC gains ``Σ_{k∈V_b} s_kj − λ (Σ_{k∈A_b} (s_kj + s_jk) + s_jj)``."""

    def __init__(self, S: Tensor, ground: Tensor, lam: float, **_):
        self.S, self.lam = S, lam
        self.coverage = torch.einsum("bk,bkj->bj", ground.to(S.dtype), S)
        self.penalty = lam * S.diagonal(dim1=1, dim2=2)

    def gains(self) -> Tensor:
        return self.coverage - self.penalty

    def add(self, runs: Tensor, chosen: Tensor, active: Tensor) -> None:
        step = self.lam * (self.S[runs, chosen] + self.S[runs, :, chosen])
        self.penalty = self.penalty + active[:, None].to(step.dtype) * step


class _LogDeterminantGains:
    """LogDet gains ``log d_j²``, d_j² the Schur complement of j given A in ``L = S + εI``.

    Incremental Cholesky (Chen et al., NeurIPS 2018, Alg. 1): with rows c_t of
    the Cholesky factor, adding k sets ``e_j = (L_kj − <c_k, c_j>) / d_k`` and
    ``d_j² ← d_j² − e_j²`` for every j at once.
    """

    def __init__(self, S: Tensor, ground: Tensor, eps: float, budget: int, **_):
        n_runs, n = ground.shape
        self.L = S + eps * torch.eye(n, dtype=S.dtype, device=S.device)
        self.d2 = self.L.diagonal(dim1=1, dim2=2).clone()
        self.factor = S.new_zeros(n_runs, budget, n)
        self.steps = 0

    def gains(self) -> Tensor:
        return self.d2.clamp_min(torch.finfo(self.d2.dtype).tiny).log()

    def add(self, runs: Tensor, chosen: Tensor, active: Tensor) -> None:
        prev = self.factor[:, : self.steps]
        projection = torch.einsum("bt,btn->bn", prev[runs, :, chosen], prev)
        d = self.d2[runs, chosen].clamp_min(torch.finfo(self.d2.dtype).tiny).sqrt()
        e = torch.where(active[:, None], (self.L[runs, chosen] - projection) / d[:, None], 0.0)
        self.factor[:, self.steps] = e
        self.d2 = self.d2 - e.square()
        self.steps += 1


_GAINS = {
    "facility_location": _FacilityLocationGains,
    "graph_cut": _GraphCutGains,
    "log_determinant": _LogDeterminantGains,
}


def _check_function(function: str) -> None:
    if function not in _GAINS:
        raise ValueError(f"unknown submodular function {function!r}; choose one of {', '.join(FUNCTIONS)}")


def _batched_greedy(
    function: str,
    S: Tensor,
    budget: int,
    candidates: Tensor,
    *,
    ground: Tensor | None = None,
    modular: Tensor | None = None,
    scale: Tensor | float = 1.0,
    lam: float = 0.5,
    eps: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """B greedy runs maximising ``Σ_{j∈X} modular_bj + scale_b · f_b(X)`` over ``candidates[b]``.

    f_b is ``function`` on kernel ``S[b]`` (``S`` is ``(B, n, n)``) with ground
    set ``ground[b]`` (FL and GC only).  Each step evaluates the gains of every element for every run in one
    tensor operation; only the budget is looped over.  Returns ``(idx, valid)``,
    both ``(B, budget)``, ``idx`` in selection order and -1 where a run ran out
    of candidates.
    """
    n_runs, n = candidates.shape
    ground = torch.ones_like(candidates) if ground is None else ground
    oracle = _GAINS[function](S, ground=ground, lam=lam, eps=eps, budget=budget)
    taken = torch.zeros_like(candidates)
    idx = torch.full((n_runs, budget), -1, dtype=torch.long, device=S.device)
    runs = torch.arange(n_runs, device=S.device)
    for step in range(budget):
        gains = scale * oracle.gains()
        if modular is not None:
            gains = gains + modular
        best, chosen = gains.masked_fill(~candidates | taken, float("-inf")).max(dim=1)
        active = best > float("-inf")
        if not bool(active.any()):
            break
        idx[:, step] = torch.where(active, chosen, -1)
        taken[runs, chosen] |= active
        oracle.add(runs, chosen, active)
    return idx, idx >= 0


def _reference_greedy(f: Callable[[Tensor, Tensor], Tensor], S: Tensor, budget: int, candidates: Tensor) -> Tensor:
    """Plain greedy calling the set function once per candidate and step (Nemhauser et al. 1978)."""
    selected: list[int] = []
    pool = candidates.nonzero().flatten().tolist()
    for _ in range(min(budget, len(pool))):
        base = f(S, torch.tensor(selected, dtype=torch.long))
        gains = torch.stack([f(S, torch.tensor(selected + [j], dtype=torch.long)) - base for j in pool])
        selected.append(pool.pop(int(gains.argmax())))
    return torch.tensor(selected, dtype=torch.long, device=S.device)


def greedy_maximize(
    function: str | Callable[[Tensor, Tensor], Tensor],
    S: Tensor,
    budget: int,
    candidates: Subset | None = None,
    *,
    lam: float = 0.5,
    eps: float = 1.0,
) -> Tensor:
    """Greedy maximisation of a set function under the cardinality constraint |A| ≤ ``budget``.

    ``function`` is a name from :data:`FUNCTIONS` (vectorised torch greedy:
    the marginal gains of all candidates are computed at once per step, with
    incremental Cholesky updates for the log-determinant; ``lam`` and ``eps``
    are its parameters) or a set function ``f(S, A)``, e.g.
    ``functools.partial(graph_cut, lam=0.3)`` (reference greedy, one call per
    candidate and step).  For monotone submodular f the result is within
    (1 − 1/e) of the optimum (Nemhauser, Wolsey & Fisher 1978).

    ``S`` is the ``(n, n)`` kernel over the ground set; ``candidates`` restricts
    which elements may be picked (default: all).  Returns the selected indices
    in selection order, ``min(budget, |candidates|)`` of them.  Ties go to the
    lowest index.
    """
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"greedy_maximize needs a square (n, n) kernel, got shape {tuple(S.shape)}")
    if budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    n = S.shape[0]
    cand = torch.ones(n, dtype=torch.bool, device=S.device) if candidates is None else _as_mask(candidates, n, S.device)
    if callable(function):
        return _reference_greedy(function, S, budget, cand)
    _check_function(function)
    if function == "facility_location" and bool((S < 0).any()):
        raise ValueError("facility_location needs a non-negative kernel; shift or exponentiate cosine similarities")
    idx, valid = _batched_greedy(function, S[None], budget, cand[None], lam=lam, eps=eps)
    return idx[0][valid[0]]


# ----------------------------------------------------------------------------- SHaSaM-MINE


class MinedSets(NamedTuple):
    """Per-anchor mined indices into the candidate bank, -1 padded, with validity masks."""

    pos_idx: Tensor
    pos_mask: Tensor
    neg_idx: Tensor
    neg_mask: Tensor


@torch.no_grad()
def mine_hard_samples(
    emb: Tensor,
    y: Tensor,
    a: Tensor,
    n_pos: int,
    n_neg: int,
    function: str = "facility_location",
    memory: tuple[Tensor, Tensor, Tensor] | None = None,
    *,
    diversity: float = 1.0,
    lam: float = 0.5,
    eps: float = 1.0,
) -> MinedSets:
    """SHaSaM-MINE: budgeted hard positives and hard negatives for every anchor (Majee & Iyer 2026, Sec. 3).

    Candidates come from the bank = the batch ``emb (B, D)`` followed by the
    optional ``memory = (emb_m, y_m, a_m)``; returned indices point into that
    concatenation.  For anchor i (embeddings L2-normalised, ``k_jl = (1 + cos_jl)/2``
    ∈ [0, 1], a PSD kernel with unit diagonal):

    - positive candidates C⁺_i: same target, different sensitive attribute;
      hardness ``h_ij = 1 − k_ij`` (far from the anchor);
    - negative candidates C⁻_i: different target, same sensitive attribute;
      hardness ``h_ij = k_ij`` (near the anchor).

    Each set X ⊆ C_i (|X| ≤ budget) greedily maximises

    ``F_i(X) = Σ_{j∈X} h_ij + β · g_i(X)``,  β = ``diversity``, with g_i

    - ``facility_location``: ``(1/|C_i|) Σ_{k∈C_i} max_{j∈X} k_kj`` (X represents C_i);
    - ``graph_cut``: ``(1/|C_i|) (Σ_{k∈C_i, j∈X} k_kj − λ Σ_{j,l∈X} k_jl)``;
    - ``log_determinant``: ``log det(K_X + εI)`` (X spans diverse directions).

    The modular term is the anchor relation (hardness); g_i rewards covering
    or diversifying the candidate pool so the budget is not spent on
    near-duplicates.  F_i is monotone submodular (h ≥ 0; FL with k ≥ 0; GC
    with λ ≤ 0.5; LogDet with ε ≥ 1), so greedy is (1 − 1/e)-optimal.  All
    anchors run in one batched greedy on their own padded candidate kernels:
    cost per step is O(B·C²) for FL and O(B·C·budget) for GC and LogDet, C
    the largest candidate count (at most the bank size).  Anchors with fewer
    candidates than the budget get -1 padding and a False mask.
    """
    _check_function(function)
    bank, bank_y, bank_a = emb, y, a
    if memory is not None:
        mem_emb, mem_y, mem_a = memory
        bank = torch.cat([emb, mem_emb.to(emb)])
        bank_y, bank_a = torch.cat([y, mem_y.to(y)]), torch.cat([a, mem_a.to(a)])
    z = F.normalize(bank.detach().to(torch.float64 if bank.dtype == torch.float64 else torch.float32), dim=1)
    kernel = (1 + z @ z.T) / 2
    to_anchor = kernel[: emb.shape[0]]
    same_y = y[:, None] == bank_y[None, :]
    same_a = a[:, None] == bank_a[None, :]
    pos = _mine(function, kernel, same_y & ~same_a, 1 - to_anchor, n_pos, diversity, lam, eps)
    neg = _mine(function, kernel, ~same_y & same_a, to_anchor, n_neg, diversity, lam, eps)
    return MinedSets(*pos, *neg)


def _mine(
    function: str,
    kernel: Tensor,
    candidates: Tensor,
    hardness: Tensor,
    budget: int,
    diversity: float,
    lam: float,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Greedy over each anchor's own candidates: a padded (B, C, C) kernel, C the largest candidate count."""
    counts = candidates.sum(dim=1)
    width = max(int(counts.max()), 1)
    # candidates first, in index order, so ties still go to the lowest bank index
    order = candidates.to(torch.uint8).sort(dim=1, descending=True, stable=True).indices[:, :width]
    local = torch.arange(width, device=kernel.device) < counts[:, None]
    if function == "log_determinant":
        scale = torch.full((len(counts), 1), diversity, dtype=kernel.dtype, device=kernel.device)
    else:
        scale = diversity / counts.clamp_min(1).to(kernel.dtype)[:, None]
    local_idx, valid = _batched_greedy(
        function,
        kernel[order[:, :, None], order[:, None, :]],
        budget,
        local,
        ground=local,
        modular=hardness.gather(1, order),
        scale=scale,
        lam=lam,
        eps=eps,
    )
    return torch.where(valid, order.gather(1, local_idx.clamp_min(0)), -1), valid


# ----------------------------------------------------------------------------- SHaSaM-LEARN
#
# Shared input convention: ``anchors (B, D)`` are the queries Q_i = {i};
# ``positives (B, k_p, D)`` hold A_i and ``conditioning (B, k_c, D)`` hold the
# sensitive conditioning sets P_i, each with an optional validity mask
# (``pos_mask``/``cond_mask``, default all valid).  Gather them from mined
# indices with ``bank[idx.clamp_min(0)]`` and the masks of MinedSets.  Anchors
# with no valid positive are left out; an empty P_i is allowed.


def _similarity(x: Tensor, y: Tensor, similarity: str, temperature: float) -> Tensor:
    """Batched s(x, y) on unit vectors: ``cos`` or ``exp((cos − 1)/τ)`` (= exp(cos/τ) rescaled so s_ii = 1)."""
    cos = x @ y.transpose(1, 2)
    if similarity == "cosine":
        return cos
    if similarity == "exp":
        return torch.exp((cos - 1) / temperature)
    raise ValueError(f"unknown similarity {similarity!r}; choose 'cosine' or 'exp'")


def _prepare(
    anchors: Tensor, positives: Tensor, conditioning: Tensor, pos_mask: Tensor | None, cond_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
    if anchors.dim() != 2 or positives.dim() != 3 or conditioning.dim() != 3:
        raise ValueError(
            "expected anchors (B, D), positives (B, k_p, D), conditioning (B, k_c, D); got "
            f"{tuple(anchors.shape)}, {tuple(positives.shape)}, {tuple(conditioning.shape)}"
        )
    pos_mask = (
        torch.ones(positives.shape[:2], dtype=torch.bool, device=anchors.device) if pos_mask is None else pos_mask
    )
    cond_mask = (
        torch.ones(conditioning.shape[:2], dtype=torch.bool, device=anchors.device) if cond_mask is None else cond_mask
    )
    keep = pos_mask.any(dim=1)
    if not bool(keep.any()):
        return None
    q = F.normalize(anchors[keep], dim=-1)[:, None]
    return (
        q,
        F.normalize(positives[keep], dim=-1),
        F.normalize(conditioning[keep], dim=-1),
        pos_mask[keep],
        cond_mask[keep],
    )


def _zero(anchors: Tensor) -> Tensor:
    """A zero loss still attached to the graph, for batches where no anchor has a positive."""
    return anchors.sum() * 0.0


def _max2(x: Tensor, y: Tensor, smoothing: float) -> Tensor:
    return torch.maximum(x, y) if smoothing == 0 else smoothing * torch.logaddexp(x / smoothing, y / smoothing)


def _max_over(x: Tensor, mask: Tensor, smoothing: float) -> Tensor:
    x = x.masked_fill(~mask, float("-inf"))
    return x.amax(dim=-1) if smoothing == 0 else smoothing * torch.logsumexp(x / smoothing, dim=-1)


def fl_cmi_loss(
    anchors: Tensor,
    positives: Tensor,
    conditioning: Tensor,
    pos_mask: Tensor | None = None,
    cond_mask: Tensor | None = None,
    *,
    eta: float = 1.0,
    nu: float = 1.0,
    similarity: str = "cosine",
    temperature: float = 0.5,
    smoothing: float = 0.0,
) -> Tensor:
    """SHaSaM-LEARN, facility-location variant: ``L = −(1/|I|) Σ_i FLCMI(A_i; Q_i | P_i) / |V_i|``.

    FL conditional mutual information (PRISM, Kothawade et al. AAAI 2022;
    submodlib ``FacilityLocationConditionalMutualInformation``):

    ``FLCMI(A; Q | P) = Σ_{k∈V} max( min(max_{j∈A} s_kj, η max_{j∈Q} s_kj) − ν max_{j∈P} s_kj, 0 )``

    with Q_i = {anchor i}, A_i its positives, P_i its sensitive conditioning
    set, and ground set V_i = A_i ∪ Q_i (the anchor's class set).  With
    η = ν = 1 and a non-negative similarity (``"exp"``) this is exactly
    ``I_f(A; Q | P)`` of facility location over V_i.
    The CMI is the similarity the anchor shares with its positives that the
    conditioning set does not explain; the loss is its negative, averaged per
    ground element, so minimising it pulls anchor and positives together
    while pushing the class set away from P.  Each term is a hinge: it has no
    gradient where P already covers k better than min(A, Q) does.
    ``smoothing = t > 0`` replaces every max/min/hinge by its log-sum-exp
    relaxation at temperature t (exact as t → 0), which keeps a gradient there.
    An empty P_i counts as max_P s = 0 (facility location's f(∅) = 0).
    """
    prepared = _prepare(anchors, positives, conditioning, pos_mask, cond_mask)
    if prepared is None:
        return _zero(anchors)
    q, pos, cond, pos_mask, cond_mask = prepared
    ground = torch.cat([q, pos], dim=1)
    ground_mask = torch.cat([torch.ones_like(pos_mask[:, :1]), pos_mask], dim=1)
    cover_a = _max_over(_similarity(ground, pos, similarity, temperature), pos_mask[:, None], smoothing)
    cover_q = _similarity(ground, q, similarity, temperature)[..., 0]
    cover_p = _max_over(_similarity(ground, cond, similarity, temperature), cond_mask[:, None], smoothing)
    cover_p = torch.where(cond_mask.any(dim=1, keepdim=True), cover_p, 0.0)
    shared = -_max2(-cover_a, -eta * cover_q, smoothing)
    terms = _max2(shared - nu * cover_p, torch.zeros_like(shared), smoothing)
    cmi = (terms * ground_mask).sum(dim=1) / ground_mask.sum(dim=1)
    return -cmi.mean()


def gc_cmi_loss(
    anchors: Tensor,
    positives: Tensor,
    conditioning: Tensor,
    pos_mask: Tensor | None = None,
    cond_mask: Tensor | None = None,
    *,
    lam: float = 0.5,
    nu: float = 1.0,
    similarity: str = "cosine",
    temperature: float = 0.5,
) -> Tensor:
    """SHaSaM-LEARN, graph-cut variant with an explicit conditioning term.

    For graph cut and disjoint A, Q, P the CMI does not depend on P: writing
    ``f(X) = c(X) − λ s(X, X)`` with ``c(X) = Σ_{i∈V, j∈X} s_ij`` (modular) and
    ``s(X, Y) = Σ_{i∈X, j∈Y} s_ij``, the modular parts cancel in
    ``f(A∪P) + f(Q∪P) − f(A∪Q∪P) − f(P)`` and, for symmetric s, so do all
    quadratic terms except ``−λ(−2 s(A, Q))``, hence
    ``I_f(A; Q | P) = I_f(A; Q) = 2λ s(A, Q)``.  To condition on the
    sensitive set anyway we add the P-dependent part of graph cut's
    conditional gain ``f(X | P) = f(X) − 2λ s(X, P)`` (PRISM's GCCG, privacy
    hardness ν) for the class set X = A ∪ Q:

    ``J_i = 2λ s̄(A_i, Q_i) − ν · 2λ s̄(A_i ∪ Q_i, P_i)``,  ``L = −(1/|I|) Σ_i J_i``

    where s̄ is the mean over the pairs (i.e. the CMI divided by |A_i| and the
    cross term by |A_i ∪ Q_i|·|P_i|, so the scale does not grow with the set
    sizes).  Minimising L pulls the anchor towards its positives and pushes
    the whole class set away from the conditioning set; ``nu=0`` is the plain
    (P-independent) graph-cut CMI.  An empty P_i gives a zero cross term.
    """
    prepared = _prepare(anchors, positives, conditioning, pos_mask, cond_mask)
    if prepared is None:
        return _zero(anchors)
    q, pos, cond, pos_mask, cond_mask = prepared
    pos_w = pos_mask.to(pos.dtype)
    cmi = 2 * lam * (_similarity(q, pos, similarity, temperature)[:, 0] * pos_w).sum(dim=1) / pos_w.sum(dim=1)
    class_w = torch.cat([torch.ones_like(pos_w[:, :1]), pos_w], dim=1)
    cond_w = cond_mask.to(pos.dtype)
    cross = _similarity(torch.cat([q, pos], dim=1), cond, similarity, temperature)
    pairs = class_w[:, :, None] * cond_w[:, None, :]
    cross_mean = (cross * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)
    return -(cmi - nu * 2 * lam * cross_mean).mean()


def _masked_logdet(K: Tensor, members: Tensor, eps: float) -> Tensor:
    """``log det(K_X + εI)`` per batch row for X = ``members``: non-members become identity rows (log 1 = 0)."""
    inside = members[:, :, None] & members[:, None, :]
    eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
    return 2 * torch.linalg.cholesky(torch.where(inside, K + eps * eye, eye)).diagonal(dim1=-2, dim2=-1).log().sum(-1)


def logdet_cmi_loss(
    anchors: Tensor,
    positives: Tensor,
    conditioning: Tensor,
    pos_mask: Tensor | None = None,
    cond_mask: Tensor | None = None,
    *,
    eps: float = 1.0,
    temperature: float = 0.5,
) -> Tensor:
    """SHaSaM-LEARN, log-determinant variant: ``L = −(1/|I|) Σ_i I_f(A_i; Q_i | P_i)``, f(X) = log det(S_X + εI).

    The CMI is evaluated exactly from its definition
    ``log det(S_{A∪P}+εI) + log det(S_{Q∪P}+εI) − log det(S_{A∪Q∪P}+εI) − log det(S_P+εI)``
    (PRISM, Kothawade et al. AAAI 2022: the Gaussian conditional MI of the
    anchor and its positives given P), batched over anchors with one
    Cholesky factorisation per term.  It grows as the anchor becomes
    predictable from its positives beyond what P explains, so minimising L
    pulls anchor and positives together and decorrelates them from P.

    The similarity is always ``s_ij = exp((cos_ij − 1)/τ)`` (PSD, in (0, 1]).
    A cosine kernel would make the loss sign-blind: log-determinants depend
    on squared correlations, so anti-aligned positives would count as
    informative as aligned ones and the loss could be lowered by pushing
    positives to the antipode.
    """
    prepared = _prepare(anchors, positives, conditioning, pos_mask, cond_mask)
    if prepared is None:
        return _zero(anchors)
    q, pos, cond, pos_mask, cond_mask = prepared
    items = torch.cat([q, pos, cond], dim=1)
    K = _similarity(items, items, "exp", temperature)
    in_q = torch.zeros(items.shape[:2], dtype=torch.bool, device=items.device)
    in_q[:, 0] = True
    in_a = torch.cat([torch.zeros_like(pos_mask[:, :1]), pos_mask, torch.zeros_like(cond_mask)], dim=1)
    in_p = torch.cat([torch.zeros_like(pos_mask[:, :1]), torch.zeros_like(pos_mask), cond_mask], dim=1)
    cmi = (
        _masked_logdet(K, in_a | in_p, eps)
        + _masked_logdet(K, in_q | in_p, eps)
        - _masked_logdet(K, in_a | in_q | in_p, eps)
        - _masked_logdet(K, in_p, eps)
    )
    return -cmi.mean()
