"""UTKFace (Zhang, Song, Qi, CVPR 2017): age, gender and race encoded in the file names; non-commercial use only.

Names must match ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` exactly;
irregular names are skipped and listed, never guessed.  No official split:
70/10/20 stratified with a recorded seed.  Near-duplicate images are grouped
before the split (option `near_duplicates`): a group goes whole to one split,
a group with conflicting labels is left out.  Layout and policy: docs/DATASETS.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fairfacebench.data import Attribute, DataError, TaskSpec, Vocabulary
from fairfacebench.datasets.indexed import (
    SPLITS,
    DatasetIndex,
    IndexedDataset,
    SplitTable,
    cut_units,
    near_duplicate_groups,
    near_duplicate_info,
    split_info,
    split_units,
    stratified_split,
)
from fairfacebench.datasets.near_duplicates import DEFAULT_THRESHOLD, OFF, label_conflicts, threshold_option
from fairfacebench.hookspecs import hookimpl

logger = logging.getLogger(__name__)

# ASCII digits only, and \Z: `$` would also match before a trailing newline.
PATTERN = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.jpg\.chip\.jpg\Z", re.ASCII)
MISSING_RACE = re.compile(r"^\d{1,3}_[01]_\d+\.jpg\.chip\.jpg\Z", re.ASCII)
AGE_GROUP_STARTS = (0, 20, 40, 60)  # age_group i covers [start_i, start_{i+1}) years
AGE_BINARY_THRESHOLD = 40
IRREGULAR_POLICY = (
    "file names must match [age]_[gender]_[race]_[datetime].jpg.chip.jpg exactly; names lacking the race "
    "field and names with a stray space or a missing dot before the extension are skipped, never guessed"
)

ATTRIBUTES = {
    "gender": Attribute("gender", ("Male", "Female")),
    "race": Attribute("race", ("White", "Black", "Asian", "Indian", "Others")),
    "age_group": Attribute("age_group", ("0-19", "20-39", "40-59", "60+")),
    "age_binary": Attribute("age_binary", ("0-39", "40+")),
}


NON_WHITE = "non-white"
GENDER_VOCABULARY = {"Male": "male", "Female": "female"}
# Others (Hispanic, Latino, Middle Eastern, ...) is non-White as in utkface-cb, and in no race4 class.
VOCABULARY: Vocabulary = {
    "gender": {"gender": GENDER_VOCABULARY},
    "race_binary": {
        "race": {"White": "white", "Black": NON_WHITE, "Asian": NON_WHITE, "Indian": NON_WHITE, "Others": NON_WHITE}
    },
    "race4": {"race": {"White": "white", "Black": "black", "Asian": "asian", "Indian": "indian", "Others": None}},
    "age_band": {"age_group": {band: band for band in ATTRIBUTES["age_group"].classes}},
    "age_40": {
        "age_binary": {"0-39": "0-39", "40+": "40+"},
        "age_group": {"0-19": "0-39", "20-39": "0-39", "40-59": "40+", "60+": "40+"},
    },
}


@dataclass
class ParsedNames:
    """The outcome of parsing a UTKFace folder's file names (no image is opened)."""

    files: list[str]
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    skipped: list[dict[str, str]]
    listed: int = 0  # files in the folder, parsed or skipped

    def warnings(self) -> list[str]:
        """The one warning about skipped names that a check report carries (so `run` prints it once)."""
        if not self.skipped:
            return []
        reasons = dict(Counter(s["reason"] for s in self.skipped))
        named = "; ".join(f"{s['file']!r} ({s['reason']})" for s in self.skipped[:20])
        return [
            f"skipped {len(self.skipped)} of {self.listed} files whose names do not match "
            f"[age]_[gender]_[race]_[datetime].jpg.chip.jpg ({reasons}): {named}"
        ]


def parse_name(name: str) -> tuple[int, int, int] | str:
    """(age, gender, race) of a regular file name, else the reason it is skipped."""
    match = PATTERN.match(name)
    if match:
        return int(match[1]), int(match[2]), int(match[3])
    if not name.lower().endswith(".jpg"):
        return "not a .jpg file"
    if MISSING_RACE.match(name):
        return "missing race field"
    return "irregular name"


def parse_folder(root: Path) -> ParsedNames:
    """Parse every file name in `root` (flat); skipped names are logged (INFO) and named in the index's warnings,
    which `data check` and `run` print once."""
    # A dangling link is listed too: the image cache skips it as missing and names it.
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_file() or entry.is_symlink())
    files, labels, skipped = [], [], []
    for name in names:
        parsed = parse_name(name)
        if isinstance(parsed, str):
            skipped.append({"file": name, "reason": parsed})
        else:
            files.append(name)
            labels.append(parsed)
    age, gender, race = np.asarray(labels, dtype=np.int64).reshape(-1, 3).T
    parsed = ParsedNames(files, age, gender, race, skipped, len(names))
    for warning in parsed.warnings():
        logger.info("utkface at %s: %s", root, warning)
    return parsed


def age_group(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(AGE_GROUP_STARTS, age, side="right").astype(np.int64) - 1


def age_binary(age: np.ndarray) -> np.ndarray:
    return (age >= AGE_BINARY_THRESHOLD).astype(np.int64)


class UTKFaceFolder(IndexedDataset):
    """What both UTKFace protocols share: the folder, and near-duplicates grouped by default in runs."""

    needs_root = True
    root_hint = "the UTKFace folder holding the *.jpg.chip.jpg files"

    def run_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Near-duplicates are grouped at DEFAULT_THRESHOLD bits unless the plan says otherwise; 'off' (the loader's
        own default: the split from before the option existed) is left out, so the runs of then keep their ids."""
        value = options.get("near_duplicates", DEFAULT_THRESHOLD)
        rest = {k: v for k, v in options.items() if k != "near_duplicates"}
        return rest if threshold_option(value, self.name) is None else {**rest, "near_duplicates": value}


class UTKFace(UTKFaceFolder):
    name = "utkface"
    description = "UTKFace aligned & cropped faces (200x200): gender, race and age from the file names"
    citation = "Zhang, Song, Qi. Age Progression/Regression by Conditional Adversarial Autoencoder. CVPR 2017"
    attributes = ATTRIBUTES
    vocabulary = VOCABULARY
    tasks = [
        TaskSpec("gender/race", "gender", ("race",), "predict gender; fairness across 5 race groups"),
        TaskSpec("age_binary/race", "age_binary", ("race",), "predict age >= 40; fairness across 5 race groups"),
        TaskSpec("age_group/race", "age_group", ("race",), "predict age 0-19/20-39/40-59/60+; fairness across race"),
        TaskSpec("age_binary/gender", "age_binary", ("gender",), "predict age >= 40; fairness across gender"),
        TaskSpec("race/gender", "race", ("gender",), "predict race (5 classes); fairness across gender"),
        TaskSpec("gender/age_binary", "gender", ("age_binary",), "predict gender; fairness across age < 40 and >= 40"),
    ]

    def index(
        self,
        root: Path,
        strict: bool = False,
        split_seed: int = 0,
        split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
        near_duplicates: int | str = OFF,
    ) -> DatasetIndex:
        threshold = threshold_option(near_duplicates, self.name)
        parsed = parse_folder(root)
        if not parsed.files:
            raise DataError(_no_images_message(root))
        labels = {
            "gender": parsed.gender,
            "race": parsed.race,
            "age_group": age_group(parsed.age),
            "age_binary": age_binary(parsed.age),
        }
        rows, group, near_info = grouped_rows(
            root, parsed.files, np.arange(len(parsed.files)), labels, threshold, ATTRIBUTES
        )
        labels = {k: v[rows] for k, v in labels.items()}
        strata = np.stack([labels["gender"], labels["race"], labels["age_binary"]], axis=1)
        codes = stratified_split(strata, split_fractions, split_seed, group)
        table = SplitTable.under(root, [parsed.files[i] for i in rows], labels)
        info: dict[str, Any] = {
            "root": str(root),
            "parsed": len(parsed.files),
            "irregular_names": IRREGULAR_POLICY,
            "skipped_names": parsed.skipped,
            "warnings": parsed.warnings(),
            "age_bins": {"age_group": "0-19, 20-39, 40-59, 60+ years", "age_binary": "0-39 vs 40+ years"},
            "near_duplicates": near_info,
            "split": split_info(split_seed, split_fractions, SPLITS, ("gender", "race", "age_binary"), codes),
        }
        return DatasetIndex({s: table.take(np.flatnonzero(codes == i)) for i, s in enumerate(SPLITS)}, info)


def grouped_rows(
    root: Path,
    files: list[str],
    rows: np.ndarray,
    labels: dict[str, np.ndarray],
    threshold: int | None,
    attributes: dict[str, Attribute],
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Of `rows` of the parsed `files` (`labels` aligned with `rows`): those a split may use (near-duplicate groups
    with conflicting labels left out), their group ids (None when off) and what info records.

    The hashes cover every parsed file, so the two protocols share one hash cache.
    """
    if threshold is None:
        return rows, None, {"threshold": OFF}
    group, unread = near_duplicate_groups("utkface", [os.path.join(str(root), f) for f in files], threshold)
    conflicting = label_conflicts(group[rows], labels)
    info = near_duplicate_info(
        threshold, group[rows], conflicting, [files[r] for r in rows], labels, attributes, unread
    )
    return rows[~conflicting], group[rows[~conflicting]], info


def _no_images_message(root: Path) -> str:
    subfolders = [d for d in sorted(root.iterdir()) if d.is_dir()]
    with_images = [d.name for d in subfolders if any(PATTERN.match(f) for f in os.listdir(d))]
    hint = f" Its subfolder(s) {with_images} do: pass one of them as --data-root." if with_images else ""
    return (
        f"no UTKFace images in {root}: expected files named [age]_[gender]_[race]_[datetime].jpg.chip.jpg "
        f"directly in the folder.{hint}"
    )


# ---------------------------------------------------------------- the controlled-bias protocol (Hong & Yang 2021)

GENDER_PHRASES = (("a man", "a male person"), ("a woman", "a female person"))
CB_ATTRIBUTES = {
    "gender": Attribute("gender", ("Male", "Female"), GENDER_PHRASES),
    "race_binary": Attribute(
        "race_binary",
        ("White", "non-White"),
        (("a white person",), ("a black person", "an asian person", "an indian person", "a latino person")),
    ),
    "age_bias": Attribute("age_bias", ("20+", "0-10"), (("an adult",), ("a child",))),
}
CB_VOCABULARY: Vocabulary = {
    "gender": {"gender": GENDER_VOCABULARY},
    "race_binary": {"race_binary": {"White": "white", "non-White": NON_WHITE}},
    "child_adult": {"age_bias": {"20+": "adult", "0-10": "child"}},
}
CB_TASKS = [
    TaskSpec(
        "gender/race", "gender", ("race_binary",), "gender; train skewed: White mostly male, non-White mostly female"
    ),
    TaskSpec("gender/age", "gender", ("age_bias",), "gender; train skewed: 20+ mostly male, 0-10 mostly female"),
]
CB_SPLITS = ("train", "val", "test")


def controlled_bias_split(
    y: np.ndarray, a: np.ndarray, rho: float, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Split codes 0 train / 1 val / 2 test / -1 dropped of the controlled-bias protocol (Hong & Yang, NeurIPS 2021).

    A random 80/20 split; the 20% halves into validation and test, left unskewed.  The training 80% is
    skewed: in sensitive group 0 the majority class is 0, in group 1 it is 1; each group keeps all of its
    majority-class images and (1 - rho) x that count of its minority-class images, drawn at random.  The
    dropped images are used nowhere: as an unlabeled pool they would be exactly the bias-conflicting cells.
    Rows sharing a `groups` id (near-duplicates) are shuffled as one unit and go to one split
    (`indexed.cut_units`); without groups every row is its own unit.
    """
    if not 0.0 <= rho <= 1.0:
        raise DataError(f"utkface-cb: option 'rho' must be in [0, 1], got {rho}")
    rng = np.random.default_rng(seed)
    unit, _ = split_units(len(y), groups)
    size = np.bincount(unit)
    unit_order = rng.permutation(len(size))
    n_train = int(0.8 * len(y))
    n_val = (len(y) - n_train) // 2
    unit_codes = np.empty(len(size), np.int64)
    unit_codes[unit_order] = cut_units(size[unit_order], (n_train, n_val, len(y) - n_train - n_val))
    codes = unit_codes[unit]
    position = np.empty_like(unit_order)
    position[unit_order] = np.arange(len(unit_order))
    order = np.argsort(position[unit], kind="stable")  # rows in shuffled order, a group's rows together
    train = order[codes[order] == 0]
    for group, majority in ((0, 0), (1, 1)):
        in_group = train[a[train] == group]
        major = in_group[y[in_group] == majority]
        minor = in_group[y[in_group] != majority]
        keep = int(round((1.0 - rho) * len(major)))
        codes[rng.permutation(minor)[keep:]] = -1
    return codes


class UTKFaceControlledBias(UTKFaceFolder):
    """UTKFace under the controlled-bias protocol of Hong & Yang (NeurIPS 2021): gender, skewed by race or age."""

    name = "utkface-cb"
    description = (
        "UTKFace, controlled-bias protocol (Hong & Yang 2021): predict gender; training skewed by race "
        "(White / non-White) or age (20+ / 0-10) at rate rho; validation and test unskewed"
    )
    citation = (
        "Hong & Yang, Unbiased Classification through Bias-Contrastive and Bias-Balanced Learning, NeurIPS 2021; "
        "UTKFace: Zhang, Song, Qi, CVPR 2017"
    )
    splits_per_task = True
    attributes = CB_ATTRIBUTES
    vocabulary = CB_VOCABULARY
    tasks = CB_TASKS

    def index(
        self,
        root: Path,
        strict: bool = False,
        task: str | None = None,
        rho: float = 0.9,
        split_seed: int = 0,
        near_duplicates: int | str = OFF,
    ) -> DatasetIndex:
        spec = self.task(task)
        threshold = threshold_option(near_duplicates, self.name)
        parsed = parse_folder(root)
        if not parsed.files:
            raise DataError(_no_images_message(root))
        sensitive = spec.sensitive[0]
        if sensitive == "age_bias":  # ages 11-19 are in neither group: dropped, as in the protocol
            rows = np.flatnonzero((parsed.age >= 20) | (parsed.age <= 10))
            sensitive_of = (parsed.age <= 10).astype(np.int64)
        else:
            rows = np.arange(len(parsed.files))
            sensitive_of = (parsed.race != 0).astype(np.int64)
        labels = {"gender": parsed.gender[rows], sensitive: sensitive_of[rows]}
        n_protocol = len(rows)
        rows, group, near_info = grouped_rows(root, parsed.files, rows, labels, threshold, CB_ATTRIBUTES)
        y, a = parsed.gender[rows], sensitive_of[rows]
        codes = controlled_bias_split(y, a, float(rho), int(split_seed), group)
        labels = {"gender": y, sensitive: a}
        table = SplitTable.under(root, [parsed.files[i] for i in rows], labels)
        tables = {name: table.take(np.flatnonzero(codes == i)) for i, name in enumerate(CB_SPLITS)}
        info: dict[str, Any] = {
            "root": str(root),
            "parsed": len(parsed.files),
            "protocol": "controlled bias (Hong & Yang 2021): random 80/20, the 20% halved into val/test (unskewed); "
            "train skewed: group 0 keeps its male images, group 1 its female images, each plus "
            "(1 - rho) x that count of the other gender; the other training images are dropped",
            "task": spec.name,
            "rho": float(rho),
            "split_seed": int(split_seed),
            "dropped_ages_11_to_19": int(len(parsed.files) - n_protocol) if sensitive == "age_bias" else 0,
            "near_duplicates": near_info,
            "cells": {name: cell_counts(tables[name], sensitive) for name in CB_SPLITS},
            "dropped_by_skew": int((codes == -1).sum()),
            "skipped_names": parsed.skipped,
            "warnings": parsed.warnings(),
        }
        return DatasetIndex(tables, info)

    def check(self, root: Path | str | None, **options: Any) -> dict[str, Any]:
        """Per task: the four (gender, group) cell counts of every split, and any problems."""
        reports = {t.name: super(UTKFaceControlledBias, self).check(root, task=t.name, **options) for t in self.tasks}
        problems = [f"{name}: {p}" for name, r in reports.items() for p in r["problems"]]
        cells = {name: (r.get("info") or {}).get("cells") for name, r in reports.items()}
        return {
            "dataset": self.name,
            "root": None if root is None else str(root),
            "ok": not problems,
            "cells": cells,
            "problems": problems,
            "warnings": list(dict.fromkeys(w for r in reports.values() for w in r.get("warnings", []))),
            "tasks": reports,
        }


def cell_counts(table: SplitTable, sensitive: str) -> dict[str, int]:
    """Rows per (gender, group) cell, e.g. {'Male|White': 4382, ...}."""
    y, a = table.labels["gender"], table.labels[sensitive]
    names = CB_ATTRIBUTES[sensitive].classes
    return {
        f"{g}|{names[k]}": int(((y == i) & (a == k)).sum()) for i, g in enumerate(("Male", "Female")) for k in (0, 1)
    }


@hookimpl
def fairfacebench_datasets():
    return [UTKFace(), UTKFaceControlledBias()]
