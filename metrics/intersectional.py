"""Intersectional groups (e.g. race × age band) with a minimum cell size: small cells are merged or left out, by name.

Cells are the combinations of two or more sensitive attributes, named "v₁|v₂|…" as ``benchmark.data.group_codes``
names them. A cell with fewer rows than ``min_cell_size`` is pooled with the other small cells of the same first
attribute value into one cell "v₁|other <attr₂>" (e.g. "Black|other age"); a pool still below the minimum is left
out. Every merge and every left-out cell is returned with its row count, and left-out rows get code −1, which
``compute_metrics`` refuses: they are never scored silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fairfacebench.metrics.bootstrap import MIN_GROUP_ROWS
from fairfacebench.metrics.fairness import _as_codes

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

    def encode(self, attribute_codes: Sequence) -> np.ndarray:
        """Group codes of another split under the same cells (−1 for a row in a left-out cell)."""
        return self.cell_to_group[_cell_index(attribute_codes, self.sizes)]

    def rule(self) -> str:
        return (
            f"cells with fewer than {self.min_cell_size} rows are pooled per first-attribute value into "
            f"'<value>|other <attributes>'; pools still below {self.min_cell_size} rows are left out (code -1)"
        )


def intersectional_groups(
    attribute_codes: Sequence,
    class_names: Sequence[Sequence[str]],
    attribute_names: Sequence[str],
    min_cell_size: int = MIN_GROUP_ROWS,
) -> IntersectionalGroups:
    """Cells of the attributes (first attribute most significant) with small cells merged or left out.

    ``attribute_codes``: one code array per attribute (codes into that attribute's ``class_names``), all of the
    split that decides the cells (fix them on one split and ``encode`` the others). With one attribute there is
    nothing to pool within, so small groups are left out.
    """
    if not len(attribute_codes) == len(class_names) == len(attribute_names) or not attribute_codes:
        raise ValueError(
            f"one code array, class-name list and attribute name per attribute; got {len(attribute_codes)}, "
            f"{len(class_names)}, {len(attribute_names)}"
        )
    if min_cell_size < 1:
        raise ValueError(f"min_cell_size must be a positive number of rows; got {min_cell_size}")
    sizes = tuple(len(c) for c in class_names)
    cells = _cell_index(attribute_codes, sizes)
    counts = np.bincount(cells, minlength=int(np.prod(sizes)))
    cell_names = [""]
    for classes in class_names:
        cell_names = [f"{p}|{c}" if p else str(c) for p in cell_names for c in classes]
    per_first = int(np.prod(sizes[1:]))
    other = f"other {'×'.join(attribute_names[1:])}"
    names, merged, left_out = [], [], []
    cell_to_group = np.full(len(counts), LEFT_OUT, dtype=np.int64)
    for first, first_name in enumerate(class_names[0]):
        block = range(first * per_first, (first + 1) * per_first)
        small = [c for c in block if counts[c] < min_cell_size]
        for c in block:
            if c not in small:
                cell_to_group[c] = len(names)
                names.append(cell_names[c])
        pooled = int(counts[small].sum())
        if len(sizes) > 1 and small and pooled >= min_cell_size:
            name = f"{first_name}|{other}"
            cell_to_group[small] = len(names)
            names.append(name)
            merged += [{"cell": cell_names[c], "count": int(counts[c]), "into": name} for c in small]
        else:
            reason = (
                f"fewer than {min_cell_size} rows"
                if len(sizes) == 1
                else f"fewer than {min_cell_size} rows even pooled with the small cells of {first_name} ({pooled})"
            )
            left_out += [{"cell": cell_names[c], "count": int(counts[c]), "reason": reason} for c in small]
    return IntersectionalGroups(
        names=tuple(names),
        codes=cell_to_group[cells],
        cell_to_group=cell_to_group,
        sizes=sizes,
        merged=merged,
        left_out=left_out,
        min_cell_size=min_cell_size,
    )


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
