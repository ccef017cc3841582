"""Intersectional cells with a minimum size: small cells merged within their first attribute or left out, by name."""

import numpy as np
import pytest

from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.metrics.intersectional import intersectional_groups

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
