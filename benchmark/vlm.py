"""The vision-language encoder contract that VLM-using methods build against.

An encoder embeds uint8 images and text prompts into one L2-normalised space.
Methods receive one through `ctx.vlm` (None when no VLM is available for the
run, in which case they run an explicitly named fallback variant and set
`ctx.log.variant`).  Encoder plugins (open_clip tags, local checkpoints, the
embedded mini-CLIP of synthfaces) register through `fairfacebench_encoders`.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VisionLanguageEncoder(Protocol):
    name: str
    info: dict[str, Any]  # what was loaded: tag or checkpoint path, sha256, training report

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D), rows L2-normalised."""

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """prompts -> float32 (M, D), rows L2-normalised."""


class VLMUnavailable(RuntimeError):
    """A VLM was required but none could be loaded; the message says what to pass."""
