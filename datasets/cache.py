"""The decoded-image cache: decode and resize every image once into a uint8 `.npy` memmap.

One cache per (dataset, resolution, source fingerprint), built by streaming
under a lock into a temporary folder renamed only when complete; layout and
guarantees: docs/DATASETS.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fairfacebench.data import DataError
from fairfacebench.datasets.near_duplicates import BITS, HASH_VERSION, THUMBNAIL, grey_thumbnail, phash
from fairfacebench.progress import progress_bar

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump whenever decoding or resizing changes: it is part of every cache key (2: 16-bit, float)
MANIFEST = "manifest.json"
IMAGES = "images.npy"
HASHES = "hashes.npy"
HASH_FOLDER = "near-duplicates"
MAX_BATCH = 64

# What one decode attempt yields: (pixels, None, None) or (None, kind, reason).
Decoded = tuple[np.ndarray | None, str | None, str | None]


class UnsupportedImage(ValueError):
    """An image whose pixel values cannot be mapped to 8 bits without guessing (e.g. float values outside [0, 255])."""


class DamagedCache(Exception):
    """A cache folder that looks complete but cannot be read back: it is rebuilt."""


@dataclass
class CachedImages:
    """A complete cache: read-only memmap rows, which items they are, and the manifest."""

    images: np.ndarray  # read-only memmap (K, size, size, 3) uint8
    kept_index: np.ndarray  # int64 (K,): position in `items` of each row
    manifest: dict[str, Any]
    path: Path


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image (first frame) to RGB and centre-crop-resize it to size x size.

    `ImageOps.fit` crops the largest centred square and resizes it with Lanczos
    (antialiased), so faces keep their aspect ratio.  JPEG draft mode lets libjpeg
    decode at 1/2..1/8 scale when the image stays at least `size` on each side.
    """
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        rgb = to_rgb(ImageOps.exif_transpose(img))
        return np.asarray(ImageOps.fit(rgb, (size, size), method=Image.Resampling.LANCZOS), dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of any mode.  PIL's convert clips 16/32-bit grey to 255 and float grey to 0/1, so those are scaled
    here: 16-bit (and 32-bit within 0..65535) by 1/257, float by its range ([0, 1] or [0, 255]); others refused."""
    if not img.mode.startswith(("I", "F")):
        return img.convert("RGB")
    grey = np.asarray(img, dtype=np.float64)
    if not np.isfinite(grey).all():
        raise UnsupportedImage(f"{img.mode} image holds NaN or infinite pixel values")
    low, high = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
    if img.mode.startswith("I") and low >= 0 and high <= 65535:
        grey = grey / 257
    elif img.mode == "F" and low >= 0 and high <= 1:
        grey = grey * 255
    elif not (img.mode == "F" and low >= 0 and high <= 255):
        raise UnsupportedImage(
            f"{img.mode} image with pixel values in [{low:g}, {high:g}]: expected 0..65535 (integer) or [0, 1] or "
            "[0, 255] (float); convert it to 8-bit RGB"
        )
    return Image.fromarray(np.rint(grey).clip(0, 255).astype(np.uint8), "L").convert("RGB")


def _decode_or_reason(path: str, size: int) -> Decoded:
    return _read_or_reason(lambda: decode_image(path, size))


def _read_or_reason(read: Any) -> tuple[Any, str | None, str | None]:
    """(read(), None, None), or (None, kind, reason) for a file that cannot be read as an image."""
    try:
        return read(), None, None
    except FileNotFoundError:
        return None, "missing", "file not found"
    except UnidentifiedImageError:
        return None, "not_image", "not a recognised image format"
    except UnsupportedImage as err:
        return None, "unsupported", str(err)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        return None, "corrupt", f"cannot decode ({type(err).__name__}: {err})"


def _decode_batch(paths: list[str], size: int) -> list[Decoded]:
    return [_decode_or_reason(p, size) for p in paths]


def source_fingerprint(items: Sequence[str | Path], version: str = f"fairfacebench-cache-v{CACHE_VERSION}") -> str:
    """sha256 over the cache version and the ordered (path, size, mtime) of every item."""
    digest = hashlib.sha256(f"{version}\n".encode())
    for item in items:
        try:
            st = os.stat(item)
            digest.update(f"{item}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            digest.update(f"{item}\tmissing\n".encode())
    return digest.hexdigest()


def cache_key(name: str, size: int, fingerprint: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "dataset"
    return f"{slug}-{size}px-{fingerprint[:16]}"


def build_or_load(
    name: str,
    items: Sequence[str | Path],
    size: int,
    cache_dir: str | Path,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
) -> CachedImages:
    """Return the cache of `items` at `size` px, building it first if needed.

    Undecodable or missing files are skipped and listed in the manifest with a
    reason; with `strict=True` the first one aborts the build with a DataError
    naming the file.  `workers` decoding processes (default: available cores;
    1 decodes in this process).
    """
    if size < 1:
        raise DataError(f"cache '{name}': image size must be a positive number of pixels, got {size}")
    items = [str(p) for p in items]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = source_fingerprint(items)
    key = cache_key(name, size, fingerprint)
    final = cache_dir / key
    cached = _open_if_complete(final)
    if cached is not None:
        return cached
    with _exclusive_lock(cache_dir / f"{key}.lock", key):
        cached = _open_if_complete(final, warn=False)
        if cached is not None:
            logger.info("cache %s was built by another process; reusing it", key)
            return cached
        _remove_leftovers(cache_dir, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
        try:
            meta = {"name": name, "size": size, "key": key, "fingerprint": fingerprint}
            _build(tmp, items, meta, workers or available_cores(), strict, progress)
            os.rename(tmp, final)
            _fsync_dir(cache_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _open(final)


@contextmanager
def _exclusive_lock(lock_path: Path, key: str) -> Iterator[None]:
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another process is building cache %s; waiting for it (lock %s)", key, lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_complete(final: Path) -> bool:
    return (final / MANIFEST).is_file() and (final / IMAGES).is_file()


def _remove_leftovers(cache_dir: Path, key: str) -> None:
    """Delete what killed builds of this key left behind (we hold its lock, so none is running)."""
    for stale in [*cache_dir.glob(f".{key}.tmp-*"), cache_dir / key]:
        if stale.exists():
            logger.info("removing incomplete cache build %s", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _build(tmp: Path, items: list[str], meta: dict[str, Any], workers: int, strict: bool, progress: bool) -> None:
    started = time.perf_counter()
    size = meta["size"]
    skipped: list[dict[str, Any]] = []
    with open(tmp / IMAGES, "wb") as out:
        _write_header(out, 0, size)
        header_end = out.tell()
        bar = progress_bar(len(items), f"caching {meta['name']} at {size}px", "img", enabled=progress)
        with bar, closing(_decoded(items, size, workers)) as results:
            for index, (pixels, kind, reason) in enumerate(results):
                if pixels is None:
                    skipped.append(_skip(items[index], index, kind, reason, strict))
                else:
                    out.write(pixels.tobytes())
                bar.update()
        kept = len(items) - len(skipped)
        out.seek(0)
        _write_header(out, kept, size)
        if out.tell() != header_end:
            raise RuntimeError(f"the .npy header changed length while finalising cache {meta['key']}")
        out.flush()
        os.fsync(out.fileno())
    manifest = {
        **meta,
        "complete": True,
        "cache_version": CACHE_VERSION,
        "counts": {"items": len(items), "images": kept, "skipped": len(skipped)},
        "skipped": skipped,
        "build": {
            "id": uuid.uuid4().hex,
            "pid": os.getpid(),
            "workers": workers,
            "seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    _write_json(tmp / MANIFEST, manifest)
    _log_skipped(meta["name"], skipped)


def _skip(file: str, index: int, kind: str | None, reason: str | None, strict: bool) -> dict[str, Any]:
    if strict:
        raise DataError(
            f"image {file}: {reason}. Replace or remove the file, or load without strict to skip "
            "such files (each skipped file is listed with its reason in the cache manifest)"
        )
    return {"index": index, "file": file, "kind": kind, "reason": reason}


def _log_skipped(name: str, skipped: list[dict[str, Any]]) -> None:
    if skipped:
        shown = ", ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        logger.warning("cache %s: skipped %d file(s) that could not be decoded: %s%s", name, len(skipped), shown, more)


def _write_header(out: Any, rows: int, size: int) -> None:
    # numpy pads the header so that a later change of rows (axis 0) keeps its length
    np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": (rows, size, size, 3)})


def _decoded(items: list[str], size: int, workers: int) -> Iterator[Decoded]:
    """Decoded items in order; at most 2 batches per worker in flight, so memory stays bounded."""
    batch = max(1, min(MAX_BATCH, len(items) // (4 * workers) or 1))
    batches = (items[i : i + batch] for i in range(0, len(items), batch))
    if workers <= 1:
        for paths in batches:
            yield from _decode_batch(paths, size)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    try:
        pending = deque(pool.submit(_decode_batch, paths, size) for _, paths in zip(range(2 * workers), batches))
        while pending:
            done = pending.popleft().result()
            following = next(batches, None)
            if following is not None:
                pending.append(pool.submit(_decode_batch, following, size))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_if_complete(final: Path, warn: bool = True) -> CachedImages | None:
    """The complete cache in `final`; None when there is none or it is damaged (named in a warning, to rebuild)."""
    if not _is_complete(final):
        return None
    try:
        return _open(final)
    except DamagedCache as exc:
        logger.log(logging.WARNING if warn else logging.INFO, "cache %s is damaged (%s), rebuilding", final, exc)
        return None


def _open(final: Path) -> CachedImages:
    try:
        manifest = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
        images = np.load(final / IMAGES, mmap_mode="r")
        size, counts = manifest["size"], manifest["counts"]
        skipped = np.array([s["index"] for s in manifest["skipped"]], dtype=np.int64)
        kept = np.setdiff1d(np.arange(counts["items"], dtype=np.int64), skipped)
        expected = (counts["images"], size, size, 3)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise DamagedCache(f"{type(exc).__name__}: {exc}") from None
    if images.shape != expected or images.dtype != np.uint8 or len(kept) != counts["images"]:
        raise DamagedCache(f"images.npy has shape {images.shape} {images.dtype}, the manifest says {expected} uint8")
    return CachedImages(images=images, kept_index=kept, manifest=manifest, path=final)


# ---------------------------------------------------------------- the perceptual-hash cache of near-duplicate search


@dataclass
class CachedHashes:
    """The perceptual hash of every item, and which items could be read."""

    hashes: np.ndarray  # uint8 (N, BITS / 8) packed bits, aligned with the items; 0 where an item was not read
    hashed: np.ndarray  # bool (N,): False for the items listed as skipped in the manifest
    manifest: dict[str, Any]
    path: Path


def default_cache_dir() -> Path:
    """$FAIRBENCH_CACHE or ~/.cache/fairbench, as the harness's: for loaders asked for splits without a cache folder."""
    return Path(os.environ.get("FAIRBENCH_CACHE", Path.home() / ".cache" / "fairbench"))


def image_hashes(name: str, items: Sequence[str | Path], cache_dir: str | Path, progress: bool = True) -> CachedHashes:
    """The DCT hash (`near_duplicates.phash`) of every item, computed once and cached.

    One cache per (dataset name, source fingerprint, hash version) under
    `cache_dir/near-duplicates/`, built under a lock into a temporary folder
    renamed when complete, like the image cache.  An item that cannot be read
    is listed in the manifest with its reason and left unhashed, never fatal
    here: the image cache decides what a load does with it.
    """
    items = [str(p) for p in items]
    folder = Path(cache_dir) / HASH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = source_fingerprint(items, f"fairfacebench-phash-v{HASH_VERSION}")
    key = cache_key(name, THUMBNAIL, fingerprint)
    final = folder / key
    cached = _open_hashes(final)
    if cached is not None:
        return cached
    with _exclusive_lock(folder / f"{key}.lock", key):
        cached = _open_hashes(final, warn=False)
        if cached is not None:
            return cached
        _remove_leftovers(folder, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=folder))
        try:
            _hash_into(tmp, items, {"name": name, "key": key, "fingerprint": fingerprint}, progress)
            os.rename(tmp, final)
            _fsync_dir(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    opened = _open_hashes(final)
    if opened is None:
        raise DataError(f"hash cache {final} cannot be read back right after it was written; check the disk")
    return opened


def _hash_into(tmp: Path, items: list[str], meta: dict[str, Any], progress: bool) -> None:
    started = time.perf_counter()
    hashes = np.zeros((len(items), BITS // 8), dtype=np.uint8)
    skipped = []
    with progress_bar(len(items), f"hashing {meta['name']}", "img", enabled=progress) as bar:
        for index, path in enumerate(items):
            value, kind, reason = _read_or_reason(lambda: phash(grey_thumbnail(path)))
            if kind is None:
                hashes[index] = value
            else:
                skipped.append({"index": index, "file": path, "kind": kind, "reason": reason})
            bar.update()
    with open(tmp / HASHES, "wb") as out:
        np.save(out, hashes)
        out.flush()
        os.fsync(out.fileno())
    counts = {"items": len(items), "hashed": len(items) - len(skipped), "skipped": len(skipped)}
    seconds = round(time.perf_counter() - started, 3)
    _write_json(
        tmp / MANIFEST,
        {
            **meta,
            "hash_version": HASH_VERSION,
            "counts": counts,
            "skipped": skipped,
            "build": {"seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        },
    )


def _open_hashes(final: Path, warn: bool = True) -> CachedHashes | None:
    """The complete hash cache in `final`; None when there is none or it is damaged (named in a warning, to rebuild)."""
    if not ((final / MANIFEST).is_file() and (final / HASHES).is_file()):
        return None
    try:
        manifest = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
        hashes = np.load(final / HASHES)
        n = manifest["counts"]["items"]
        skipped = np.array([s["index"] for s in manifest["skipped"]], dtype=np.int64)
        if hashes.shape != (n, BITS // 8) or hashes.dtype != np.uint8:
            raise ValueError(f"hashes.npy is {hashes.shape} {hashes.dtype}, the manifest says ({n}, {BITS // 8}) uint8")
        hashed = np.ones(n, dtype=bool)
        hashed[skipped] = False
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as exc:
        logger.log(logging.WARNING if warn else logging.INFO, "cache %s is damaged (%s), rebuilding", final, exc)
        return None
    return CachedHashes(hashes=hashes, hashed=hashed, manifest=manifest, path=final)
