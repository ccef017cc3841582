"""Labels a result store does not hold, read back by image id through the dataset plugins.

A run stores its test scores, labels and groups, and the scores of validation's selection half with their ids
(`predictions.npz`); not validation's labels, nor attributes its task did not use. Accuracy at equal fairness needs
the first, intersectional groups (e.g. race × age) the second. Both are read here through the dataset plugin's own
`load` and `make_task_data`, as the runner read them (the image cache of the runs' resolution: nothing is decoded
when it exists), at a data root the user names, and matched to the stored ids. A stored test label the data
contradicts, or an id it lacks, is an error naming the dataset and the root: the wrong folder, or changed data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fairfacebench.data import MIN_CELL_IMAGES, LoadedDataset, TaskData, make_task_data
from fairfacebench.errors import ConfigError, DataError
from fairfacebench.metrics.unprocessing import rows_by_id
from fairfacebench.plugins import registry
from fairfacebench.settings import default_cache_dir

if TYPE_CHECKING:
    from fairfacebench.record import RunRecord

ANY_DATASET = "*"  # --data-root PATH without a name: the root of every dataset the board reads


class NotReadBack(Exception):
    """An analysis cannot be made from what is here; its message says why and is shown where its numbers would be."""


@dataclass(frozen=True)
class Intersect:
    """Intersectional groups of several attributes of one dataset, cells below `min_cell` rows of some target class
    merged or left out (`metrics.intersectional`)."""

    dataset: str
    attributes: tuple[str, ...]
    min_cell: int = MIN_CELL_IMAGES

    @property
    def label(self) -> str:
        return " × ".join(self.attributes)


def parse_intersect(text: str, min_cell: int = MIN_CELL_IMAGES) -> Intersect:
    """'utkface:race+age_group' -> Intersect('utkface', ('race', 'age_group'))."""
    dataset, sep, rest = text.partition(":")
    attributes = tuple(a.strip() for a in rest.split("+") if a.strip())
    if not sep or not dataset or len(attributes) < 2:
        raise ConfigError(
            f"--intersect {text}: expected DATASET:ATTRIBUTE+ATTRIBUTE[+...], e.g. utkface:race+age_group "
            "(two or more attributes of one dataset plugin)"
        )
    if min_cell < 1:
        raise ConfigError(f"--min-cell {min_cell}: the minimum cell size must be a positive number of images")
    return Intersect(dataset, attributes, min_cell)


def parse_data_roots(values: Sequence[str]) -> dict[str, str]:
    """--data-root PATH (every dataset) or NAME=PATH, repeatable."""
    roots: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and not path:
            raise ConfigError(f"--data-root {value}: no folder after '='; expected PATH or NAME=PATH")
        roots[name if sep else ANY_DATASET] = path if sep else value
    return roots


@dataclass(frozen=True)
class DataAccess:
    """What the board may read besides the store: data roots (any given turns reading labels back on; a generated
    dataset needs none) and the intersectional attributes."""

    roots: dict[str, str] = field(default_factory=dict)
    intersect: Intersect | None = None

    def root(self, dataset: str) -> str | None:
        return self.roots.get(dataset, self.roots.get(ANY_DATASET))


def data_access(data_roots: Sequence[str], intersect: str | None, min_cell: int) -> DataAccess | None:
    """The board's `DataAccess` from `leaderboard --data-root/--intersect/--min-cell`; None when neither is given."""
    if not data_roots and intersect is None:
        return None
    return DataAccess(parse_data_roots(data_roots), parse_intersect(intersect, min_cell) if intersect else None)


@dataclass(frozen=True)
class Attributes:
    """Codes of several attributes for a list of ids, their class names, and rows no attribute code applies to."""

    names: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]
    codes: tuple[np.ndarray, ...]  # per attribute; -1 where the attribute does not apply to the row


class DataLabels:
    """Datasets loaded through their plugins, once per (dataset, root, resolution, options, task)."""

    def __init__(self, access: DataAccess, cache_dir: Path | None = None) -> None:
        self.access = access
        self.cache_dir = cache_dir or default_cache_dir()
        self.registry = registry()
        self._loaded: dict[str, LoadedDataset] = {}
        self._tasks: dict[str, TaskData] = {}

    def root(self, dataset: str) -> str | None:
        """The data root of a dataset; NotReadBack when it needs one and none was given."""
        plugin = self.registry.dataset(dataset)
        root = self.access.root(dataset) if plugin.needs_root else None
        if plugin.needs_root and root is None:
            raise NotReadBack(f"no data root for {dataset} (pass --data-root {dataset}=PATH)")
        return root

    def load(self, dataset: str, resolution: int, options: dict[str, Any], task: str | None) -> LoadedDataset:
        root = self.root(dataset)
        plugin = self.registry.dataset(dataset)
        per_task = {"task": task} if task is not None and plugin.splits_per_task else {}
        key = f"{dataset}|{root}|{resolution}|{sorted(options.items())}|{per_task}"
        if key not in self._loaded:
            self._loaded[key] = plugin.load(root, resolution, self.cache_dir, **per_task, **options)
        return self._loaded[key]

    def task_data(self, record: RunRecord) -> TaskData:
        """The run's task data as the runner built it (validation cut into fit and selection halves)."""
        spec = record.spec
        key = f"{spec.dataset}|{spec.resolution}|{sorted(spec.dataset_options.items())}|{spec.task}"
        if key not in self._tasks:
            ds = self.load(spec.dataset, spec.resolution, dict(spec.dataset_options), spec.task)
            self._tasks[key] = make_task_data(ds, self.registry.dataset(spec.dataset).task(spec.task))
        return self._tasks[key]

    def selection_labels(self, record: RunRecord, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Target and group codes of the stored validation rows (`val_ids`), after checking the data gives the stored
        test labels and groups."""
        data = self.task_data(record)
        self.check_test(record, arrays, data)
        where = f"{record.spec.dataset} at {self.access.root(record.spec.dataset) or '(generated)'}"
        split = data.val_select if data.val_select is not None else data.val
        y, a = by_id(arrays["val_ids"], split.ids, where, "validation selection half", split.y, split.a)
        return y, a

    def check_test(self, record: RunRecord, arrays: dict[str, np.ndarray], data: TaskData) -> None:
        where = f"{record.spec.dataset} at {self.access.root(record.spec.dataset) or '(generated)'}"
        y, a = by_id(arrays["test_ids"], data.test.ids, where, "test split", data.test.y, data.test.a)
        wrong = int(((y != arrays["test_y"]) | (a != arrays["test_a"])).sum())
        if wrong:
            raise DataError(
                f"{where}: {wrong} of {len(y)} test images have other labels or groups than run {record.run_id} "
                "recorded: pass the data root the runs read (the data may have changed since)"
            )

    def attributes(self, record: RunRecord, ids: np.ndarray) -> Attributes:
        """The `--intersect` attributes of each id, from every split of that dataset: loaded with the run's options and
        task when it is the run's dataset (a generated dataset's ids repeat across options), else with its defaults."""
        intersect = self.access.intersect
        if intersect is None:
            raise NotReadBack("no intersectional attributes asked for (--intersect DATASET:A+B)")
        spec = record.spec
        own = intersect.dataset == spec.dataset
        ds = self.load(
            intersect.dataset, spec.resolution, dict(spec.dataset_options) if own else {}, spec.task if own else None
        )
        unknown = [a for a in intersect.attributes if a not in ds.attributes]
        if unknown:
            raise ConfigError(
                f"--intersect {intersect.dataset}:{'+'.join(intersect.attributes)}: {intersect.dataset} has no "
                f"attribute(s) {unknown}; it has {sorted(ds.attributes)}"
            )
        splits = list(ds.splits.values())
        all_ids = np.concatenate([s.ids for s in splits]).astype(str)
        labels = [np.concatenate([s.labels[a] for s in splits]) for a in intersect.attributes]
        where = f"{intersect.dataset} at {self.access.root(intersect.dataset) or '(generated)'}"
        found = np.isin(np.asarray(ids).astype(str), all_ids)
        if not found.any():
            raise NotReadBack(f"its test images are not images of {where}")
        codes = by_id(ids, all_ids, where, "splits", *labels)
        return Attributes(
            intersect.attributes, tuple(ds.attributes[a].classes for a in intersect.attributes), tuple(codes)
        )


def by_id(ids, reference_ids, where: str, split: str, *columns) -> tuple[np.ndarray, ...]:
    """`columns` (aligned with `reference_ids`) in the order of `ids`; a DataError names ids the reference lacks."""
    try:
        return rows_by_id(ids, reference_ids, *columns)
    except ValueError as exc:
        raise DataError(f"{where}, {split}: {exc} (pass the data root and dataset options the runs read)") from None
