"""FairFace (Kärkkäinen & Joo, WACV 2021): faces balanced for race, gender and age; images CC BY 4.0.

Reads the official CSVs and image folders (either padding release); the
official val CSV is the test split and validation is carved from train.
race4 does not apply to Latino_Hispanic and Middle Eastern rows, which its
tasks drop.  Layout and policy: docs/DATASETS.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fairfacebench.data import Attribute, DataError, TaskSpec, Vocabulary
from fairfacebench.datasets.indexed import (
    NOT_APPLICABLE,
    DatasetIndex,
    IndexedDataset,
    SplitTable,
    dedupe,
    encode,
    present_or_missing,
    read_csv,
    relative_inside,
    split_info,
    stratified_split,
)
from fairfacebench.hookspecs import hookimpl

RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
RACE4 = ("White", "Black", "Asian", "Indian")
RACE4_OF_RACE = np.array([0, 1, NOT_APPLICABLE, 2, 2, 3, NOT_APPLICABLE], dtype=np.int64)
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
GENDERS = ("Male", "Female")
COLUMNS = ("file", "age", "gender", "race")
OPTIONAL_COLUMNS = ("service_test",)
LABEL_CSVS = {"train": "fairface_label_train.csv", "test": "fairface_label_val.csv"}
IMAGE_DIRS = ("train", "val")
RACE4_POLICY = "Latino_Hispanic and Middle Eastern rows have race4 = -1 (not applicable); race4 tasks drop them"

ATTRIBUTES = {
    "gender": Attribute("gender", GENDERS),
    "race": Attribute("race", RACES),
    "race4": Attribute("race4", RACE4),
    "age": Attribute("age", AGES),
}


# Latino_Hispanic and Middle Eastern are non-White (UTKFace files them under Others, which utkface-cb counts as
# non-White) and in no race4 class; the 10-19 bin holds children (10) and older (11-19) alike: neither.
_NON_WHITE = {race: "non-white" for race in RACES if race != "White"}
VOCABULARY: Vocabulary = {
    "gender": {"gender": {"Male": "male", "Female": "female"}},
    "race_binary": {
        "race": {"White": "white", **_NON_WHITE},
        "race4": {race: "white" if race == "White" else "non-white" for race in RACE4},
    },
    "race4": {
        "race4": {race: race.lower() for race in RACE4},
        "race": {race: None if code < 0 else RACE4[code].lower() for race, code in zip(RACES, RACE4_OF_RACE)},
    },
    "age_band": {"age": dict(zip(AGES, ("0-19",) * 3 + ("20-39",) * 2 + ("40-59",) * 2 + ("60+",) * 2))},
    "age_40": {"age": dict(zip(AGES, ("0-39",) * 5 + ("40+",) * 4))},
    "child_adult": {"age": dict(zip(AGES, ("child", "child", None) + ("adult",) * 6))},
}


class FairFace(IndexedDataset):
    name = "fairface"
    description = "FairFace (race/gender/age balanced faces); official val used as test, val carved from train"
    citation = "Kärkkäinen, Joo. FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age. WACV 2021"
    needs_root = True
    root_hint = "the FairFace folder holding fairface_label_train.csv, fairface_label_val.csv, train/ and val/"
    attributes = ATTRIBUTES
    vocabulary = VOCABULARY
    tasks = [
        TaskSpec("gender/race", "gender", ("race",), "predict gender; fairness across 7 race groups"),
        TaskSpec("gender/race4", "gender", ("race4",), "predict gender; fairness across 4 race groups (rest dropped)"),
        TaskSpec("race/gender", "race", ("gender",), "predict race (7 classes); fairness across gender"),
        TaskSpec("race4/gender", "race4", ("gender",), "predict race4 (rest dropped); fairness across gender"),
        TaskSpec("age/race", "age", ("race",), "predict the age bin (9 classes); fairness across 7 race groups"),
        TaskSpec("age/gender", "age", ("gender",), "predict the age bin (9 classes); fairness across gender"),
    ]

    def index(self, root: Path, strict: bool = False, split_seed: int = 0, val_fraction: float = 0.1) -> DatasetIndex:
        _check_layout(root)
        notes: list[str] = []
        missing: list[dict[str, Any]] = []
        official = {split: _read_split(root, root / csv, strict, notes, missing) for split, csv in LABEL_CSVS.items()}
        _refuse_overlap(root, official)
        train = official["train"]
        strata = np.stack([train.labels["gender"], train.labels["race"], train.labels["age"]], axis=1)
        codes = stratified_split(strata, (1 - val_fraction, val_fraction), split_seed)
        tables = {
            "train": _race4_last(train.take(np.flatnonzero(codes == 0))),
            "val": _race4_last(train.take(np.flatnonzero(codes == 1))),
            "test": _race4_last(official["test"]),
        }
        info = {
            "root": str(root),
            "test_split": f"official {LABEL_CSVS['test']}",
            "split": split_info(
                split_seed, (1 - val_fraction, val_fraction), ("train", "val"), ("gender", "race", "age"), codes
            ),
            "race4": RACE4_POLICY,
            "notes": notes,
            "missing_images": missing,
            "problems": [f"{len(missing)} image(s) listed in the label CSVs are missing (first: {missing[0]})"]
            if missing
            else [],
        }
        return DatasetIndex(tables, info)


def _check_layout(root: Path) -> None:
    expected = [*LABEL_CSVS.values(), *(f"{d}/" for d in IMAGE_DIRS)]
    absent = [name for name in expected if not (root / name).exists()]
    if absent:
        found = sorted(os.listdir(root))
        raise DataError(
            f"{root} is not a FairFace root: {absent} missing (found {found[:20]}{' ...' if len(found) > 20 else ''}). "
            "Unpack the label CSVs and either image release so that ROOT holds fairface_label_train.csv, "
            "fairface_label_val.csv, train/ and val/"
        )


def _read_split(
    root: Path, csv_path: Path, strict: bool, notes: list[str], missing: list[dict[str, Any]]
) -> SplitTable:
    """One label CSV as a table; notes and missing images are appended to the given lists."""
    rows, extra = read_csv(csv_path, COLUMNS, OPTIONAL_COLUMNS)
    rows = [(line, (relative_inside(f[0], csv_path, line), *f[1:])) for line, f in rows]
    rows, repeated = dedupe(rows, csv_path)
    notes += extra + repeated
    labels = {
        name: encode(((line, f[col]) for line, f in rows), ATTRIBUTES[name].classes, csv_path, name)
        for col, name in ((1, "age"), (2, "gender"), (3, "race"))
    }
    labels["race4"] = RACE4_OF_RACE[labels["race"]]
    files = [f[0] for _, f in rows]
    present, absent = present_or_missing(root, [(line, f[0]) for line, f in rows], csv_path, strict)
    missing += absent
    return SplitTable.under(root, files, labels).take(np.flatnonzero(present))


def _refuse_overlap(root: Path, official: dict[str, SplitTable]) -> None:
    shared = sorted(set(official["train"].files) & set(official["test"].files))
    if shared:
        raise DataError(
            f"{root}: {len(shared)} file(s) are listed in both {LABEL_CSVS['train']} and {LABEL_CSVS['test']} "
            f"(first: {shared[:5]}); a file may belong to one split only: restore the official CSVs"
        )


def _race4_last(table: SplitTable) -> SplitTable:
    return table.take(np.argsort(table.labels["race4"] == NOT_APPLICABLE, kind="stable"))


@hookimpl
def fairfacebench_datasets():
    return [FairFace()]
