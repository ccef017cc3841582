"""Unlabeled image pools for self-supervised methods, as plugins.

- ``folder``: every file under a folder, recursively, whatever its name;
  anything PIL decodes is kept (jpg, jpeg, png, bmp, webp, gif first frame,
  ...).  Exact duplicates (identical bytes) keep their first copy in path
  order; duplicates, non-image files and corrupt images are counted and listed
  in ``pool.report``, never fatal; links leading out of the folder are refused.
- ``dataset-train``: the training split of a dataset plugin with its labels
  withheld from the method (kept in ``pool.hidden`` for harness reports only).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fairfacebench.data import DataError, UnlabeledPool
from fairfacebench.datasets.base import DatasetPlugin, folder_fingerprint
from fairfacebench.datasets.cache import CachedImages, build_or_load
from fairfacebench.hookspecs import hookimpl

logger = logging.getLogger(__name__)


class PoolPlugin:
    """An unlabeled pool source: `resolve` names it for a run spec, `load(source, size, cache_dir, ...)` reads it."""

    name: str = ""
    description: str = ""

    def resolve(self, source: str, data_roots: dict[str, str], reg: Any) -> dict[str, Any]:
        """The pool as a run spec names it: 'kind', 'source', optionally 'root' (a path, never part of a run id)
        and 'fingerprint' (what it holds, so the run id follows its contents)."""
        return {"kind": self.name, "source": source}

    def load(self, source: Any, size: int, cache_dir: Path, **options: Any) -> UnlabeledPool:
        raise NotImplementedError


class FolderPool(PoolPlugin):
    name = "folder"
    description = "every image under a folder (recursive, any names); duplicates and non-images reported, not fatal"

    def resolve(self, source: str, data_roots: dict[str, str], reg: Any) -> dict[str, Any]:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"pool folder {folder} is not a directory: pass --pool folder:DIR, the folder of pool images"
            )
        fingerprint = folder_fingerprint(folder)
        return {"kind": self.name, "source": folder.name, "root": str(folder), "fingerprint": fingerprint}

    def check(self, root: str | Path) -> None:
        """Before any run (preflight): the folder holds at least one image PIL can open, or a clear error."""
        files = list_files(Path(root))
        for f in files:
            try:
                with Image.open(Path(root) / f) as image:
                    image.verify()
                return
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
        raise DataError(
            f"pool folder {root} holds no image among its {len(files)} file(s) (first: {files[:5]}); "
            "point --pool folder:DIR at a folder of pool images"
        )

    def load(
        self, source: str | Path, size: int, cache_dir: Path, *, workers: int | None = None, progress: bool = True
    ) -> UnlabeledPool:
        root = Path(source).expanduser()
        if not root.is_dir():
            raise DataError(f"pool folder {root} is not a directory: pass the folder that holds the pool's images")
        files = list_files(root)
        unique, duplicate_of = drop_duplicates(root, files)
        paths = [root / f for f in unique]
        cached = build_or_load(f"folder-{root.name}", paths, size, cache_dir, workers=workers, progress=progress)
        report = _folder_report(root, files, duplicate_of, cached)
        logger.info("pool folder %s: %s", root, report["summary"])
        if not len(cached.images):
            raise DataError(
                f"pool folder {root} holds no decodable image among its {len(files)} file(s) "
                f"(first skipped: {report['skipped'][:5]}); point the pool at a folder of images"
            )
        ids = np.array(unique, dtype=object)[cached.kept_index]
        return UnlabeledPool(name=f"folder:{root.name}", images=cached.images, ids=ids, report=report)


class DatasetTrainPool(PoolPlugin):
    name = "dataset-train"
    description = "the training images of a dataset plugin, labels withheld from methods"

    def resolve(self, source: str, data_roots: dict[str, str], reg: Any) -> dict[str, Any]:
        plugin = reg.dataset(source)  # an unknown dataset name fails here, listing the installed ones
        root = data_roots.get(source)
        return {
            "kind": self.name,
            "source": source,
            **({"root": root} if root else {}),
            "fingerprint": plugin.fingerprint(Path(root) if root else None),
        }

    def load(
        self, source: DatasetPlugin, size: int, cache_dir: Path, *, root: Path | None = None, **options: Any
    ) -> UnlabeledPool:
        """`source` is a dataset plugin (the harness looks it up by name); `root` and `options` go to its `load`."""
        ds = source.load(root, size, cache_dir, **options)
        train = ds.splits["train"]
        report = {"source": ds.name, "split": "train", "images": len(train), "labels": "withheld (kept in hidden)"}
        return UnlabeledPool(
            name=f"{ds.name}-train", images=train.images, ids=train.ids, hidden=dict(train.labels), report=report
        )


def list_files(root: Path) -> list[str]:
    """Every file under root (and dangling link, which the cache skips as missing), as sorted relative POSIX paths.

    A symbolic link leading outside root, to a file or a folder, is refused with its path; a linked folder inside
    root is not walked twice.
    """
    real_root = os.path.realpath(root)
    found = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder).relative_to(root)
        for name in [*dirs, *names]:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
                raise DataError(
                    f"pool folder {root}: {path} is a symbolic link leading outside it (to {os.path.realpath(path)}); "
                    "copy the images into the pool folder or remove the link"
                )
        found += [
            (base / n).as_posix() for n in names if os.path.isfile(os.path.join(folder, n)) or _dangling(folder, n)
        ]
    return sorted(found)


def _dangling(folder: str, name: str) -> bool:
    path = os.path.join(folder, name)
    return os.path.islink(path) and not os.path.exists(path)


def drop_duplicates(root: Path, files: list[str]) -> tuple[list[str], dict[str, str]]:
    """Files without exact byte duplicates earlier in the list, and duplicate -> first copy.

    Only files sharing a non-zero size are hashed; empty files are left to be reported as non-images.
    """
    by_size: dict[int, list[str]] = defaultdict(list)
    for f in files:
        if (root / f).exists():  # a dangling link is left to the cache, which lists it as missing
            by_size[(root / f).stat().st_size].append(f)
    first_copy: dict[str, str] = {}
    duplicate_of: dict[str, str] = {}
    for size, group in by_size.items():
        if size == 0 or len(group) < 2:
            continue
        for f in group:
            original = first_copy.setdefault(_sha256(root / f), f)
            if original != f:
                duplicate_of[f] = original
    return [f for f in files if f not in duplicate_of], duplicate_of


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_report(root: Path, files: list[str], duplicate_of: dict[str, str], cached: CachedImages) -> dict[str, Any]:
    skipped = [{**s, "file": Path(s["file"]).relative_to(root).as_posix()} for s in cached.manifest["skipped"]]
    kinds = Counter(s["kind"] for s in skipped)
    dropped = {
        "exact duplicate(s) of another file (identical bytes; the first in path order is kept)": len(duplicate_of),
        "not image(s)": kinds["not_image"],
        "corrupt image(s)": kinds["corrupt"],
        "dangling link(s)": kinds["missing"],
        "unsupported image(s)": kinds["unsupported"],
    }
    why = "; ".join(f"{n:,} {what}" for what, n in dropped.items() if n)
    return {
        "summary": f"{len(files):,} files, {len(cached.images):,} images read" + (f": dropped {why}" if why else ""),
        "source": str(root),
        "files": len(files),
        "images": len(cached.images),
        "duplicates": len(duplicate_of),
        "duplicate_of": duplicate_of,
        "non_image": kinds["not_image"],
        "corrupt": kinds["corrupt"],
        "missing": kinds["missing"],  # dangling links
        "unsupported": kinds["unsupported"],
        "skipped": skipped,
        "cache": str(cached.path),
    }


@hookimpl
def fairfacebench_pools():
    return [FolderPool(), DatasetTrainPool()]
