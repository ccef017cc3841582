"""The vision-language encoder contract that VLM-using methods build against, and loading an encoder by name.

An encoder embeds uint8 images and text prompts into one L2-normalised space.
Methods receive one through `ctx.vlm` (None when the run has no VLM; they then
run an explicitly named fallback variant and set `ctx.log.variant`).  Encoder
plugins (open_clip tags and checkpoints, the embedded mini-CLIP of synthfaces)
register through the `fairfacebench_encoders` hook.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from fairfacebench.errors import VLMUnavailable

__all__ = ["ClipModelEncoder", "VisionLanguageEncoder", "VLMUnavailable", "array_digest", "cache_entry", "load_vlm"]

# The files of one entry of an encoder's embedding cache: the embeddings, and what they cost (when it records that).
CACHE_FILES = (".npy", ".json")


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


def array_digest(images: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and bytes), read in slices so memmaps stay on disk."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{images.shape}|{images.dtype}".encode())
    step = max(1, (64 << 20) // max(1, images[:1].nbytes))
    for start in range(0, len(images), step):
        h.update(np.ascontiguousarray(images[start : start + step]).data)
    return h.hexdigest()


def cache_entry(encoder: Any, images: np.ndarray) -> list[Path]:
    """The files of `encoder`'s embedding cache that hold the embeddings of `images`: `<encoder.cache>/<digest>.npy`
    (`array_digest`) and its cost `<digest>.json`, as `ClipModelEncoder` and the face descriptor keep them; none
    that are missing, none for an encoder without a cache."""
    folder = getattr(encoder, "cache", None)
    if folder is None:
        return []
    digest = array_digest(images)
    return [path for path in (Path(folder) / f"{digest}{suffix}" for suffix in CACHE_FILES) if path.is_file()]


class ClipModelEncoder:
    """A CLIP-style model (open_clip's `CLIP`: `visual`, `encode_image`, `encode_text`) behind the
    `VisionLanguageEncoder` contract, with an on-disk embedding cache: the encoder plugins' common wrapper.

    `info["id"]` names the weights exactly (checkpoint sha256, tag, or the
    mini-CLIP's config hash); cached embeddings are keyed by it and by
    `array_digest` of the images.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        info: dict[str, Any],
        cache_dir: Path | None,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
    ):
        self.name, self.info = name, info
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        cfg = getattr(model.visual, "preprocess_cfg", {})
        size = cfg.get("size", model.visual.image_size)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.cache = (
            None if cache_dir is None else Path(cache_dir) / "embeddings" / re.sub(r"[^A-Za-z0-9_.-]+", "_", info["id"])
        )

    def images_to_input(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> the model's normalised input: antialiased bilinear resize to its image size."""
        x = (
            torch.from_numpy(np.array(images)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        )  # a writable copy of one batch
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D) L2-normalised; read from / written to the embedding cache.

        Batches are written into one preallocated array: memory holds the output and one batch of images.
        """
        path = None if self.cache is None else self.cache / f"{array_digest(images)}.npy"
        if path is not None and path.is_file():
            return np.load(path)
        emb = np.empty((len(images), self.embed_dim), np.float32)
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = self.images_to_input(images[start : start + self.batch_size])
                emb[start : start + len(batch)] = self.model.encode_image(batch, normalize=True).float().cpu().numpy()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, emb)
            os.replace(tmp, path)
        return emb

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """prompts -> float32 (M, D) L2-normalised."""
        with torch.no_grad():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return self.model.encode_text(tokens, normalize=True).float().cpu().numpy()

    @property
    def embed_dim(self) -> int:
        return (
            int(self.model.text_projection.shape[1])
            if isinstance(self.model.text_projection, torch.Tensor)
            else int(self.model.text_projection.out_features)
        )
