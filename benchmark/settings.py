"""Settings types a comparison holds fixed, below everything that uses them (plan, training loop, run specs)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fairfacebench.errors import ConfigError

MIX_KINDS = ("none", "mixup", "cutmix")


@dataclass(frozen=True)
class Augment:
    """Augmentation family shared by every method in a comparison (seed 001's set).

    flip: horizontal flips; crop: pixels of random translation (pad + crop);
    jitter: strength of brightness/contrast/saturation jitter; mix: 'none',
    'mixup' or 'cutmix' with Beta(mix_alpha, mix_alpha) mixing weights.
    """

    flip: bool = True
    crop: int = 4
    jitter: float = 0.2
    mix: str = "none"
    mix_alpha: float = 0.4

    def __post_init__(self) -> None:
        if self.mix not in MIX_KINDS:
            raise ConfigError(f"augment.mix must be one of {list(MIX_KINDS)}, got '{self.mix}'")

    def to_dict(self) -> dict:
        return asdict(self)


NO_AUGMENT = Augment(flip=False, crop=0, jitter=0.0, mix="none")


def default_cache_dir() -> Path:
    """Where decoded images, embeddings and prepared encoders are cached: $FAIRBENCH_CACHE or ~/.cache/fairbench."""
    return Path(os.environ.get("FAIRBENCH_CACHE", Path.home() / ".cache" / "fairbench"))
