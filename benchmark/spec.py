"""Run specifications, their ids and the comparison they belong to.

A run is fully described by a RunSpec.  Its id hashes everything that
changes what is computed (the data by its fingerprint, never by its path),
so the same command finds its finished runs again and changed data or a new
method version computes afresh.  Runs with the same comparison key differ only
in method, hyperparameters, trial and seed: only those share a leaderboard table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from fairfacebench.budget import Budget
from fairfacebench.settings import Augment
from fairfacebench.typed import from_plain, to_plain

# Where the data lives on this machine: used to load it, never part of a run's identity.
LOCATION_FIELDS = ("data_root",)
# What the files a run reads hold, by their bytes: recorded and compared when a grid resumes, never part of a run's
# identity (the id follows names, sizes and labels, so the ids of existing stores hold).
CONTENT_FIELDS = ("content",)
# What a comparison holds fixed; the rest of a spec (method, method_version, hparams, trial, seed, bootstrap) varies.
COMPARISON_FIELDS = (
    "dataset",
    "task",
    "data_fingerprint",
    "dataset_options",
    "budget",
    "resolution",
    "backbone",
    "weights",
    "augment",
    "vlm",
    "pool",
    "threads",
)


@dataclass(frozen=True)
class PoolSpec:
    """The unlabeled pool of a comparison: its kind, what it is ('source'), where it lives on this machine ('root',
    never part of a run id) and what it holds ('fingerprint')."""

    kind: str = "none"
    source: str | None = None
    root: str | None = None
    fingerprint: str | None = None

    OMIT_WHEN_NONE = ("source", "root", "fingerprint")

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in to_plain(self).items() if k != "root"}


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    task: str
    method: str
    hparams: dict[str, Any]
    seed: int
    budget: Budget  # a plain dict is read as one (from_plain)
    resolution: int  # input images are decoded to resolution x resolution px
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    augment: Augment = field(default_factory=Augment)
    trial: int = 0
    data_root: str | None = None
    data_fingerprint: str = ""  # hash of the files and labels the run reads (`DatasetPlugin.fingerprint`)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    bootstrap: int = 1000  # test-set bootstrap resamples per run (0 = none)
    vlm: str = "none"  # the comparison's resolved encoder ('mini-clip', 'open_clip:ARCH:TAG', 'none')
    pool: PoolSpec = field(default_factory=PoolSpec)  # the comparison's resolved pool
    method_version: int = 1  # bumped by a method when its algorithm changes, so stale results are not reused
    threads: int = 1  # torch compute threads of the run, whatever the executor: float sums depend on it
    # sha256 digests of what the run reads, by bytes: 'data' (`DatasetPlugin.content`), 'weights' (a --weights file),
    # 'pool' (a folder pool, a dataset-train pool's dataset), 'vlm' (an encoder's weights files given by path),
    # 'eval-on NAME' (each --eval-on dataset's); a finished run whose record holds other digests is computed again
    # (grid.content_changes)
    content: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, kind in (("budget", Budget), ("augment", Augment), ("pool", PoolSpec)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, from_plain(kind, value, name))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}

    def identity(self) -> dict[str, Any]:
        """The spec without where things live on this machine (paths) and without the content digests."""
        out = {k: v for k, v in self.to_dict().items() if k not in LOCATION_FIELDS + CONTENT_FIELDS}
        out["pool"] = self.pool.identity()
        return out

    @property
    def run_id(self) -> str:
        return spec_hash(self.identity())

    @property
    def comparison(self) -> dict[str, Any]:
        identity = self.identity()
        return {k: identity[k] for k in COMPARISON_FIELDS}

    @property
    def comparison_id(self) -> str:
        return spec_hash(self.comparison)

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.task}/{self.method}/trial{self.trial}/seed{self.seed}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]
