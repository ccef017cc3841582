"""The dataset contract: attributes, tasks, splits, pools and the task data of one run.

A dataset plugin returns a :class:`LoadedDataset` (named splits of uint8
images (N, H, W, 3) with integer-coded attribute labels); the harness turns it
into a :class:`TaskData` for one (target, sensitive) task and hands a method
only what the fit context exposes of it.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from fairfacebench.errors import DataError

__all__ = [
    "Attribute",
    "CONCEPTS",
    "Concept",
    "ConceptMap",
    "DataError",
    "TaskSpec",
    "Split",
    "UnlabeledPool",
    "PoolImages",
    "LoadedDataset",
    "LabeledSplit",
    "ImagesOnly",
    "TaskData",
    "UNMAPPED",
    "Vocabulary",
    "check_vocabulary",
    "concept_codes",
    "concept_map",
    "group_codes",
    "restrict_to_task",
    "make_task_data",
    "MIN_CELL_IMAGES",
    "cell_counts",
    "task_cells",
    "tiny_cells",
]


@dataclass(frozen=True)
class Attribute:
    """A categorical attribute with its class names (code i means classes[i]).

    `phrases` (optional) describe a person of each class in words, e.g.
    (("a person not smiling", ...), ("a person smiling", ...)): the one
    vocabulary every vision-language use of the attribute reads (zero-shot
    prompts, clustering prompts, captions).
    """

    name: str
    classes: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        joined = [c for c in self.classes if "|" in c]
        if joined:  # '|' joins the classes of a group's attributes ('Female|Black'): such a name merges two groups
            raise DataError(f"attribute '{self.name}': class name(s) {joined} hold '|'; rename them without '|'")
        if self.phrases and len(self.phrases) != len(self.classes):
            raise ValueError(
                f"attribute '{self.name}': {len(self.phrases)} phrase lists for {len(self.classes)} classes"
            )

    @property
    def n(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Concept:
    """A shared attribute of the transfer vocabulary: datasets map their own attributes' classes onto its classes."""

    name: str
    classes: tuple[str, ...]
    description: str = ""


# The shared vocabulary (docs/DATASETS.md, "transfer"): what "the same attribute" means across datasets.
CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in (
        Concept("gender", ("male", "female"), "gender as the datasets annotate it (binary in every one of them)"),
        Concept("race_binary", ("white", "non-white"), "White vs every other race class (utkface-cb's grouping)"),
        Concept("race4", ("white", "black", "asian", "indian"), "FairFace's race4: East and Southeast Asian are asian"),
        Concept("age_band", ("0-19", "20-39", "40-59", "60+"), "age in years, four bands"),
        Concept("age_40", ("0-39", "40+"), "age in years, under 40 or not"),
        Concept("child_adult", ("adult", "child"), "adult = 20 years or more, child = 10 or less (utkface-cb)"),
    )
}
UNMAPPED = -1  # concept code of a class the concept does not apply to (e.g. UTKFace race Others in race4)


@dataclass(frozen=True)
class ConceptMap:
    """An attribute's classes read as a concept's (class -> concept class or None), and, when the attribute is not
    what the concept means but only close to it, `approximate`: why, in one line.  The note travels with every
    transfer evaluation that uses the reading (record, leaderboard); a plain dict in a vocabulary is an exact map."""

    classes: dict[str, str | None]
    approximate: str = ""


# concept -> dataset attribute -> attribute class -> concept class (None: the concept does not apply to that class),
# or a ConceptMap of those classes that says why the reading is approximate
Vocabulary = dict[str, dict[str, dict[str, str | None] | ConceptMap]]


def concept_map(vocabulary: Vocabulary, concept: str, attribute: str) -> ConceptMap:
    """How `attribute` reads as `concept` in `vocabulary`, a plain dict entry as an exact ConceptMap."""
    entry = vocabulary[concept][attribute]
    return entry if isinstance(entry, ConceptMap) else ConceptMap(entry)


def concept_codes(vocabulary: Vocabulary, concept: str, attribute: Attribute) -> tuple[int, ...]:
    """Per class code of `attribute`, the code of its class in `concept` (UNMAPPED where it maps to None)."""
    classes = CONCEPTS[concept].classes
    mapping = concept_map(vocabulary, concept, attribute.name).classes
    return tuple(UNMAPPED if mapping[c] is None else classes.index(mapping[c]) for c in attribute.classes)


def check_vocabulary(dataset: str, attributes: dict[str, Attribute], vocabulary: Vocabulary) -> None:
    """A plugin's vocabulary names known concepts and its own attributes, lists every class of each mapped attribute
    once, maps it to a class of the concept or None, reaches every class of the concept, and says why in words when
    a reading is approximate."""
    for concept, readings in vocabulary.items():
        if concept not in CONCEPTS:
            raise ValueError(f"dataset '{dataset}': vocabulary concept '{concept}' is not one of {sorted(CONCEPTS)}")
        classes = CONCEPTS[concept].classes
        for name, entry in readings.items():
            where = f"dataset '{dataset}': vocabulary '{concept}' <- attribute '{name}'"
            if name not in attributes:
                raise ValueError(f"{where}: no such attribute; the dataset has {sorted(attributes)}")
            if not isinstance(entry, (dict, ConceptMap)):
                raise ValueError(
                    f"{where}: expected a dict (class -> concept class) or a data.ConceptMap, "
                    f"got {type(entry).__name__}"
                )
            if isinstance(entry, ConceptMap) and not isinstance(entry.approximate, str):
                raise ValueError(f"{where}: 'approximate' must say why in words, got {entry.approximate!r}")
            mapping = concept_map(vocabulary, concept, name).classes
            if set(mapping) != set(attributes[name].classes):
                raise ValueError(
                    f"{where}: maps classes {sorted(mapping)}, expected each of {list(attributes[name].classes)}"
                )
            unknown = sorted({v for v in mapping.values() if v is not None} - set(classes))
            if unknown:
                raise ValueError(f"{where}: {unknown} are not classes of '{concept}' {list(classes)} (or None)")
            unreached = [c for c in classes if c not in mapping.values()]
            if unreached:
                raise ValueError(f"{where}: no class maps onto {unreached} of '{concept}'")


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task: predict `target`, measure fairness across `sensitive`.

    Several sensitive attributes form intersectional groups.  `binarize`
    optionally maps a multi-class target onto 0/1 (e.g. age >= 40) and is
    recorded by name in the task's description.
    """

    name: str
    target: str
    sensitive: tuple[str, ...]
    description: str = ""


@dataclass
class Split:
    """Images and integer attribute codes of one split.

    images: uint8 array (N, H, W, 3), possibly a read-only memmap.
    labels: attribute name -> int64 array (N,).
    ids:    stable identifier per image (e.g. the source file name).
    """

    images: np.ndarray
    labels: dict[str, np.ndarray]
    ids: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        for name, codes in self.labels.items():
            if len(codes) != n:
                raise DataError(f"label '{name}' has {len(codes)} rows but the split has {n} images")
        if len(self.ids) != n:
            raise DataError(f"ids has {len(self.ids)} rows but the split has {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "Split":
        """Rows `index` of the split (fancy indexing copies a memmap's rows into memory)."""
        return Split(self.images[index], {k: v[index] for k, v in self.labels.items()}, self.ids[index])


@dataclass
class UnlabeledPool:
    """Images without labels for self-supervised methods, as the harness holds them.

    `hidden` holds ground truth no method may read (e.g. `is_face`,
    `duplicate_of`, true attributes); the harness uses it only to report how
    well curation stages worked.  Methods see :meth:`images_only`.
    `captions` is set only for captioned pools that train an embedded VLM.
    """

    name: str
    images: np.ndarray
    ids: np.ndarray
    hidden: dict[str, np.ndarray] = field(default_factory=dict)
    captions: list[str] | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def images_only(self) -> "PoolImages":
        return PoolImages(self.name, self.images, self.ids)


@dataclass(frozen=True)
class PoolImages:
    """An unlabeled pool as a method sees it: its name, images and ids, nothing known about them."""

    name: str
    images: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class LoadedDataset:
    """What a dataset plugin's `load` returns.

    info records everything needed to reproduce the splits (split seed and
    sizes, skipped files with reasons, the cache key and source fingerprint).
    """

    name: str
    attributes: dict[str, Attribute]
    splits: dict[str, Split]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabeledSplit:
    """A split as a method sees it: images, target codes y, sensitive group codes a."""

    images: np.ndarray
    y: np.ndarray
    a: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def rows(self, index: np.ndarray) -> "LabeledSplit":
        return LabeledSplit(self.images[index], self.y[index], self.a[index], self.ids[index])


@dataclass
class ImagesOnly:
    """The test split as a method sees it: images, no labels of any kind."""

    images: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class TaskData:
    """One task of a loaded dataset, as the harness holds it (test labels and pool truth included).

    A method never receives this object: the fit context exposes `train`,
    `val`, the test images (to transductive methods) and the pool's images.
    """

    dataset: str
    task: TaskSpec
    target_attribute: Attribute
    sensitive_attributes: tuple[Attribute, ...]
    group_names: tuple[str, ...]
    train: LabeledSplit
    val: LabeledSplit  # the part of validation a method may fit on
    test: LabeledSplit
    val_select: LabeledSplit | None = None  # the part only the selection rule reads (None: the same rows as val)
    pool: UnlabeledPool | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def target_classes(self) -> tuple[str, ...]:
        return self.target_attribute.classes

    @property
    def n_classes(self) -> int:
        return len(self.target_classes)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def test_images(self) -> ImagesOnly:
        return ImagesOnly(self.test.images, self.test.ids)


def group_codes(
    split: Split, attributes: dict[str, Attribute], sensitive: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Intersectional group code per row and the group names, e.g. 'Female|Black'."""
    return label_groups(split.labels, len(split), attributes, sensitive)


def label_groups(
    labels: dict[str, np.ndarray], n: int, attributes: dict[str, Attribute], sensitive: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """`group_codes` of `n` rows' label codes."""
    codes = np.zeros(n, dtype=np.int64)
    names: list[str] = [""]
    for attr in sensitive:
        classes = attributes[attr].classes
        codes = codes * len(classes) + labels[attr]
        names = [f"{p}|{c}" if p else c for p in names for c in classes]
    return codes, tuple(names)


def restrict_to_task(ds: LoadedDataset, task: TaskSpec) -> LoadedDataset:
    """Drop rows whose target or sensitive code is a negative code (not applicable); the drop counts go into info."""
    attrs = (task.target, *task.sensitive)
    splits, dropped = {}, {}
    for split_name, split in ds.splits.items():
        keep = np.ones(len(split), dtype=bool)
        for attr in attrs:
            keep &= split.labels[attr] >= 0
        dropped[split_name] = int((~keep).sum())
        splits[split_name] = split if keep.all() else _take(split, np.flatnonzero(keep))
    if not any(dropped.values()):
        return ds
    info = {**ds.info, "task_rows_dropped": {"task": task.name, "attributes": list(attrs), "per_split": dropped}}
    return LoadedDataset(ds.name, ds.attributes, splits, info)


def _take(split: Split, index: np.ndarray) -> Split:
    if index.size and index[-1] - index[0] + 1 == index.size:  # one run of rows: slice to keep the memmap
        rows = slice(int(index[0]), int(index[-1]) + 1)
        return Split(split.images[rows], {k: v[rows] for k, v in split.labels.items()}, split.ids[rows])
    return split.subset(index)


# The validation split is cut once, identically for every method: half may be fitted on, half only selects.
VAL_SELECT_SHARE = 0.5
VAL_SPLIT_SEED = 0


def cut_validation(
    y: np.ndarray, a: np.ndarray, n_classes: int, share: float = VAL_SELECT_SHARE, seed: int = VAL_SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Rows a method may fit on and rows only model selection reads: `share` of every (class, group) cell selects."""
    rng = np.random.default_rng(seed)
    cells = a * n_classes + y
    fit, select = [], []
    for cell in np.unique(cells):
        rows = rng.permutation(np.flatnonzero(cells == cell))
        k = len(rows) - int(np.ceil(share * len(rows)))
        fit.append(rows[:k])
        select.append(rows[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(select))


def ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


def make_task_data(ds: LoadedDataset, task: TaskSpec, pool: UnlabeledPool | None = None) -> TaskData:
    """Build one task's data, with clear errors for empty splits/groups, and cut validation into fit and select parts.

    Rows where the task's attributes do not apply (negative codes, e.g. FairFace
    race4 for Latino_Hispanic faces) are dropped and counted in info.
    """
    ds = restrict_to_task(ds, task)
    for attr in (task.target, *task.sensitive):
        if attr not in ds.attributes:
            raise DataError(
                f"task '{task.name}' of dataset '{ds.name}' needs attribute '{attr}', "
                f"but the dataset offers {sorted(ds.attributes)}"
            )
    views = {}
    group_names: tuple[str, ...] = ()
    for split_name in ("train", "val", "test"):
        if split_name not in ds.splits:
            raise DataError(f"dataset '{ds.name}' has no '{split_name}' split; it offers {sorted(ds.splits)}")
        split = ds.splits[split_name]
        if len(split) == 0:
            raise DataError(
                f"dataset '{ds.name}': the '{split_name}' split is empty; check the data root and split files"
            )
        a, group_names = group_codes(split, ds.attributes, task.sensitive)
        present = np.bincount(a, minlength=len(group_names))
        missing = [g for g, c in zip(group_names, present) if c == 0]
        if missing and split_name != "test":
            raise DataError(
                f"dataset '{ds.name}', task '{task.name}': sensitive group(s) {missing} have no members in the "
                f"'{split_name}' split; choose another task or rebuild the split"
            )
        views[split_name] = LabeledSplit(split.images, split.labels[task.target].astype(np.int64), a, split.ids)
    n_classes = ds.attributes[task.target].n
    fit, select = cut_validation(views["val"].y, views["val"].a, n_classes)
    val_split = {
        "rule": f"each (class, group) cell of validation cut at random: {VAL_SELECT_SHARE:.0%} to the selection part "
        "(read only by model selection), the rest to the fit part (what methods see as ctx.val)",
        "seed": VAL_SPLIT_SEED,
        "fit": len(fit),
        "select": len(select),
        "fit_ids_sha256": ids_digest(views["val"].ids[fit]),
        "select_ids_sha256": ids_digest(views["val"].ids[select]),
    }
    return TaskData(
        dataset=ds.name,
        task=task,
        target_attribute=ds.attributes[task.target],
        sensitive_attributes=tuple(ds.attributes[a] for a in task.sensitive),
        group_names=group_names,
        train=views["train"],
        val=views["val"].rows(fit),
        test=views["test"],
        val_select=views["val"].rows(select),
        pool=pool,
        info={**ds.info, "val_split": val_split},
    )


# ---------------------------------------------------------------- (target class, group) cells large enough to score

# Fewest images a (target class, sensitive group) cell needs in validation and in test.  A group's accuracy, TPR and
# FPR are rates over its cells: at 10 images one image moves a rate by 0.1 and the binomial standard error of a rate
# near 0.5 is 0.16, already larger than most gaps the benchmark reports; below that, a cell's numbers are noise.
MIN_CELL_IMAGES = 10
SCORED_SPLITS = ("val", "test")  # the splits whose cells selection and the reported metrics rest on


def cell_counts(
    y: np.ndarray, a: np.ndarray, target_classes: tuple[str, ...], group_names: tuple[str, ...]
) -> dict[str, int]:
    """Images per (target class, group) cell, named 'CLASS|GROUP' (e.g. 'yes|dark', 'Male|Black|old')."""
    counts = np.bincount(a * len(target_classes) + y, minlength=len(group_names) * len(target_classes))
    return {
        f"{c}|{g}": int(counts[k * len(target_classes) + i])
        for k, g in enumerate(group_names)
        for i, c in enumerate(target_classes)
    }


def task_cells(splits: dict[str, Any], attributes: dict[str, Attribute], task: TaskSpec) -> dict[str, dict[str, int]]:
    """Per split, the images of each (target class, group) cell of `task`; rows an attribute of the task does not
    apply to (negative codes) are left out, as runs leave them out.  `splits` maps names to anything with `labels`
    (a `Split`, or a dataset index's table before decoding)."""
    out = {}
    for name, split in splits.items():
        keep = np.ones(len(split.labels[task.target]), dtype=bool)
        for attr in (task.target, *task.sensitive):
            keep &= split.labels[attr] >= 0
        labels = {attr: split.labels[attr][keep] for attr in (task.target, *task.sensitive)}
        a, groups = label_groups(labels, int(keep.sum()), attributes, task.sensitive)
        out[name] = cell_counts(labels[task.target], a, attributes[task.target].classes, groups)
    return out


def tiny_cells(cells: dict[str, dict[str, int]], minimum: int = MIN_CELL_IMAGES) -> dict[str, dict[str, int]]:
    """The cells of validation and test with fewer than `minimum` images (split -> cell -> images); empty if none."""
    tiny = {s: {c: n for c, n in cells[s].items() if n < minimum} for s in SCORED_SPLITS if s in cells}
    return {s: found for s, found in tiny.items() if found}


def describe_tiny(tiny: dict[str, dict[str, int]], shown: int = 6) -> str:
    """'test yes|dark 2, val no|dark 4, ... (9 cells)': the smallest cells first."""
    rows = sorted((n, split, cell) for split, found in tiny.items() for cell, n in found.items())
    text = ", ".join(f"{split} {cell} {n}" for n, split, cell in rows[:shown])
    return text + (f", ... ({len(rows)} cells)" if len(rows) > shown else "")


_shared_indexes: dict[tuple, Any] | None = None  # inside `same_data()`: each dataset index built once


@contextmanager
def same_data() -> Iterator[None]:
    """Within it, a dataset's index (`index_once`) is built once per dataset, root and options, then shared: the
    checks before a grid read the same index four ways (cells, fingerprint, content, layout) for each task, and the
    folder is not expected to change in those seconds.  Outside it, every call reads the folder again."""
    global _shared_indexes
    outer = _shared_indexes
    _shared_indexes = {} if outer is None else outer
    try:
        yield
    finally:
        _shared_indexes = outer


def index_once(key: tuple, build: Callable[[], Any]) -> Any:
    """`build()`, or inside `same_data()` the index an earlier call with the same `key` built."""
    if _shared_indexes is None:
        return build()
    if key not in _shared_indexes:
        _shared_indexes[key] = build()
    return _shared_indexes[key]
