"""What the leaderboard and `load_runs` compute from a run's stored predictions beyond its record, once per run:

- calibration per sensitive group (`metrics.calibration`), from the stored test scores, labels and groups alone;
- accuracy at equal fairness (`metrics.unprocessing`, error-parity), fitted on the stored scores of validation's
  selection half with their labels read back (`readback`) and applied to the stored test scores;
- gaps over intersectional groups (`metrics.intersectional`), the attributes of each test image read back.

An analysis that cannot be made raises `NotReadBack` with the reason, which the outputs show in its place.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fairfacebench.metrics.calibration import calibration_by_group
from fairfacebench.metrics.intersectional import IntersectionalGroups, intersectional_groups, intersectional_metrics
from fairfacebench.metrics.unprocessing import TOLERANCES, accuracy_at_equal_odds
from fairfacebench.readback import Attributes, DataAccess, DataLabels, NotReadBack

if TYPE_CHECKING:
    from fairfacebench.record import RunRecord

NEEDS_DATA = "needs labels the store does not hold: pass --data-root"
DEFAULT_RESAMPLES = 1000

Arrays = dict[str, np.ndarray]


class StoredAnalyses:
    """The analyses of a store's runs, each computed once per run (a failure to compute is remembered too)."""

    def __init__(self, access: DataAccess | None = None, tolerances: tuple[float, ...] = TOLERANCES) -> None:
        self.access = access
        self.tolerances = tolerances
        self.labels = DataLabels(access) if access is not None else None
        self._done: dict[tuple[str, str], Any] = {}
        self._cells: dict[str, IntersectionalGroups] = {}

    def once(self, kind: str, record: RunRecord, compute: Callable[[], Any]) -> Any:
        key = (kind, record.run_id)
        if key not in self._done:
            try:
                self._done[key] = compute()
            except NotReadBack as exc:
                self._done[key] = exc
        if isinstance(self._done[key], NotReadBack):
            raise self._done[key]
        return self._done[key]

    def calibration(self, record: RunRecord, arrays: Arrays | None) -> dict[str, Any]:
        """`calibration_by_group` of the stored test predictions over the task's sensitive groups."""

        def compute() -> dict[str, Any]:
            stored = needed(arrays, ("test_scores", "test_y", "test_a"))
            groups = record.task_info.group_names if record.task_info else None
            if not groups:
                raise NotReadBack("the record names no sensitive groups")
            return calibration_by_group(stored["test_scores"], stored["test_y"], stored["test_a"], groups)

        return self.once("calibration", record, compute)

    def equal_fairness(self, record: RunRecord, arrays: Arrays | None) -> list[dict[str, Any]]:
        """`accuracy_at_equal_odds` at each tolerance: fitted on the stored validation-selection scores with their
        labels read back, applied to the stored test scores (seeded with the run's seed)."""

        def compute() -> list[dict[str, Any]]:
            stored = needed(arrays, ("test_scores", "test_y", "test_a", "val_scores", "val_ids", "test_ids"))
            if stored["test_scores"].shape[1] != 2:
                raise NotReadBack("binary targets only (error-parity post-processes binary classifiers)")
            if self.labels is None:
                raise NotReadBack(NEEDS_DATA)
            val_y, val_a = self.labels.selection_labels(record, stored)
            try:
                return accuracy_at_equal_odds(
                    stored["val_scores"],
                    val_y,
                    val_a,
                    stored["test_scores"],
                    stored["test_y"],
                    stored["test_a"],
                    self.tolerances,
                    seed=record.seed,
                )
            except ImportError as exc:
                raise NotReadBack(str(exc)) from None
            except ValueError as exc:  # e.g. a group without rows in the selection half: no thresholds to fit
                raise NotReadBack(f"cannot post-process: {exc}") from None

        return self.once("equal_fairness", record, compute)

    def cells(self, record: RunRecord, arrays: Arrays | None) -> IntersectionalGroups:
        """The intersectional cells of the run's test split (the same for every run of a comparison), decided on it
        with the minimum per (target class, cell) of `--intersect`; rows an attribute does not apply to: code −1."""
        stored = needed(arrays, ("test_ids", "test_y"))
        if self.labels is None or self.access is None or self.access.intersect is None:
            raise NotReadBack("needs --intersect DATASET:A+B and --data-root")
        digest = hashlib.sha256(stored["test_ids"].astype(str).tobytes() + stored["test_y"].tobytes()).hexdigest()
        key = f"{digest}|{record.spec.dataset}|{sorted(record.spec.dataset_options.items())}"
        if key not in self._cells:
            self._cells[key] = split_cells(
                self.labels.attributes(record, stored["test_ids"]),
                stored["test_y"],
                len(record.task_info.target_classes) if record.task_info else 2,
                self.access.intersect.min_cell,
            )
        return self._cells[key]

    def intersectional(self, record: RunRecord, arrays: Arrays | None) -> dict[str, Any]:
        """`intersectional_metrics` of the run's test predictions over the cells of its test split."""

        def compute() -> dict[str, Any]:
            cells = self.cells(record, arrays)
            scores = arrays["test_scores"]
            return intersectional_metrics(
                arrays["test_y"],
                scores.argmax(1),
                cells,
                scores.shape[1],
                n_resamples=record.spec.bootstrap or DEFAULT_RESAMPLES,
                seed=record.seed,
            )

        return self.once("intersectional", record, compute)


def split_cells(attributes: Attributes, y: np.ndarray, n_classes: int, min_cell: int) -> IntersectionalGroups:
    """`intersectional_groups` of the applicable rows (every attribute code >= 0); the other rows get code −1 and are
    named as one left-out entry."""
    applies = np.logical_and.reduce([c >= 0 for c in attributes.codes])
    cells = intersectional_groups(
        [c[applies] for c in attributes.codes],
        attributes.classes,
        attributes.names,
        min_cell,
        target=np.asarray(y)[applies],
        n_classes=n_classes,
    )
    if applies.all():
        return cells
    codes = np.full(len(applies), -1, dtype=np.int64)
    codes[applies] = cells.codes
    missing = {"cell": "attribute not applicable", "count": int((~applies).sum()), "reason": "no class to place it"}
    return IntersectionalGroups(
        cells.names,
        codes,
        cells.cell_to_group,
        cells.sizes,
        cells.merged,
        [*cells.left_out, missing],
        cells.min_cell_size,
        cells.rows,
        cells.per_target_class,
    )


def needed(arrays: Arrays | None, keys: tuple[str, ...]) -> Arrays:
    """The stored arrays, or NotReadBack naming what the run did not store."""
    if arrays is None:
        raise NotReadBack("the run stored no predictions")
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise NotReadBack(f"its predictions.npz lacks {', '.join(missing)} (stored before they were)")
    return arrays
