"""The embedded mini-CLIP of synthfaces: a tiny open_clip CLIP trained on captioned synthetic faces.

No public CLIP checkpoint exists offline, so fairbench trains its own small
one on synthfaces' captioned pool (its own seed stream, disjoint from the
benchmark splits) so that the zero-shot path of VLM methods runs for real.
Its recipe (LiT-style locked trunk stages, NegCLIP hard negatives, a text
warm-up) and what its captions name are in docs/DATASETS.md; every run that
uses it records its training report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairfacebench.backbones import BACKBONES, resolve_weights, sha256
from fairfacebench.datasets.synthfaces.captions import captioned_pool, swap_phrase
from fairfacebench.datasets.synthfaces.world import ATTRIBUTES, VERSION, make_split, resolve_options
from fairfacebench.errors import VLMUnavailable
from fairfacebench.estimate import Preparation
from fairfacebench.progress import track
from fairfacebench.vlm import ClipModelEncoder
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier, zero_shot_probabilities

log = logging.getLogger("fairfacebench")

# The attributes the training captions name in words (so a VLM method's supervision discloses them).
CAPTIONED_ATTRIBUTES = ("smiling", "eyeglasses", "skin_tone", "hair_length")
ZERO_SHOT_SPLIT = "synthfaces val (default options, seed 0)"

# Bump when training or architecture code changes, so stale cached weights are not reused.
MINI_CLIP_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MiniClipConfig:
    """Architecture, data and optimisation of the mini-CLIP; every field enters the cache key."""

    seed: int = 0
    n_captioned: int = 3000
    image_size: int = 64
    embed_dim: int = 64
    trunk: str = "mobilenetv2_100"
    locked_blocks: int = 3  # timm MobileNetV2 block stages kept at their ImageNet weights (stride 8 at the cut)
    text_width: int = 64
    text_heads: int = 4
    text_layers: int = 2
    context_length: int = 24
    steps: int = 100
    text_warmup: int = 50  # steps with the text tower locked at its random init
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    low_res: int = 48  # half of the samples are seen down-sampled to this size and back

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "synthfaces": VERSION, "mini_clip": MINI_CLIP_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_model(cfg: MiniClipConfig) -> nn.Module:
    """open_clip's CLIP with a MobileNetV2 image tower and a small text transformer (random init)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(timm_model_name=cfg.trunk, timm_pool="avg", timm_proj="linear", image_size=cfg.image_size)
    text = CLIPTextCfg(
        context_length=cfg.context_length, width=cfg.text_width, heads=cfg.text_heads, layers=cfg.text_layers
    )
    model = CLIP(cfg.embed_dim, vision, text)
    model.visual.preprocess_cfg = {"size": cfg.image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return model


def tokenizer(cfg: MiniClipConfig) -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=cfg.context_length)


def load_imagenet_trunk(model: nn.Module) -> dict[str, Any]:
    """Copy torchvision's ImageNet MobileNetV2 weights into the timm trunk (same layers and order, shapes checked)."""
    path, info = resolve_weights(BACKBONES["mobilenet_v2"], "imagenet")
    source = torch.load(path, map_location="cpu", weights_only=True)
    source_keys = [k for k in source if not k.startswith("classifier.")]
    target = model.visual.trunk.state_dict()
    if len(source_keys) != len(target) or any(source[a].shape != target[b].shape for a, b in zip(source_keys, target)):
        raise RuntimeError(
            f"{path}: torchvision MobileNetV2 and timm trunk '{type(model.visual.trunk).__name__}' do not line up"
        )
    model.visual.trunk.load_state_dict({b: source[a] for a, b in zip(source_keys, target)})
    return info


def locked_part(model: nn.Module, cfg: MiniClipConfig) -> nn.Module:
    """The locked stem and first block stages of the trunk (eval mode: ImageNet BN statistics)."""
    trunk = model.visual.trunk
    return nn.Sequential(trunk.conv_stem, trunk.bn1, *trunk.blocks[: cfg.locked_blocks])


def unlocked_forward(model: nn.Module, cfg: MiniClipConfig, h: torch.Tensor) -> torch.Tensor:
    """Image embedding from the locked part's activations: remaining blocks, head conv, pooling, projection."""
    trunk = model.visual.trunk
    h = trunk.bn2(trunk.conv_head(trunk.blocks[cfg.locked_blocks :](h)))
    return model.visual.head(trunk.global_pool(h))


def negclip_loss(
    image: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE with hard-negative captions added to the image-to-text side (NegCLIP, Eq. 1).

    image, text, negatives: (B, D) L2-normalised; row i of `text` is image i's caption.
    """
    target = torch.arange(len(image), device=image.device)
    per_image = logit_scale * image @ torch.cat([text, negatives]).T
    per_text = logit_scale * text @ image.T
    return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2


def train_mini_clip(cfg: MiniClipConfig, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train the mini-CLIP on synthfaces' captioned pool; returns the model and a training report."""
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pool = captioned_pool(cfg.n_captioned, cfg.image_size, cfg.seed)
    model = build_model(cfg)
    weights = load_imagenet_trunk(model)
    lower = locked_part(model, cfg).eval()
    for p in lower.parameters():
        p.requires_grad_(False)
    to_input = ClipModelEncoder("mini-clip", model, None, {"id": "mini-clip-training"}, None).images_to_input
    low_res = F.interpolate(
        torch.from_numpy(pool.images).permute(0, 3, 1, 2).float(), size=cfg.low_res, mode="bilinear", antialias=True
    )
    low_res = low_res.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        # The locked stages are a fixed function: their output is computed once per image and resolution.
        acts = [
            torch.cat([lower(to_input(imgs[i : i + 256])) for i in range(0, len(imgs), 256)])
            for imgs in (pool.images, low_res)
        ]
    tok = tokenizer(cfg)
    tokens = tok(pool.captions)
    negatives = tok([swap_phrase(c, rng) for c in pool.captions])
    prepared = time.perf_counter()

    text_params = [
        p for name, p in model.named_parameters() if not name.startswith("visual.") and name != "logit_scale"
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    lower.eval()
    losses = []
    for step in track(range(cfg.steps), "mini-clip", bar=progress):  # reported to the grid's view
        for p in text_params:
            p.requires_grad_(step >= cfg.text_warmup)
        idx = torch.randint(0, len(tokens), (cfg.batch_size,), generator=gen)
        small = (torch.rand(cfg.batch_size, generator=gen) < 0.5).view(-1, 1, 1, 1)
        image = F.normalize(unlocked_forward(model, cfg, torch.where(small, acts[1][idx], acts[0][idx])), dim=-1)
        loss = negclip_loss(
            image,
            model.encode_text(tokens[idx], normalize=True),
            model.encode_text(negatives[idx], normalize=True),
            model.logit_scale.exp(),
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, float(np.log(100)))  # open_clip's training clamp
        losses.append(float(loss.detach()))
    model.eval()
    report = {
        "config": asdict(cfg),
        "key": cfg.key(),
        **disclosure(cfg),
        "captioned_pool": pool.report,
        "trunk_init": weights,
        "prepare_time_s": round(prepared - started, 2),
        "train_time_s": round(time.perf_counter() - prepared, 2),
        "torch_threads": torch.get_num_threads(),
        "first_loss": round(losses[0], 4),
        "last_loss": round(float(np.mean(losses[-20:])), 4),
        "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
    }
    return model, report


def disclosure(cfg: MiniClipConfig) -> dict[str, Any]:
    """What every run that uses the mini-CLIP records of it: its training data, what its captions name, its samples."""
    return {
        "trained_on": f"synthfaces' captioned pool: {cfg.n_captioned} images from their own seed stream, disjoint "
        "from the benchmark splits and the unlabeled pool; captions generated from each image's rendered attributes",
        "captions_name": list(CAPTIONED_ATTRIBUTES),
        "samples": cfg.steps * cfg.batch_size,
    }


def zero_shot_report(
    encoder: ClipModelEncoder,
    sizes: tuple[int, ...] = (48, 64),
    attributes: tuple[str, ...] = ("smiling", "eyeglasses"),
) -> dict[str, Any]:
    """Zero-shot accuracy on synthfaces' default validation split, overall and per skin tone.

    The validation labels are read here only to report (the test split is never looked at); the zero-shot
    classifier is built from prompts alone.
    """
    out: dict[str, Any] = {"split": ZERO_SHOT_SPLIT}
    for size in sizes:
        split, _ = make_split(resolve_options({}), "val", size)
        emb = encoder.encode_images(split.images)
        skin = split.labels["skin_tone"]
        for attr in attributes:
            classifier = zero_shot_classifier(encoder, class_phrases(ATTRIBUTES[attr]))
            correct = zero_shot_probabilities(emb, classifier, encoder.logit_scale).argmax(1) == split.labels[attr]
            out[f"{attr}@{size}px"] = {
                "acc": round(float(correct.mean()), 4),
                "per_skin_tone": {
                    name: round(float(correct[skin == k].mean()), 4)
                    for k, name in enumerate(ATTRIBUTES["skin_tone"].classes)
                },
                "n": int(len(correct)),
            }
    return out


def cache_path(cache_dir: Path, cfg: MiniClipConfig) -> Path:
    return Path(cache_dir) / "vlm" / f"mini-clip-{cfg.key()}"


def is_cached(cache_dir: Path, cfg: MiniClipConfig) -> bool:
    """Whether the cache holds this mini-CLIP's weights and report (else loading trains it first)."""
    folder = cache_path(cache_dir, cfg)
    return (folder / "weights.pt").is_file() and (folder / "report.json").is_file()


def load_or_train(
    cfg: MiniClipConfig,
    cache_dir: Path,
    device: torch.device | str = "cpu",
    retrain: bool = False,
    progress: bool = False,
) -> ClipModelEncoder:
    """The cached mini-CLIP for `cfg`, trained (and its zero-shot report computed) when missing or `retrain`."""
    folder = cache_path(cache_dir, cfg)
    weights, meta = folder / "weights.pt", folder / "report.json"
    if retrain or not is_cached(cache_dir, cfg):
        # the normal first-run preparation (the grid's view shows its steps), not a problem: INFO, not WARNING
        log.info("training the synthfaces mini-CLIP (config %s) into %s", cfg.key(), folder)
        model, report = train_mini_clip(cfg, progress)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(f".{os.getpid()}.tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, weights)
        write_report(meta, with_zero_shot(model, cfg, report, weights, cache_dir, device))
    model = build_model(cfg)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    report = json.loads(meta.read_text())
    if report.get("zero_shot", {}).get("split") != ZERO_SHOT_SPLIT or "trained_on" not in report:
        # a report of an older release (zero-shot on the test split, no disclosure fields): redo the report only
        report = {**report, **disclosure(cfg)}
        write_report(meta, with_zero_shot(model, cfg, report, weights, cache_dir, device))
        report = json.loads(meta.read_text())
    return _encoder(model, cfg, report, weights, cache_dir, device)


def with_zero_shot(
    model: nn.Module,
    cfg: MiniClipConfig,
    report: dict[str, Any],
    weights: Path,
    cache_dir: Path,
    device: torch.device | str,
) -> dict[str, Any]:
    started = time.perf_counter()
    zero_shot = zero_shot_report(_encoder(model, cfg, report, weights, cache_dir, device))
    return {**report, "zero_shot": zero_shot, "zero_shot_report_time_s": round(time.perf_counter() - started, 2)}


def write_report(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)


def _encoder(
    model: nn.Module,
    cfg: MiniClipConfig,
    report: dict[str, Any],
    weights: Path,
    cache_dir: Path,
    device: torch.device | str,
) -> ClipModelEncoder:
    info = {
        "encoder": "mini-clip",
        "id": f"mini-clip-{cfg.key()}",
        "path": str(weights),
        "sha256": sha256(weights),
        "report": report,
    }
    return ClipModelEncoder(f"mini-clip:{cfg.seed}", model, tokenizer(cfg), info, cache_dir, device)


def config_of(argument: str) -> MiniClipConfig:
    """The mini-CLIP `--vlm mini-clip[:SEED]` names; a seed that is not an integer is refused."""
    if argument and not argument.isdigit():
        raise VLMUnavailable(
            f"--vlm mini-clip:{argument}: the argument is the training seed, an integer (e.g. mini-clip:0)"
        )
    return MiniClipConfig(seed=int(argument or 0))


class MiniClipPlugin:
    """`mini-clip[:SEED]`: the embedded mini-CLIP, trained on synthfaces' captioned pool on first use and cached."""

    name = "mini-clip"
    description = (
        "tiny open_clip CLIP trained by fairbench on synthfaces' captioned pool (see `fairbench vlm train-mini-clip`)"
    )
    embedded_for = ("synthfaces",)

    def load(
        self, argument: str, cache_dir: Path, device: torch.device | str = "cpu", retrain: bool = False
    ) -> ClipModelEncoder:
        """The mini-CLIP of training seed `argument` (default 0), trained first when not cached or `retrain`."""
        return load_or_train(config_of(argument), Path(cache_dir), device, retrain=retrain)

    def preparation(self, argument: str, cache_dir: Path) -> Preparation | None:
        """What loading would train first (for `fairbench run --dry-run`): nothing when the cache holds it."""
        cfg = config_of(argument)
        if is_cached(Path(cache_dir), cfg):
            return None
        # fixed_s: rendering the captioned pool (20 s), the zero-shot report (5 s) and a process start, measured here
        return Preparation(f"mini-clip:{cfg.seed}", "mobilenet_v2", cfg.image_size, cfg.batch_size, cfg.steps, 30.0)
