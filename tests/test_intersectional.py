"""Intersectional cells with a minimum size: small cells merged within their first attribute or left out, by name."""

import numpy as np
import pytest

from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.metrics.intersectional import intersectional_groups, intersectional_metrics

RACE, AGE = ["W", "B", "A"], ["young", "old"]


def rows(spec):
    """Race and age code arrays from {(race, age): count}."""
    race = np.concatenate([[RACE.index(r)] * n for (r, _), n in spec.items()]).astype(int)
    age = np.concatenate([[AGE.index(a)] * n for (_, a), n in spec.items()]).astype(int)
    return race, age


def test_small_cells_are_pooled_per_race_or_left_out_by_hand():
    # Minimum 3 rows. W|young 5, W|old 4, B|young 3 stay. B|old has 1: B's pool of small cells is 1 < 3 -> left
    # out. A|young 2 and A|old 2 are both small: A's pool is 4 >= 3 -> one cell "A|other age".
    spec = {("W", "young"): 5, ("W", "old"): 4, ("B", "young"): 3, ("B", "old"): 1, ("A", "young"): 2, ("A", "old"): 2}
    race, age = rows(spec)
    cells = intersectional_groups([race, age], [RACE, AGE], ["race", "age"], min_cell_size=3)
    assert cells.names == ("W|young", "W|old", "B|young", "A|other age")
    assert cells.merged == [
        {"cell": "A|young", "count": 2, "into": "A|other age"},
        {"cell": "A|old", "count": 2, "into": "A|other age"},
    ]
    assert cells.left_out == [
        {"cell": "B|old", "count": 1, "reason": "fewer than 3 rows even pooled with the small cells of B (1)"}
    ]
    assert cells.codes.tolist() == [0] * 5 + [1] * 4 + [2] * 3 + [-1] + [3] * 4
    # Another split is coded by the same cells: a B|old row is left out, an A|young row joins "A|other age".
    assert cells.encode([np.array([1, 2, 0]), np.array([1, 0, 1])]).tolist() == [-1, 3, 1]
    assert "pooled per first-attribute value" in cells.rule()


def test_left_out_rows_are_never_scored_silently():
    race, age = rows({("W", "young"): 5, ("B", "old"): 1})
    cells = intersectional_groups([race, age], [RACE, AGE], ["race", "age"], min_cell_size=3)
    y = np.zeros(len(race), dtype=int)
    with pytest.raises(ValueError, match="groups has codes in \\[-1"):
        compute_metrics(y, y, cells.codes, cells.names)
    keep = cells.codes >= 0
    assert compute_metrics(y[keep], y[keep], cells.codes[keep], cells.names).per_group[0]["n"] == 5


def test_one_attribute_leaves_small_groups_out_and_three_attributes_pool_the_rest():
    race = np.array([0] * 4 + [1] * 2)
    cells = intersectional_groups([race], [RACE], ["race"], min_cell_size=3)
    assert cells.names == ("W",) and [c["cell"] for c in cells.left_out] == ["B", "A"]  # A is empty: count 0
    sex = np.array([0, 0, 0, 1, 1, 1])
    three = intersectional_groups(
        [sex, race, np.zeros(6, dtype=int)], [["F", "M"], RACE, AGE], ["sex", "race", "age"], 3
    )
    # F|W|young has 3 rows; M has W|young 1, B|young 2 -> pooled 3 -> "M|other race×age"
    assert three.names == ("F|W|young", "M|other race×age")
    with pytest.raises(ValueError, match="attribute 1 codes has codes"):
        intersectional_groups([race, np.array([0, 0, 0, 0, 0, 5])], [RACE, AGE], ["race", "age"])


def labelled_rows(spec):
    """Race, age and target code arrays from {(race, age, y): count}."""
    keys = [k for k, n in spec.items() for _ in range(n)]
    race, age, y = (np.array([code(k[i]) for k in keys]) for i, code in enumerate((RACE.index, AGE.index, int)))
    return race, age, y


# Minimum 2 rows of each target class. W|young has 3 and 3: kept. W|old has 4 and 1: small; W's pool is that cell
# alone (4, 1) -> 1 < 2, left out. B|young (1, 2) and B|old (2, 0) are small; B's pool (3, 2) -> 2 >= 2: "B|other age".
BY_CLASS = {
    ("W", "young", 0): 3,
    ("W", "young", 1): 3,
    ("W", "old", 0): 4,
    ("W", "old", 1): 1,
    ("B", "young", 0): 1,
    ("B", "young", 1): 2,
    ("B", "old", 0): 2,
}


def test_with_the_target_a_cell_is_small_when_one_class_is_by_hand():
    race, age, y = labelled_rows(BY_CLASS)
    cells = intersectional_groups([race, age], [RACE[:2], AGE], ["race", "age"], min_cell_size=2, target=y)
    assert cells.names == ("W|young", "B|other age") and cells.rows == (6, 5)
    assert cells.merged == [
        {"cell": "B|young", "count": 1, "rows": 3, "into": "B|other age"},
        {"cell": "B|old", "count": 0, "rows": 2, "into": "B|other age"},
    ]
    reason = "fewer than 2 rows of some target class even pooled with the small cells of W (1)"
    assert cells.left_out == [{"cell": "W|old", "count": 1, "rows": 5, "reason": reason}]
    assert "of some target class" in cells.rule()
    # by rows alone every cell has 2 or more: nothing pooled
    assert intersectional_groups([race, age], [RACE[:2], AGE], ["race", "age"], 2).names == (
        "W|young",
        "W|old",
        "B|young",
        "B|old",
    )


def test_intersectional_metrics_score_the_kept_cells_and_count_the_rest_by_hand():
    race, age, y = labelled_rows(BY_CLASS)
    cells = intersectional_groups([race, age], [RACE[:2], AGE], ["race", "age"], min_cell_size=2, target=y)
    # W|young: its 3 positives predicted 1 (TPR 1), 1 of its 3 negatives predicted 1 (FPR 1/3).
    # B|other age: B|young's negative predicted 0, 1 of its 2 positives predicted 1 (TPR 1/2); B|old's 2 negatives 0
    # (FPR 0). W|old (5 rows) is left out. eod_max = max(1 - 1/2, 1/3 - 0) = 0.5; selection rates 4/6 and 1/5, so
    # dp_diff = 2/3 - 1/5 = 0.4667; acc over the 11 scored rows (5 + 4 right) = 9/11.
    y_pred = np.array([1, 0, 0, 1, 1, 1] + [0] * 5 + [0, 1, 0, 0, 0])
    out = intersectional_metrics(y, y_pred, cells, n_resamples=200, seed=0)
    assert (out["n"], out["left_out_rows"]) == (11, 5)
    assert out["metrics"]["eod_max"] == pytest.approx(0.5)
    assert out["metrics"]["dp_diff"] == pytest.approx(2 / 3 - 1 / 5)
    assert out["metrics"]["acc"] == pytest.approx(9 / 11)
    assert [g["n"] for g in out["per_group"]] == [6, 5]
    lo, hi = out["intervals"]["eod_max"]
    assert lo <= 0.5 <= hi
    with pytest.raises(ValueError, match="encode"):
        intersectional_metrics(y[:3], y_pred[:3], cells)
