"""synthfaces: the embedded default world of procedurally rendered faces (no download, seeded).

Targets `smiling` and `eyeglasses`, sensitive `skin_tone` and `hair_length`;
the training split is imbalanced and correlated and the target cues are
fainter for darker skin (options in `world.DEFAULT_OPTIONS`, the design in
docs/DATASETS.md).  The package also holds the world's embedded mini-CLIP.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fairfacebench.data import LoadedDataset, Split, UnlabeledPool
from fairfacebench.datasets.base import DatasetPlugin
from fairfacebench.datasets.synthfaces.mini_clip import MiniClipPlugin
from fairfacebench.datasets.synthfaces.world import (
    ATTRIBUTES,
    DEFAULT_OPTIONS,
    TASKS,
    VERSION,
    make_pool,
    make_split,
    realised_bias,
    resolve_options,
)
from fairfacebench.hookspecs import hookimpl

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_OPTIONS",
    "TASKS",
    "VERSION",
    "SynthFaces",
    "make_pool",
    "make_split",
    "resolve_options",
]


class SynthFaces(DatasetPlugin):
    """Procedurally rendered faces with configurable imbalance, correlation and difficulty."""

    name = "synthfaces"
    description = (
        "Procedurally rendered RGB faces (no download, deterministic from a seed) with configurable "
        "group imbalance, target-group correlation and group-dependent cue strength."
    )
    citation = "generated procedurally by fairbench"
    needs_root = False
    has_pool = True
    default_size = 64
    attributes = ATTRIBUTES
    tasks = TASKS

    def load(self, root: Path | None, size: int, cache_dir: Path | None, **options: Any) -> LoadedDataset:
        """Train / val / test splits, rendered once per (options, size) into `cache_dir` (None: not cached)."""
        opts = resolve_options(options)
        key = f"{self.fingerprint(root, **options)}-{size}px"
        splits, true_labels = {}, {}
        for split in ("train", "val", "test"):
            arrays = rendered(cache_dir, f"{key}-{split}", lambda: split_arrays(*make_split(opts, split, size)))
            splits[split], true_labels[split] = split_from(arrays)
        train = splits["train"].labels
        flipped = {t: int((train[t] != true_labels["train"][t]).sum()) for t in ("smiling", "eyeglasses")}
        info = {
            "generator": "synthfaces",
            "version": VERSION,
            "seed": opts["seed"],
            "size": size,
            "sizes": {s: len(splits[s]) for s in splits},
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
            "realised": {s: realised_bias(splits[s].labels) for s in splits},
            "train_labels_flipped": flipped,
        }
        return LoadedDataset(self.name, dict(ATTRIBUTES), splits, info)

    def split_sizes(self, task: str, **options: Any) -> dict[str, int]:
        """Images per split, known before rendering (the dry run's estimate of evaluation)."""
        opts = resolve_options(options)
        return {"train": opts["n_train"], "val": opts["n_val"], "test": opts["n_test"]}

    def fingerprint(self, root: Path | None, **options: Any) -> str:
        """Generated from the renderer's version and the resolved options: their hash is the data's identity."""
        opts = {k: list(v) if isinstance(v, tuple) else v for k, v in resolve_options(options).items()}
        blob = json.dumps({"dataset": self.name, "version": VERSION, "options": opts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def pool(self, root: Path | None, size: int, cache_dir: Path | None, **options: Any) -> UnlabeledPool:
        """Unlabeled pool with planted near-duplicates and off-domain images (see `make_pool`), cached like `load`."""
        key = f"{self.fingerprint(root, **options)}-{size}px-pool"
        arrays = rendered(cache_dir, key, lambda: pool_arrays(make_pool(resolve_options(options), size)))
        hidden = {k[len("hidden/") :]: v for k, v in arrays.items() if k.startswith("hidden/")}
        report = json.loads(str(arrays["report"]))
        return UnlabeledPool("synthfaces-pool", arrays["images"], arrays["ids"], hidden=hidden, report=report)


# ---------------------------------------------------------------- the rendered world, cached


def rendered(cache_dir: Path | None, key: str, render: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays rendered once per key into `cache_dir`/synthfaces (written whole, then renamed), read afterwards.

    Every process of a grid would otherwise render the same world again; runs that race write identical files.
    """
    if cache_dir is None:
        return render()
    path = Path(cache_dir) / "synthfaces" / f"v{VERSION}-{key}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **render())
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def split_arrays(split: Split, true_labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "images": split.images,
        "ids": split.ids,
        **{f"labels/{k}": v for k, v in split.labels.items()},
        **{f"true/{k}": v for k, v in true_labels.items()},
    }


def split_from(arrays: dict[str, np.ndarray]) -> tuple[Split, dict[str, np.ndarray]]:
    def prefixed(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

    return Split(arrays["images"], prefixed("labels/"), arrays["ids"]), prefixed("true/")


def pool_arrays(pool: UnlabeledPool) -> dict[str, np.ndarray]:
    return {
        "images": pool.images,
        "ids": pool.ids,
        "report": np.array(json.dumps(pool.report)),
        **{f"hidden/{k}": v for k, v in pool.hidden.items()},
    }


@hookimpl
def fairfacebench_datasets():
    return [SynthFaces()]


@hookimpl
def fairfacebench_encoders():
    return [MiniClipPlugin()]
