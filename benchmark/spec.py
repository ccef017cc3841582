"""Run specifications and their ids: a run is fully described by a RunSpec, its id is a hash of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    task: str
    method: str
    hparams: dict[str, Any]
    seed: int
    budget: dict[str, Any]  # Budget.to_dict(): name, steps, batch_size, amp
    resolution: int  # input images are decoded to resolution x resolution px
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    augment: dict[str, Any] = field(default_factory=dict)
    trial: int = 0
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    bootstrap: int = 1000  # test-set bootstrap resamples per run (0 = none)
    vlm: str | None = (
        None  # resolved encoder ('mini-clip', 'open_clip:ARCH:TAG', 'none') of VLM methods; None for the others
    )
    pool: dict[str, Any] | None = None  # resolved unlabeled pool ({'kind': ..., 'source': ...}) of pool methods

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_id(self) -> str:
        return spec_hash(self.to_dict())

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.task}/{self.method}/trial{self.trial}/seed{self.seed}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]
