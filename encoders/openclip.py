"""The open_clip encoder plugin: any open_clip CLIP model behind the VLM contract, with an embedding cache.

``--vlm open_clip:ARCH:TAG`` loads a pretrained tag (downloaded by open_clip
when online, e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``),
``open_clip:ARCH:/path/to/checkpoint`` a local file and
``open_clip:local-dir:FOLDER`` open_clip's export layout, both offline.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from fairfacebench.backbones import sha256
from fairfacebench.content import file_digests
from fairfacebench.errors import VLMUnavailable
from fairfacebench.hookspecs import hookimpl
from fairfacebench.settings import default_cache_dir
from fairfacebench.vlm import ClipModelEncoder


class OpenClipPlugin:
    """`open_clip:ARCH:TAG` (downloaded when online), `open_clip:ARCH:PATH`, `open_clip:local-dir:FOLDER` (offline)."""

    name = "open_clip"
    description = (
        "an open_clip model: ARCH:TAG (downloads when online), ARCH:/path/to/checkpoint or local-dir:FOLDER (offline)"
    )
    embedded_for: tuple[str, ...] = ()

    def check(self, argument: str, cache_dir: Path | None = None) -> None:
        """What `load` would refuse, before any run (preflight): the argument's form, the architecture, the file or
        folder, and a pretrained tag whose weights are not in the cache while downloads are off."""
        import open_clip

        if argument.startswith("local-dir:"):
            _folder_weights(argument, Path(argument[len("local-dir:") :]).expanduser())
            return
        arch, source, path = _source(open_clip, argument)
        cache = Path(cache_dir or default_cache_dir()) / "open_clip"
        if (
            not path.is_file()
            and os.environ.get("FAIRBENCH_OFFLINE") == "1"
            and not _cached(open_clip, arch, source, cache)
        ):
            raise VLMUnavailable(
                _unavailable(arch, source, "downloads disabled (FAIRBENCH_OFFLINE=1) and not in " + str(cache))
            )

    def weights_digest(self, argument: str) -> str:
        """The sha256 of the weights `load(argument)` reads from a path, as its info's `sha256` names them; "" for a
        pretrained tag (the tag names them): a run's content digest (`RunSpec.content`)."""
        if argument.startswith("local-dir:"):
            weights = _folder_weights(argument, Path(argument[len("local-dir:") :]).expanduser())
            return weights_sha256([digest or "" for digest in file_digests(weights)])
        path = Path(argument.partition(":")[2]).expanduser()
        return (file_digests([path])[0] or "") if path.is_file() else ""

    def load(self, argument: str, cache_dir: Path, device: torch.device | str = "cpu") -> ClipModelEncoder:
        import open_clip

        if argument.startswith("local-dir:"):
            return self._load_folder(
                open_clip, argument, Path(argument[len("local-dir:") :]).expanduser(), cache_dir, device
            )
        arch, source, path = _source(open_clip, argument)
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
        else:
            model = _download(open_clip, arch, source, cache_dir)
            info = {
                "encoder": "open_clip",
                "arch": arch,
                "source": "pretrained-tag",
                "tag": source,
                "id": f"open_clip-{arch}-{source}",
            }
        return ClipModelEncoder(f"open_clip:{argument}", model, open_clip.get_tokenizer(arch), info, cache_dir, device)

    def _load_folder(
        self, open_clip: Any, argument: str, folder: Path, cache_dir: Path, device: torch.device | str
    ) -> ClipModelEncoder:
        """open_clip's export layout: open_clip_config.json and one weights file (.safetensors, .bin or .pth)."""
        weights = _folder_weights(argument, folder)
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True)
        digest = weights_sha256([sha256(w) for w in weights])
        info = {
            "encoder": "open_clip",
            "source": "local-dir",
            "path": str(folder),
            "sha256": digest,
            "id": f"open_clip-dir-{digest[:16]}",
        }
        return ClipModelEncoder(
            f"open_clip:{argument}", model, open_clip.get_tokenizer(f"local-dir:{folder}"), info, cache_dir, device
        )


def _source(open_clip: Any, argument: str) -> tuple[str, str, Path]:
    """ARCH:SOURCE checked: a known architecture and an existing checkpoint file or one of its pretrained tags."""
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
    if not path.is_file() and source not in tags:
        kind = "checkpoint file does not exist" if ("/" in source or path.suffix) else "is not a pretrained tag"
        raise VLMUnavailable(
            f"--vlm open_clip:{argument}: '{source}' {kind}. Pass an existing open_clip checkpoint file, or one of "
            f"{arch}'s pretrained tags {tags} (downloaded when online)"
        )
    return arch, source, path


def weights_sha256(digests: list[str]) -> str:
    """The digest of a folder's weights files from their sha256s in order: the one file's, or the sha256 of them all."""
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def _folder_weights(argument: str, folder: Path) -> list[Path]:
    weights = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))
    if not (folder / "open_clip_config.json").is_file() or not weights:
        raise VLMUnavailable(
            f"--vlm open_clip:{argument}: {folder} must hold open_clip_config.json and a weights file "
            f"(.safetensors, .bin or .pth); found "
            f"{sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no such folder'}"
        )
    return weights


def _cached(open_clip: Any, arch: str, tag: str, cache: Path) -> bool:
    """Whether a pretrained tag's weights are in open_clip's cache folder (Hugging Face hub layout, or a URL's file)."""
    config = open_clip.pretrained.get_pretrained_cfg(arch, tag)
    hub = (config.get("hf_hub") or "").strip("/")
    if hub:
        return any((cache / f"models--{hub.replace('/', '--')}").glob("snapshots/*/*"))
    return bool(config.get("url")) and (cache / os.path.basename(config["url"])).is_file()


def _unavailable(arch: str, tag: str, reason: str) -> str:
    return (
        f"could not load open_clip {arch} weights '{tag}': {reason}. Offline, pass a local checkpoint with "
        f"--vlm open_clip:{arch}:/path/to/open_clip_model.safetensors; or --vlm none to run VLM methods as their "
        "named fallback variants; on synthfaces, --vlm auto uses the embedded mini-CLIP"
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
    raise VLMUnavailable(_unavailable(arch, tag, offline))


@hookimpl
def fairfacebench_encoders():
    return [OpenClipPlugin()]
