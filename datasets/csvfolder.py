"""`csv`: your own images, a folder plus a CSV, benchmarked without writing a plugin (README "Your own data").

Options name the CSV (`labels`, relative to the data root), its image column
(`image_column`, paths relative to the root), the target column(s)
(`target`), the sensitive column(s) (`sensitive`) and optionally a split
column (`split_column`: train, val or test per row); without one the rows are
split 70/10/20, stratified on every named column, with a recorded seed.  The
sorted distinct values of a column are its classes.  Tasks are named
TARGET/SENSITIVE (several sensitive columns joined by '+'); the default is the
first target with the first sensitive column.  Details: docs/DATASETS.md.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fairfacebench.content import file_digests
from fairfacebench.data import Attribute, DataError, LoadedDataset, TaskSpec, restrict_to_task
from fairfacebench.datasets.indexed import (
    SPLITS,
    DatasetIndex,
    IndexedDataset,
    SplitTable,
    cached_splits,
    dedupe,
    encode,
    group_counts,
    present_or_missing,
    read_csv,
    refuse_outside,
    relative_inside,
    split_info,
    stratified_split,
)
from fairfacebench.errors import ConfigError, UnknownName
from fairfacebench.hookspecs import hookimpl

OPTIONS_HELP = "--dataset-option csv.target=COLUMN --dataset-option csv.sensitive=COLUMN"
DEFAULTS: dict[str, Any] = {
    "labels": "labels.csv",  # the CSV, relative to the data root (or absolute)
    "image_column": "image",  # image paths relative to the data root
    "target": None,  # target column(s): 'a' or 'a,b' or a JSON list
    "sensitive": None,  # sensitive column(s), the same way
    "split_column": None,  # train / val / test per row; None: a stratified split
    "split_seed": 0,
    "split_fractions": (0.7, 0.1, 0.2),
}


def column_list(value: Any, option: str) -> list[str]:
    """An option naming one column, several ('a,b' or a JSON list), or none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    if isinstance(value, list) and all(isinstance(c, str) and c for c in value):
        return list(value)
    raise ConfigError(f"dataset 'csv': option '{option}' must name column(s), e.g. smiling or a,b; got {value!r}")


def named_columns(target: Any, sensitive: Any) -> tuple[list[str], list[str]]:
    targets, groups = column_list(target, "target"), column_list(sensitive, "sensitive")
    if not targets or not groups:
        raise ConfigError(f"dataset 'csv' needs its target and sensitive columns: pass {OPTIONS_HELP}")
    both = sorted(set(targets) & set(groups))
    if both:
        raise ConfigError(f"dataset 'csv': column(s) {both} named both as target and as sensitive; name each once")
    return targets, groups


def class_order(values: set[str]) -> list[str]:
    """Numbers in numeric order (so '9' before '10'; NaN last, never by set order), anything else alphabetically."""
    try:
        numbers = {v: float(v) for v in values}
    except ValueError:
        return sorted(values)
    return sorted(values, key=lambda v: (math.isnan(numbers[v]), 0.0 if math.isnan(numbers[v]) else numbers[v], v))


def spelling(value: str) -> tuple:
    """What a value means regardless of how it is written: a number's value ('1' = '1.0'), else its text without case
    ('Male' = 'male')."""
    try:
        number = float(value)
    except ValueError:
        return ("text", value.casefold())
    return ("nan",) if math.isnan(number) else ("number", number)


def split_fractions(value: Any) -> tuple[float, ...]:
    if not (isinstance(value, (list, tuple)) and len(value) == len(SPLITS)):
        raise ConfigError(
            "dataset 'csv': option 'split_fractions' must be three fractions (train, val, test), e.g. "
            f"[0.7, 0.1, 0.2]; got {value!r}"
        )
    return tuple(value)


def header_of(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [h.strip() for h in next(csv.reader(handle), [])]


class CsvFolder(IndexedDataset):
    name = "csv"
    description = "your own images: a folder and a CSV naming the image, target, sensitive (and split) columns"
    citation = "-"
    needs_root = True
    root_hint = "the folder holding the images and the CSV (--dataset-option csv.labels=FILE, default labels.csv)"
    attributes: dict[str, Attribute] = {}  # the CSV's columns, read per load
    tasks: list[TaskSpec] = []  # any TARGET/SENSITIVE of the named columns
    task_help = "TARGET/SENSITIVE named by options"

    def default_task(self, **options: Any) -> str:
        targets, groups = named_columns(options.get("target"), options.get("sensitive"))
        return f"{targets[0]}/{groups[0]}"

    def task(self, name: str | None) -> TaskSpec:
        target, _, rest = (name or "").partition("/")
        sensitive = tuple(s for s in rest.split("+") if s)
        if not target or not sensitive or target in sensitive:
            raise UnknownName(
                f"dataset 'csv' has no task {name!r}: name it TARGET/SENSITIVE (or TARGET/S1+S2) with columns "
                f"named by {OPTIONS_HELP}"
            )
        return TaskSpec(name or "", target, sensitive, f"predict {target}; fairness across {' x '.join(sensitive)}")

    def index(self, root: Path, strict: bool = False, **options: Any) -> DatasetIndex:
        """The split tables; a sensitive group without rows in some split is an error (its metrics are undefined)."""
        index = self.survey(root, strict, **options)
        refused = index.info["empty_groups"] + index.info["copies_across_splits"]
        if refused:
            raise DataError(f"dataset 'csv' at {root}: {refused[0]}")
        return index

    def survey(self, root: Path, strict: bool = False, **options: Any) -> DatasetIndex:
        """The split tables, counts and problems (empty groups included) of the CSV and the images it names."""
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"dataset 'csv' has no option(s) {unknown}; its options are {sorted(DEFAULTS)}")
        o = {**DEFAULTS, **options}
        labels, image_column, split_column = o["labels"], o["image_column"], o["split_column"]
        targets, groups = named_columns(o["target"], o["sensitive"])
        path = Path(labels) if Path(labels).is_absolute() else root / labels
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: put the label CSV in the data root or name it with csv.labels=FILE"
            )
        label_columns = [*targets, *groups]
        required = [image_column, *label_columns, *([split_column] if split_column else [])]
        _require_columns(path, required, image_column, split_column)
        rows, notes = read_csv(path, required)
        rows, repeated = dedupe([(n, (relative_inside(f[0], path, n, image_column), *f[1:])) for n, f in rows], path)
        _refuse_empty_values(rows, path, required)
        present, missing = present_or_missing(root, [(n, f[0]) for n, f in rows], path, strict)
        rows = [row for row, ok in zip(rows, present) if ok]
        if not rows:
            raise DataError(f"{path}: no row has an image under {root}; check the '{image_column}' column")
        _refuse_ambiguous_values(rows, path, label_columns)
        copies = copy_groups(root, rows)
        classes = {c: class_order({f[i + 1] for _, f in rows}) for i, c in enumerate(label_columns)}
        _refuse_single_class(path, targets, classes)
        codes = {c: encode(((n, f[i + 1]) for n, f in rows), classes[c], path, c) for i, c in enumerate(label_columns)}
        if split_column:
            split = encode(((n, f[-1]) for n, f in rows), SPLITS, path, split_column)
            how = {
                "method": f"column '{split_column}'",
                "sizes": {s: int((split == i).sum()) for i, s in enumerate(SPLITS)},
            }
        else:
            strata = np.stack([codes[c] for c in label_columns], axis=1)
            fractions = split_fractions(o["split_fractions"])
            kept_together = copies if (copies != np.arange(len(rows))).any() else None  # byte-identical: one split
            split = stratified_split(strata, fractions, o["split_seed"], groups=kept_together)
            how = split_info(o["split_seed"], fractions, SPLITS, label_columns, split)
        table = SplitTable.under(root, [f[0] for _, f in rows], codes)
        tables = {s: table.take(np.flatnonzero(split == i)) for i, s in enumerate(SPLITS)}
        refuse_outside(root, tables)
        empty = _empty_groups(tables, groups, classes)
        leaks = copies_across_splits(rows, copies, split)
        absent = [f"{len(missing)} image(s) listed in {path.name} are missing (first: {missing[0]})"] if missing else []
        info = {
            "root": str(root),
            "labels": path.name,
            "columns": {"image": image_column, "target": targets, "sensitive": groups, "split": split_column},
            "classes": classes,
            "split": how,
            "notes": notes + repeated + copies_note(copies),
            "missing_images": missing,
            "empty_groups": empty,
            "copies_across_splits": leaks,
            "problems": absent + empty + leaks,
        }
        return DatasetIndex(tables, info)

    def index_attributes(self, index: DatasetIndex) -> dict[str, Attribute]:
        return attributes_of(index)

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
        """Index and decode through the cache, with the classes the CSV's columns hold as attributes."""
        index = self.index(self.require_root(root), strict=strict, **options)
        splits, cache_info = cached_splits(self.name, index.tables, size, cache_dir, workers, strict, progress)
        info = {**index.info, "cache": cache_info, "sizes": {k: len(v) for k, v in splits.items()}}
        ds = LoadedDataset(self.name, attributes_of(index), splits, info)
        return restrict_to_task(ds, self.task(task)) if task else ds

    def check(self, root: Path | str | None, **options: Any) -> dict[str, Any]:
        """Counts per split and per group of every named column, and the problems found (nothing is decoded)."""
        report: dict[str, Any] = {"dataset": self.name, "root": None if root is None else str(root)}
        try:
            index = self.survey(self.require_root(root), **options)
        except DataError as err:
            return {**report, "ok": False, "problems": [str(err)], "splits": {}, "groups": {}}
        attributes = attributes_of(index)
        return {
            **report,
            "ok": not index.info["problems"],
            "splits": {name: len(table) for name, table in index.tables.items()},
            "groups": {name: group_counts(table, attributes) for name, table in index.tables.items()},
            "problems": index.info["problems"],
            "info": index.info,
        }


def attributes_of(index: DatasetIndex) -> dict[str, Attribute]:
    return {name: Attribute(name, tuple(classes)) for name, classes in index.info["classes"].items()}


def _require_columns(path: Path, required: list[str], image_column: str, split_column: str | None) -> None:
    header = header_of(path)
    missing = [c for c in required if c not in header]
    if missing:
        options = {image_column: "image_column", **({split_column: "split_column"} if split_column else {})}
        named = [f"{c} ({options.get(c, 'target/sensitive')})" for c in missing]
        raise DataError(
            f"{path} has no column(s) {named}; its columns are {header}. Name existing columns with "
            f"{OPTIONS_HELP} (and csv.image_column=, csv.split_column=)"
        )


def _refuse_empty_values(rows: list[tuple[int, tuple[str, ...]]], path: Path, columns: list[str]) -> None:
    for line, fields in rows:
        for column, value in zip(columns, fields):
            if not value:
                raise DataError(f"{path}, line {line}: column '{column}' is empty; fill in the value or remove the row")


def _refuse_ambiguous_values(rows: list[tuple[int, tuple[str, ...]]], path: Path, columns: list[str]) -> None:
    """A value written two ways ('Male' and 'male', '1' and '1.0') would be two classes, and one holding '|' would
    run into the group names ('a|b' joins the classes of two attributes): refused with the line."""
    for i, column in enumerate(columns, start=1):
        seen: dict[tuple, tuple[str, int]] = {}
        for line, fields in rows:
            value = fields[i]
            if "|" in value:
                raise DataError(
                    f"{path}, line {line}: {column} value {value!r} holds '|', which joins the classes of a group's "
                    "attributes ('a|b'); rename the value without '|'"
                )
            first = seen.setdefault(spelling(value), (value, line))
            if first[0] != value:
                raise DataError(
                    f"{path}, line {line}: {column} value {value!r} is {first[0]!r} (line {first[1]}) written another "
                    "way (case or number format) and would be a class of its own; write every such value one way"
                )


def copy_groups(root: Path, rows: list[tuple[int, tuple[str, ...]]]) -> np.ndarray:
    """Per row, the first row whose image has the same bytes (itself when none; content digests, cached per file)."""
    digests = file_digests([root / f[0] for _, f in rows])
    first: dict[str, int] = {}
    return np.array([i if d is None else first.setdefault(d, i) for i, d in enumerate(digests)], dtype=np.int64)


def copies_note(copies: np.ndarray) -> list[str]:
    n = int((copies != np.arange(len(copies))).sum())
    return [f"{n} image(s) have the same bytes as another row's image under another name"] if n else []


def copies_across_splits(rows: list[tuple[int, tuple[str, ...]]], copies: np.ndarray, split: np.ndarray) -> list[str]:
    """The same image under two names in two splits (a split column put them there): a model tested on images it
    trained on."""
    problems = []
    for i, j in enumerate(copies):
        if split[i] != split[j] and split[i] >= 0 and split[j] >= 0:
            (line_a, a), (line_b, b) = rows[j], rows[i]
            problems.append((SPLITS[split[j]], SPLITS[split[i]], line_a, a[0], line_b, b[0]))
    if not problems:
        return []
    pairs = Counter(f"{x} and {y}" for x, y, *_ in problems)
    x, y, line_a, a, line_b, b = problems[0]
    return [
        f"{len(problems)} image(s) are byte-identical to an image of another split under another name "
        f"({', '.join(f'{n} between {p}' for p, n in pairs.items())}; first: line {line_a} {a!r} in {x}, line {line_b} "
        f"{b!r} in {y}): a model would be tested on images it trained on; remove the copies or give them one split"
    ]


def _refuse_single_class(path: Path, targets: list[str], classes: dict[str, list[str]]) -> None:
    for column in targets:
        if len(classes[column]) < 2:
            raise DataError(
                f"{path}: target column '{column}' has one value only ({classes[column]}); a target needs two or more"
            )


def _empty_groups(tables: dict[str, SplitTable], groups: list[str], classes: dict[str, list[str]]) -> list[str]:
    """A sensitive class without rows in some split: its metrics would be undefined there."""
    problems = []
    for column in groups:
        total = sum(np.bincount(t.labels[column], minlength=len(classes[column])) for t in tables.values())
        for split, table in tables.items():
            counts = np.bincount(table.labels[column], minlength=len(classes[column]))
            for cls, n, all_rows in zip(classes[column], counts, total):
                if n == 0:
                    problems.append(
                        f"sensitive group '{cls}' of column '{column}' has no rows in the '{split}' split "
                        f"({all_rows} row(s) in all); add images of that group, merge it into another value "
                        "or remove its rows"
                    )
    return problems


@hookimpl
def fairfacebench_datasets():
    return [CsvFolder()]
