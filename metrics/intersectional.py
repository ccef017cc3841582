"""Intersectional groups (e.g. race × age band) with a minimum cell size: small cells are merged or left out, by name.

Cells are the combinations of two or more sensitive attributes, named "v₁|v₂|…" as ``benchmark.data.group_codes``
names them. A cell with fewer rows than ``min_cell_size`` is pooled with the other small cells of the same first
attribute value into one cell "v₁|other <attr₂>" (e.g. "Black|other age"); a pool still below the minimum is left
out. Given the target, a cell's size is its fewest rows of any target class (its TPR rests on its positives, its FPR
on its negatives). Every merge and every left-out cell is returned with its size, and left-out rows get code −1,
which ``compute_metrics`` refuses: they are never scored silently (``intersectional_metrics`` scores the others and
counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np

from fairfacebench.metrics.bootstrap import MIN_GROUP_ROWS, bootstrap_intervals
from fairfacebench.metrics.fairness import _as_codes, compute_metrics
from fairfacebench.plain import nan_to_none

LEFT_OUT = -1


@dataclass(frozen=True)
class IntersectionalGroups:
    """Cells of several attributes after the minimum-size rule; ``codes`` are the defining split's group codes."""

    names: tuple[str, ...]
    codes: np.ndarray
    cell_to_group: np.ndarray
    sizes: tuple[int, ...]
    merged: list[dict]
    left_out: list[dict]
    min_cell_size: int
    rows: tuple[int, ...] = ()  # rows of each group on the defining split
    per_target_class: bool = False  # a cell's size is its fewest rows of any target class

    def encode(self, attribute_codes: Sequence) -> np.ndarray:
        """Group codes of another split under the same cells (−1 for a row in a left-out cell)."""
        return self.cell_to_group[_cell_index(attribute_codes, self.sizes)]

    def rule(self) -> str:
        unit = _unit(self.min_cell_size, self.per_target_class)
        return (
            f"cells with fewer than {unit} are pooled per first-attribute value into "
            f"'<value>|other <attributes>'; pools still below that are left out (code -1, never scored)"
        )


def intersectional_groups(
    attribute_codes: Sequence,
    class_names: Sequence[Sequence[str]],
    attribute_names: Sequence[str],
    min_cell_size: int = MIN_GROUP_ROWS,
    target=None,
    n_classes: int = 2,
) -> IntersectionalGroups:
    """Cells of the attributes (first attribute most significant) with small cells merged or left out.

    ``attribute_codes``: one code array per attribute (codes into that attribute's ``class_names``), all of the
    split that decides the cells (fix them on one split and ``encode`` the others). With one attribute there is
    nothing to pool within, so small groups are left out. With ``target`` (that split's target codes, ``n_classes``
    classes) a cell's size is its fewest rows of any target class, the rule runs apply to (target class, group)
    cells; without it, its rows.
    """
    _check_arguments(attribute_codes, class_names, attribute_names, min_cell_size)
    sizes = tuple(len(c) for c in class_names)
    cells = _cell_index(attribute_codes, sizes)
    tally = _tally(cells, class_names, target, n_classes)
    grouping = _Grouping(np.full(len(tally.names), LEFT_OUT, dtype=np.int64))
    per_first = int(np.prod(sizes[1:]))
    for first, first_name in enumerate(class_names[0]):
        block = range(first * per_first, (first + 1) * per_first)
        _group_block(grouping, tally, block, first_name, attribute_names, min_cell_size)
    codes = grouping.cell_to_group[cells]
    return IntersectionalGroups(
        names=tuple(grouping.names),
        codes=codes,
        cell_to_group=grouping.cell_to_group,
        sizes=sizes,
        merged=grouping.merged,
        left_out=grouping.left_out,
        min_cell_size=min_cell_size,
        rows=tuple(int(n) for n in np.bincount(codes[codes >= 0], minlength=len(grouping.names))),
        per_target_class=tally.per_target_class,
    )


def intersectional_metrics(
    y_true, y_pred, groups: IntersectionalGroups, n_classes: int = 2, n_resamples: int = 1000, seed: int = 0
) -> dict:
    """The metrics (``compute_metrics``) of predictions over the cells of ``groups``, whose ``codes`` are of the same
    rows, with bootstrap intervals (``bootstrap_intervals``); rows of left-out cells are not scored and are counted.

    Returns {"n": rows scored, "left_out_rows", "metrics": summary, "intervals": {metric: [lo, hi]},
    "per_group": the per-cell table}, undefined values None.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true) == len(y_pred) == len(groups.codes):
        raise ValueError(
            f"y_true, y_pred and the cells' codes have {len(y_true)}, {len(y_pred)}, {len(groups.codes)} rows: "
            "code the scored split with `encode` first"
        )
    keep = groups.codes >= 0
    y_true, y_pred, codes = y_true[keep], y_pred[keep], groups.codes[keep]
    report = compute_metrics(y_true, y_pred, codes, list(groups.names), n_classes)
    intervals = bootstrap_intervals(
        y_true, y_pred, codes, len(groups.names), n_classes, n_resamples=n_resamples, seed=seed
    )
    return nan_to_none(
        {
            "n": int(keep.sum()),
            "left_out_rows": int((~keep).sum()),
            "metrics": report.summary,
            "intervals": intervals["intervals"],
            "per_group": report.per_group,
        }
    )


def _check_arguments(attribute_codes: Sequence, class_names: Sequence, attribute_names: Sequence, min_cell_size: int):
    """Refuse mismatched per-attribute lists and a non-positive minimum before any counting, naming what was given."""
    if not len(attribute_codes) == len(class_names) == len(attribute_names) or not attribute_codes:
        raise ValueError(
            f"one code array, class-name list and attribute name per attribute; got {len(attribute_codes)}, "
            f"{len(class_names)}, {len(attribute_names)}"
        )
    if min_cell_size < 1:
        raise ValueError(f"min_cell_size must be a positive number of rows; got {min_cell_size}")


@dataclass(frozen=True)
class _Tally:
    """Every cell's name and rows, per target class when the rule counts those (else one column of all its rows)."""

    names: list[str]
    rows: np.ndarray
    by_class: np.ndarray
    per_target_class: bool

    @cached_property
    def counts(self) -> np.ndarray:
        """A cell's size under the rule: its fewest rows of any target class, as its TPR and FPR rest on those."""
        return self.by_class.min(axis=1)

    def size_of(self, c: int) -> dict[str, int]:
        """A cell's size under the rule ('count') and, when that is per target class, its rows."""
        return {"count": int(self.counts[c])} | ({"rows": int(self.rows[c])} if self.per_target_class else {})

    def pooled(self, cells: list[int]) -> int:
        """The size under the rule of some cells pooled into one (0 for none), per class summed before the fewest."""
        return int(self.by_class[cells].sum(axis=0).min()) if cells else 0


def _tally(cells: np.ndarray, class_names: Sequence[Sequence[str]], target, n_classes: int) -> _Tally:
    """Count every cell's rows, per target class when a target is given, since the rule sizes a cell by those."""
    n_cells = int(np.prod([len(c) for c in class_names]))
    rows = np.bincount(cells, minlength=n_cells)
    if target is None:
        return _Tally(_cell_names(class_names), rows, rows[:, None], per_target_class=False)
    target = _as_codes(target, "target", n_classes, "n_classes")
    if len(target) != len(cells):
        raise ValueError(f"target has {len(target)} rows, the attributes {len(cells)}")
    by_class = np.bincount(cells * n_classes + target, minlength=n_cells * n_classes).reshape(n_cells, n_classes)
    return _Tally(_cell_names(class_names), rows, by_class, per_target_class=True)


def _cell_names(class_names: Sequence[Sequence[str]]) -> list[str]:
    """'v₁|v₂|…' of every cell in cell-index order, as ``benchmark.data.group_codes`` names them."""
    names = [""]
    for classes in class_names:
        names = [f"{p}|{c}" if p else str(c) for p in names for c in classes]
    return names


@dataclass
class _Grouping:
    """The groups as they are decided, block by block: which group each cell joins, and every merge and omission."""

    cell_to_group: np.ndarray
    names: list[str] = field(default_factory=list)
    merged: list[dict] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)

    def add(self, cells, name: str) -> None:
        """Cells (one kept cell, or a pool of small ones) become the next group."""
        self.cell_to_group[cells] = len(self.names)
        self.names.append(name)

    def pool(self, small: list[int], name: str, tally: _Tally) -> None:
        """Small cells become one group, each merge recorded with the cell's size so a reader can check it."""
        self.add(small, name)
        self.merged += [{"cell": tally.names[c], **tally.size_of(c), "into": name} for c in small]

    def leave_out(self, small: list[int], reason: str, tally: _Tally) -> None:
        """Small cells stay at code −1 (never scored), each recorded with its size and the reason."""
        self.left_out += [{"cell": tally.names[c], **tally.size_of(c), "reason": reason} for c in small]


def _group_block(
    grouping: _Grouping, tally: _Tally, block: range, first_name: str, attribute_names: Sequence[str], minimum: int
) -> None:
    """Decide the cells of one first-attribute value: large ones stay, small ones pool together or are left out."""
    small = [c for c in block if tally.counts[c] < minimum]
    for c in block:
        if c not in small:
            grouping.add(c, tally.names[c])
    pooled = tally.pooled(small)
    if len(attribute_names) > 1 and small and pooled >= minimum:
        grouping.pool(small, f"{first_name}|other {'×'.join(attribute_names[1:])}", tally)
    else:
        reason = _why_left_out(minimum, tally.per_target_class, len(attribute_names) > 1, first_name, pooled)
        grouping.leave_out(small, reason, tally)


def _why_left_out(minimum: int, per_target_class: bool, pools: bool, first_name: str, pooled: int) -> str:
    """The reason a left-out cell carries, so a reader sees the rule and, when pooling was tried, the pool's size."""
    unit = _unit(minimum, per_target_class)
    if not pools:
        return f"fewer than {unit}"
    return f"fewer than {unit} even pooled with the small cells of {first_name} ({pooled})"


def _unit(minimum: int, per_target_class: bool) -> str:
    """What the minimum counts: rows, or rows of the rarest target class when sizes are per target class."""
    return f"{minimum} rows" + (" of some target class" if per_target_class else "")


def _cell_index(attribute_codes: Sequence, sizes: tuple[int, ...]) -> np.ndarray:
    """Mixed-radix cell index of every row, first attribute most significant (as benchmark.data.group_codes)."""
    if len(attribute_codes) != len(sizes):
        raise ValueError(f"expected {len(sizes)} attribute code arrays, got {len(attribute_codes)}")
    index = None
    for k, (codes, size) in enumerate(zip(attribute_codes, sizes)):
        codes = _as_codes(codes, f"attribute {k} codes", size, f"its {size} classes")
        if index is not None and len(codes) != len(index):
            raise ValueError(f"attribute {k} has {len(codes)} rows, attribute 0 has {len(index)}")
        index = codes if index is None else index * size + codes
    return index
