"""The open_clip encoder plugin: any open_clip CLIP model behind the VLM contract, with an embedding cache.

``--vlm open_clip:ARCH:TAG`` loads a pretrained tag (downloaded by open_clip
when online, e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``),
``open_clip:ARCH:/path/to/checkpoint`` a local file and
``open_clip:local-dir:FOLDER`` open_clip's export layout, both offline.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fairfacebench.backbones import sha256
from fairfacebench.errors import VLMUnavailable
from fairfacebench.hookspecs import hookimpl


def array_digest(images: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and bytes), read in slices so memmaps stay on disk."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{images.shape}|{images.dtype}".encode())
    step = max(1, (64 << 20) // max(1, images[:1].nbytes))
    for start in range(0, len(images), step):
        h.update(np.ascontiguousarray(images[start : start + step]).data)
    return h.hexdigest()


class OpenClipEncoder:
    """An open_clip CLIP model behind the `VisionLanguageEncoder` contract, with an on-disk embedding cache.

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


class OpenClipPlugin:
    """`open_clip:ARCH:TAG` (downloaded when online), `open_clip:ARCH:PATH`, `open_clip:local-dir:FOLDER` (offline)."""

    name = "open_clip"
    description = (
        "an open_clip model: ARCH:TAG (downloads when online), ARCH:/path/to/checkpoint or local-dir:FOLDER (offline)"
    )
    embedded_for: tuple[str, ...] = ()

    def load(self, argument: str, cache_dir: Path, device: torch.device | str = "cpu") -> OpenClipEncoder:
        import open_clip

        if argument.startswith("local-dir:"):
            return self._load_folder(
                open_clip, argument, Path(argument[len("local-dir:") :]).expanduser(), cache_dir, device
            )
        arch, sep, source = argument.partition(":")
        if not sep or not arch or not source:
            raise VLMUnavailable(
                f"--vlm open_clip:{argument}: write open_clip:ARCH:TAG (e.g. open_clip:ViT-B-32:laion2b_s34b_b79k), "
                "open_clip:ARCH:/path/to/checkpoint or open_clip:local-dir:/path/to/folder"
            )
        if arch not in open_clip.list_models():
            raise VLMUnavailable(
                f"--vlm open_clip:{argument}: unknown open_clip architecture '{arch}'; see open_clip.list_models()"
            )
        path = Path(source).expanduser()
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if path.is_file():
            digest = sha256(path)
            model = open_clip.create_model(arch, pretrained=str(path), weights_only=True)
            info = {
                "encoder": "open_clip",
                "arch": arch,
                "source": "local-file",
                "path": str(path),
                "sha256": digest,
                "id": f"open_clip-{arch}-{digest[:16]}",
            }
        elif source in tags:
            model = _download(open_clip, arch, source, cache_dir)
            info = {
                "encoder": "open_clip",
                "arch": arch,
                "source": "pretrained-tag",
                "tag": source,
                "id": f"open_clip-{arch}-{source}",
            }
        else:
            kind = "checkpoint file does not exist" if ("/" in source or path.suffix) else "is not a pretrained tag"
            raise VLMUnavailable(
                f"--vlm open_clip:{argument}: '{source}' {kind}. Pass an existing open_clip checkpoint file, or one of "
                f"{arch}'s pretrained tags {tags} (downloaded when online)"
            )
        return OpenClipEncoder(f"open_clip:{argument}", model, open_clip.get_tokenizer(arch), info, cache_dir, device)

    def _load_folder(
        self, open_clip: Any, argument: str, folder: Path, cache_dir: Path, device: torch.device | str
    ) -> OpenClipEncoder:
        """open_clip's export layout: open_clip_config.json and one weights file (.safetensors, .bin or .pth)."""
        weights = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))
        if not (folder / "open_clip_config.json").is_file() or not weights:
            raise VLMUnavailable(
                f"--vlm open_clip:{argument}: {folder} must hold open_clip_config.json and a weights file "
                f"(.safetensors, .bin or .pth); found "
                f"{sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no such folder'}"
            )
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True)
        digest = (
            sha256(weights[0])
            if len(weights) == 1
            else hashlib.sha256("".join(sha256(w) for w in weights).encode()).hexdigest()
        )
        info = {
            "encoder": "open_clip",
            "source": "local-dir",
            "path": str(folder),
            "sha256": digest,
            "id": f"open_clip-dir-{digest[:16]}",
        }
        return OpenClipEncoder(
            f"open_clip:{argument}", model, open_clip.get_tokenizer(f"local-dir:{folder}"), info, cache_dir, device
        )


def _download(open_clip: Any, arch: str, tag: str, cache_dir: Path) -> torch.nn.Module:
    """A pretrained open_clip model by tag; a clear VLMUnavailable when offline or the download fails."""
    offline = "downloads disabled (FAIRBENCH_OFFLINE=1)" if os.environ.get("FAIRBENCH_OFFLINE") == "1" else None
    if offline is None:
        try:
            return open_clip.create_model(
                arch, pretrained=tag, cache_dir=str(Path(cache_dir) / "open_clip"), weights_only=True
            )
        except Exception as exc:  # any network or hub failure ends in the clear error below
            offline = f"download failed ({type(exc).__name__}: {exc})"
    raise VLMUnavailable(
        f"could not load open_clip {arch} weights '{tag}': {offline}. Offline, pass a local checkpoint with "
        f"--vlm open_clip:{arch}:/path/to/open_clip_model.safetensors; or --vlm none to run VLM methods as their "
        "named fallback variants; on synthfaces, --vlm auto uses the embedded mini-CLIP"
    )


@hookimpl
def fairfacebench_encoders():
    return [OpenClipPlugin()]
