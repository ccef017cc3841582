"""Data read right or refused (issue 16): high-bit-depth images, damaged caches, symbolic links, UTKFace names,
label files that are not UTF-8 or not files, and empty splits.  Every image is generated."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from fixtures_layouts import build_fairface, build_pool_folder, build_utkface, write_image
from PIL import Image

from fairfacebench.data import DataError
from fairfacebench.datasets import cache
from fairfacebench.datasets.fairface import FairFace
from fairfacebench.datasets.pools import FolderPool
from fairfacebench.datasets.utkface import UTKFace, parse_name

GRADIENT = np.add.outer(np.arange(32), np.arange(32)) / 62  # 0..1, a smooth ramp


def decode_via_cache(path, tmp_path, **kwargs):
    return cache.build_or_load("t", [path], 16, tmp_path / "cache", workers=1, progress=False, **kwargs)


def eight_bit(tmp_path, grey_uint8):
    """The same picture saved as an 8-bit grey PNG, decoded: what a correct high-bit-depth decode must give."""
    path = tmp_path / "eight-bit.png"
    Image.fromarray(grey_uint8, "L").save(path)
    return cache.decode_image(path, 16)


# --- high bit depth ----------------------------------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    values = (GRADIENT * 65535).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    decoded = cache.decode_image(tmp_path / "deep.png", 16)
    np.testing.assert_array_equal(decoded, eight_bit(tmp_path, np.rint(values / 257).astype(np.uint8)))
    assert decoded.min() < 10 and decoded.max() > 245


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_a_float_tiff_is_read_by_its_range_not_as_black(tmp_path, scale):
    Image.fromarray((GRADIENT * scale).astype(np.float32)).save(tmp_path / "float.tiff")
    decoded = cache.decode_image(tmp_path / "float.tiff", 16)
    expected = np.rint((GRADIENT * scale).astype(np.float32).astype(np.float64) * (255 / scale)).astype(np.uint8)
    np.testing.assert_array_equal(decoded, eight_bit(tmp_path, expected))


def test_a_32_bit_integer_tiff_in_16_bit_range_is_scaled(tmp_path):
    values = (GRADIENT * 65535).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "int.tiff")
    expected = np.rint(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(cache.decode_image(tmp_path / "int.tiff", 16), eight_bit(tmp_path, expected))


def test_a_float_image_outside_any_known_range_is_skipped_with_its_name_or_fatal_when_strict(tmp_path):
    path = tmp_path / "hdr.tiff"
    Image.fromarray((GRADIENT * 4000 - 7).astype(np.float32)).save(path)
    built = decode_via_cache(path, tmp_path)
    (skip,) = built.manifest["skipped"]
    assert skip["file"] == str(path) and skip["kind"] == "unsupported" and "values in [-7, 3993]" in skip["reason"]
    with pytest.raises(DataError, match=r"hdr\.tiff: F image with pixel values in \[-7, 3993\]"):
        decode_via_cache(path, tmp_path / "strict", strict=True)


# --- damaged caches ------------------------------------------------------------------------------------------------


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "truncated manifest": lambda folder: _truncate(folder / cache.MANIFEST),
    "empty manifest": lambda folder: (folder / cache.MANIFEST).write_text(""),
    "manifest of null": lambda folder: (folder / cache.MANIFEST).write_text("null"),
    "truncated image array": lambda folder: _truncate(folder / cache.IMAGES),
    "image array of another shape": lambda folder: np.save(folder / cache.IMAGES, np.zeros((1, 4, 4, 3), np.uint8)),
    "manifest counting other images": lambda folder: (folder / cache.MANIFEST).write_text(
        json.dumps({**json.loads((folder / cache.MANIFEST).read_text()), "counts": {"items": 9, "images": 9}})
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_complete_cache_is_named_and_rebuilt(tmp_path, damage, caplog):
    items = [write_image(tmp_path / "src" / f"{i}.png", i) for i in range(5)]
    first = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    pixels = np.array(first.images)
    DAMAGES[damage](first.path)
    with caplog.at_level(logging.WARNING):
        again = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    assert f"cache {first.path} is damaged (" in caplog.text and "rebuilding" in caplog.text
    assert again.manifest["build"]["id"] != first.manifest["build"]["id"]
    np.testing.assert_array_equal(again.images, pixels)


# --- symbolic links -------------------------------------------------------------------------------------------------


@pytest.fixture()
def fairface(tmp_path):
    build_fairface(tmp_path / "ff")
    write_image(tmp_path / "outside" / "secret.jpg", 99, fmt="JPEG")
    return tmp_path / "ff"


@pytest.mark.parametrize("link", ["absolute", "relative", "linked train folder"])
def test_a_symlink_out_of_the_fairface_root_is_refused_with_its_path(fairface, tmp_path, link):
    outside = tmp_path / "outside"
    if link == "linked train folder":
        for image in (fairface / "train").iterdir():
            image.rename(outside / image.name)
        (fairface / "train").rmdir()
        (fairface / "train").symlink_to(outside)
        named = fairface / "train" / "1.jpg"
    else:
        named = fairface / "train" / "3.jpg"
        named.unlink()
        named.symlink_to(outside / "secret.jpg" if link == "absolute" else "../../outside/secret.jpg")
    pattern = f"{named}: a symbolic link leads outside the data root {fairface}"
    for read in (FairFace().fingerprint, lambda root: FairFace().load(root, 8, tmp_path / "c")):
        with pytest.raises(DataError, match=pattern.replace(".", r"\.")):
            read(fairface)
    report = FairFace().check(fairface)
    assert not report["ok"] and report["problems"][0].startswith(pattern)


def test_a_symlink_inside_the_root_is_read_and_a_dangling_one_is_skipped_as_missing(fairface, tmp_path):
    (fairface / "train" / "3.jpg").unlink()
    (fairface / "train" / "3.jpg").symlink_to("2.jpg")  # inside the root: fine
    (fairface / "train" / "5.jpg").unlink()
    (fairface / "train" / "5.jpg").symlink_to("no-such.jpg")
    ds = FairFace().load(fairface, 8, tmp_path / "c", workers=1, progress=False)
    assert ds.info["missing_images"] == [{"file": "train/5.jpg", "line": 6, "source": "fairface_label_train.csv"}]
    assert "train/3.jpg" in [*ds.splits["train"].ids, *ds.splits["val"].ids]


def test_utkface_refuses_a_link_out_of_its_folder_and_lists_a_dangling_one(tmp_path):
    names = build_utkface(tmp_path / "utk")
    write_image(tmp_path / "secret.jpg", 5, fmt="JPEG")
    (tmp_path / "utk" / names[0]).unlink()
    (tmp_path / "utk" / names[0]).symlink_to("../secret.jpg")
    with pytest.raises(DataError, match=f"{names[0]}: a symbolic link leads outside the data root"):
        UTKFace().fingerprint(tmp_path / "utk")
    (tmp_path / "utk" / names[0]).unlink()
    (tmp_path / "utk" / names[0]).symlink_to("gone.jpg")
    ds = UTKFace().load(tmp_path / "utk", 8, tmp_path / "c", workers=1, progress=False)
    skipped = {os.path.basename(s["file"]): s["kind"] for s in ds.info["cache"]["skipped_files"]}
    assert skipped == {names[0]: "missing"}


def test_a_pool_folder_refuses_links_out_of_it_and_skips_dangling_ones(tmp_path):
    build_pool_folder(tmp_path / "pool")
    write_image(tmp_path / "outside" / "x.jpg", 1, fmt="JPEG")
    (tmp_path / "pool" / "gone.jpg").symlink_to("nowhere.jpg")
    pool = FolderPool().load(tmp_path / "pool", 12, tmp_path / "c", workers=1, progress=False)
    assert {s["file"]: s["kind"] for s in pool.report["skipped"]}["gone.jpg"] == "missing"
    assert pool.report["missing"] == 1
    (tmp_path / "pool" / "sub" / "linked").symlink_to(tmp_path / "outside")
    with pytest.raises(DataError, match=r"pool/sub/linked is a symbolic link leading outside it"):
        FolderPool().load(tmp_path / "pool", 12, tmp_path / "c", workers=1, progress=False)


# --- UTKFace names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "25_0_1_20170116174525125.jpg.chip.jpg\n",  # a trailing newline
        "\u0662\u0665_0_1_20170116174525125.jpg.chip.jpg",  # Arabic-Indic digits for the age
        "25_0_1_2017011617452512\uff15.jpg.chip.jpg",  # a full-width digit in the date
    ],
)
def test_utkface_names_with_non_ascii_digits_or_a_trailing_newline_are_irregular(name):
    assert isinstance(parse_name(name), str)  # a reason to skip it, never labels
    assert parse_name("25_0_1_20170116174525125.jpg.chip.jpg") == (25, 0, 1)


# --- label files ----------------------------------------------------------------------------------------------------


def test_a_label_csv_that_is_not_utf8_names_the_file_line_and_byte(fairface):
    path = fairface / "fairface_label_train.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace("train/4.jpg", "train/caf\u00e9.jpg")
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(
        DataError, match=r"fairface_label_train\.csv, line 5 \(byte 0xe9 at offset \d+\): not UTF-8 text; save"
    ):
        FairFace().index(fairface)


def test_a_label_csv_path_that_is_a_folder_is_named(fairface):
    (fairface / "fairface_label_val.csv").unlink()
    (fairface / "fairface_label_val.csv").mkdir()
    with pytest.raises(DataError, match=r"fairface_label_val\.csv is a folder, not a CSV file"):
        FairFace().index(fairface)


def test_data_check_reports_an_empty_split_as_a_problem(fairface):
    path = fairface / "fairface_label_val.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")  # the official test split, header only
    report = FairFace().check(fairface)
    assert report["ok"] is False and "split 'test' has no images" in report["problems"]
