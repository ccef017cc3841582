"""Submodular functions, greedy maximisation, SHaSaM mining and the CMI losses."""

import itertools
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from fairfacebench.methods.submodular import (
    FUNCTIONS,
    conditional_mutual_information,
    facility_location,
    fl_cmi_loss,
    gc_cmi_loss,
    graph_cut,
    greedy_maximize,
    log_determinant,
    logdet_cmi_loss,
    mine_hard_samples,
    mutual_information,
)

D64 = torch.float64
S3 = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]], dtype=D64)
S4 = torch.tensor([[1.0, 0.6, 0.1, 0.2], [0.6, 1.0, 0.4, 0.1], [0.1, 0.4, 1.0, 0.5], [0.2, 0.1, 0.5, 1.0]], dtype=D64)


def _unit_kernel(n, dim, seed):
    """(1 + cos)/2 of random directions: non-negative, symmetric, PSD, unit diagonal."""
    z = F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=D64), dim=1)
    return (1 + z @ z.T) / 2


# ----------------------------------------------------------------------------- hand-computed values


def test_facility_location_by_hand():
    assert facility_location(S3, []).item() == 0.0
    assert facility_location(S3, [0]).item() == pytest.approx(1.0 + 0.5 + 0.2)
    # rows: max(1, .2) + max(.5, .3) + max(.2, 1) = 2.5
    assert facility_location(S3, [0, 2]).item() == pytest.approx(2.5)
    assert facility_location(S3, torch.tensor([True, False, True])).item() == pytest.approx(2.5)
    # rectangular kernel: ground set = rows 1, 2 only -> max(.5, .3) + max(.2, 1) = 1.5
    assert facility_location(S3[1:], [0, 2]).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        facility_location(S3 - 0.6, [0])


def test_graph_cut_by_hand():
    # column sums 1.7, 1.8, 1.5; λ = .5
    assert graph_cut(S3, [0], lam=0.5).item() == pytest.approx(1.7 - 0.5 * 1.0)
    # (1.7 + 1.5) - .5 (1 + 1 + 2·.2) = 3.2 - 1.2
    assert graph_cut(S3, [0, 2], lam=0.5).item() == pytest.approx(2.0)
    # S4: (1.9 + 2.1) - .5 (1 + 1 + 2·.6) = 2.4
    assert graph_cut(S4, [0, 1], lam=0.5).item() == pytest.approx(2.4)
    assert graph_cut(S3, [], lam=0.5).item() == 0.0


def test_log_determinant_by_hand():
    assert log_determinant(S3, [], eps=1.0).item() == 0.0
    # det [[2, .2], [.2, 2]] = 4 - .04
    assert log_determinant(S3, [0, 2], eps=1.0).item() == pytest.approx(math.log(3.96))
    # det [[1, .2], [.2, 1]] = .96
    assert log_determinant(S3, [0, 2], eps=0.0).item() == pytest.approx(math.log(0.96))
    with pytest.raises(ValueError, match="positive definite"):
        log_determinant(-S3, [0, 1], eps=0.0)


def test_facility_location_mi_and_cmi_by_hand():
    f = partial(facility_location, S3)
    # I(A;Q) = f({0}) + f({2}) - f({0,2}) = 1.7 + 1.5 - 2.5; equals Σ_i min(s_i0, s_i2) = .2 + .3 + .2
    assert mutual_information(f, [0], [2]).item() == pytest.approx(0.7)
    g = partial(facility_location, S4)
    # f({0,3}) = 1 + .6 + .5 + 1 = 3.1, f({1,3}) = .6 + 1 + .5 + 1 = 3.1,
    # f({0,1,3}) = 1 + 1 + .5 + 1 = 3.5, f({3}) = .2 + .1 + .5 + 1 = 1.8  ->  3.1 + 3.1 - 3.5 - 1.8 = .9
    # (= Σ_i max(min(s_i0, s_i1) - s_i3, 0) = .4 + .5 + 0 + 0)
    assert conditional_mutual_information(g, [0], [1], [3]).item() == pytest.approx(0.9)


def test_graph_cut_mi_and_cmi_by_hand():
    f = partial(graph_cut, S4, lam=0.5)
    # GC MI and CMI both reduce to 2λ s(A, Q) = 2 · .5 · .6
    assert mutual_information(f, [0], [1]).item() == pytest.approx(0.6)
    assert conditional_mutual_information(f, [0], [1], [3]).item() == pytest.approx(0.6)
    assert conditional_mutual_information(f, [0], [1], [2, 3]).item() == pytest.approx(0.6)


def test_log_determinant_mi_and_cmi_by_hand():
    S = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]], dtype=D64)
    f0 = partial(log_determinant, S, eps=0.0)
    # I(0;1) = log 1 + log 1 - log det[[1,.5],[.5,1]] = -log .75
    assert mutual_information(f0, [0], [1]).item() == pytest.approx(math.log(4 / 3))
    # I(0;1|2) = log det S_{02} + log det S_{12} - log det S - log det S_2 = log 1 + log .75 - log .5 - 0
    assert conditional_mutual_information(f0, [0], [1], [2]).item() == pytest.approx(math.log(1.5))
    f1 = partial(log_determinant, S, eps=1.0)
    # with +I: det [[2,0],[0,2]] = 4, det [[2,.5],[.5,2]] = 3.75, det(S+I) = 2·3.75 - .5·1 = 7, det [2] = 2
    assert conditional_mutual_information(f1, [0], [1], [2]).item() == pytest.approx(math.log(4 * 3.75 / (7 * 2)))


# ----------------------------------------------------------------------------- monotone and submodular


def _random_chains(n, trials, seed):
    """Random X ⊆ Y ⊆ V and e ∉ Y."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(trials):
        perm = torch.randperm(n, generator=g).tolist()
        y_size = int(torch.randint(0, n, (1,), generator=g))
        x_size = int(torch.randint(0, y_size + 1, (1,), generator=g))
        yield perm[:x_size], perm[:y_size], perm[y_size]


@pytest.mark.parametrize(
    "seed, f",
    [
        (0, facility_location),
        (1, partial(graph_cut, lam=0.5)),
        (2, partial(graph_cut, lam=0.3)),
        (3, partial(log_determinant, eps=1.0)),
    ],
    ids=["facility_location", "graph_cut λ=.5", "graph_cut λ=.3", "log_determinant"],
)
def test_monotone_and_diminishing_returns(seed, f):
    S = _unit_kernel(9, 4, seed=seed)
    for X, Y, e in _random_chains(9, 60, seed=1):
        gain_x = f(S, X + [e]) - f(S, X)
        gain_y = f(S, Y + [e]) - f(S, Y)
        assert gain_y >= -1e-12, "monotone"
        assert gain_x >= gain_y - 1e-12, "submodular"


def test_graph_cut_above_half_is_not_monotone():
    # the λ ≤ .5 condition matters: with λ = 2 adding a second identical element loses value
    S = torch.ones(3, 3, dtype=D64)
    assert graph_cut(S, [0, 1], lam=2.0) < graph_cut(S, [0], lam=2.0)


# ----------------------------------------------------------------------------- greedy

REFERENCE = {
    "facility_location": facility_location,
    "graph_cut": partial(graph_cut, lam=0.3),
    "log_determinant": partial(log_determinant, eps=1.0),
}


def _greedy(name, S, budget, candidates=None):
    return greedy_maximize(name, S, budget, candidates, lam=0.3, eps=1.0)


def _brute_force(f, S, budget, candidates):
    return max(f(S, list(X)).item() for k in range(budget + 1) for X in itertools.combinations(candidates, k))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_greedy_is_exact_for_budget_one(name):
    S = _unit_kernel(7, 3, seed=5) + 0.2 * torch.diag(
        torch.rand(7, generator=torch.Generator().manual_seed(5), dtype=D64)
    )
    f = REFERENCE[name]
    picked = _greedy(name, S, 1)
    assert f(S, picked).item() == pytest.approx(_brute_force(f, S, 1, range(7)))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_greedy_is_exact_on_modular_instances(name):
    w = torch.tensor([0.3, 1.7, 0.9, 2.2, 0.1, 1.1, 1.4], dtype=D64)
    # Diagonal kernels make all three functions modular (FL: each element only covers itself; LogDet:
    # Σ log(w_j + ε)); graph cut with λ = 0 is the modular Σ_j colsum_j.  Greedy is then optimal.
    S, f = torch.diag(w), REFERENCE[name]
    if name == "graph_cut":
        S, f = _unit_kernel(7, 3, seed=6) * w, partial(graph_cut, lam=0.0)
    picked = greedy_maximize(name, S, 3, lam=0.0 if name == "graph_cut" else 0.3)
    assert f(S, picked).item() == pytest.approx(_brute_force(f, S, 3, range(7)))
    if name != "graph_cut":
        assert sorted(picked.tolist()) == [1, 3, 6]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_greedy_meets_one_minus_one_over_e(name):
    f = REFERENCE[name]
    for seed in range(4):
        S = _unit_kernel(8, 3, seed=10 + seed)
        greedy_value = f(S, _greedy(name, S, 3)).item()
        best = _brute_force(f, S, 3, range(8))
        assert best + 1e-12 >= greedy_value >= (1 - 1 / math.e) * best


@pytest.mark.parametrize(
    "name, param, reference",
    [
        ("facility_location", {}, facility_location),
        ("graph_cut", {"lam": 0.3}, partial(graph_cut, lam=0.3)),
        ("graph_cut", {"lam": 0.5}, partial(graph_cut, lam=0.5)),
        ("log_determinant", {"eps": 1.0}, partial(log_determinant, eps=1.0)),
        ("log_determinant", {"eps": 0.1}, partial(log_determinant, eps=0.1)),
    ],
)
def test_vectorised_greedy_equals_reference_greedy(name, param, reference):
    # the whole selection order over the candidates, so every incremental gain update is exercised
    candidates = [0, 2, 3, 5, 7, 8, 9, 11]
    for seed in (21, 22):
        S = _unit_kernel(12, 4, seed=seed)
        fast = greedy_maximize(name, S, len(candidates), candidates, **param)
        slow = greedy_maximize(reference, S, len(candidates), candidates)
        assert fast.tolist() == slow.tolist()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_greedy_respects_budget_and_candidates(name):
    S = _unit_kernel(10, 4, seed=3)
    picked = _greedy(name, S, 4, [1, 4, 5, 8, 9])
    assert len(picked) == 4 and len(set(picked.tolist())) == 4 and set(picked.tolist()) <= {1, 4, 5, 8, 9}
    assert sorted(_greedy(name, S, 9, [2, 6]).tolist()) == [2, 6]
    assert len(_greedy(name, S, 0)) == 0


def test_greedy_rejects_unknown_function():
    with pytest.raises(ValueError, match="facility_location, graph_cut, log_determinant"):
        greedy_maximize("facility", S3, 2)


# ----------------------------------------------------------------------------- SHaSaM-MINE


def _unit(*coords):
    v = torch.zeros(8, dtype=D64)
    for axis, value in coords:
        v[axis] = value
    return F.normalize(v, dim=0)


def _planted():
    """Anchor 0 (y=0, a=0) with labelled decoys; see the comments for what must (not) be mined."""
    emb = torch.stack(
        [
            _unit((0, 1.0)),  # 0 anchor
            _unit((0, -1.0), (1, 0.3)),  # 1 positive candidate, far      -> hard positive
            _unit((0, -1.0), (2, 0.3)),  # 2 positive candidate, far      -> hard positive
            _unit((0, 1.0), (3, 0.3)),  # 3 positive candidate, near
            _unit((0, 1.0), (4, 0.3)),  # 4 positive candidate, near
            _unit((0, -1.0)),  # 5 same target, SAME group: farthest but not a positive
            _unit((0, 1.0), (5, 0.2)),  # 6 negative candidate, near     -> hard negative
            _unit((0, 1.0), (6, 0.2)),  # 7 negative candidate, near     -> hard negative
            _unit((0, -1.0), (5, 0.3)),  # 8 negative candidate, far
            _unit((7, 1.0)),  # 9 negative candidate, orthogonal
            _unit((0, 1.0)),  # 10 other target, OTHER group: nearest but not a negative
        ]
    )
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    a = torch.tensor([0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    return emb, y, a


@pytest.mark.parametrize("name", FUNCTIONS)
def test_mining_finds_planted_hard_samples(name):
    emb, y, a = _planted()
    mined = mine_hard_samples(emb, y, a, n_pos=2, n_neg=2, function=name)
    assert set(mined.pos_idx[0].tolist()) == {1, 2}
    assert set(mined.neg_idx[0].tolist()) == {6, 7}
    assert mined.pos_mask[0].all() and mined.neg_mask[0].all()
    for i in range(len(y)):  # every mined index respects the label constraints, for every anchor
        for j in mined.pos_idx[i][mined.pos_mask[i]]:
            assert y[j] == y[i] and a[j] != a[i]
        for j in mined.neg_idx[i][mined.neg_mask[i]]:
            assert y[j] != y[i] and a[j] == a[i]


@pytest.mark.parametrize("name", ["facility_location", "log_determinant"])
def test_mining_diversity_avoids_duplicates(name):
    emb = torch.stack(
        [
            _unit((0, 1.0)),  # 0 anchor (y=0, a=0)
            _unit((0, -1.0), (1, 0.1)),  # 1 hardest positive
            _unit((0, -1.0), (1, 0.1)),  # 2 its exact duplicate
            _unit((0, -1.0), (2, 0.8)),  # 3 a little less hard, different direction
        ]
    )
    y, a = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 1, 1])
    hardness_only = mine_hard_samples(emb, y, a, 2, 1, function=name, diversity=0.0)
    diverse = mine_hard_samples(emb, y, a, 2, 1, function=name, diversity=5.0)
    assert hardness_only.pos_idx[0].tolist() == [1, 2]
    assert diverse.pos_idx[0].tolist() == [1, 3]


def test_mining_pads_anchors_with_too_few_candidates():
    emb = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y, a = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    mined = mine_hard_samples(emb, y, a, n_pos=3, n_neg=3, function="graph_cut")
    assert mined.pos_idx.shape == (4, 3) and mined.neg_idx.shape == (4, 3)
    assert mined.pos_idx[0].tolist() == [1, -1, -1] and mined.pos_mask[0].tolist() == [True, False, False]
    assert mined.neg_idx[0].tolist() == [-1, -1, -1] and not mined.neg_mask[0].any()
    assert sorted(mined.neg_idx[1][mined.neg_mask[1]].tolist()) == [2, 3]


def test_mining_draws_from_memory():
    emb, y, a = _planted()
    batch = [0, 3, 4, 5, 6, 7, 8, 9, 10]  # the two far positives live in the memory bank only
    memory = (emb[[1, 2]], y[[1, 2]], a[[1, 2]])
    mined = mine_hard_samples(emb[batch], y[batch], a[batch], 2, 2, memory=memory)
    assert set(mined.pos_idx[0].tolist()) == {len(batch), len(batch) + 1}
    assert mined.pos_idx.shape[0] == len(batch)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_batched_mining_equals_per_anchor_reference_greedy(name):
    g = torch.Generator().manual_seed(7)
    emb = torch.randn(10, 4, generator=g, dtype=D64)
    y, a = torch.randint(0, 2, (10,), generator=g), torch.randint(0, 2, (10,), generator=g)
    beta, lam, eps = 0.7, 0.4, 1.0
    mined = mine_hard_samples(emb, y, a, 3, 3, function=name, diversity=beta, lam=lam, eps=eps)
    z = F.normalize(emb, dim=1)
    K = (1 + z @ z.T) / 2

    def objective(hardness, pool):
        def f(S, X):
            X = list(X.tolist())
            g_value = {
                "facility_location": lambda: facility_location(S[pool], X) / len(pool),
                "graph_cut": lambda: (S[pool][:, X].sum() - lam * S[X][:, X].sum()) / len(pool),
                "log_determinant": lambda: log_determinant(S, X, eps),
            }[name]()
            return hardness[X].sum() + beta * g_value

        return f

    for i in range(10):
        for idx, mask, pool_mask, hardness in [
            (mined.pos_idx, mined.pos_mask, (y == y[i]) & (a != a[i]), 1 - K[i]),
            (mined.neg_idx, mined.neg_mask, (y != y[i]) & (a == a[i]), K[i]),
        ]:
            pool = pool_mask.nonzero().flatten().tolist()
            expected = greedy_maximize(objective(hardness, pool), K, 3, pool).tolist() if pool else []
            assert idx[i][mask[i]].tolist() == expected


# ----------------------------------------------------------------------------- SHaSaM-LEARN


def _one_anchor(seed, k_pos=3, k_cond=2):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(1 + k_pos + k_cond, 4, generator=g, dtype=D64), dim=1)
    return x[:1], x[1 : 1 + k_pos][None], x[1 + k_pos :][None], x


def test_fl_cmi_loss_is_facility_location_cmi():
    anchor, pos, cond, items = _one_anchor(0)
    S = torch.exp((items @ items.T - 1) / 0.5)  # the 'exp' similarity, non-negative
    ground = S[:4]  # V = Q ∪ A = items 0..3
    cmi = conditional_mutual_information(partial(facility_location, ground), [1, 2, 3], [0], [4, 5])
    loss = fl_cmi_loss(anchor, pos, cond, similarity="exp", temperature=0.5)
    assert loss.item() == pytest.approx(-cmi.item() / 4, rel=1e-10)
    # empty conditioning set: the CMI becomes the MI
    mi = mutual_information(partial(facility_location, ground), [1, 2, 3], [0])
    no_cond = fl_cmi_loss(
        anchor, pos, cond, cond_mask=torch.zeros(1, 2, dtype=torch.bool), similarity="exp", temperature=0.5
    )
    assert no_cond.item() == pytest.approx(-mi.item() / 4, rel=1e-10)


def test_fl_cmi_smoothing_converges_and_keeps_a_gradient_in_the_dead_zone():
    anchor, pos, cond, _ = _one_anchor(1)
    exact = fl_cmi_loss(anchor, pos, cond)
    assert fl_cmi_loss(anchor, pos, cond, smoothing=1e-4).item() == pytest.approx(exact.item(), abs=1e-3)
    # Conditioning set on top of the class set: P covers every ground element, all hinges are inactive.
    cond = torch.cat([anchor[:, None], pos], dim=1).clone().requires_grad_(True)
    fl_cmi_loss(anchor, pos, cond).backward()
    assert cond.grad.abs().max() == 0
    cond.grad = None
    fl_cmi_loss(anchor, pos, cond, smoothing=0.05).backward()
    assert cond.grad.abs().max() > 0


def test_gc_cmi_loss_is_graph_cut_cmi_when_unconditioned():
    anchor, pos, cond, items = _one_anchor(2)
    S = items @ items.T
    cmi = conditional_mutual_information(partial(graph_cut, S, lam=0.4), [1, 2, 3], [0], [4, 5])
    loss = gc_cmi_loss(anchor, pos, cond, lam=0.4, nu=0.0)
    assert loss.item() == pytest.approx(-cmi.item() / 3, rel=1e-10)


def test_graph_cut_cmi_ignores_conditioning_set_unless_conditioned():
    # Algebra (gc_cmi_loss docstring): for disjoint A, Q, P, I_GC(A;Q|P) = 2λ s(A,Q), whatever P is.
    S = _unit_kernel(8, 3, seed=4)
    f = partial(graph_cut, S, lam=0.35)
    values = [conditional_mutual_information(f, [0, 1], [2], P).item() for P in ([], [3], [4, 5], [5, 6, 7])]
    assert values == pytest.approx([2 * 0.35 * (S[0, 2] + S[1, 2]).item()] * 4)
    anchor, pos, _, _ = _one_anchor(3)
    g = torch.Generator().manual_seed(9)
    cond_a, cond_b = (F.normalize(torch.randn(1, 2, 4, generator=g, dtype=D64), dim=-1) for _ in range(2))
    plain = [gc_cmi_loss(anchor, pos, c, nu=0.0).item() for c in (cond_a, cond_b)]
    assert plain[0] == pytest.approx(plain[1], rel=1e-12)
    conditioned = [gc_cmi_loss(anchor, pos, c, nu=1.0).item() for c in (cond_a, cond_b)]
    assert abs(conditioned[0] - conditioned[1]) > 1e-3


def test_logdet_cmi_loss_is_log_determinant_cmi():
    anchor, pos, cond, items = _one_anchor(4)
    S = torch.exp((items @ items.T - 1) / 0.7)
    cmi = conditional_mutual_information(partial(log_determinant, S, eps=0.5), [1, 2, 3], [0], [4, 5])
    assert logdet_cmi_loss(anchor, pos, cond, eps=0.5, temperature=0.7).item() == pytest.approx(-cmi.item(), rel=1e-10)
    # masked-out slots behave as if absent
    masked = logdet_cmi_loss(
        anchor,
        pos,
        cond,
        pos_mask=torch.tensor([[True, False, True]]),
        cond_mask=torch.tensor([[False, True]]),
        eps=0.5,
        temperature=0.7,
    )
    cmi = conditional_mutual_information(partial(log_determinant, S, eps=0.5), [1, 3], [0], [5])
    assert masked.item() == pytest.approx(-cmi.item(), rel=1e-10)


CMI_LOSSES = {
    "fl": fl_cmi_loss,
    "fl_smooth": partial(fl_cmi_loss, smoothing=0.05),
    "fl_exp": partial(fl_cmi_loss, similarity="exp", temperature=0.5),
    "gc": gc_cmi_loss,
    "logdet": logdet_cmi_loss,
}


@pytest.mark.parametrize("name", CMI_LOSSES)
def test_cmi_losses_train_anchor_towards_positives_and_away_from_conditioning(name):
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(16, 6, generator=g, requires_grad=True)
    y, a = torch.arange(16) % 2, (torch.arange(16) // 2) % 2
    mined = mine_hard_samples(emb, y, a, 2, 2)
    pos_idx, neg_idx = mined.pos_idx.clamp_min(0), mined.neg_idx.clamp_min(0)
    loss_fn = CMI_LOSSES[name]

    def stats():
        z = F.normalize(emb.detach(), dim=1)
        return (z[:, None] * z[pos_idx]).sum(-1).mean().item(), (z[:, None] * z[neg_idx]).sum(-1).mean().item()

    pos_before, cond_before = stats()
    losses = []
    for _ in range(30):
        emb.grad = None
        loss = loss_fn(emb, emb[pos_idx], emb[neg_idx], mined.pos_mask, mined.neg_mask)
        loss.backward()
        assert torch.isfinite(emb.grad).all()
        with torch.no_grad():
            emb -= 0.5 * emb.grad
        losses.append(loss.item())
    pos_after, cond_after = stats()
    assert losses[-1] < losses[0]
    assert pos_after > pos_before
    assert cond_after < cond_before


@pytest.mark.parametrize("name", CMI_LOSSES)
def test_cmi_losses_handle_anchors_without_positives_or_conditioning(name):
    emb = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pos_mask = torch.tensor([[True, False], [False, False], [True, True]])
    cond_mask = torch.tensor([[False, False], [True, True], [True, False]])
    loss = CMI_LOSSES[name](
        emb,
        emb[torch.tensor([[1, 2], [0, 2], [0, 1]])],
        emb[torch.tensor([[2, 1], [2, 1], [1, 0]])],
        pos_mask,
        cond_mask,
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
    none = CMI_LOSSES[name](
        emb, emb[torch.tensor([[1], [0], [0]])], emb[torch.tensor([[2], [2], [1]])], torch.zeros(3, 1, dtype=torch.bool)
    )
    assert none.item() == 0.0
