"""The `csv` dataset plugin: a folder of generated images plus a CSV, its checks, its bad inputs and a run on it."""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import numpy as np
import pytest
from fixtures_layouts import build_csv_folder

from fairfacebench.cli import main
from fairfacebench.data import Attribute, DataError, make_task_data
from fairfacebench.datasets.csvfolder import CsvFolder, class_order
from fairfacebench.errors import ConfigError

OPTIONS = {"target": "smiling", "sensitive": "skin"}
CLI_OPTIONS = ["--dataset-option", "csv.target=smiling", "--dataset-option", "csv.sensitive=skin"]


@pytest.fixture()
def root(tmp_path):
    return build_csv_folder(tmp_path / "mine")


def rewrite(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_load_builds_a_recorded_stratified_split_and_any_task_of_the_named_columns(root, tmp_path):
    plugin, options = CsvFolder(), {"target": "smiling,glasses", "sensitive": "skin"}
    ds = plugin.load(root, 16, tmp_path / "cache", workers=1, progress=False, **options)
    # 12 strata (smiling x glasses x skin) of 5 rows, each cut 3/1/1
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 36, "val": 12, "test": 12}
    assert ds.attributes["skin"].classes == ("dark", "light", "medium")
    assert ds.attributes["glasses"].classes == ("0", "1")
    assert ds.info["split"]["stratified_on"] == ["smiling", "glasses", "skin"] and ds.info["split"]["seed"] == 0
    assert ds.splits["train"].images.shape[1:] == (16, 16, 3)
    assert plugin.default_task(**options) == "smiling/skin"
    data = make_task_data(ds, plugin.task("glasses/skin+smiling"))
    assert data.target_classes == ("0", "1") and len(data.group_names) == 6 and data.group_names[0] == "dark|no"
    again = CsvFolder().load(root, 16, tmp_path / "cache", workers=1, progress=False, **options)
    assert list(again.splits["test"].ids) == list(ds.splits["test"].ids)  # the split is reproducible


def test_a_split_column_is_used_as_given(tmp_path):
    root = build_csv_folder(tmp_path / "split", split=True)
    ds = CsvFolder().load(root, 8, tmp_path / "cache", workers=1, progress=False, split_column="part", **OPTIONS)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 36, "val": 12, "test": 12}
    assert ds.info["split"] == {"method": "column 'part'", "sizes": {"train": 36, "val": 12, "test": 12}}


def test_data_check_csv_reports_counts_per_group(root, capsys):
    assert main(["data", "check", "csv", "--data-root", str(root), *CLI_OPTIONS]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"csv at {root}: ok")
    assert "| skin        | light   |      14 |     2 |      4 |" in out and "| all         |" in out
    assert main(["data", "check", "csv", "--data-root", str(root), *CLI_OPTIONS, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"]["train"]["skin"] == {"dark": 14, "light": 14, "medium": 14}
    assert sum(report["splits"].values()) == 60 and report["problems"] == []


def test_fingerprint_follows_labels_not_the_folder_location(root, tmp_path):
    first = CsvFolder().fingerprint(root, **OPTIONS)
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert CsvFolder().fingerprint(moved, **OPTIONS) == first
    rewrite(moved / "labels.csv", lambda ls: [ls[0], ls[1].replace(",no,", ",yes,"), *ls[2:]])
    assert CsvFolder().fingerprint(moved, **OPTIONS) != first


def test_a_missing_image_is_skipped_and_listed_or_fatal_when_strict(root, tmp_path):
    (root / "img" / "007.png").unlink()
    report = CsvFolder().check(root, **OPTIONS)
    assert not report["ok"] and "1 image(s) listed in labels.csv are missing" in report["problems"][0]
    assert report["info"]["missing_images"] == [{"file": "img/007.png", "line": 9, "source": "labels.csv"}]
    ds = CsvFolder().load(root, 8, tmp_path / "cache", workers=1, progress=False, **OPTIONS)
    assert sum(len(s) for s in ds.splits.values()) == 59
    with pytest.raises(DataError, match=r"labels\.csv, line 9: image 'img/007\.png' does not exist"):
        CsvFolder().load(root, 8, tmp_path / "cache", workers=1, progress=False, strict=True, **OPTIONS)


def test_an_unknown_column_names_the_option_and_the_columns_found(root):
    with pytest.raises(
        DataError, match=r"has no column\(s\) \['smile \(target/sensitive\)'\]; its columns are \['image'"
    ):
        CsvFolder().index(root, target="smile", sensitive="skin")
    with pytest.raises(DataError, match=r"no column\(s\) \['file \(image_column\)'\]"):
        CsvFolder().index(root, image_column="file", **OPTIONS)
    with pytest.raises(ConfigError, match="needs its target and sensitive columns"):
        CsvFolder().index(root, target="smiling")


def test_an_empty_group_is_a_problem_for_check_and_an_error_for_load(root, tmp_path):
    # one image of a fourth skin value: too few rows for val and test
    rewrite(root / "labels.csv", lambda ls: [*ls[:-1], ls[-1].replace(",dark,", ",other,")])
    report = CsvFolder().check(root, **OPTIONS)
    assert not report["ok"]
    assert (
        "sensitive group 'other' of column 'skin' has no rows in the 'val' split (1 row(s) in all)"
        in report["problems"][0]
    )
    with pytest.raises(DataError, match="sensitive group 'other' of column 'skin' has no rows in the 'val' split"):
        CsvFolder().load(root, 8, tmp_path / "cache", workers=1, progress=False, **OPTIONS)


def test_bad_values_name_their_line(root):
    rewrite(root / "labels.csv", lambda ls: [ls[0], ls[1].replace(",no,", ",,"), *ls[2:]])
    with pytest.raises(DataError, match=r"labels\.csv, line 2: column 'smiling' is empty"):
        CsvFolder().index(root, **OPTIONS)


@pytest.mark.parametrize(
    "edit, options, message",
    [
        (None, ["--dataset-option", "csv.target=smile", "--dataset-option", "csv.sensitive=skin"], "has no column(s)"),
        (
            lambda ls: [*ls[:-1], ls[-1].replace(",dark,", ",other,")],
            CLI_OPTIONS,
            "sensitive class(es) ['other'] of 'skin' have no members in the 'val' split",
        ),
        (None, [*CLI_OPTIONS, "--dataset-option", "csv.colour=red"], "dataset 'csv' has no option(s) ['colour']"),
        (None, [*CLI_OPTIONS, "--tasks", "csv:smiling/hair"], "needs attribute(s) ['hair']"),
    ],
)
def test_run_refuses_bad_csv_input_before_any_training(root, tmp_path, capsys, edit, options, message):
    if edit:
        rewrite(root / "labels.csv", edit)
    argv = ["run", "--methods", "erm", "--datasets", "csv", "--data-root", str(root), "--budget", "smoke"]
    assert main([*argv, *options, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench run: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_run_on_a_csv_folder_writes_per_group_results(root, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", "--methods", "erm", "--datasets", "csv", "--data-root", str(root), *CLI_OPTIONS]
    argv += ["--allow-tiny-groups"]  # 60 images: 1 per (smiling, skin) cell in validation, 2 in test
    assert main([*argv, "--budget", "smoke", "--workers", "1", "--bootstrap", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] csv/smiling/skin erm seed 0 trial 0: ok in" in printed
    (rec,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    assert rec["status"] == "ok" and rec["task_info"]["group_names"] == ["dark", "light", "medium"]
    cells = [f"{y}|{skin}" for skin in ("dark", "light", "medium") for y in ("no", "yes")]
    assert rec["tiny_groups"] == {"val": dict.fromkeys(cells, 1), "test": dict.fromkeys(cells, 2)}
    assert rec["dataset_info"]["columns"]["target"] == ["smiling"]
    assert np.isfinite(rec["metrics"]["test"]["acc"])


def test_numeric_classes_are_ordered_the_same_whatever_the_order_they_come_in():
    """Issue 28: with 'nan' among numbers the sort by float depended on set order, so on PYTHONHASHSEED."""
    values = ["10", "nan", "2", "1"]
    assert {tuple(class_order(list(p))) for p in itertools.permutations(values)} == {("1", "2", "10", "nan")}


@pytest.mark.parametrize(
    "old, new, message",
    [
        (",dark,", ",Dark,", "skin value 'Dark' is 'dark' (line 4) written another way"),
        (",1,", ",1.0,", "glasses value '1.0' is '1' (line 4) written another way"),
        (",dark,", ",da|rk,", "skin value 'da|rk' holds '|'"),
    ],
)
def test_a_value_written_two_ways_or_holding_a_bar_is_refused_by_check_and_load(root, tmp_path, old, new, message):
    """Issue 28: 'Male'/'male' and '1'/'1.0' were extra classes while `data check` said ok; a '|' merged groups."""
    rewrite(root / "labels.csv", lambda ls: [*ls[:-1], ls[-1].replace(old, new)])
    options = {**OPTIONS, "target": "smiling,glasses"}
    report = CsvFolder().check(root, **options)
    assert not report["ok"] and message in report["problems"][0] and "labels.csv, line 61" in report["problems"][0]
    with pytest.raises(DataError, match=re.escape(message)):
        CsvFolder().load(root, 8, tmp_path / "cache", workers=1, progress=False, **options)


def test_split_fractions_must_be_three(root):
    """Issue 28: four fractions silently dropped the rows of the fourth share."""
    with pytest.raises(ConfigError, match=r"'split_fractions' must be three fractions \(train, val, test\)"):
        CsvFolder().index(root, split_fractions=[0.6, 0.1, 0.2, 0.1], **OPTIONS)


def test_check_and_prepare_refuse_a_symbolic_link_out_of_the_root_as_run_does(root, tmp_path, capsys):
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "img" / "005.png").read_bytes())
    (root / "img" / "005.png").unlink()
    (root / "img" / "005.png").symlink_to(outside)
    report = CsvFolder().check(root, **OPTIONS)
    assert not report["ok"] and "a symbolic link leads outside the data root" in report["problems"][0]
    argv = ["data", "prepare", "csv", "--data-root", str(root), *CLI_OPTIONS]
    assert main(argv) == 2 and "a symbolic link leads outside the data root" in capsys.readouterr().err


def with_copies(root, rows, part=None):
    """Rows `rows` of labels.csv repeated under new image names holding the same bytes (in split `part`)."""
    lines = (root / "labels.csv").read_text().splitlines()
    header = lines[0].split(",")
    added = []
    for i in rows:
        fields = lines[i + 1].split(",")
        copy = f"copies/{i:03d}.png"
        (root / "copies").mkdir(exist_ok=True)
        (root / copy).write_bytes((root / fields[0]).read_bytes())
        fields[0] = copy
        if part:
            fields[header.index("part")] = part
        added.append(",".join(fields))
    rewrite(root / "labels.csv", lambda ls: [*ls, *added])


def test_the_same_image_under_two_names_in_two_splits_is_refused(tmp_path):
    """Issue 28: the same image under two names in train and test passed silently."""
    root = build_csv_folder(tmp_path / "split", split=True)
    with_copies(root, [0, 1, 2, 5], part="test")  # rows 0, 1, 2 are train, row 5 train: all leak into test
    report = CsvFolder().check(root, split_column="part", **OPTIONS)
    assert not report["ok"]
    problem = report["problems"][0]
    assert "4 image(s) are byte-identical to an image of another split under another name" in problem
    assert "(4 between train and test;" in problem
    assert "first: line 2 'img/000.png' in train, line 62 'copies/000.png' in test)" in problem
    with pytest.raises(DataError, match="a model would be tested on images it trained on"):
        CsvFolder().index(root, split_column="part", **OPTIONS)


def test_a_stratified_split_keeps_the_same_image_under_two_names_in_one_split(root, tmp_path):
    with_copies(root, range(0, 60, 3))
    index = CsvFolder().index(root, **OPTIONS)
    digests = {s: {hashlib.sha256(open(p, "rb").read()).digest() for p in t.paths} for s, t in index.tables.items()}
    assert not digests["train"] & digests["test"] and not digests["train"] & digests["val"]
    assert not digests["val"] & digests["test"]
    assert "20 image(s) have the same bytes as another row's image under another name" in index.info["notes"]


def test_no_plugin_can_name_a_class_with_a_bar():
    with pytest.raises(DataError, match=r"attribute 'skin': class name\(s\) \['da\|rk'\] hold '\|'"):
        Attribute("skin", ("da|rk", "light"))
