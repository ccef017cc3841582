"""synthfaces: the embedded default world of procedurally rendered faces (no download, seeded).

Targets `smiling` and `eyeglasses`, sensitive `skin_tone` and `hair_length`;
the training split is imbalanced and correlated and the target cues are
fainter for darker skin (options in `world.DEFAULT_OPTIONS`, the design in
docs/DATASETS.md).  The package also holds the world's embedded mini-CLIP.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fairfacebench.data import LoadedDataset, UnlabeledPool
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

    def load(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> LoadedDataset:
        """Train / val / test splits; generation takes seconds, so nothing is cached."""
        opts = resolve_options(options)
        splits, true_labels = {}, {}
        for split in ("train", "val", "test"):
            splits[split], true_labels[split] = make_split(opts, split, size)
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

    def fingerprint(self, root: Path | None, **options: Any) -> str:
        """Generated from the renderer's version and the resolved options: their hash is the data's identity."""
        opts = {k: list(v) if isinstance(v, tuple) else v for k, v in resolve_options(options).items()}
        blob = json.dumps({"dataset": self.name, "version": VERSION, "options": opts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def pool(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> UnlabeledPool:
        """Unlabeled pool with planted near-duplicates and off-domain images (see `make_pool`)."""
        return make_pool(resolve_options(options), size)


@hookimpl
def fairfacebench_datasets():
    return [SynthFaces()]


@hookimpl
def fairfacebench_encoders():
    return [MiniClipPlugin()]
