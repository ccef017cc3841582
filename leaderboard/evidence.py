"""What the store holds about each selected run beyond its record: its test predictions, its test intervals in the
current construction, its flags and the analyses of its predictions (`analyses`), each read or computed once per
build."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fairfacebench.flags import Flag, current_intervals, run_flags
from fairfacebench.method_code import installed_fingerprints

if TYPE_CHECKING:
    from fairfacebench.analyses import StoredAnalyses
    from fairfacebench.record import RunRecord
    from fairfacebench.store import ResultStore


class StoredRuns:
    """Predictions, intervals and flags of a store's runs, cached by run id, and the analyses of their predictions."""

    def __init__(self, store: ResultStore, analyses: StoredAnalyses) -> None:
        self.store = store
        self.analyses = analyses
        self._predictions: dict[str, dict[str, Any] | None] = {}
        self._intervals: dict[str, dict[str, Any] | None] = {}

    def predictions(self, record: RunRecord) -> dict[str, Any] | None:
        """The run's predictions.npz (None when it left none)."""
        if record.run_id not in self._predictions:
            self._predictions[record.run_id] = self.read_predictions(record)
        return self._predictions[record.run_id]

    def read_predictions(self, record: RunRecord) -> dict[str, Any] | None:
        if not record.ok:
            return None
        try:
            return self.store.predictions(record.run_id)
        except FileNotFoundError:  # a run that saved no predictions.npz
            return None

    def intervals(self, record: RunRecord) -> dict[str, Any] | None:
        """The run's test intervals as `intervals_from_counts` makes them (recomputed from its predictions when the
        record holds an older construction; None when there is nothing to recompute them from)."""
        if record.run_id not in self._intervals:
            self._intervals[record.run_id] = current_intervals(record, self.predictions(record))
        return self._intervals[record.run_id]

    def interval(self, record: RunRecord, metric: str) -> list | None:
        return ((self.intervals(record) or {}).get("intervals") or {}).get(metric)

    def flags(self, record: RunRecord) -> list[Flag]:
        return run_flags(record, self.intervals(record), installed_fingerprints(record))

    def interval_method(self, record: RunRecord) -> str | None:
        return (self.intervals(record) or {}).get("method")
