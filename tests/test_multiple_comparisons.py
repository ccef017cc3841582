"""Holm's correction, per-metric ranks and the methods tied with the best, hand-checked."""

import numpy as np
import pytest

from fairfacebench.metrics.compare import best_of, holm, metric_ranks, ranks_per_metric, tied_with_best


def test_holm_on_the_textbook_example():
    # Holm–Bonferroni example (four hypotheses, α = 0.05): p = 0.01, 0.04, 0.03, 0.005.
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06.
    # Step-down: 0.005 ≤ 0.05/4, 0.01 ≤ 0.05/3, 0.03 > 0.05/2 -> stop: H4 and H1 rejected.
    out = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert out["adjusted"] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert out["reject"] == [True, False, False, True]
    named = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert named["reject"] == {"a": True, "b": False, "c": False, "d": True} and named["adjusted"]["d"] == 0.02


def test_holm_agrees_with_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 17):
        p = np.round(rng.random(m) ** 3, 3)  # rounding makes ties
        for alpha in (0.01, 0.05, 0.2):
            reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
            out = holm(p, alpha)
            np.testing.assert_allclose(out["adjusted"], adjusted)
            assert out["reject"] == reject.tolist()


def test_holm_refuses_a_missing_p_value():
    with pytest.raises(ValueError, match="'b' is nan"):
        holm({"a": 0.1, "b": float("nan")})


def test_ranks_per_metric_keep_accuracy_and_gaps_apart():
    per_seed = {
        "erm": {"acc": {0: 0.90, 1: 0.88, 2: 0.91}, "eod_max": {0: 0.20, 1: 0.25, 2: 0.22}},
        "fair": {"acc": {0: 0.85, 1: 0.88, 2: 0.86}, "eod_max": {0: 0.05, 1: 0.04, 2: None}},
    }
    out = ranks_per_metric(per_seed, ["acc", "eod_max"])
    # acc: seed 0 erm 1 fair 2; seed 1 tie -> 1.5 each; seed 2 erm 1 fair 2 -> erm (1 + 1.5 + 1)/3, fair (2 + 1.5 + 2)/3
    assert out["acc"]["ranks"] == pytest.approx({"erm": 3.5 / 3, "fair": 5.5 / 3}) and out["acc"]["seeds"] == [0, 1, 2]
    # eod_max (lower is better) over seeds 0, 1 only (fair has no seed 2): fair 1, erm 2
    assert out["eod_max"]["ranks"] == {"erm": 2.0, "fair": 1.0} and out["eod_max"]["seeds"] == [0, 1]
    # Nemenyi, k = 2, N = 2: 1.960 · √(2·3 / (6·2)) = 1.3859
    assert out["eod_max"]["critical_difference"] == pytest.approx(1.960 * np.sqrt(0.5))
    assert metric_ranks({"a": {0: None}, "b": {0: 0.5}}, True)["ranks"] == {"a": None, "b": None}


def test_methods_tied_with_the_best_after_holm():
    assert best_of({"erm": 0.05, "fair": 0.02, "other": 0.03, "broken": None}, higher_is_better=False) == "fair"
    # p-values against the best: erm 0.004, other 0.03, third 0.2. Holm over 3: 0.004·3 = 0.012 (reject),
    # 0.03·2 = 0.06 (not), 0.2 -> tied: fair (the best), other and third.
    out = tied_with_best("fair", {"erm": 0.004, "other": 0.03, "third": 0.2, "fair": 1.0}, alpha=0.05)
    assert out["tied"] == ["fair", "other", "third"] and out["worse"] == ["erm"]
    assert out["adjusted_p"] == pytest.approx({"erm": 0.012, "other": 0.06, "third": 0.2})
    assert tied_with_best("only", {})["tied"] == ["only"]
