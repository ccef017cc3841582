"""Near-duplicates: the hash and Hamming distance by hand, planted copies grouped, groups kept whole by the UTKFace
splits, conflicting groups left out and counted, the hash cache, the check command, and the real folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures_layouts import COPY_KINDS, build_utkface, build_utkface_with_near_duplicates, write_image

from fairfacebench.cli import main
from fairfacebench.data import DataError, make_task_data
from fairfacebench.datasets import cache
from fairfacebench.datasets.cache import default_cache_dir, image_hashes
from fairfacebench.datasets.indexed import cut_units, stratified_split
from fairfacebench.datasets.near_duplicates import (
    DEFAULT_THRESHOLD,
    THUMBNAIL,
    close_pairs,
    components,
    grey_thumbnail,
    groups,
    hamming,
    label_conflicts,
    phash,
)
from fairfacebench.datasets.utkface import UTKFace, UTKFaceControlledBias, controlled_bias_split, parse_folder
from fairfacebench.plan import load_plan

TASKS = [
    (UTKFace(), {}),
    (UTKFaceControlledBias(), {"task": "gender/race"}),
    (UTKFaceControlledBias(), {"task": "gender/age"}),
]


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    """Hash caches of generated folders go to a temporary folder, not the user's cache."""
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def planted(tmp_path, own_cache):
    return tmp_path / "UTKFace", build_utkface_with_near_duplicates(tmp_path / "UTKFace")


def split_of(index) -> dict[str, str]:
    return {file: name for name, table in index.tables.items() for file in table.files}


# ---------------------------------------------------------------- the pure parts, by hand


def test_hamming_counts_the_differing_bits():
    # xor of [1010 0000, 1111 1111] and [0110 0000, 0000 1111] is [1100 0000, 1111 0000]: 2 + 4 = 6 bits
    a = np.array([0b1010_0000, 0xFF], dtype=np.uint8)
    b = np.array([0b0110_0000, 0x0F], dtype=np.uint8)
    assert hamming(a, b) == 6 and hamming(a, a) == 0
    assert hamming(np.stack([a, b]), a).tolist() == [0, 6]  # broadcast over rows


def test_pairs_and_groups_follow_the_threshold():
    # 1-byte hashes 0000 0000, 0000 0011, 0000 1111, 1111 0000: d(0,1) = 2, d(0,2) = 4, d(0,3) = 4, d(1,2) = 2,
    # d(1,3) = 6, d(2,3) = 8
    h = np.array([[0x00], [0x03], [0x0F], [0xF0]], dtype=np.uint8)
    assert close_pairs(h, 1).tolist() == []
    assert close_pairs(h, 2).tolist() == [[0, 1], [1, 2]]
    assert close_pairs(h, 4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2]]
    assert close_pairs(h, 8).shape == (6, 2)
    # at 2 bits the chain 0 ~ 1 ~ 2 is one group though d(0,2) = 4; row 3 stays alone
    assert groups(h, 2).tolist() == [0, 0, 0, 3]
    assert groups(h, 1).tolist() == [0, 1, 2, 3]
    assert groups(h, 2, hashed=np.array([True, False, True, True])).tolist() == [0, 1, 2, 3]  # no link through 1
    assert components(5, np.array([[3, 4], [1, 3]])).tolist() == [0, 1, 2, 1, 1]


def test_label_conflicts_mark_every_row_of_a_disagreeing_group():
    group = np.array([0, 0, 2, 2, 4])
    # group 0 disagrees on gender (0 vs 1), group 2 agrees on both labels, group 4 is a single row
    conflicting = label_conflicts(group, {"gender": np.array([0, 1, 1, 1, 0]), "race": np.array([3, 3, 2, 2, 1])})
    assert conflicting.tolist() == [True, True, False, False, False]


def test_the_hash_ignores_brightness_shift_and_contrast_scale():
    rng = np.random.default_rng(0)
    grey = rng.uniform(40, 200, (THUMBNAIL, THUMBNAIL))
    base = phash(grey)
    assert base.shape == (32,) and np.unpackbits(base).sum() == 128  # half the bits above the median
    # a constant moves only the DC coefficient, which the hash leaves out; a positive scale keeps the median order
    assert hamming(phash(grey + 25.0), base) == 0
    assert hamming(phash(grey * 1.2), base) == 0
    assert hamming(phash(rng.uniform(40, 200, (THUMBNAIL, THUMBNAIL))), base) > DEFAULT_THRESHOLD
    with pytest.raises(ValueError, match="32x32"):
        phash(np.zeros((8, 8)))


def test_cut_units_never_cuts_a_group():
    # sizes 3,1,1,1 into shares 3 + 3: middles 1.5, 3.5, 4.5, 5.5 against the cut at 3 -> 0, 1, 1, 1
    assert cut_units(np.array([3, 1, 1, 1]), [3, 3]).tolist() == [0, 1, 1, 1]
    # sizes 1,3,1,1: middles 0.5, 2.5, 4.5, 5.5 -> 0, 0, 1, 1: the first share gets 4 rows, off by 1 < 3 / 2
    assert cut_units(np.array([1, 3, 1, 1]), [3, 3]).tolist() == [0, 0, 1, 1]
    # single rows fill the shares exactly, as np.repeat would
    assert cut_units(np.ones(6, dtype=np.int64), [3, 1, 2]).tolist() == [0, 0, 0, 1, 2, 2]


@pytest.mark.parametrize("seed", range(5))
def test_grouped_splits_keep_groups_whole_and_near_their_shares(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    group = np.arange(n)
    for first in rng.choice(n, 300, replace=False):  # 300 groups of 2-4 rows, members anywhere
        group[rng.choice(n, int(rng.integers(1, 4)), replace=False)] = first
    strata = rng.integers(0, 4, (n, 2))
    codes = stratified_split(strata, (0.7, 0.1, 0.2), seed, group)
    assert all(len(set(codes[group == g])) == 1 for g in np.unique(group))
    assert np.abs(np.bincount(codes) / n - [0.7, 0.1, 0.2]).max() < 0.01
    y, a = rng.integers(0, 2, n), rng.integers(0, 2, n)
    cb = controlled_bias_split(y, a, 0.9, seed, group)
    kept = cb >= 0
    assert all(len(set(cb[(group == g) & kept])) <= 1 for g in np.unique(group))
    assert abs((cb >= 1).mean() - 0.2) < 0.01  # val and test: 20% of the rows
    train = cb == 0
    assert ((y == 1) & (a == 0) & train).sum() == round((1.0 - 0.9) * ((y == 0) & (a == 0) & train).sum())  # skew


# ---------------------------------------------------------------- planted copies


def test_planted_copies_are_near_duplicates_and_distinct_faces_are_not(planted):
    root, layout = planted
    files = sorted(os.listdir(root))
    hashes = np.stack([phash(grey_thumbnail(root / f)) for f in files])
    position = {f: i for i, f in enumerate(files)}
    distance = {
        kind: int(hamming(hashes[position[original]], hashes[position[copy]]))
        for kind, (original, copy) in zip(COPY_KINDS, layout["groups"])
    }
    assert distance["identical"] == 0 and max(distance.values()) <= DEFAULT_THRESHOLD, distance
    for members in layout["groups"][4:] + [layout["conflict"]]:
        rows = [position[f] for f in members]
        assert hamming(hashes[rows[0]], hashes[rows[1:]]).max() <= DEFAULT_THRESHOLD, members
    found = groups(hashes, DEFAULT_THRESHOLD)
    expected = {frozenset(g) for g in [*layout["groups"], layout["conflict"]]}
    grouped = {frozenset(f for f in files if found[position[f]] == g) for g in np.unique(found)}
    assert {g for g in grouped if len(g) > 1} == expected  # every planted group, and no two distinct faces
    originals = [position[n] for n in layout["names"]]
    distances = hamming(hashes[originals][:, None], hashes[originals][None])
    assert distances[np.triu_indices(len(originals), 1)].min() > DEFAULT_THRESHOLD


@pytest.mark.parametrize("plugin,task", TASKS, ids=["utkface", "cb-race", "cb-age"])
def test_no_group_straddles_two_splits_and_a_conflicting_group_is_left_out(planted, plugin, task):
    root, layout = planted
    straddled_off = 0
    for seed in range(6):
        index = plugin.index(root, split_seed=seed, near_duplicates=DEFAULT_THRESHOLD, **task)
        where = split_of(index)
        for members in layout["groups"]:
            assert len({where[f] for f in members if f in where}) <= 1, (seed, members)
        assert not set(layout["conflict"]) & set(where)
        near = index.info["near_duplicates"]
        assert (near["groups"], near["images_in_groups"]) == (6, 13)  # 5 pairs and a triple
        assert (near["conflict_groups"], near["removed_for_label_conflicts"]) == (1, 2)
        assert [m["file"] for m in near["conflicts"][0]] == layout["conflict"]
        assert {m["gender"] for m in near["conflicts"][0]} == {"Male", "Female"}
        off = split_of(plugin.index(root, split_seed=seed, near_duplicates="off", **task))
        straddled_off += sum(len({off[f] for f in members if f in off}) > 1 for members in layout["groups"])
    assert straddled_off > 0  # without grouping, planted copies do land in two splits


def test_the_loaded_dataset_records_the_rule_and_counts_every_run_stores(planted, tmp_path):
    root, layout = planted
    ds = UTKFaceControlledBias().load(
        root, 16, tmp_path / "images", task="gender/race", near_duplicates=40, workers=1, progress=False
    )
    info = make_task_data(ds, UTKFaceControlledBias().task("gender/race")).info  # a run's dataset_info
    near = info["near_duplicates"]
    assert near["threshold"] == 40 and "at most 40 bits" in near["rule"]
    assert (near["groups"], near["images_in_groups"], near["removed_for_label_conflicts"]) == (6, 13, 2)
    kept = sum(len(s) for s in ds.splits.values()) + info["dropped_by_skew"]
    assert kept == len(layout["names"]) + 8 - 2  # 60 faces and 8 copies, less the conflicting group of 2


def test_off_is_the_split_from_before_and_grouping_without_duplicates_changes_nothing(tmp_path, own_cache):
    build_utkface(tmp_path / "UTKFace")
    root = tmp_path / "UTKFace"
    for plugin, task in TASKS:
        before = split_of(plugin.index(root, **task))
        assert split_of(plugin.index(root, near_duplicates="off", **task)) == before
        grouped = plugin.index(root, near_duplicates=DEFAULT_THRESHOLD, **task)
        assert split_of(grouped) == before and grouped.info["near_duplicates"]["groups"] == 0
        assert plugin.index(root, **task).info["near_duplicates"] == {"threshold": "off"}


def test_runs_group_by_default_and_the_v1_board_keeps_its_options():
    plugin = UTKFaceControlledBias()
    assert plugin.run_options({"rho": 0.5}) == {"rho": 0.5, "near_duplicates": DEFAULT_THRESHOLD}
    assert plugin.run_options({"near_duplicates": 30}) == {"near_duplicates": 30}
    assert plugin.run_options({"near_duplicates": "off", "split_seed": 1}) == {"split_seed": 1}
    # the board's runs were planned with exactly these options: their run ids hash them
    board = load_plan("utkface-board").dataset_options["utkface-cb"]
    assert plugin.run_options(board) == {"rho": 0.9, "split_seed": 0}
    for bad in (-1, 256, 4.5, True, "on"):
        with pytest.raises(DataError, match="option 'near_duplicates' must be a Hamming threshold"):
            plugin.run_options({"near_duplicates": bad})


def test_hashes_are_computed_once_and_unreadable_files_stay_alone(tmp_path, own_cache, monkeypatch):
    folder = tmp_path / "images"
    items = [write_image(folder / f"{i}.jpg", i, fmt="JPEG") for i in range(3)]
    (folder / "broken.jpg").write_bytes(b"not an image")
    items.append(folder / "broken.jpg")
    first = image_hashes("toy", items, default_cache_dir(), progress=False)
    assert first.hashed.tolist() == [True, True, True, False]
    assert first.manifest["skipped"][0]["kind"] == "not_image" and not first.hashes[3].any()
    monkeypatch.setattr(cache, "grey_thumbnail", lambda path: pytest.fail("cached hashes were computed again"))
    again = image_hashes("toy", items, default_cache_dir(), progress=False)
    assert again.path == first.path and (again.hashes == first.hashes).all()
    assert groups(again.hashes, DEFAULT_THRESHOLD, again.hashed).tolist() == [0, 1, 2, 3]


def test_data_check_lists_the_conflicting_group(planted, capsys):
    root, layout = planted
    assert main(["data", "check", "utkface", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "near-duplicates (hashes within 48 bits): 6 groups of 13 images" in out
    assert "1 groups of 2 images left out for conflicting labels" in out
    line = next(line for line in out.splitlines() if layout["conflict"][0] in line)
    assert layout["conflict"][1] in line and "Male" in line and "Female" in line


# ---------------------------------------------------------------- the real folder


def test_real_folder_no_test_image_has_a_near_duplicate_in_training(utkface_root):
    parsed = parse_folder(utkface_root)
    hashes = image_hashes("utkface", [os.path.join(str(utkface_root), f) for f in parsed.files], default_cache_dir())
    position = {f: i for i, f in enumerate(parsed.files)}
    for plugin, task in TASKS:
        index = plugin.index(utkface_root, near_duplicates=DEFAULT_THRESHOLD, **task)
        rows = {name: [position[f] for f in table.files] for name, table in index.tables.items()}
        for other in ("train", "val"):
            both = np.array(rows["test"] + rows[other])
            pairs = close_pairs(hashes.hashes[both], DEFAULT_THRESHOLD)
            across = (pairs[:, 0] < len(rows["test"])) & (pairs[:, 1] >= len(rows["test"]))
            assert not across.any(), f"{plugin.name} {task}: {int(across.sum())} test images near a {other} image"
    near = UTKFaceControlledBias().index(utkface_root, task="gender/race", near_duplicates=48).info["near_duplicates"]
    assert (near["groups"], near["images_in_groups"], near["conflict_groups"], near["removed_for_label_conflicts"]) == (
        810,
        1689,
        146,
        317,
    )
