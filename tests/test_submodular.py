"""Submodular functions, greedy maximisation, the kernel, SHaSaM's per-anchor-set mining and the CMI losses."""

import itertools
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from fairfacebench.methods.submodular import (
    FUNCTIONS,
    anchor_affinity,
    anchor_sets,
    conditional_mutual_information,
    facility_location,
    fl_cmi_loss,
    fl_cmi_terms,
    gc_cmi_loss,
    graph_cut,
    greedy_maximize,
    log_determinant,
    logdet_cmi_loss,
    mine_hard_samples,
    mutual_information,
    similarity_kernel,
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


# ----------------------------------------------------------------------------- the kernel

TAU_HALF = 1 / math.log(2)  # k = 2^(cos − 1): exactly 1, 1/2 and 1/4 at cos = 1, 0 and −1
E1, E2, E3 = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _neg(v):
    return tuple(-x for x in v)


def _rows(*vectors):
    return torch.tensor(vectors, dtype=D64)


def test_similarity_kernel_by_hand():
    K = similarity_kernel(_rows(E1, E2, _neg(E1), (3.0, 0.0, 0.0)), TAU_HALF)
    expected = [[1, 0.5, 0.25, 1], [0.5, 1, 0.5, 0.5], [0.25, 0.5, 1, 0.25], [1, 0.5, 0.25, 1]]
    assert torch.allclose(K, torch.tensor(expected, dtype=D64))
    K = similarity_kernel(torch.randn(12, 5, generator=torch.Generator().manual_seed(0), dtype=D64), 0.3)
    assert K.min() > 0 and K.max() <= 1 + 1e-12 and torch.allclose(K, K.T)
    assert torch.linalg.eigvalsh(K).min() > -1e-10  # PSD
    with pytest.raises(ValueError, match="temperature must be positive"):
        similarity_kernel(torch.ones(2, 3), 0.0)


# ----------------------------------------------------------------------------- SHaSaM-MINE


def test_anchor_sets_by_hand():
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    a = torch.tensor([0, 1, 0, 0, 1, 0])  # rows 4, 5 are memory: candidates, never anchors
    sets = anchor_sets(y, a, n_batch=4)
    assert sets.cells.tolist() == [[0, 0], [0, 1], [1, 0]]  # (1, 1) is only in the memory: no anchor set
    assert sets.anchors.int().tolist() == [[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]
    assert sets.positives.int().tolist() == [[0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]
    assert sets.negatives.int().tolist() == [[0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0]]


def _hand_batch():
    """Anchor set (y=0, a=0) = rows 0, 1 at e1, e2; k̄ = mean kernel similarity to it, with k = 2^(cos − 1)."""
    emb = _rows(
        E1,  # 0  cell (0, 0)
        E2,  # 1  cell (0, 0)
        _neg(E1),  # 2  (0, 1): positive candidate, k̄ = (1/4 + 1/2)/2 = .375 -> hardness .625
        E3,  # 3  (0, 1): positive candidate, k̄ = .5                -> hardness .5
        E1,  # 4  (0, 1): positive candidate, k̄ = (1 + 1/2)/2 = .75 -> hardness .25
        E1,  # 5  (1, 0): negative candidate, k̄ = .75 (the nearest)
        _neg(E3),  # 6  (1, 0): negative candidate, k̄ = .5
        _neg(E2),  # 7  (1, 0): negative candidate, k̄ = (1/2 + 1/4)/2 = .375
        E1,  # 8  (1, 1): as near as row 5, but other target AND other group: neither
    )
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    a = torch.tensor([0, 0, 1, 1, 1, 0, 0, 0, 1])
    return emb, y, a


@pytest.mark.parametrize("name", FUNCTIONS)
def test_mining_per_anchor_set_by_hand(name):
    emb, y, a = _hand_batch()
    K, sets = similarity_kernel(emb, TAU_HALF), anchor_sets(y, a)
    assert sets.cells.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    affinity = anchor_affinity(K, sets.anchors)
    assert affinity[0].tolist() == pytest.approx([0.75, 0.75, 0.375, 0.5, 0.75, 0.75, 0.5, 0.375, 0.75])
    mined = mine_hard_samples(K, sets, n_pos=2, n_neg=2, function=name, diversity=0.0)
    # cell (0, 0): the two farthest positive candidates and the two nearest negative candidates, hardest first
    assert mined.pos_idx[0].tolist() == [2, 3] and mined.neg_idx[0].tolist() == [5, 6]
    # cell (0, 1) = rows 2, 3, 4 at −e1, e3, e1: positives rows 0 (k̄ = (1/4 + 1/2 + 1)/3), 1 (k̄ = 1/2); negative row 8
    assert mined.pos_idx[1].tolist() == [1, 0] and mined.neg_idx[1].tolist() == [8, -1]
    assert mined.neg_mask[1].tolist() == [True, False]
    # cell (1, 0) = rows 5, 6, 7 at e1, −e3, −e2: positive row 8 only; negatives rows 0 (k̄ = 2/3), 1 (k̄ = 5/12)
    assert mined.pos_idx[2].tolist() == [8, -1] and mined.neg_idx[2].tolist() == [0, 1]
    # cell (1, 1) = row 8 at e1: positives rows 5, 6, 7 (k = 1, 1/2, 1/2: a tie, the lower index first),
    # negatives rows 2, 3, 4 (k = 1/4, 1/2, 1)
    assert mined.pos_idx[3].tolist() == [6, 7] and mined.neg_idx[3].tolist() == [4, 3]
    A, P = mined.masks(len(y))
    assert A[0].nonzero().flatten().tolist() == [2, 3] and P[3].nonzero().flatten().tolist() == [3, 4]


@pytest.mark.parametrize("name", ["facility_location", "log_determinant"])
def test_mining_diversity_avoids_duplicates(name):
    emb = F.normalize(_rows(E1, (-1.0, 0.1, 0.0), (-1.0, 0.1, 0.0), (-1.0, 0.0, 0.8)), dim=1)
    # row 0: the anchor set (y=0, a=0); 1: the hardest positive; 2: its exact duplicate; 3: a little less hard
    y, a = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 1, 1])
    K, sets = similarity_kernel(emb, 0.5), anchor_sets(y, a)
    hardness_only = mine_hard_samples(K, sets, 2, 1, function=name, diversity=0.0)
    diverse = mine_hard_samples(K, sets, 2, 1, function=name, diversity=5.0)
    assert hardness_only.pos_idx[0].tolist() == [1, 2]
    assert diverse.pos_idx[0].tolist() == [1, 3]


def test_mining_pads_anchor_sets_with_too_few_candidates():
    emb = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y, a = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    sets = anchor_sets(y, a)  # cells (0, 0) = {0}, (0, 1) = {1}, (1, 1) = {2, 3}
    mined = mine_hard_samples(similarity_kernel(emb, 0.5), sets, n_pos=3, n_neg=3, function="graph_cut")
    assert mined.pos_idx.shape == (3, 3) and mined.neg_idx.shape == (3, 3)
    assert mined.pos_idx[0].tolist() == [1, -1, -1] and mined.pos_mask[0].tolist() == [True, False, False]
    assert mined.neg_idx[0].tolist() == [-1, -1, -1] and not mined.neg_mask[0].any()
    assert sorted(mined.neg_idx[1][mined.neg_mask[1]].tolist()) == [2, 3]
    assert not mined.pos_mask[2].any() and mined.neg_idx[2].tolist() == [1, -1, -1]


def test_mining_draws_candidates_from_memory_but_anchors_from_the_batch():
    emb, y, a = _hand_batch()
    order = [0, 1, 3, 4, 5, 6, 7, 8, 2]  # the hardest positive of cell (0, 0), row 2, lives in the memory only
    sets = anchor_sets(y[order], a[order], n_batch=8)
    mined = mine_hard_samples(similarity_kernel(emb[order], TAU_HALF), sets, 2, 2, diversity=0.0)
    assert mined.pos_idx[0].tolist() == [8, 2]  # bank row 8 (memory, −e1), then bank row 2 (e3)
    assert not sets.anchors[:, 8].any()


def test_mining_rejects_a_negative_kernel():
    emb, y, a = _hand_batch()
    with pytest.raises(ValueError, match="non-negative kernel"):
        mine_hard_samples(F.normalize(emb) @ F.normalize(emb).T, anchor_sets(y, a), 2, 2)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_batched_mining_equals_reference_greedy_per_anchor_set(name):
    g = torch.Generator().manual_seed(7)
    emb = torch.randn(14, 4, generator=g, dtype=D64)
    y, a = torch.randint(0, 2, (14,), generator=g), torch.randint(0, 3, (14,), generator=g)
    beta, lam, eps = 0.7, 0.4, 1.0
    K, sets = similarity_kernel(emb, 0.5), anchor_sets(y, a)
    mined = mine_hard_samples(K, sets, 3, 3, function=name, diversity=beta, lam=lam, eps=eps)

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

    for r, (cy, ca) in enumerate(sets.cells.tolist()):
        anchors = ((y == cy) & (a == ca)).nonzero().flatten()
        kbar = K[:, anchors].mean(dim=1)
        for idx, mask, pool_mask, hardness in [
            (mined.pos_idx, mined.pos_mask, (y == cy) & (a != ca), 1 - kbar),
            (mined.neg_idx, mined.neg_mask, (y != cy) & (a == ca), kbar),
        ]:
            pool = pool_mask.nonzero().flatten().tolist()
            expected = greedy_maximize(objective(hardness, pool), K, 3, pool).tolist() if pool else []
            assert idx[r][mask[r]].tolist() == expected


# ----------------------------------------------------------------------------- SHaSaM-LEARN


def _mask(n, *rows):
    return torch.tensor([[i in members for i in range(n)] for members in rows])


def _five_points():
    """Q = {e1, e2}, A = {−e2}, P = {e1, e3} (rows 0-1, 2, 3-4); every kernel value is 1, 1/2 or 1/4."""
    K = similarity_kernel(_rows(E1, E2, _neg(E2), E1, E3), TAU_HALF)
    return K, _mask(5, {0, 1}), _mask(5, {2}), _mask(5, {3, 4})


def test_fl_cmi_of_the_kernel_by_hand():
    K, Q, A, P = _five_points()
    # per element k, p/q/a = its largest kernel value to P/Q/A, term (min(p, q) − a)_+:
    # e1 (Q): 1, 1, 1/2 -> 1/2 (its nearest negative, a copy of itself, is nearer than its positive);
    # e2 (Q): 1/2, 1, 1/4 -> 1/4;  −e2 (A): a = 1 -> 0;  e1 (P): 1, 1, 1/2 -> 1/2;  e3 (P): 1, 1/2, 1/2 -> 0
    assert fl_cmi_terms(K, Q, A, P).tolist() == [[0.5, 0.25, 0.0, 0.5, 0.0]]
    # the definition over V = all five: f(P∪A) + f(Q∪A) − f(P∪Q∪A) − f(A) = 4.5 + 4.5 − 5 − 2.75 = 1.25
    cmi = conditional_mutual_information(partial(facility_location, K), [3, 4], [0, 1], [2])
    assert cmi.item() == pytest.approx(1.25)
    assert fl_cmi_loss(K, Q, A, P).item() == pytest.approx(1.25 / 5)
    # a positive at each anchor closes every hinge: nothing left to learn
    K2 = similarity_kernel(_rows(E1, E2, E1, E2, E3), TAU_HALF)
    assert fl_cmi_loss(K2, _mask(5, {0, 1}), _mask(5, {2, 3}), _mask(5, {4})).item() == 0.0


def test_smooth_fl_cmi_by_hand_and_towards_the_exact_one():
    K, Q, A, P = _five_points()
    t = 0.25
    # e2 (Q): p = t log(e^{(1/2)/t} + e^{(1/2)/t}) = 1/2 + t log 2;  q = t log(e^{(1/2)/t} + e^{1/t});  a = 1/4
    p, q = 0.5 + t * math.log(2), t * math.log(math.exp(2) + math.exp(4))
    assert fl_cmi_terms(K, Q, A, P, t)[0, 1].item() == pytest.approx(min(p, q) - 0.25)
    exact = fl_cmi_loss(K, Q, A, P).item()
    assert fl_cmi_loss(K, Q, A, P, t=1e-3).item() == pytest.approx(exact, abs=2e-3)
    # an empty negative set: no term, and a finite gradient
    emb = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss = fl_cmi_loss(similarity_kernel(emb, 0.5), Q, A, torch.zeros_like(P), t=0.05)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(emb.grad).all()


def test_fl_cmi_loss_is_facility_location_cmi_per_anchor_set():
    K = similarity_kernel(torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=D64), 0.4)
    Q, A, P = _mask(10, {0, 1}, {7}), _mask(10, {2, 3, 4}, {8, 9}), _mask(10, {5, 6}, set())
    expected = []
    for q, a, p in [([0, 1], [2, 3, 4], [5, 6]), ([7], [8, 9], [])]:
        ground = q + a + p
        cmi = conditional_mutual_information(partial(facility_location, K[ground]), p, q, a)
        expected.append(cmi.item() / len(ground))
    assert expected[0] > 0
    assert fl_cmi_loss(K, Q, A, P).item() == pytest.approx(sum(expected) / 2, rel=1e-10)


def test_gc_cmi_by_hand_and_its_conditioning_term():
    K, Q, A, P = _five_points()
    # s̄(P, Q) = (1 + 1/2 + 1/2 + 1/2)/4 = .625;  s̄(A, Q) = (1/2 + 1/4)/2 = .375
    assert gc_cmi_loss(K, Q, A, P, lam=0.5, nu=0.0).item() == pytest.approx(0.625)
    assert gc_cmi_loss(K, Q, A, P, lam=0.5, nu=1.0).item() == pytest.approx(0.625 - 0.375)
    # ν = 0 is the plain graph-cut CMI 2λ s(P, Q), per pair
    cmi = conditional_mutual_information(partial(graph_cut, K, lam=0.5), [3, 4], [0, 1], [2])
    assert cmi.item() / 4 == pytest.approx(0.625)


def test_graph_cut_cmi_ignores_conditioning_set_unless_conditioned():
    # Algebra (gc_cmi_loss docstring): for disjoint P, Q, A, I_GC(P;Q|A) = 2λ s(P,Q), whatever A is.
    S = _unit_kernel(8, 3, seed=4)
    f = partial(graph_cut, S, lam=0.35)
    values = [conditional_mutual_information(f, [0, 1], [2], A).item() for A in ([], [3], [4, 5], [5, 6, 7])]
    assert values == pytest.approx([2 * 0.35 * (S[0, 2] + S[1, 2]).item()] * 4)
    K = similarity_kernel(torch.randn(8, 4, generator=torch.Generator().manual_seed(9), dtype=D64), 0.5)
    Q, P = _mask(8, {0}), _mask(8, {1, 2})
    plain = [gc_cmi_loss(K, Q, _mask(8, a), P, nu=0.0).item() for a in ({3, 4}, {5, 6})]
    assert plain[0] == pytest.approx(plain[1], rel=1e-12)
    conditioned = [gc_cmi_loss(K, Q, _mask(8, a), P, nu=1.0).item() for a in ({3, 4}, {5, 6})]
    assert abs(conditioned[0] - conditioned[1]) > 1e-3


def test_logdet_cmi_loss_is_log_determinant_cmi():
    K = similarity_kernel(torch.randn(8, 4, generator=torch.Generator().manual_seed(4), dtype=D64), 0.7)
    Q, A, P = _mask(8, {0}, {6}), _mask(8, {1, 2, 3}, {7}), _mask(8, {4, 5}, set())
    f = partial(log_determinant, K, eps=0.5)
    expected = [
        conditional_mutual_information(f, [4, 5], [0], [1, 2, 3]).item() / 6,
        conditional_mutual_information(f, [], [6], [7]).item() / 2,
    ]
    assert logdet_cmi_loss(K, Q, A, P, eps=0.5).item() == pytest.approx(sum(expected) / 2, rel=1e-10)


CMI_LOSSES = {"fl_cmi": fl_cmi_loss, "gc_cmi": gc_cmi_loss, "logdet_cmi": logdet_cmi_loss}


@pytest.mark.parametrize("name", CMI_LOSSES)
def test_cmi_losses_pull_positives_to_anchor_sets_and_push_negatives_away(name):
    emb = torch.randn(24, 6, generator=torch.Generator().manual_seed(11), requires_grad=True)
    y, a = torch.arange(24) % 2, (torch.arange(24) // 2) % 3
    sets = anchor_sets(y, a)
    A, P = mine_hard_samples(similarity_kernel(emb.detach(), 0.5), sets, 3, 3).masks(24)

    def similarity_to_anchor_sets():
        affinity = anchor_affinity(similarity_kernel(emb.detach(), 0.5), sets.anchors)
        return (affinity * A).sum().item() / A.sum().item(), (affinity * P).sum().item() / P.sum().item()

    pos_before, neg_before = similarity_to_anchor_sets()
    losses = []
    for _ in range(30):
        emb.grad = None
        loss = CMI_LOSSES[name](similarity_kernel(emb, 0.5), sets.anchors, A, P)
        loss.backward()
        assert torch.isfinite(emb.grad).all()
        with torch.no_grad():
            emb -= 2.0 * emb.grad
        losses.append(loss.item())
    pos_after, neg_after = similarity_to_anchor_sets()
    assert losses[-1] < losses[0]
    assert pos_after > pos_before
    assert neg_after < neg_before


@pytest.mark.parametrize("name", CMI_LOSSES)
def test_cmi_losses_leave_out_anchor_sets_without_positives(name):
    emb = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    K = similarity_kernel(emb, 0.5)
    Q, A, P = _mask(6, {0}, {1}), _mask(6, {2}, set()), _mask(6, {3}, {4, 5})
    loss = CMI_LOSSES[name]
    assert loss(K, Q, A, P).item() == pytest.approx(loss(K, Q[:1], A[:1], P[:1]).item(), rel=1e-6)
    none = loss(K, Q, torch.zeros_like(A), P)
    none.backward()
    assert none.item() == 0.0 and torch.isfinite(emb.grad).all()
