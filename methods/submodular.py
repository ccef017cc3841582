"""Submodular set functions (submodlib notation), vectorised greedy maximisation, and SHaSaM's MINE and LEARN steps.

Facility location, graph cut and log-determinant functions, their mutual
information and conditional mutual information; the similarity kernel, the
per-(target, sensitive) anchor sets, mining by greedy maximisation and the
CMI losses of SHaSaM (arXiv 2602.05162): docs/METHODS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
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
    "similarity_kernel",
    "AnchorSets",
    "anchor_sets",
    "selection_mask",
    "anchor_affinity",
    "mine_hard_samples",
    "fl_cmi_terms",
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


# ----------------------------------------------------------------------------- the kernel


def similarity_kernel(emb: Tensor, temperature: float) -> Tensor:
    """``k_ij = exp((cos_ij − 1)/τ)`` between the rows of ``emb (N, D)``: in (0, 1], symmetric, PSD, unit diagonal.

    Non-negative, so facility location over it is monotone submodular and
    :func:`fl_cmi_terms` is its exact CMI; PSD with unit diagonal, so
    ``log det(K_X + εI)`` is monotone submodular for ε ≥ 1.  Gradients flow
    through ``emb``.
    """
    if temperature <= 0:
        raise ValueError(f"the kernel temperature must be positive, got {temperature}")
    z = F.normalize(emb, dim=1)
    return torch.exp((z @ z.T - 1) / temperature)


# ----------------------------------------------------------------------------- SHaSaM-MINE
#
# Sets are boolean masks over the N rows of a bank: the batch (its first
# n_batch rows), then an optional memory of earlier batches.  One row per
# anchor set, i.e. per (target, sensitive) cell present in the batch.


class AnchorSets(NamedTuple):
    """Per (target, sensitive) cell of the batch: its anchor set and candidate masks, ``(R, N)`` each."""

    cells: Tensor  # (R, 2): the cell's (y, a)
    anchors: Tensor  # Q_r: the batch samples of the cell
    positives: Tensor  # positive candidates: same target, other sensitive value
    negatives: Tensor  # negative candidates: other target, same sensitive value


def anchor_sets(y: Tensor, a: Tensor, n_batch: int | None = None) -> AnchorSets:
    """The anchor set of every (y, a) cell present among the first ``n_batch`` rows (default all), with candidates.

    Candidates come from all N rows (batch and memory); anchors from the batch only.
    """
    n_batch = len(y) if n_batch is None else n_batch
    cells = torch.unique(torch.stack([y[:n_batch], a[:n_batch]], dim=1), dim=0)
    same_y, same_a = cells[:, :1] == y[None], cells[:, 1:] == a[None]
    in_batch = torch.arange(len(y), device=y.device) < n_batch
    return AnchorSets(cells, same_y & same_a & in_batch, same_y & ~same_a, ~same_y & same_a)


class MinedSets(NamedTuple):
    """Per anchor set, the mined bank indices in selection order (-1 padded) and their validity masks."""

    pos_idx: Tensor
    pos_mask: Tensor
    neg_idx: Tensor
    neg_mask: Tensor

    def masks(self, n: int) -> tuple[Tensor, Tensor]:
        """(A, P): the mined positives and negatives as ``(R, n)`` boolean masks over the bank."""
        return selection_mask(self.pos_idx, self.pos_mask, n), selection_mask(self.neg_idx, self.neg_mask, n)


def selection_mask(idx: Tensor, valid: Tensor, n: int) -> Tensor:
    """``(R, n)`` mask of the valid entries of ``idx (R, k)``."""
    mask = torch.zeros(idx.shape[0], n, dtype=torch.bool, device=idx.device)
    rows = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)
    mask[rows[valid], idx[valid]] = True
    return mask


def anchor_affinity(kernel: Tensor, anchors: Tensor) -> Tensor:
    """``(R, N)``: the mean kernel similarity of every bank row to anchor set Q_r."""
    return (anchors.to(kernel.dtype) @ kernel) / anchors.sum(dim=1, keepdim=True).clamp_min(1).to(kernel.dtype)


@torch.no_grad()
def mine_hard_samples(
    kernel: Tensor,
    sets: AnchorSets,
    n_pos: int,
    n_neg: int,
    function: str = "facility_location",
    *,
    diversity: float = 1.0,
    lam: float = 0.5,
    eps: float = 1.0,
) -> MinedSets:
    """SHaSaM-MINE: up to ``n_pos`` hard positives and ``n_neg`` hard negatives for every anchor set.

    ``kernel (N, N)`` is the non-negative similarity over the bank
    (:func:`similarity_kernel`).  For anchor set Q (one cell of the batch),
    with ``k̄_j = mean_{q∈Q} k_jq``:

    - positives X ⊆ C⁺ (same target, other sensitive value), hardness ``h_j = 1 − k̄_j`` (far from Q);
    - negatives X ⊆ C⁻ (other target, same sensitive value), hardness ``h_j = k̄_j`` (near Q);

    each the greedy maximiser, ``|X| ≤`` budget, of ``F(X) = Σ_{j∈X} h_j + β g(X)``,
    β = ``diversity``, g the submodular function over the candidate pool C:

    - ``facility_location``: ``(1/|C|) Σ_{k∈C} max_{j∈X} k_kj``;
    - ``graph_cut``: ``(1/|C|) (Σ_{k∈C, j∈X} k_kj − λ Σ_{j,l∈X} k_jl)``;
    - ``log_determinant``: ``log det(K_X + εI)``.

    F is monotone submodular (h ≥ 0; k ≥ 0; λ ≤ 0.5; a unit-diagonal PSD k
    with ε ≥ 1), so greedy is within (1 − 1/e) of the optimum.  All anchor
    sets run in one batched greedy on their own padded candidate kernels.
    Anchor sets with fewer candidates than the budget get -1 padding.
    """
    _check_function(function)
    K = kernel.detach()
    if bool((K < 0).any()):
        raise ValueError("mining needs a non-negative kernel; build it with similarity_kernel")
    affinity = anchor_affinity(K, sets.anchors)
    pos = _mine(function, K, sets.positives, 1 - affinity, n_pos, diversity, lam, eps)
    neg = _mine(function, K, sets.negatives, affinity, n_neg, diversity, lam, eps)
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
    """Greedy over each row's own candidates: a padded (R, C, C) kernel, C the largest candidate count."""
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
# Every loss takes the kernel (N, N) over the bank, through which gradients
# flow, and the masks (R, N) of Q (anchor sets), A (positives) and P
# (negatives, the conditioning sets); A, Q and P are disjoint by
# construction.  Anchor sets without positives are left out of the mean.


def _per_anchor_set(cmi: Tensor, positives: Tensor) -> Tensor:
    """``mean_r cmi_r`` over the anchor sets with at least one positive (a zero still on the graph if none)."""
    keep = positives.any(dim=1).to(cmi.dtype)
    return (cmi * keep).sum() / keep.sum().clamp_min(1)


def _masked_max(kernel: Tensor, members: Tensor, t: float = 0.0) -> Tensor:
    """``(R, N)``: ``max_{j∈X_r} k_kj`` for every k; 0 for an empty X_r (f(∅) = 0, and k ≥ 0).

    ``t > 0``: the smooth maximum ``t log Σ_{j∈X_r} exp(k_kj / t)`` instead (≥ the max, within t log |X_r| of
    it; every member gets a gradient, the nearer ones more).
    """
    if t <= 0:
        return torch.where(members[:, None, :], kernel[None], 0.0).amax(dim=-1)
    # a finite stand-in for −inf keeps the gradient of an empty set finite (it is masked to 0 below)
    soft = t * torch.logsumexp(torch.where(members[:, None, :], kernel[None] / t, -1e4), dim=-1)
    return torch.where(members.any(dim=1, keepdim=True), soft, 0.0)


def fl_cmi_terms(
    kernel: Tensor, anchors: Tensor, positives: Tensor, negatives: Tensor, t: float = 0.0
) -> Tensor:
    """The terms ``(min(p_k, q_k) − a_k)_+`` of ``I_f(P; Q | A)``, k ∈ V_r = A_r ∪ Q_r ∪ P_r (0 elsewhere); ``(R, N)``.

    With ``p_k = max_{j∈P} k_kj`` (q for the anchor set Q, a for the positives
    A likewise) and f the facility location over V,
    ``max(p,a) + max(q,a) − max(p,q,a) − a = (min(p, q) − a)_+`` for every k,
    so ``Σ_k`` of these terms is exactly ``I_f(P; Q | A)`` for a non-negative
    kernel.  A term is open where k is nearer to both the negatives and the
    anchor set than to any positive: for an anchor k (q_k = 1) where its
    nearest hard negative is nearer than its nearest hard positive.  ``t > 0``
    replaces each maximum by its smooth maximum at temperature t (see
    `_masked_max`): the same terms of a smoothed facility location.
    """
    a, q, p = (_masked_max(kernel, X, t) for X in (positives, anchors, negatives))
    ground = positives | anchors | negatives
    return torch.where(ground, (torch.minimum(p, q) - a).clamp_min(0), 0.0)


def fl_cmi_loss(
    kernel: Tensor, anchors: Tensor, positives: Tensor, negatives: Tensor, *, t: float = 0.0
) -> Tensor:
    """SHaSaM-LEARN, facility location: ``L = mean_r I_f(P_r; Q_r | A_r) / |V_r|``, V_r = A_r ∪ Q_r ∪ P_r.

    ``t``: temperature of the smooth maximum (0 = the exact CMI)."""
    terms = fl_cmi_terms(kernel, anchors, positives, negatives, t)
    ground = (positives | anchors | negatives).sum(dim=1).clamp_min(1)
    return _per_anchor_set(terms.sum(dim=1) / ground, positives)


def _mean_similarity(kernel: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    """``(R,)``: the mean of k_ij over i ∈ X_r, j ∈ Y_r (0 when either is empty)."""
    pairs = X.to(kernel.dtype)[:, :, None] * Y.to(kernel.dtype)[:, None, :]
    return (kernel[None] * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)


def gc_cmi_loss(
    kernel: Tensor, anchors: Tensor, positives: Tensor, negatives: Tensor, *, lam: float = 0.5, nu: float = 1.0
) -> Tensor:
    """SHaSaM-LEARN, graph cut with an explicit conditioning term: ``L = mean_r J_r`` (minimised).

    For graph cut and disjoint A, Q, P, ``I_f(P; Q | A) = 2λ s(P, Q)`` does
    not depend on A (the modular parts and every quadratic term but the P–Q
    cross term cancel), so the positives A are brought in through graph cut's
    conditional gain ``f(Q | A) = f(Q) − 2λ s(Q, A)`` of the anchor set:

    ``J_r = 2λ (s̄(P_r, Q_r) − ν s̄(A_r, Q_r))``,  s̄ the mean over the pairs.

    ``nu=0`` gives ``I_f(P; Q | A) / (|P||Q|)``, the plain graph-cut CMI.
    """
    cmi = _mean_similarity(kernel, negatives, anchors)
    conditioning = _mean_similarity(kernel, positives, anchors)
    return _per_anchor_set(2 * lam * (cmi - nu * conditioning), positives)


def _masked_logdet(kernel: Tensor, members: Tensor, eps: float) -> Tensor:
    """``(R,)``: ``log det(K_X + εI)`` for X = ``members`` (non-members become identity rows, log 1 = 0)."""
    n = kernel.shape[-1]
    inside = members[:, :, None] & members[:, None, :]
    eye = torch.eye(n, dtype=kernel.dtype, device=kernel.device)
    factor = torch.linalg.cholesky(torch.where(inside, kernel[None] + eps * eye, eye))
    return 2 * factor.diagonal(dim1=-2, dim2=-1).log().sum(dim=-1)


def logdet_cmi_loss(
    kernel: Tensor, anchors: Tensor, positives: Tensor, negatives: Tensor, *, eps: float = 1.0
) -> Tensor:
    """SHaSaM-LEARN, log-determinant: ``L = mean_r I_f(P_r; Q_r | A_r) / |V_r|``, f(X) = log det(K_X + εI).

    The CMI from its definition, one batched Cholesky factorisation per term:
    ``ld(P∪A) + ld(Q∪A) − ld(P∪Q∪A) − ld(A)`` (the Gaussian conditional MI
    of the anchor set and its hard negatives given the hard positives; PRISM,
    Kothawade et al. AAAI 2022).
    """
    ld = partial(_masked_logdet, kernel, eps=eps)
    cmi = ld(negatives | positives) + ld(anchors | positives) - ld(negatives | anchors | positives) - ld(positives)
    ground = (positives | anchors | negatives).sum(dim=1).clamp_min(1)
    return _per_anchor_set(cmi / ground, positives)
