"""The decoded-image cache: keys, reuse, resizing, skips, concurrency and interrupted builds."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_layouts import truncate, write_image
from PIL import Image

from fairfacebench.data import DataError
from fairfacebench.datasets import cache

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture()
def items(tmp_path: Path) -> list[Path]:
    sizes = [(24, 24), (40, 30), (30, 50), (64, 64)]
    return [write_image(tmp_path / "src" / f"{i:02d}.jpg", i, size=sizes[i % 4], fmt="JPEG") for i in range(12)]


def complete_caches(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if p.is_dir() and (p / cache.MANIFEST).is_file()]


def test_build_matches_direct_decode_and_is_read_only(items, tmp_path):
    built = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    assert built.images.shape == (12, 16, 16, 3) and built.images.dtype == np.uint8
    assert not built.images.flags.writeable
    assert isinstance(built.images, np.memmap)
    np.testing.assert_array_equal(built.images[5], cache.decode_image(items[5], 16))
    assert built.manifest["counts"] == {"items": 12, "images": 12, "skipped": 0}
    assert built.kept_index.tolist() == list(range(12))


def test_resize_keeps_the_centre(tmp_path):
    stripes = np.zeros((20, 60, 3), dtype=np.uint8)
    stripes[:, :20, 0] = stripes[:, 20:40, 1] = stripes[:, 40:, 2] = 255  # red | green | blue
    path = tmp_path / "wide.png"
    Image.fromarray(stripes).save(path)
    out = cache.decode_image(path, 10).astype(int)
    assert (out[..., 1] > 240).all() and (out[..., 0] < 15).all() and (out[..., 2] < 15).all()


def test_second_call_reuses_without_decoding(items, tmp_path, monkeypatch):
    first = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    monkeypatch.setattr(cache, "_decode_batch", lambda *a: pytest.fail("a complete cache was decoded again"))
    again = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    assert again.manifest["build"]["id"] == first.manifest["build"]["id"]


def test_changed_source_or_size_builds_a_new_cache(items, tmp_path):
    first = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    other_size = cache.build_or_load("toy", items, 8, tmp_path / "c", workers=1, progress=False)
    write_image(items[3], 99, size=(24, 24), fmt="JPEG")
    os.utime(items[3], ns=(1, 1))
    edited = cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    assert len({first.path, other_size.path, edited.path}) == 3
    assert other_size.images.shape[1:] == (8, 8, 3)
    assert not np.array_equal(edited.images[3], first.images[3])


def test_process_pool_gives_the_same_pixels(items, tmp_path):
    serial = cache.build_or_load("toy", items, 16, tmp_path / "one", workers=1, progress=False)
    pooled = cache.build_or_load("toy", items, 16, tmp_path / "two", workers=2, progress=False)
    np.testing.assert_array_equal(serial.images, pooled.images)
    assert pooled.manifest["build"]["workers"] == 2


def test_corrupt_and_missing_files_are_skipped_and_recorded(items, tmp_path):
    truncate(items[2])
    (items[7].parent / "gone.jpg").unlink(missing_ok=True)
    listed = [*items, items[7].parent / "gone.jpg"]
    built = cache.build_or_load("toy", listed, 16, tmp_path / "c", workers=1, progress=False)
    assert built.manifest["counts"] == {"items": 13, "images": 11, "skipped": 2}
    reasons = {Path(s["file"]).name: (s["kind"], s["reason"]) for s in built.manifest["skipped"]}
    assert reasons["02.jpg"][0] == "corrupt" and "truncated" in reasons["02.jpg"][1].lower()
    assert reasons["gone.jpg"] == ("missing", "file not found")
    assert 2 not in built.kept_index and 12 not in built.kept_index
    np.testing.assert_array_equal(built.images[2], cache.decode_image(items[3], 16))


def test_strict_makes_a_corrupt_file_fatal_and_names_it(items, tmp_path):
    truncate(items[4])
    with pytest.raises(DataError, match=r"(?is)04\.jpg.*truncated.*without strict"):
        cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, strict=True, progress=False)
    assert complete_caches(tmp_path / "c") == []


def test_exception_mid_build_leaves_no_complete_cache(items, tmp_path, monkeypatch):
    calls = []

    def failing(paths, size):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [cache._decode_or_reason(p, size) for p in paths]

    monkeypatch.setattr(cache, "MAX_BATCH", 4)
    monkeypatch.setattr(cache, "_decode_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False)
    assert complete_caches(tmp_path / "c") == []
    assert not list((tmp_path / "c").glob(".*tmp*"))
    monkeypatch.undo()
    assert len(cache.build_or_load("toy", items, 16, tmp_path / "c", workers=1, progress=False).images) == 12


def _slow_build(items: list[Path], cache_dir: Path) -> None:
    real = cache._decode_batch
    cache._decode_batch = lambda paths, size: (time.sleep(0.05 * len(paths)), real(paths, size))[1]
    cache.MAX_BATCH = 1
    cache.build_or_load("toy", items, 16, cache_dir, workers=1, progress=False)


def test_killed_build_never_looks_complete(items, tmp_path):
    cache_dir = tmp_path / "c"
    child = SPAWN.Process(target=_slow_build, args=(items, cache_dir))
    child.start()
    deadline = time.monotonic() + 30
    while not list(cache_dir.glob(".*tmp*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert list(cache_dir.glob(".*tmp*")), "the killed build should have left its temp dir behind"
    assert complete_caches(cache_dir) == []
    rebuilt = cache.build_or_load("toy", items, 16, cache_dir, workers=1, progress=False)
    assert rebuilt.manifest["counts"]["images"] == 12
    assert not list(cache_dir.glob(".*tmp*"))


def _build_and_report(items: list[Path], cache_dir: Path, start, results) -> None:
    start.wait()
    built = cache.build_or_load("toy", items, 16, cache_dir, workers=1, progress=False)
    results.put((built.manifest["build"]["id"], built.images.sum(dtype=np.int64).item()))


def test_two_processes_building_the_same_cache_share_one_build(items, tmp_path):
    start, results = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [SPAWN.Process(target=_build_and_report, args=(items, tmp_path / "c", start, results)) for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join()
    assert outcomes[0] == outcomes[1]
    assert len(complete_caches(tmp_path / "c")) == 1
    expected = np.stack([cache.decode_image(p, 16) for p in items]).sum(dtype=np.int64).item()
    assert outcomes[0][1] == expected


def test_a_waiting_process_reuses_the_cache_once_the_lock_is_released(items, tmp_path):
    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    key = cache.cache_key("toy", 16, cache.source_fingerprint([str(p) for p in items]))
    start, results = SPAWN.Barrier(1), SPAWN.Queue()
    with open(cache_dir / f"{key}.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = SPAWN.Process(target=_build_and_report, args=(items, cache_dir, start, results))
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and complete_caches(cache_dir) == []
        fcntl.flock(held, fcntl.LOCK_UN)
    build_id, _ = results.get(timeout=60)
    waiter.join()
    assert cache.build_or_load("toy", items, 16, cache_dir, progress=False).manifest["build"]["id"] == build_id
