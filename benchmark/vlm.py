"""The vision-language encoder contract that VLM-using methods build against, and loading an encoder by name.

An encoder embeds uint8 images and text prompts into one L2-normalised space.
Methods receive one through `ctx.vlm` (None when the run has no VLM; they then
run an explicitly named fallback variant and set `ctx.log.variant`).  Encoder
plugins (open_clip tags and checkpoints, the embedded mini-CLIP of synthfaces)
register through the `fairfacebench_encoders` hook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fairfacebench.errors import VLMUnavailable

__all__ = ["VisionLanguageEncoder", "VLMUnavailable", "load_vlm"]


@runtime_checkable
class VisionLanguageEncoder(Protocol):
    name: str
    info: dict[str, Any]  # what was loaded: tag or checkpoint path, sha256, training report
    logit_scale: float

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D), rows L2-normalised."""

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """prompts -> float32 (M, D), rows L2-normalised."""


def load_vlm(
    value: str, encoders: dict[str, Any], cache_dir: Path, device: Any = "cpu"
) -> VisionLanguageEncoder | None:
    """Load the encoder a resolved `vlm` value ('NAME[:ARGUMENT]') names; None for 'none'."""
    if value == "none":
        return None
    name, _, argument = value.partition(":")
    if name not in encoders:
        raise VLMUnavailable(f"--vlm {value}: unknown encoder '{name}'; installed encoders: {sorted(encoders)}")
    return encoders[name].load(argument, cache_dir, device)
