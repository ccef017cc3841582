"""The base class of every dataset plugin."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fairfacebench.content import folder_content
from fairfacebench.data import Attribute, LoadedDataset, TaskSpec, UnlabeledPool, Vocabulary
from fairfacebench.errors import UnknownName


class DatasetPlugin:
    """A dataset: its attributes, the tasks it offers and a loader.

    Subclasses set the class attributes and implement `load`.  `tasks[0]` is
    the default task.  `needs_root` is False only for generated datasets.
    `vocabulary` lets runs of other datasets be evaluated on this one's test
    split (`fairbench run --eval-on`); a dataset without one is refused there.
    """

    name: str = ""
    description: str = ""
    citation: str = ""
    needs_root: bool = True
    has_pool: bool = False  # whether `pool` returns the dataset's own unlabeled pool
    splits_per_task: bool = False  # the splits depend on the task: `load`, `pool` and `fingerprint` get `task=`
    default_size: int = 64
    attributes: dict[str, Attribute] = {}
    tasks: list[TaskSpec] = []
    vocabulary: Vocabulary = {}  # how attributes map onto the shared concepts (`data.CONCEPTS`) for transfer

    def task(self, name: str | None) -> TaskSpec:
        if name is None:
            return self.tasks[0]
        for t in self.tasks:
            if t.name == name:
                return t
        raise UnknownName(f"dataset '{self.name}' has no task '{name}'; available: {[t.name for t in self.tasks]}")

    def default_task(self, **options: Any) -> str:
        """The task a run gets when none is named: `tasks[0]` (a dataset whose tasks follow its options overrides)."""
        return self.tasks[0].name

    def run_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options a run (and `check`, `prepare`) loads with and records, from the plan's.

        A plugin adds the defaults of options its loader leaves off when called
        without them, and drops an option set to the value that reads the data
        as before the option existed, so the ids of earlier runs still hold.
        """
        return dict(options)

    def load(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> LoadedDataset:
        raise NotImplementedError

    def fingerprint(self, root: Path | None, **options: Any) -> str:
        """A hash of the data a load with these options reads, independent of where the folder lives.

        The default: every file under the root (relative path and size) and the
        options; generated datasets hash their name and options.  Overrides hash
        exactly what their loader reads (see `IndexedDataset`).
        """
        digest = options_digest(self.name, options)
        if self.needs_root and root is not None:
            digest.update(folder_fingerprint(Path(root)).encode())
        return digest.hexdigest()[:16]

    def content(self, root: Path | None, **options: Any) -> str:
        """A digest of the bytes (and class names) of the data a load with these options reads: stored with each
        run and compared when a grid resumes, so data replaced under the same names and sizes is computed again
        (the fingerprint, and so the run id, follows names and sizes only).  The default: every file under the
        root; "" for a generated dataset (nothing to read).  Overrides digest exactly what their loader reads."""
        if not self.needs_root or root is None:
            return ""
        return folder_content(Path(root))

    def check(self, root: Path) -> dict[str, Any]:
        """Layout check of a data root: counts per split and group, and a list of problems."""
        raise NotImplementedError(
            f"dataset '{self.name}' has no files to check"
            if not self.needs_root
            else f"'{self.name}' does not implement check"
        )

    def cells(self, root: Path | None, tasks: list[str], **options: Any) -> dict[str, dict[str, dict[str, int]]] | None:
        """Per task, the images per (target class, sensitive group) cell of each split, counted without decoding
        (`fairfacebench.data.task_cells`); None when the plugin cannot count them before loading."""
        return None

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


def folder_fingerprint(root: Path) -> str:
    """sha256 over the sorted relative paths and sizes of every file under `root` (not its location)."""
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                size = path.stat().st_size
            except OSError:
                size = -1
            digest.update(f"{path.relative_to(root).as_posix()}\t{size}\n".encode())
    return digest.hexdigest()


def options_digest(dataset: str, options: dict[str, Any]) -> Any:
    """A sha256 object started with a dataset's name and loader options, to which fingerprints add their data."""
    return hashlib.sha256(json.dumps({"dataset": dataset, "options": options}, sort_keys=True, default=str).encode())
