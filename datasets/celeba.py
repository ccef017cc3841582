"""CelebA (Liu et al., ICCV 2015): 202,599 aligned faces with 40 binary attributes; non-commercial use only.

Reads the official ``.txt`` attribute and partition files or their CSV
mirror; any ``<Target>/<Sensitive>`` task of the 40 attributes is available.
Layout and policy: docs/DATASETS.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fairfacebench.data import Attribute, ConceptMap, DataError, TaskSpec, Vocabulary
from fairfacebench.datasets.indexed import (
    SPLITS,
    DatasetIndex,
    IndexedDataset,
    Row,
    SplitTable,
    check_columns,
    dedupe,
    encode,
    present_or_missing,
    read_csv,
    relative_inside,
)
from fairfacebench.errors import UnknownName
from fairfacebench.hookspecs import hookimpl

logger = logging.getLogger(__name__)

ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
ATTRIBUTES = {name: Attribute(name, (f"not_{name}", name)) for name in ATTRIBUTE_NAMES}
USUAL_TARGETS = ("Smiling", "Attractive", "Blond_Hair", "Big_Nose", "Bags_Under_Eyes", "Wavy_Hair")
USUAL_SENSITIVE = ("Male", "Young")
VALUES = ("-1", "1")  # file value -> code 0 / 1
PARTITIONS = ("0", "1", "2")  # train, val, test
IMAGE_DIR = "img_align_celeba"
# Young has no age in years behind it: it reads as under 40 only approximately, and says so wherever it is used.
YOUNG_AS_UNDER_40 = "CelebA's Young is annotators' impression of youth, not an age in years; read as under 40"
VOCABULARY: Vocabulary = {
    "gender": {"Male": {"not_Male": "female", "Male": "male"}},
    "age_40": {"Young": ConceptMap({"not_Young": "40+", "Young": "0-39"}, approximate=YOUNG_AS_UNDER_40)},
}


def _task(target: str, sensitive: tuple[str, ...], name: str | None = None) -> TaskSpec:
    description = f"predict {target}; fairness across {' x '.join(sensitive)}"
    return TaskSpec(name or f"{target}/{'+'.join(sensitive)}", target, sensitive, description)


class CelebA(IndexedDataset):
    name = "celeba"
    description = "CelebA aligned faces with 40 binary attributes; official train/val/test partition"
    citation = "Liu, Luo, Wang, Tang. Deep Learning Face Attributes in the Wild. ICCV 2015"
    needs_root = True
    root_hint = (
        "the CelebA folder holding img_align_celeba/, list_attr_celeba.txt (or .csv) "
        "and list_eval_partition.txt (or .csv)"
    )
    attributes = ATTRIBUTES
    vocabulary = VOCABULARY
    tasks = [_task(t, (s,)) for t in USUAL_TARGETS for s in USUAL_SENSITIVE]

    def task(self, name: str | None) -> TaskSpec:
        """A usual task, or any '<Target>/<Sensitive>' (several sensitive joined by '+') of the 40 attributes."""
        if name is None:
            return self.tasks[0]
        target, _, rest = name.partition("/")
        sensitive = tuple(s for s in rest.split("+") if s)
        unknown = [a for a in (target, *sensitive) if a not in ATTRIBUTES]
        if unknown or not target or not sensitive or target in sensitive:
            problem = f"unknown attribute(s) {unknown}" if unknown else "needs a target and another sensitive attribute"
            raise UnknownName(
                f"dataset 'celeba' has no task {name!r} ({problem}); name a task '<Target>/<Sensitive>' or "
                f"'<Target>/<S1>+<S2>' with attributes from {list(ATTRIBUTE_NAMES)}; "
                f"usual tasks: {[t.name for t in self.tasks]}"
            )
        return _task(target, sensitive, name)

    def index(self, root: Path, strict: bool = False) -> DatasetIndex:
        images = root / IMAGE_DIR
        attr_path, part_path = _label_file(root, "list_attr_celeba"), _label_file(root, "list_eval_partition")
        if not images.is_dir():
            raise DataError(f"{root} has no {IMAGE_DIR}/ folder: unpack img_align_celeba.zip into the data root")
        rows, notes = _read_attributes(attr_path)
        rows, repeated = dedupe(rows, attr_path)
        codes = _attribute_codes(rows, attr_path)
        partition, partition_notes = _read_partition(part_path)
        split = _partition_of(rows, partition, attr_path, part_path)
        files = [f[0] for _, f in rows]
        present, missing = present_or_missing(images, [(line, f[0]) for line, f in rows], attr_path, strict)
        table = SplitTable.under(images, files, {n: codes[:, i] for i, n in enumerate(ATTRIBUTE_NAMES)})
        tables = {name: table.take(np.flatnonzero(present & (split == i))) for i, name in enumerate(SPLITS)}
        info: dict[str, Any] = {
            "root": str(root),
            "label_files": [attr_path.name, part_path.name],
            "split": {
                "method": "official partition",
                "file": part_path.name,
                "sizes": {k: len(t) for k, t in tables.items()},
            },
            "notes": notes + repeated + partition_notes,
            "missing_images": missing,
            "problems": [f"{len(missing)} image(s) listed in {attr_path.name} are missing (first: {missing[0]})"]
            if missing
            else [],
        }
        return DatasetIndex(tables, info)


def _label_file(root: Path, stem: str) -> Path:
    for suffix in (".txt", ".csv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    raise DataError(f"{root} has neither {stem}.txt nor {stem}.csv: copy the CelebA annotation file into the data root")


def _read_attributes(path: Path) -> tuple[list[Row], list[str]]:
    """Rows (line, (file, 40 values in ATTRIBUTE_NAMES order)) and notes, from the .txt or .csv variant."""
    rows, notes = read_csv(path, ("image_id", *ATTRIBUTE_NAMES)) if path.suffix == ".csv" else _read_attribute_txt(path)
    return [(line, (relative_inside(f[0], path, line, "image_id"), *f[1:])) for line, f in rows], notes


def _read_attribute_txt(path: Path) -> tuple[list[Row], list[str]]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(
            f"{path}, line 1: expected the image count, then a line with the 40 attribute names; found "
            f"{lines[:1]}. Use the official list_attr_celeba.txt"
        )
    header = lines[1].split()
    check_columns(path, header, ATTRIBUTE_NAMES)
    columns = [header.index(n) + 1 for n in ATTRIBUTE_NAMES]
    rows = [
        (n, _txt_fields(path, n, text, len(header) + 1, columns))
        for n, text in enumerate(lines[2:], start=3)
        if text.strip()
    ]
    extra = [h for h in header if h not in ATTRIBUTES]
    notes = [f"{path.name}: extra column(s) {extra} ignored"] if extra else []
    if int(lines[0]) != len(rows):
        notes.append(f"{path.name}: line 1 declares {int(lines[0])} images but {len(rows)} rows follow")
        logger.warning("celeba: %s", notes[-1])
    return rows, notes


def _txt_fields(path: Path, line: int, text: str, expected: int, columns: list[int]) -> tuple[str, ...]:
    parts = text.split()
    if len(parts) != expected:
        raise DataError(
            f"{path}, line {line}: {len(parts)} fields, expected a file name and {expected - 1} value(s); "
            "fix or remove the row"
        )
    return (parts[0], *map(parts.__getitem__, columns))


def _attribute_codes(rows: list[Row], path: Path) -> np.ndarray:
    """(N, 40) int64 codes: 1 -> 1, -1 -> 0; any other value names its line and column."""
    values = np.array([f[1:] for _, f in rows], dtype=str).reshape(len(rows), len(ATTRIBUTE_NAMES))
    positive = values == "1"
    bad = ~(positive | (values == "-1"))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        encode([(rows[r][0], str(values[r, c]))], VALUES, path, ATTRIBUTE_NAMES[c])
    return positive.astype(np.int64)


def _read_partition(path: Path) -> tuple[dict[str, int], list[str]]:
    """file -> partition code (0 train, 1 val, 2 test), and notes."""
    if path.suffix == ".csv":
        rows, notes = read_csv(path, ("image_id", "partition"))
    else:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        rows = [(n, _txt_fields(path, n, text, 2, [1])) for n, text in enumerate(lines, start=1) if text.strip()]
        notes = []
    rows, repeated = dedupe([(line, (relative_inside(f[0], path, line, "image_id"), f[1])) for line, f in rows], path)
    codes = encode(((line, f[1]) for line, f in rows), PARTITIONS, path, "partition")
    return {f[0]: int(code) for (_, f), code in zip(rows, codes)}, notes + repeated


def _partition_of(rows: list[Row], partition: dict[str, int], attr_path: Path, part_path: Path) -> np.ndarray:
    unassigned = [f[0] for _, f in rows if f[0] not in partition]
    if unassigned:
        raise DataError(
            f"{len(unassigned)} image(s) of {attr_path} have no entry in {part_path} (first: {unassigned[:5]}); "
            "use the attribute and partition files of the same CelebA release"
        )
    return np.array([partition[f[0]] for _, f in rows], dtype=np.int64)


@hookimpl
def fairfacebench_datasets():
    return [CelebA()]
