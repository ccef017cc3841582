"""The fit context, the only door between a method and the harness, and the one shared training loop.

It exposes the training and validation splits, the test images without
labels, the unlabeled pool's images and the VLM (when the run has them), a
backbone factory, the budget and its meter, seeded generators, the device and
a log.  Which labels a method touched is recorded, so the conformance kit can
compare it with what the method declares.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from fairfacebench.backbones import create_backbone
from fairfacebench.budget import BudgetExceeded, BudgetMeter
from fairfacebench.data import ImagesOnly, LabeledSplit, PoolImages, TaskData
from fairfacebench.progress import StageSteps
from fairfacebench.settings import Augment
from fairfacebench.sharding import RayShards, embed_in_shards
from fairfacebench.training import (
    BatchSampler,
    Classifier,
    NonFiniteLoss,
    augment_batch,
    mix_batch,
    normalize,
    to_tensor,
)

log = logging.getLogger("fairfacebench")


class SplitView:
    """A labelled split whose label arrays record when they are read."""

    def __init__(self, split: LabeledSplit, name: str, touched: set[str]):
        self._split, self._name, self._touched = split, name, touched

    @property
    def images(self) -> np.ndarray:
        return self._split.images

    @property
    def ids(self) -> np.ndarray:
        return self._split.ids

    @property
    def y(self) -> np.ndarray:
        self._touched.add(f"{self._name}.target")
        return self._split.y

    @property
    def a(self) -> np.ndarray:
        self._touched.add(f"{self._name}.sensitive")
        return self._split.a

    def __len__(self) -> int:
        return len(self._split)


@dataclass
class Batch:
    """One training batch.  With MixUp/CutMix, row i is mixed with row perm[i] at weight lam."""

    x: torch.Tensor
    index: np.ndarray
    _y: torch.Tensor
    _view: SplitView
    perm: torch.Tensor | None = None
    lam: float = 1.0

    @property
    def y(self) -> torch.Tensor:
        return self._y

    @property
    def a(self) -> torch.Tensor:
        return torch.as_tensor(self._view.a[self.index], device=self.x.device)


@dataclass(frozen=True)
class ExtraAugment:
    """A second augmentation applied, after the comparison's, to the training rows where `rows` is True."""

    rows: np.ndarray  # bool over the training split
    augment: Augment


@dataclass
class RunLog:
    """What a method reports about its stages: numbers for the run record, evidence for the harness's diagnostics.

    Evidence (arrays such as the pool rows a stage kept) is never stored: the
    harness compares it with ground truth the method cannot see
    (`fairfacebench.diagnostics`) and stores only those reports.
    """

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    evidence: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def stage(self, name: str, **numbers: Any) -> None:
        self.stages.setdefault(name, {}).update(numbers)
        log.info("stage %s: %s", name, numbers)

    def record_evidence(self, stage: str, **arrays: np.ndarray) -> None:
        self.evidence.setdefault(stage, {}).update({k: np.asarray(v) for k, v in arrays.items()})


class IsolationError(PermissionError):
    """A method asked for data it has not declared (e.g. test images without `transductive = True`)."""


class ForwardMeter:
    """Forward hooks that charge every image through a network to the meter (`network` names it in the report).

    Copying a metered model (``copy.deepcopy``) copies its hooks, and the copy
    stays metered by this same object.
    """

    def __init__(self, meter: BudgetMeter, network: str):
        self.meter, self.network = meter, network

    def __deepcopy__(self, memo: dict) -> "ForwardMeter":
        return self

    def attach(self, module: nn.Module) -> nn.Module:
        module.register_forward_pre_hook(self.before)
        module.register_forward_hook(self.after, always_call=True)
        return module

    def before(self, module: nn.Module, args: tuple) -> None:
        self.meter.charge_forward(len(args[0]), self.network)
        self.meter.inside_metered += 1

    def after(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.meter.inside_metered = max(0, self.meter.inside_metered - 1)


class MeteredEncoder:
    """A VLM as methods get it: every image it embeds is charged to the meter (text prompts are not).

    Images are embedded shard by shard (`sharding.shard_size()` at a time); with `shards` (a `sharding.RayShards`, given
    under `--executor ray`) arrays of more than one shard are embedded as Ray tasks, and the run log's stage
    "vlm-shards" says how many shards ran in how many processes.
    """

    def __init__(self, encoder: Any, meter: BudgetMeter, shards: RayShards | None = None, log: RunLog | None = None):
        self._encoder, self._meter, self._shards, self._log = encoder, meter, shards, log
        self.name, self.info = encoder.name, encoder.info
        self.logit_scale = getattr(encoder, "logit_scale", 100.0)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        self._meter.charge_forward(len(images), "vlm")
        self._meter.inside_metered += 1
        try:
            if self._shards is not None and len(images) > self._shards.shard:
                emb = self._shards.embed(self._encoder, images)
                if self._log is not None:
                    seen = self._log.stages.get("vlm-shards", {})
                    self._log.stage(
                        "vlm-shards",
                        executor="ray",
                        calls=seen.get("calls", 0) + 1,
                        shards=seen.get("shards", 0) + self._shards.last["shards"],
                        shard_size=self._shards.last["shard_size"],
                        processes=max(seen.get("processes", 0), self._shards.last["processes"]),
                    )
                return emb
            return embed_in_shards(self._encoder.encode_images, images)
        finally:
            self._meter.inside_metered -= 1

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode_text(texts)


class FitContext:
    """The only door between a method and the harness: `ctx.budget` is the profile, `ctx.meter` counts it."""

    def __init__(
        self,
        data: TaskData,
        hparams: dict[str, Any],
        meter: BudgetMeter,
        seed: int,
        device: torch.device,
        augment: Augment,
        backbone: str,
        weights: str,
        vlm: Any = None,
        progress: bool = False,
        transductive: bool = False,
        shards: RayShards | None = None,
    ):
        self.hparams = dict(hparams)
        self.meter = meter
        self.budget = meter.budget
        self.seed = seed
        self.device = device
        self.augment = augment
        self.backbone_name = backbone
        self.weights = weights
        self.log = RunLog()
        self._vlm = None if vlm is None else MeteredEncoder(vlm, meter, shards, self.log)
        self._pool = None if data.pool is None else data.pool.images_only()
        self._test_images = data.test_images if transductive else None
        self.progress = progress
        self._in_step = False
        self.learning_rate = 0.0
        self.touched: set[str] = set()
        self.weights_info: dict[str, Any] = {}
        self.train = SplitView(data.train, "train", self.touched)
        self.val = SplitView(data.val, "val", self.touched)
        self.n_classes = data.n_classes
        self.n_groups = data.n_groups
        self.target_classes = data.target_classes
        self.group_names = data.group_names
        self.resolution = int(data.train.images.shape[1])  # input images are resolution x resolution px
        self.target_attribute = data.target_attribute
        self.sensitive_attributes = data.sensitive_attributes
        self.task = data.task
        self.dataset = data.dataset

    # --- data a method may ask for -------------------------------------------------
    @property
    def test_images(self) -> ImagesOnly:
        """Test images for methods that declare `transductive = True` (shown on the leaderboard); never their labels."""
        if self._test_images is None:
            raise IsolationError(
                "ctx.test_images is for transductive methods: declare `transductive = True` on the "
                "method class, and the leaderboard shows that it reads the test images"
            )
        self.touched.add("test.images")
        return self._test_images

    @property
    def pool(self) -> PoolImages | None:
        """The unlabeled pool's images (None without a pool); what is known about them stays with the harness."""
        self.touched.add("pool")
        return self._pool

    @property
    def vlm(self) -> Any:
        self.touched.add("vlm")
        return self._vlm

    # --- randomness -----------------------------------------------------------------
    def generator(self, stream: str) -> torch.Generator:
        """A torch generator seeded from the run seed and a stream name, so stages do not share draws."""
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(stream)) % 1_000_003)
        return g

    def rng(self, stream: str) -> np.random.Generator:
        return np.random.default_rng(int(self.generator(stream).initial_seed()))

    # --- models ---------------------------------------------------------------------
    def new_classifier(self, heads: dict[str, int] | None = None) -> Classifier:
        """A fresh backbone (pretrained weights per the comparison) with linear heads."""
        torch.manual_seed(int(self.generator("init").initial_seed()) % 2**31)
        backbone, info = create_backbone(self.backbone_name, self.weights)
        self.weights_info = info
        ForwardMeter(self.meter, "backbone").attach(backbone)
        model = Classifier(backbone, backbone.out_dim, heads or {"target": self.n_classes})
        # Batches arrive as NHWC views (see training.to_tensor); channels-last weights avoid a layout conversion
        # in every convolution (measured 1.3x faster training, 2x faster inference for MobileNetV2 on CPU).
        return model.to(self.device, memory_format=torch.channels_last)

    # --- batches --------------------------------------------------------------------
    def sampler(self, weights: np.ndarray | None = None, stream: str = "batches") -> BatchSampler:
        return BatchSampler(len(self.train), self.budget.batch_size, self.generator(stream), weights)

    def images_to_input(
        self, images: np.ndarray, gen: torch.Generator | None = None, augment: Augment | None = None
    ) -> torch.Tensor:
        """uint8 images -> normalised network input, augmented when a generator is given."""
        x = to_tensor(images, self.device)
        if gen is not None:
            x = augment_batch(x, augment or self.augment, gen)
        return normalize(x)

    def batch(
        self,
        index: np.ndarray,
        gen: torch.Generator,
        rng: np.random.Generator,
        mix: bool = True,
        extra: ExtraAugment | None = None,
    ) -> Batch:
        """An augmented training batch; `extra` augments some rows once more; MixUp/CutMix if the comparison asks."""
        x = augment_batch(to_tensor(self.train.images[index], self.device), self.augment, gen)
        if extra is not None:
            rows = torch.as_tensor(extra.rows[index], device=self.device)
            if bool(rows.any()):
                x[rows] = augment_batch(x[rows], extra.augment, gen)
        y = torch.as_tensor(self.train.y[index], device=self.device)
        perm, lam = None, 1.0
        if mix and self.augment.mix != "none":
            x, perm, lam = mix_batch(x, self.augment, gen, rng)
        return Batch(normalize(x), index, y, self.train, perm, lam)

    # --- optimisation -----------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge forward samples and wall time inside the block to stage `name` (stages nest)."""
        self.meter.enter(name)
        try:
            yield
        finally:
            self.meter.leave()

    def inner_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step an auxiliary optimizer (e.g. a meta-network's) as part of the current metered step of `optimize`."""
        if not self._in_step:
            raise BudgetExceeded("ctx.inner_step is only for updates inside a step of ctx.optimize (the metered loop)")
        self.meter.stepping = True
        try:
            optimizer.step()
        finally:
            self.meter.stepping = False

    def autocast(self):
        if self.budget.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def optimize(
        self,
        params,
        steps: int,
        step_fn: Callable[[int], torch.Tensor],
        lr: float,
        weight_decay: float = 0.0,
        stage: str = "train",
        schedule: str = "onecycle",
        every: int = 0,
        callback: Callable[[int], None] | None = None,
        optimizer: str = "adamw",
    ) -> list[float]:
        """The one metered optimisation loop every method uses.

        step_fn(t) returns the scalar loss of step t.  Each optimizer step is
        charged to the budget (an error once it is spent); a non-finite loss
        stops the run.  `callback(t)` runs after every `every` steps.  `params`
        are tensors or parameter groups (dicts with their own "lr");
        `optimizer` is "adamw" or "sgd" (momentum 0.9); `ctx.learning_rate` is
        the first group's learning rate of the current step.
        """
        if steps <= 0:
            return []
        if steps > self.meter.remaining:
            raise BudgetExceeded(
                f"stage '{stage}' asked for {steps} steps but only {self.meter.remaining} of "
                f"{self.budget.steps} remain in budget '{self.budget.name}'"
            )
        params = list(params)
        groups = [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            g["params"] = [p for p in g["params"] if p.requires_grad]
            g.setdefault("lr", lr)
        if optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
        elif optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got '{optimizer}'")
        sched = (
            torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.25
            )
            # OneCycleLR divides by pct_start·steps − 1 (zero at 4 steps): stages of ≤ 4 steps run at constant lr.
            if schedule == "onecycle" and steps > 4
            else None
        )
        scaler = torch.amp.GradScaler("cuda") if self.budget.amp and self.device.type == "cuda" else None
        losses: list[float] = []
        bar = StageSteps(stage, steps, self.meter, bar=self.progress)  # reported to the grid's view
        with self.stage(stage):
            for t in range(steps):
                self.learning_rate = float(opt.param_groups[0]["lr"])
                self._in_step = True
                try:
                    with self.autocast():
                        loss = step_fn(t)
                finally:
                    self._in_step = False
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"stage '{stage}': loss is {loss.item()} at step {t + 1}")
                opt.zero_grad(set_to_none=True)
                self.meter.charge(self.budget.batch_size, stage)
                self.meter.stepping = True
                try:
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        opt.step()
                finally:
                    self.meter.stepping = False
                if sched is not None:
                    sched.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                if callback is not None and every > 0 and (t + 1) % every == 0:
                    callback(t)
        bar.close()
        self.log.history.append({"stage": stage, "steps": steps, "first_loss": losses[0], "last_loss": losses[-1]})
        return losses

    def train_classifier(
        self,
        model: nn.Module,
        steps: int,
        loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
        sampler: BatchSampler | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        stage: str = "train",
        every: int = 0,
        callback: Callable[[int], None] | None = None,
        mix: bool = True,
        extra: ExtraAugment | None = None,
    ) -> list[float]:
        """Supervised training on the train split with the comparison's augmentation (plus `extra` on some rows)."""
        sampler = sampler or self.sampler(stream=f"batches/{stage}")
        gen, rng = self.generator(f"augment/{stage}"), self.rng(f"mix/{stage}")
        model.train()

        def step(_: int) -> torch.Tensor:
            return loss_fn(model, self.batch(next(sampler), gen, rng, mix=mix, extra=extra))

        return self.optimize(
            model.parameters(),
            steps,
            step,
            lr=self.hparams["lr"] if lr is None else lr,
            weight_decay=self.hparams.get("weight_decay", 0.0) if weight_decay is None else weight_decay,
            stage=stage,
            every=every,
            callback=callback,
        )
