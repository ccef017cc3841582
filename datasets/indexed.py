"""Shared machinery of the file-based dataset plugins.

A plugin's `index(root)` parses labels and file names without decoding any
image and returns a :class:`DatasetIndex` (one :class:`SplitTable` per split);
:class:`IndexedDataset` turns that into `load` (through the image cache),
`check` and `prepare`.  Also here: the CSV and label validation every loader
shares (errors name the file, line, column and value, and what to do), the
stratified split, and `restrict_to_task` for attributes that do not apply to
every row (code ``NOT_APPLICABLE``).
"""

from __future__ import annotations

import csv
import json
import logging
import ntpath
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fairfacebench.content import combined, file_digests
from fairfacebench.data import Attribute, DataError, LoadedDataset, Split, index_once, restrict_to_task, task_cells
from fairfacebench.datasets.base import DatasetPlugin, options_digest
from fairfacebench.datasets.cache import build_or_load, default_cache_dir, image_hashes
from fairfacebench.datasets.near_duplicates import BITS, groups

logger = logging.getLogger(__name__)

NOT_APPLICABLE = -1  # label code of a row the attribute does not apply to (e.g. FairFace race4 for Latino_Hispanic)
SPLITS = ("train", "val", "test")
SIMPLE_NAME = re.compile(r"\w[\w.-]*")  # no separator, no drive, no leading dot: cannot leave the root

Row = tuple[int, tuple[str, ...]]  # (line number in the source file, field values)


@dataclass
class SplitTable:
    """One split before decoding: ids, image paths and integer label codes, row-aligned.

    Paths are plain strings: CelebA has 200k rows and pathlib objects cost seconds there.
    """

    files: list[str]
    paths: list[str]
    labels: dict[str, np.ndarray]

    @classmethod
    def under(cls, folder: Path, files: list[str], labels: dict[str, np.ndarray]) -> "SplitTable":
        base = str(folder)
        return cls(files, [os.path.join(base, f) for f in files], labels)

    def __len__(self) -> int:
        return len(self.files)

    def take(self, index: np.ndarray) -> "SplitTable":
        labels = {k: v[index] for k, v in self.labels.items()}
        return SplitTable([self.files[i] for i in index], [self.paths[i] for i in index], labels)


@dataclass
class DatasetIndex:
    """Everything a loader knows before decoding: the split tables and what to record in info."""

    tables: dict[str, SplitTable]
    info: dict[str, Any] = field(default_factory=dict)


class IndexedDataset(DatasetPlugin):
    """A dataset read from an official on-disk layout: subclasses implement `index`."""

    root_hint: str = "the dataset folder"

    def index(self, root: Path, strict: bool = False, **options: Any) -> DatasetIndex:
        raise NotImplementedError

    def checked_index(self, root: Path, strict: bool = False, **options: Any) -> DatasetIndex:
        """`index`, refusing images a symbolic link leads to outside the data root (inside `data.same_data()`, built
        once per dataset, root and options)."""

        def build() -> DatasetIndex:
            index = self.index(root, strict=strict, **options)
            refuse_outside(root, index.tables)
            return index

        key = (type(self), str(root), strict, json.dumps(options, sort_keys=True, default=repr))
        return index_once(key, build)

    def require_root(self, root: Path | str | None) -> Path:
        if root is None:
            raise DataError(
                f"dataset '{self.name}' is read from disk and no data root was given: pass --data-root "
                f"pointing at {self.root_hint}"
            )
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataError(
                f"data root {path} for dataset '{self.name}' is not a directory; "
                f"pass --data-root pointing at {self.root_hint}"
            )
        return path

    def load(
        self,
        root: Path | str | None,
        size: int,
        cache_dir: Path,
        *,
        task: str | None = None,
        workers: int | None = None,
        strict: bool = False,
        progress: bool = True,
        **options: Any,
    ) -> LoadedDataset:
        """Index, decode through the cache, and (given `task`) drop rows the task does not apply to.

        A plugin whose splits depend on the task (`splits_per_task`) gets `task` passed to `index` too.
        """
        per_task = {"task": task} if self.splits_per_task else {}
        index = self.checked_index(self.require_root(root), strict=strict, **per_task, **options)
        splits, cache_info = cached_splits(self.name, index.tables, size, cache_dir, workers, strict, progress)
        info = {**index.info, "cache": cache_info, "sizes": {k: len(v) for k, v in splits.items()}}
        ds = LoadedDataset(self.name, dict(self.attributes), splits, info)
        return restrict_to_task(ds, self.task(task)) if task else ds

    def index_attributes(self, index: DatasetIndex) -> dict[str, Attribute]:
        """The attributes the index's label codes refer to (a plugin whose classes come from its data overrides)."""
        return dict(self.attributes)

    def cells(
        self, root: Path | str | None, tasks: Sequence[str], **options: Any
    ) -> dict[str, dict[str, dict[str, int]]]:
        """Per task, the images per (target class, group) cell of each split, as a run's loader splits them (its run
        options), counted on the index (nothing decoded; one index for all tasks unless the splits follow the task)."""
        root, options = self.require_root(root), self.run_options(options)
        shared = None if self.splits_per_task else self.checked_index(root, **options)
        out = {}
        for name in tasks:
            index = shared or self.checked_index(root, task=name, **options)
            out[name] = task_cells(index.tables, self.index_attributes(index), self.task(name))
        return out

    def fingerprint(self, root: Path | str | None, **options: Any) -> str:
        """A hash of what `load` reads: every split's file names, file sizes and label codes (not the folder's path)."""
        index = self.checked_index(self.require_root(root), **options)
        digest = options_digest(self.name, options)
        for split in sorted(index.tables):
            table = index.tables[split]
            digest.update(f"[{split}]\n".encode())
            for file, path in zip(table.files, table.paths):
                try:
                    size = os.stat(path).st_size
                except OSError:
                    size = -1
                digest.update(f"{file}\t{size}\n".encode())
            for attr in sorted(table.labels):
                digest.update(attr.encode() + np.ascontiguousarray(table.labels[attr], dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def content(self, root: Path | str | None, **options: Any) -> str:
        """A digest of what `load` reads by its bytes: every split's file names with their contents' sha256 (cached
        per file, `content.file_digests`) and the attributes' class names (label codes are in the fingerprint)."""
        index = self.checked_index(self.require_root(root), **options)
        attributes = self.index_attributes(index)
        lines = [json.dumps({"dataset": self.name, "options": options}, sort_keys=True, default=str)]
        lines += [f"{name}: {list(attributes[name].classes)}" for name in sorted(attributes)]
        for split in sorted(index.tables):
            table = index.tables[split]
            lines.append(f"[{split}]")
            lines += [f"{file}\t{d}" for file, d in zip(table.files, file_digests(table.paths))]
        return combined(lines)

    def check(self, root: Path | str | None, **options: Any) -> dict[str, Any]:
        """Layout check without decoding: per-split and per-group counts and a list of problems."""
        report: dict[str, Any] = {"dataset": self.name, "root": None if root is None else str(root)}
        try:
            index = self.checked_index(self.require_root(root), **self.run_options(options))
        except DataError as err:
            return {**report, "ok": False, "problems": [str(err)], "splits": {}, "groups": {}}
        problems = index.info.get("problems", []) + empty_splits(index) + self._empty_groups(index)
        return {
            **report,
            "ok": not problems,
            "splits": {name: len(table) for name, table in index.tables.items()},
            "groups": {name: group_counts(table, self.attributes) for name, table in index.tables.items()},
            "problems": problems,
            "warnings": index.info.get("warnings", []),
            "info": index.info,
        }

    def prepare(
        self, root: Path | str | None, size: int, cache_dir: Path, workers: int | None = None, **options: Any
    ) -> dict[str, Any]:
        """Build (or reuse) the image cache and summarise it."""
        started = time.perf_counter()
        ds = self.load(root, size, cache_dir, workers=workers, **self.run_options(options))
        cache = ds.info["cache"]
        return {
            "dataset": self.name,
            "size": size,
            "cache": cache["path"],
            "images": cache["images"],
            "skipped": cache["skipped"],
            "splits": ds.info["sizes"],
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _empty_groups(self, index: DatasetIndex) -> list[str]:
        problems = []
        for attr in sorted({a for t in self.tasks for a in t.sensitive}):
            for split in ("train", "val"):
                if attr not in index.tables[split].labels:  # a task-specific index holds only its task's attributes
                    continue
                counts = np.bincount(_applicable(index.tables[split].labels[attr]), minlength=self.attributes[attr].n)
                empty = [c for c, n in zip(self.attributes[attr].classes, counts) if n == 0]
                if empty:
                    problems.append(f"sensitive attribute '{attr}': class(es) {empty} have no members in '{split}'")
        return problems


def empty_splits(index: DatasetIndex) -> list[str]:
    return [f"split '{name}' has no images" for name, table in index.tables.items() if len(table) == 0]


def refuse_outside(root: Path, tables: Mapping[str, SplitTable]) -> None:
    """Refuse an image path that leaves the data root through a symbolic link (the file's or a folder's on its way).

    A dangling link inside the root passes: its image is missing, and skipped and listed like any missing image.
    """
    real_root = os.path.realpath(root)
    folders: dict[str, str] = {}
    for table in tables.values():
        for path in table.paths:
            folder = os.path.dirname(path)
            if folder not in folders:
                folders[folder] = os.path.realpath(folder)
            target = os.path.realpath(path) if os.path.islink(path) else os.path.join(folders[folder], "x")
            if os.path.commonpath([real_root, target]) != real_root:
                shown = os.path.realpath(path)
                raise DataError(
                    f"{path}: a symbolic link leads outside the data root {root} (to {shown}); "
                    "copy the image into the data root or remove the link"
                )


def _applicable(codes: np.ndarray) -> np.ndarray:
    return codes[codes >= 0]


def group_counts(table: SplitTable, attributes: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per attribute, the number of rows of each class (and of not-applicable rows, if any)."""
    counts: dict[str, dict[str, int]] = {}
    for name, codes in table.labels.items():
        classes = attributes[name].classes
        per_class = np.bincount(_applicable(codes), minlength=len(classes))
        counts[name] = {c: int(n) for c, n in zip(classes, per_class)}
        if (codes < 0).any():
            counts[name]["(not applicable)"] = int((codes < 0).sum())
    return counts


def cached_splits(
    name: str,
    tables: Mapping[str, SplitTable],
    size: int,
    cache_dir: Path,
    workers: int | None,
    strict: bool,
    progress: bool,
) -> tuple[dict[str, Split], dict[str, Any]]:
    """Decode all splits into one cache (splits in order, so each split is a zero-copy memmap slice)."""
    items = [p for table in tables.values() for p in table.paths]
    cached = build_or_load(name, items, size, cache_dir, workers=workers, strict=strict, progress=progress)
    kept = np.zeros(len(items), dtype=bool)
    kept[cached.kept_index] = True
    splits, start, row = {}, 0, 0
    for split_name, table in tables.items():
        mask = kept[start : start + len(table)]
        rows = slice(row, row + int(mask.sum()))
        labels = {k: v[mask] for k, v in table.labels.items()}
        splits[split_name] = Split(cached.images[rows], labels, np.array(table.files, dtype=object)[mask])
        start, row = start + len(table), rows.stop
    manifest = cached.manifest
    info = {
        "path": str(cached.path),
        "key": manifest["key"],
        "fingerprint": manifest["fingerprint"],
        "images": manifest["counts"]["images"],
        "skipped": manifest["counts"]["skipped"],
        "skipped_files": manifest["skipped"],
    }
    return splits, info


def near_duplicate_groups(name: str, paths: Sequence[str], threshold: int) -> tuple[np.ndarray, int]:
    """Near-duplicate group of every path (its smallest member's position) from the cached perceptual hashes, and
    how many paths could not be read (each left alone; the image cache skips and lists them)."""
    cached = image_hashes(name, paths, default_cache_dir())
    return groups(cached.hashes, threshold, cached.hashed), int((~cached.hashed).sum())


def near_duplicate_info(
    threshold: int,
    group: np.ndarray,
    conflicting: np.ndarray,
    files: Sequence[str],
    labels: Mapping[str, np.ndarray],
    attributes: Mapping[str, Any],
    unread: int,
) -> dict[str, Any]:
    """What info records about near-duplicates among a loader's rows: the rule, counts and every conflicting group."""
    ids, sizes = np.unique(group, return_counts=True)
    grouped = np.isin(group, ids[sizes > 1])
    conflicts = [
        [{"file": files[r], **{k: attributes[k].classes[v[r]] for k, v in labels.items()}} for r in members]
        for members in (np.flatnonzero(group == g) for g in np.unique(group[conflicting]))
    ]
    return {
        "threshold": threshold,
        "rule": f"images whose {BITS}-bit DCT hashes differ in at most {threshold} bits are near-duplicates; "
        "connected near-duplicates form a group that goes whole to one split; a group whose members carry "
        f"different {sorted(labels)} is left out",
        "groups": len(np.unique(group[grouped & ~conflicting])),
        "images_in_groups": int((grouped & ~conflicting).sum()),
        "conflict_groups": len(conflicts),
        "removed_for_label_conflicts": int(conflicting.sum()),
        "unread_images": unread,
        "conflicts": conflicts,
    }


def stratified_split(
    strata: np.ndarray, fractions: Sequence[float], seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Split code per row (index into `fractions`), stratified on the rows of `strata` (N, k).

    Each stratum is shuffled with a generator seeded by `seed` and cut in
    proportion to `fractions` (rounded half up); a stratum with at least one
    member per split gives every split at least one member, so small
    intersectional groups are never absent from validation or test by chance.
    Rows sharing a `groups` id (near-duplicates) are shuffled as one unit and
    go to one split, the one holding the unit's middle row, so a cut is off its
    share by less than half a group; a unit counts in its first row's stratum.
    Without groups every row is its own unit.
    """
    fractions = np.asarray(fractions, dtype=float)
    if (fractions <= 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise DataError(f"split fractions must be positive and sum to 1, got {fractions.tolist()}")
    rng = np.random.default_rng(seed)
    if len(strata) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(strata.reshape(len(strata), -1), axis=0, return_inverse=True)
    unit, first_row = split_units(len(strata), groups)
    size = np.bincount(unit)
    unit_stratum = inverse.ravel()[first_row]
    unit_codes = np.zeros(len(size), dtype=np.int64)
    for stratum in range(unit_stratum.max() + 1):
        members = rng.permutation(np.flatnonzero(unit_stratum == stratum))
        unit_codes[members] = cut_units(size[members], _allocate(int(size[members].sum()), fractions))
    return unit_codes[unit]


def split_units(n: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row its unit of splitting (rows of one group share one), numbered by first row; and each unit's first row."""
    if groups is None:
        rows = np.arange(n)
        return rows, rows
    _, first_row, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first_row, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], first_row[order]


def cut_units(sizes: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Split code of units of `sizes` rows laid end to end: the split whose share of `counts` rows holds a unit's
    middle, so single rows fill the shares exactly and a group is never cut."""
    middle = np.cumsum(sizes) - np.asarray(sizes) / 2
    return np.searchsorted(np.cumsum(counts)[:-1], middle, side="right").astype(np.int64)


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    counts = np.floor(fractions * n + 0.5).astype(np.int64)
    if n >= len(fractions):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:  # rounding overshoot: take from the largest share first
        counts[np.argmax(counts)] -= 1
    counts[0] += n - counts.sum()
    return counts


def split_info(
    seed: int, fractions: Sequence[float], names: Sequence[str], stratified_on: Sequence[str], codes: np.ndarray
) -> dict[str, Any]:
    """What info records about a stratified split: enough to reproduce it."""
    sizes = np.bincount(codes, minlength=len(names))
    return {
        "method": "stratified, fixed seed",
        "seed": seed,
        "fractions": dict(zip(names, map(float, fractions))),
        "stratified_on": list(stratified_on),
        "sizes": {n: int(s) for n, s in zip(names, sizes)},
    }


def read_csv(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> tuple[list[Row], list[str]]:
    """Rows of the `required` columns with their line numbers, and notes (extra columns).

    Accepts Windows line endings and a UTF-8 byte-order mark; skips blank lines.
    """
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a CSV file: put the label file of the official release there")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader, [])]
            check_columns(path, header, required)
            columns = [header.index(c) for c in required]
            rows = [
                (reader.line_num, _fields(path, reader.line_num, row, header, columns))
                for row in reader
                if any(c.strip() for c in row)
            ]
        except UnicodeDecodeError:
            raise not_utf8(path) from None
    extra = [c for c in header if c not in required and c not in optional]
    notes = [f"{path.name}: extra column(s) {extra} ignored"] if extra else []
    return rows, notes


def not_utf8(path: Path) -> DataError:
    """The error for a label file that is not UTF-8: the line and byte of the first bad character."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        where = ""
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        where = f", line {line} (byte 0x{data[err.start]:02x} at offset {err.start})"
    return DataError(f"{path}{where}: not UTF-8 text; save the file as UTF-8, e.g. with `iconv -f latin1 -t utf-8`")


def check_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path} is missing column(s) {missing}; found columns {list(header)}. "
            f"The file needs the columns {list(required)}: use the file of the official release"
        )


def _fields(path: Path, line: int, row: list[str], header: list[str], columns: list[int]) -> tuple[str, ...]:
    if len(row) != len(header):
        raise DataError(
            f"{path}, line {line}: {len(row)} fields but the header has {len(header)} ({header}); fix or remove the row"
        )
    return tuple(row[c].strip() for c in columns)


def dedupe(rows: list[Row], path: Path, key: int = 0) -> tuple[list[Row], list[str]]:
    """Drop rows repeating an earlier row exactly (noted); a repeated key with other values is an error."""
    first: dict[str, Row] = {}
    unique, repeated = [], []
    for line, fields in rows:
        earlier = first.setdefault(fields[key], (line, fields))
        if earlier[0] == line:
            unique.append((line, fields))
        elif earlier[1] == fields:
            repeated.append(line)
        else:
            raise DataError(
                f"{path}: line {line} repeats '{fields[key]}' from line {earlier[0]} with different values "
                f"({list(fields)} vs {list(earlier[1])}); keep the correct row, delete the other and rerun"
            )
    notes = [f"{path.name}: removed {len(repeated)} exact duplicate row(s) (lines {repeated[:10]})"] if repeated else []
    return unique, notes


def encode(values: Iterable[tuple[int, str]], classes: Sequence[str], path: Path, column: str) -> np.ndarray:
    """Integer codes of (line, value) pairs; an unknown value names the line, value and allowed values."""
    code_of = {c: i for i, c in enumerate(classes)}
    codes = []
    for line, value in values:
        if value not in code_of:
            raise DataError(
                f"{path}, line {line}: unknown {column} value {value!r}; allowed values are {list(classes)}. "
                "Fix the value or remove the row"
            )
        codes.append(code_of[value])
    return np.asarray(codes, dtype=np.int64)


def relative_inside(value: str, path: Path, line: int, column: str = "file") -> str:
    """The normalised relative path `value`, refused if absolute or escaping the data root."""
    if value.isalnum() or SIMPLE_NAME.fullmatch(value):  # plain file names (every CelebA row) skip the path logic
        return value
    norm = posixpath.normpath(value.replace("\\", "/")) if value else ""
    escapes = norm.startswith("/") or norm.split("/", 1)[0] in ("..", ".") or ntpath.splitdrive(value)[0]
    if not value or escapes:
        raise DataError(
            f"{path}, line {line}: {column} {value!r} is not a relative path inside the data root "
            "(absolute paths and '..' are refused); fix the entry to a path like 'train/1.jpg' or remove the row"
        )
    return norm


def present_or_missing(
    root: Path, entries: list[tuple[int, str]], source: Path, strict: bool
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Mask of entries whose image exists; a missing one is fatal when strict, else skipped and listed."""
    base = str(root)
    present = np.array([os.path.isfile(os.path.join(base, rel)) for _, rel in entries], dtype=bool)
    missing = [{"file": rel, "line": n, "source": source.name} for (n, rel), ok in zip(entries, present) if not ok]
    if missing and strict:
        first = missing[0]
        raise DataError(
            f"{source}, line {first['line']}: image '{first['file']}' does not exist under {root}. Restore the "
            f"file, or load without strict to skip rows whose image is missing ({len(missing)} such row(s))"
        )
    if missing:
        logger.warning(
            "%s: %d image(s) listed in %s are missing and their rows were skipped (first: %s)",
            root,
            len(missing),
            source.name,
            [m["file"] for m in missing[:5]],
        )
    return present, missing
