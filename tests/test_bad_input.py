"""Bad input: each error names the file, row and value and says what to do; tolerable problems are counted.

Concurrent and interrupted cache builds are covered in test_cache.py.
"""

from __future__ import annotations

import logging

import pytest
from fixtures_layouts import build_celeba, build_fairface, build_utkface, truncate

from fairfacebench.data import DataError, make_task_data
from fairfacebench.datasets.celeba import CelebA
from fairfacebench.datasets.fairface import FairFace
from fairfacebench.datasets.utkface import UTKFace


@pytest.fixture()
def root(tmp_path):
    build_fairface(tmp_path / "ff")
    return tmp_path / "ff"


def edit_lines(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def load(root, tmp_path, **options):
    return FairFace().load(root, 8, tmp_path / "cache", workers=1, progress=False, **options)


def test_missing_image_is_skipped_and_counted(root, tmp_path, caplog):
    (root / "train" / "3.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        ds = load(root, tmp_path)
    assert ds.info["missing_images"] == [{"file": "train/3.jpg", "line": 4, "source": "fairface_label_train.csv"}]
    assert sum(len(ds.splits[s]) for s in ("train", "val")) == 27
    assert "train/3.jpg" in caplog.text
    report = FairFace().check(root)
    assert not report["ok"] and "missing" in report["problems"][0]


def test_missing_image_is_fatal_when_strict(root, tmp_path):
    (root / "train" / "3.jpg").unlink()
    with pytest.raises(
        DataError, match=r"fairface_label_train\.csv, line 4: image 'train/3\.jpg' does not exist.*without strict"
    ):
        load(root, tmp_path, strict=True)


def test_corrupt_jpeg_is_skipped_and_recorded(root, tmp_path):
    truncate(root / "val" / "2.jpg")
    ds = load(root, tmp_path)
    assert len(ds.splits["test"]) == 13 and "val/2.jpg" not in ds.splits["test"].ids
    assert ds.info["cache"]["skipped"] == 1
    assert ds.info["cache"]["skipped_files"][0]["file"].endswith("val/2.jpg")


def test_corrupt_jpeg_is_fatal_when_strict(root, tmp_path):
    truncate(root / "val" / "2.jpg")
    with pytest.raises(DataError, match=r"val/2\.jpg: cannot decode"):
        load(root, tmp_path, strict=True)


def test_unknown_label_value_names_value_row_and_allowed_values(root):
    edit_lines(root / "fairface_label_val.csv", lambda ls: [ls[0], ls[1].replace(",Male,", ",Mle,"), *ls[2:]])
    with pytest.raises(
        DataError,
        match=r"fairface_label_val\.csv, line 2: unknown gender value 'Mle'; allowed values are \['Male', 'Female'\]",
    ):
        FairFace().index(root)


def test_missing_column_names_the_file_and_the_columns_found(root):
    edit_lines(root / "fairface_label_train.csv", lambda ls: [",".join(line.split(",")[:3]) for line in ls])
    with pytest.raises(
        DataError,
        match=r"fairface_label_train\.csv is missing column\(s\) \['race'\]; found columns \['file', 'age', 'gender'\]",
    ):
        FairFace().index(root)


def test_extra_columns_are_accepted_and_noted(root):
    edit_lines(
        root / "fairface_label_train.csv", lambda ls: [ls[0] + ",photographer", *(line + ",anon" for line in ls[1:])]
    )
    index = FairFace().index(root)
    assert sum(len(index.tables[s]) for s in ("train", "val")) == 28
    assert index.info["notes"] == ["fairface_label_train.csv: extra column(s) ['photographer'] ignored"]


def test_identical_duplicate_rows_are_removed_with_a_note(root):
    edit_lines(root / "fairface_label_train.csv", lambda ls: [*ls, ls[5], ls[5]])
    index = FairFace().index(root)
    assert sum(len(index.tables[s]) for s in ("train", "val")) == 28
    assert "removed 2 exact duplicate row(s) (lines [30, 31])" in index.info["notes"][0]


def test_conflicting_duplicate_rows_are_an_error(root):
    edit_lines(root / "fairface_label_train.csv", lambda ls: [*ls, ls[5].replace("Male", "Female")])
    with pytest.raises(DataError, match=r"line 30 repeats 'train/5\.jpg' from line 6 with different values"):
        FairFace().index(root)


def test_file_in_both_csvs_is_an_error(root):
    edit_lines(root / "fairface_label_val.csv", lambda ls: [*ls, "train/1.jpg,20-29,Male,White,False"])
    with pytest.raises(DataError, match=r"listed in both .*train/1\.jpg"):
        FairFace().index(root)


@pytest.mark.parametrize("entry", ["../../etc/passwd", "/etc/passwd", "train/../../outside.jpg", "C:\\images\\1.jpg"])
def test_entries_escaping_the_root_are_rejected(root, entry):
    edit_lines(root / "fairface_label_train.csv", lambda ls: [*ls, f"{entry},20-29,Male,White,False"])
    with pytest.raises(DataError, match=r"line 30: file .* is not a relative path inside the data root"):
        FairFace().index(root)


def test_missing_layout_parts_are_named(root):
    (root / "fairface_label_val.csv").unlink()
    with pytest.raises(DataError, match=r"not a FairFace root: \['fairface_label_val\.csv'\] missing"):
        FairFace().index(root)


def test_sensitive_group_without_members_fails_make_task_data(root, tmp_path):
    edit_lines(root / "fairface_label_train.csv", lambda ls: [line for line in ls if ",Indian," not in line])
    ds = load(root, tmp_path)
    with pytest.raises(DataError, match=r"group\(s\) \['Indian'\] have no members in the 'train' split"):
        make_task_data(ds, FairFace().task("gender/race"))
    assert not FairFace().check(root)["ok"]


def test_utkface_without_a_race_group_fails_make_task_data(tmp_path):
    names = build_utkface(tmp_path / "UTKFace")
    for name in names:
        if name.split("_")[2] == "4":
            (tmp_path / "UTKFace" / name).unlink()
    ds = UTKFace().load(tmp_path / "UTKFace", 8, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(DataError, match=r"\['Others'\] have no members"):
        make_task_data(ds, UTKFace().task("gender/race"))


def test_celeba_empty_split_fails_make_task_data(tmp_path):
    build_celeba(tmp_path / "celeba")
    edit_lines(tmp_path / "celeba" / "list_eval_partition.txt", lambda ls: [line.replace(" 1", " 0") for line in ls])
    ds = CelebA().load(tmp_path / "celeba", 8, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(DataError, match="the 'val' split is empty"):
        make_task_data(ds, CelebA().task(None))


def test_celeba_unknown_value_names_line_attribute_and_allowed_values(tmp_path):
    build_celeba(tmp_path / "celeba")
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    edit_lines(attr, lambda ls: [*ls[:4], "000003.jpg  0" + ls[4][len("000003.jpg -1") :], *ls[5:]])
    expected = r"list_attr_celeba\.txt, line 5: unknown 5_o_Clock_Shadow value '0'; allowed values are \['-1', '1'\]"
    with pytest.raises(DataError, match=expected):
        CelebA().index(tmp_path / "celeba")


def test_celeba_csv_missing_column_names_the_columns_found(tmp_path):
    build_celeba(tmp_path / "celeba", "csv")
    edit_lines(tmp_path / "celeba" / "list_attr_celeba.csv", lambda ls: [line.rsplit(",", 1)[0] for line in ls])
    with pytest.raises(
        DataError,
        match=r"list_attr_celeba\.csv is missing column\(s\) \['Young'\]; "
        r"found columns \['image_id', '5_o_Clock_Shadow'",
    ):
        CelebA().index(tmp_path / "celeba")


def test_celeba_short_row_and_unpartitioned_image(tmp_path):
    build_celeba(tmp_path / "celeba")
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    original = attr.read_text()
    edit_lines(attr, lambda ls: [*ls[:3], ls[3].rsplit(" ", 1)[0], *ls[4:]])
    with pytest.raises(DataError, match=r"line 4: 40 fields, expected a file name and 40 value\(s\)"):
        CelebA().index(tmp_path / "celeba")
    attr.write_text(original)
    edit_lines(tmp_path / "celeba" / "list_eval_partition.txt", lambda ls: ls[1:])
    expected = r"1 image\(s\) of .*list_attr_celeba\.txt have no entry in .*list_eval_partition\.txt \(first: \['000001"
    with pytest.raises(DataError, match=expected):
        CelebA().index(tmp_path / "celeba")


def test_celeba_image_id_escaping_the_root_is_rejected(tmp_path):
    build_celeba(tmp_path / "celeba", "csv")
    edit_lines(
        tmp_path / "celeba" / "list_attr_celeba.csv",
        lambda ls: [ls[0], ls[1].replace("000001.jpg", "../000001.jpg"), *ls[2:]],
    )
    with pytest.raises(
        DataError, match=r"list_attr_celeba\.csv, line 2: image_id '\.\./000001\.jpg' is not a relative path"
    ):
        CelebA().index(tmp_path / "celeba")
