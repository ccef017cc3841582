"""The base class of every dataset plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fairfacebench.data import Attribute, LoadedDataset, TaskSpec, UnlabeledPool
from fairfacebench.errors import UnknownName


class DatasetPlugin:
    """A dataset: its attributes, the tasks it offers and a loader.

    Subclasses set the class attributes and implement `load`.  `tasks[0]` is
    the default task.  `needs_root` is False only for generated datasets.
    """

    name: str = ""
    description: str = ""
    citation: str = ""
    needs_root: bool = True
    has_pool: bool = False  # whether `pool` returns the dataset's own unlabeled pool
    default_size: int = 64
    attributes: dict[str, Attribute] = {}
    tasks: list[TaskSpec] = []

    def task(self, name: str | None) -> TaskSpec:
        if name is None:
            return self.tasks[0]
        for t in self.tasks:
            if t.name == name:
                return t
        raise UnknownName(f"dataset '{self.name}' has no task '{name}'; available: {[t.name for t in self.tasks]}")

    def load(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> LoadedDataset:
        raise NotImplementedError

    def check(self, root: Path) -> dict[str, Any]:
        """Layout check of a data root: counts per split and group, and a list of problems."""
        raise NotImplementedError(
            f"dataset '{self.name}' has no files to check"
            if not self.needs_root
            else f"'{self.name}' does not implement check"
        )

    def prepare(self, root: Path, size: int, cache_dir: Path, workers: int | None = None) -> dict[str, Any]:
        """Build the decoded-image cache of a data root ahead of a run."""
        raise NotImplementedError(
            f"dataset '{self.name}' is generated on the fly; nothing to prepare"
            if not self.needs_root
            else f"'{self.name}' does not implement prepare"
        )

    def pool(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> UnlabeledPool | None:
        """An unlabeled pool that comes with the dataset (None if it has none)."""
        return None
