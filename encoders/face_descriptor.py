"""dlib's ResNet face descriptor as an image-only encoder: ``--vlm face-descriptor`` (optional extra ``[faces]``).

No CLIP checkpoint installs offline, but a real pretrained face encoder does:
``dlib_face_recognition_resnet_model_v1`` (Davis E. King; 128-d, trained for
face identity), shipped by the PyPI package face-recognition-models and run by
dlib (the dlib-bin wheel).  It has no text tower: ``encode_text`` refuses and
``info["text_tower"]`` is False, so VLM methods run their image-embedding
variants.  Each image is fed whole, resized to dlib's 150 px aligned chip (the
datasets' images are already aligned face crops; on UTKFace this agrees a
little more with race than dlib's 5-point landmark alignment, docs/METHODS.md).
Embeddings are cached per image array (its content fingerprint) under the
cache folder; what embedding cost is the encoder's shared preparation
(``info["report"]``).  Provenance and licences: docs/DATASETS.md.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fairfacebench.backbones import sha256
from fairfacebench.content import file_digests
from fairfacebench.errors import VLMUnavailable
from fairfacebench.hookspecs import hookimpl
from fairfacebench.vlm import array_digest

NAME = "face-descriptor"
INSTALL = "pip install 'fairfacebench[faces]'"
PACKAGES = {"dlib": "dlib-bin", "face_recognition_models": "face-recognition-models"}  # module -> distribution
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP = 150  # side of dlib's aligned face chip, the network's input
DIM = 128
RECIPE = 1  # bump when the input recipe changes: it is part of the encoder id, so of the embedding cache key

PROVENANCE = {
    "model": MODEL_FILE,
    "author": "Davis E. King (dlib; github.com/davisking/dlib-models)",
    "architecture": "ResNet with 29 conv layers (ResNet-34 with layers removed and half the filters); "
    "150x150 aligned face chip in, 128-d descriptor out",
    "trained_on": "about 3 million faces of 7485 identities (FaceScrub, VGG Face and images from the internet; "
    "identities of LFW left out), with an identity metric loss: no attribute or demographic labels",
    "licence": "public domain: dlib-models' README says its author released the model files into the public "
    "domain; face-recognition-models ships them under CC0 1.0 (its LICENSE file; its package metadata says MIT)",
    "training_data_terms": "FaceScrub and VGG Face have terms of their own, which the model's release does not "
    "change: check them before commercial use",
    "runtime": "dlib (dlib-bin wheel), Boost Software License 1.0",
    "files_not_used": "face-recognition-models also ships shape_predictor_68_face_landmarks (trained on iBUG "
    "300-W, whose terms exclude commercial use), shape_predictor_5_face_landmarks and mmod_human_face_detector; "
    "fairbench loads none of them",
}
INPUT = (
    f"each image whole (an aligned face crop) resized to {CHIP}x{CHIP} (bicubic) as dlib's face chip; "
    "no detector, no landmarks; descriptors L2-normalised"
)
PREPARATION = (
    "nothing is trained by fairbench; each image array a run embeds is embedded once and cached by its content "
    "fingerprint: samples = images embedded, train_time_s = seconds spent embedding them (whichever run paid), "
    "over the arrays this encoder served in this process"
)


class NoTextTower(VLMUnavailable):
    """An image-only encoder was asked to embed text."""


def missing_packages() -> list[str]:
    """The distributions of the [faces] extra that are not installed."""
    return [dist for module, dist in PACKAGES.items() if importlib.util.find_spec(module) is None]


def model_path() -> Path:
    """The descriptor's weights inside face-recognition-models (found without importing it: it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE


def to_chip(image: np.ndarray) -> np.ndarray:
    """One uint8 (H, W, 3) face crop -> dlib's (150, 150, 3) chip: the whole image, bicubic resize."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((CHIP, CHIP), Image.Resampling.BICUBIC))


def check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{NAME}: images must be uint8 (N, H, W, 3) RGB arrays; got {images.dtype} of shape {images.shape}"
        )


def versions() -> dict[str, str]:
    import dlib  # dlib-bin or a dlib built from source: the module's own version

    return {"dlib": dlib.__version__, "face-recognition-models": importlib.metadata.version("face-recognition-models")}


class FaceDescriptorEncoder:
    """dlib's face descriptor behind the image half of the `VisionLanguageEncoder` contract, with an embedding cache.

    `info["id"]` names the weights (sha256) and the input recipe; cached embeddings are keyed by it and by
    `array_digest` of the images, with the cost of computing them beside them (`<digest>.json`).
    """

    text_tower = False
    logit_scale = float("nan")  # no text tower, so no image-text logits to scale

    def __init__(self, path: Path, cache_dir: Path | None, device: str = "cpu"):
        import dlib

        digest = sha256(path)
        self.name, self.path = NAME, Path(path)
        self.info: dict[str, Any] = {
            "encoder": NAME,
            "id": f"{NAME}-r{RECIPE}-{digest[:16]}",
            "path": str(path),
            "sha256": digest,
            "text_tower": False,
            "dim": DIM,
            "input": INPUT,
            "device": "cuda" if dlib.DLIB_USE_CUDA and str(device).startswith("cuda") else "cpu",
            "packages": versions(),
            "provenance": PROVENANCE,
        }
        self.cache = None if cache_dir is None else Path(cache_dir) / "embeddings" / self.info["id"]
        self.embedded: dict[str, dict[str, Any]] = {}  # array digest -> what embedding it cost
        self.info["report"] = preparation_report(self.embedded)
        self._model = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Ray shards): the dlib network is reloaded from its file on the other side."""
        return {**self.__dict__, "_model": None}

    @property
    def model(self) -> Any:
        if self._model is None:
            import dlib

            self._model = dlib.face_recognition_model_v1(str(self.path))
        return self._model

    def describe(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, 128) L2-normalised descriptors, computed (no cache)."""
        out = np.empty((len(images), DIM), np.float32)
        for i in range(len(images)):
            out[i] = self.model.compute_face_descriptor(to_chip(images[i]))
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, 128); read from / written to the cache, the cost entered in the report."""
        check_images(images)
        if len(images) == 0:
            return np.empty((0, DIM), np.float32)
        digest = array_digest(images)
        path = None if self.cache is None else self.cache / f"{digest}.npy"
        if path is not None and path.is_file() and path.with_suffix(".json").is_file():
            emb, cost = np.load(path), json.loads(path.with_suffix(".json").read_text())
        else:
            started = time.perf_counter()
            emb = self.describe(images)
            cost = {"images": len(images), "seconds": round(time.perf_counter() - started, 2)}
            if path is not None:
                write_atomic(path, emb, cost)
        self.embedded[digest] = cost
        self.info["report"] = preparation_report(self.embedded)
        return emb

    def encode_text(self, texts: list[str]) -> np.ndarray:
        raise NoTextTower(
            f"--vlm {NAME} embeds images only (dlib's face descriptor has no text tower), so it cannot embed "
            f"prompts such as {list(texts)[:1]}: run a method's image-embedding variant, or pass an open_clip "
            "model (--vlm open_clip:ARCH:/path/to/checkpoint)"
        )


def preparation_report(embedded: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The shared preparation every run that uses the encoder records (the leaderboard shows it under the table)."""
    return {
        "trained_on": f"{PROVENANCE['trained_on']} (by dlib's author; fairbench trains nothing)",
        "captions_name": [],
        "samples": sum(c["images"] for c in embedded.values()),
        "train_time_s": round(sum(c["seconds"] for c in embedded.values()), 2),
        "preparation": PREPARATION,
        "arrays": dict(sorted(embedded.items())),
    }


def write_atomic(path: Path, emb: np.ndarray, cost: dict[str, Any]) -> None:
    """Embeddings and their cost, each renamed into place (the .npy last: it marks the entry complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = path.with_suffix(f".{os.getpid()}.tmp.json")
    meta.write_text(json.dumps(cost))
    os.replace(meta, path.with_suffix(".json"))
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, path)


class FaceDescriptorPlugin:
    """`face-descriptor`: dlib's pretrained face descriptor; needs the optional extra [faces]."""

    name = NAME
    description = (
        "dlib's pretrained ResNet face descriptor (128-d, images only, no text tower; "
        f"{INSTALL}); public-domain weights"
    )
    embedded_for: tuple[str, ...] = ()

    def check(self, argument: str) -> None:
        """Refuse an argument or a missing extra before any run (called by preflight)."""
        if argument:
            raise VLMUnavailable(f"--vlm {NAME}:{argument}: {NAME} takes no argument; pass --vlm {NAME}")
        missing = missing_packages()
        if missing:
            raise VLMUnavailable(f"--vlm {NAME} needs {' and '.join(missing)}: install them with {INSTALL}")

    def weights_digest(self, argument: str) -> str:
        """The sha256 of the descriptor's weights file (its info's `sha256`), "" without the extra: a run's content
        digest (`RunSpec.content`)."""
        if missing_packages() or not model_path().is_file():
            return ""
        return file_digests([model_path()])[0] or ""

    def load(self, argument: str, cache_dir: Path, device: Any = "cpu") -> FaceDescriptorEncoder:
        self.check(argument)
        path = model_path()
        if not path.is_file():
            raise VLMUnavailable(
                f"--vlm {NAME}: {path} is missing from face-recognition-models; reinstall it with {INSTALL}"
            )
        return FaceDescriptorEncoder(path, cache_dir, str(device))


@hookimpl
def fairfacebench_encoders():
    return [FaceDescriptorPlugin()]
