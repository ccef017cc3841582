"""The fit context, the only door between a method and the harness, and the one shared training loop.

It exposes the training and validation splits, the test images without
labels, the unlabeled pool's images and the VLM (when the run has them), a
backbone factory, a read-only view of the budget, seeded generators, the
device and a log: what CONTRIBUTING.md documents, nothing of the harness.
The meter that counts the budget stays with the harness (`fitting.fit_under_meter`).
Which labels a method touched is recorded, so the conformance kit can compare
it with what the method declares.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from fairfacebench.backbones import create_backbone
from fairfacebench.budget import Budget, BudgetExceeded, BudgetMeter
from fairfacebench.data import ImagesOnly, LabeledSplit, PoolImages, TaskData
from fairfacebench.progress import StageSteps
from fairfacebench.settings import Augment
from fairfacebench.speed import autocast, memory_format, precision
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


@dataclass(frozen=True)
class FitSettings:
    """Everything about a run the fit context needs besides its data (built once, e.g. from the run spec)."""

    hparams: dict[str, Any]
    seed: int
    budget: Budget
    device: torch.device = torch.device("cpu")
    augment: Augment = field(default_factory=Augment)
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    transductive: bool = False  # the method may read the test images (never their labels)
    progress: bool = False  # report stage steps to the grid's view


class BudgetView:
    """The budget as a method sees it: the profile and how much of it is left, read-only.

    `steps` is the budget's total, `used` the optimizer steps taken so far, `remaining` the difference;
    `forward_used` and `forward_remaining` the same for forward samples; the meter that counts them stays with the
    harness.
    """

    __slots__ = ("_meter",)

    def __init__(self, meter: BudgetMeter):
        object.__setattr__(self, "_meter", meter)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ctx.budget is read-only (tried to set '{name}'): spend steps through ctx.optimize")

    name = property(lambda self: self._meter.budget.name)
    steps = property(lambda self: self._meter.budget.steps)
    batch_size = property(lambda self: self._meter.budget.batch_size)
    amp = property(lambda self: self._meter.budget.amp)
    used = property(lambda self: self._meter.steps)
    remaining = property(lambda self: self._meter.remaining)
    forward_used = property(lambda self: self._meter.forward_samples, doc="forward samples spent so far")

    @property
    def forward_remaining(self) -> int | None:
        """Forward samples the method may still spend (None: unlimited); a stage that sends more than its steps'
        views through a network (a meta batch, a pass over a set) plans with it."""
        limit = self._meter.forward_limit
        return None if limit is None else limit - self._meter.forward_samples

    stage = property(lambda self: self._meter.stage, doc="the innermost stage running now")

    @property
    def steps_per_stage(self) -> dict[str, int]:
        return dict(self._meter.per_stage)


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
    history: list[dict[str, Any]] = field(default_factory=list)
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

    While a metered network runs, `meter.inside_metered` is above 0, so the guard does not count its convolutions
    as unmetered forwards.

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


Embed = Callable[[Any, np.ndarray], np.ndarray]  # (encoder, uint8 images) -> (N, D) embeddings


class MeteredEncoder:
    """A VLM as methods get it: every image it embeds is charged to the meter (text prompts are not).

    `embed(encoder, images)` is how the harness embeds: shard by shard in this process, or as Ray tasks under
    `--executor ray` (`sharding.RayShards`); the meter is charged here, once, wherever the shards run.
    """

    def __init__(self, encoder: Any, meter: BudgetMeter, embed: Embed):
        self._encoder, self._meter, self._embed = encoder, meter, embed
        self.name, self.info = encoder.name, encoder.info
        self.logit_scale = getattr(encoder, "logit_scale", 100.0)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        self._meter.charge_forward(len(images), "vlm")
        self._meter.inside_metered += 1
        try:
            return self._embed(self._encoder, images)
        finally:
            self._meter.inside_metered -= 1

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode_text(texts)


class FitContext:
    """The only door between a method and the harness: data, task facts, `ctx.budget` (read-only), models, batches,
    the metered loops, seeded randomness and the run log (CONTRIBUTING.md, "The method contract")."""

    def __init__(
        self, data: TaskData, settings: FitSettings, meter: BudgetMeter, vlm: Any = None, embed: Embed | None = None
    ):
        self._settings, self._meter = settings, meter
        self._precision = precision(settings.budget, settings.device)
        self._touched: set[str] = set()
        self._weights_info: dict[str, Any] = {}
        self._in_step = False
        self.log = RunLog()
        self.budget = BudgetView(meter)
        self._vlm = None if vlm is None else MeteredEncoder(vlm, meter, embed or embed_whole)
        self._pool = None if data.pool is None else data.pool.images_only()
        self._test_images = data.test_images if settings.transductive else None
        self.train = SplitView(data.train, "train", self._touched)
        self.val = SplitView(data.val, "val", self._touched)
        self.n_classes = data.n_classes
        self.n_groups = data.n_groups
        self.target_classes = data.target_classes
        self.group_names = data.group_names
        self.resolution = int(data.train.images.shape[1])  # input images are resolution x resolution px
        self.target_attribute = data.target_attribute
        self.sensitive_attributes = data.sensitive_attributes
        self.task = data.task
        self.dataset = data.dataset

    # --- the run's settings (read-only) --------------------------------------------
    hparams = property(lambda self: self._settings.hparams, doc="the values of this trial's hyperparameters")
    seed = property(lambda self: self._settings.seed)
    device = property(lambda self: self._settings.device)
    augment = property(lambda self: self._settings.augment, doc="the comparison's augmentation family")
    backbone_name = property(lambda self: self._settings.backbone)

    # --- data a method may ask for -------------------------------------------------
    @property
    def test_images(self) -> ImagesOnly:
        """Test images for methods that declare `transductive = True` (shown on the leaderboard); never their labels."""
        if self._test_images is None:
            raise IsolationError(
                "ctx.test_images is for transductive methods: declare `transductive = True` on the "
                "method class, and the leaderboard shows that it reads the test images"
            )
        self._touched.add("test.images")
        return self._test_images

    @property
    def pool(self) -> PoolImages | None:
        """The unlabeled pool's images (None without a pool); what is known about them stays with the harness."""
        self._touched.add("pool")
        return self._pool

    @property
    def vlm(self) -> Any:
        self._touched.add("vlm")
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
        backbone, info = create_backbone(self._settings.backbone, self._settings.weights)
        ForwardMeter(self._meter, "backbone").attach(backbone)
        model = Classifier(backbone, backbone.out_dim, heads or {"target": self.n_classes})
        # The layout the backbone computes fastest in at this precision (speed.CPU_LAYOUT, measured), for weights and
        # inputs alike: channels-last MobileNetV2 trains 1.6x faster on CPU than the default layout.
        layout = memory_format(self._settings.backbone, self._precision, self.device)
        self._weights_info = {**info, "memory_format": str(layout).removeprefix("torch."), "precision": self._precision}
        backbone.input_layout = layout
        return model.to(self.device, memory_format=layout)

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
        self._meter.enter(name)
        try:
            yield
        finally:
            self._meter.leave()

    def inner_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step an auxiliary optimizer (e.g. a meta-network's) as part of the current metered step of `optimize`."""
        if not self._in_step:
            raise BudgetExceeded("ctx.inner_step is only for updates inside a step of ctx.optimize (the metered loop)")
        self._meter.inner_steps += 1
        optimizer.step()

    def autocast(self):
        """Mixed precision as the budget asks: float16 on CUDA (`amp`), bfloat16 on CPU (`bf16`), else none."""
        return contextlib.nullcontext() if self._precision == "fp32" else autocast(self._precision, self.device)

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
        `optimizer` is "adamw" or "sgd" (momentum 0.9).
        """
        if steps <= 0:
            return []
        if steps > self.budget.remaining:
            raise BudgetExceeded(
                f"stage '{stage}' asked for {steps} steps but only {self.budget.remaining} of "
                f"{self.budget.steps} remain in budget '{self.budget.name}'"
            )
        opt = make_optimizer(params, optimizer, lr, weight_decay)
        sched = one_cycle(opt, steps) if schedule == "onecycle" else None
        scaler = torch.amp.GradScaler("cuda") if self.budget.amp and self.device.type == "cuda" else None
        losses: list[float] = []
        bar = StageSteps(stage, steps, self._meter, bar=self._settings.progress)  # reported to the grid's view
        with self.stage(stage):
            for t in range(steps):
                loss = self._loss_of_step(step_fn, t, stage)
                self._meter.charge(self.budget.batch_size, stage)
                take_step(opt, loss, scaler)
                if sched is not None:
                    sched.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                if callback is not None and every > 0 and (t + 1) % every == 0:
                    callback(t)
        bar.close()
        self.log.history.append(
            {
                "stage": stage,
                "steps": steps,
                "first_loss": losses[0],
                "last_loss": losses[-1],
                "loss_curve": loss_curve(losses),
            }
        )
        return losses

    def _loss_of_step(self, step_fn: Callable[[int], torch.Tensor], t: int, stage: str) -> torch.Tensor:
        """Step t's loss (inner steps allowed while it is computed); a non-finite loss stops the run."""
        self._in_step = True
        try:
            with self.autocast():
                loss = step_fn(t)
        finally:
            self._in_step = False
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"stage '{stage}': loss is {loss.item()} at step {t + 1}")
        return loss

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


CURVE_POINTS = 50  # loss points a stage keeps in its history entry (a record stays small at 15,000 steps)


def loss_curve(losses: list[float], points: int = CURVE_POINTS) -> list[list[float]]:
    """[step, loss] at most `points` evenly spaced steps (1-based), always the first and the last."""
    n = len(losses)
    if n <= points:
        kept = range(n)
    else:  # spacing (n - 1) / (points - 1) >= 1, so the floored indices are distinct
        kept = [i * (n - 1) // (points - 1) for i in range(points)]
    return [[i + 1, losses[i]] for i in kept]


def embed_whole(encoder: Any, images: np.ndarray) -> np.ndarray:
    """All images through the encoder at once (the harness passes a sharded `Embed`, see `fitting.embedder`)."""
    return encoder.encode_images(images)


def make_optimizer(params: Iterable, kind: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the trainable tensors of `params` (tensors, or groups with their own "lr")."""
    params = list(params)
    groups = [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
        g.setdefault("lr", lr)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got '{kind}'")


def one_cycle(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The one-cycle schedule (a quarter warm-up), or None for stages of <= 4 steps: OneCycleLR divides by
    pct_start·steps − 1, which is zero at 4 steps, so such stages run at constant lr."""
    if steps <= 4:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.25
    )


def take_step(opt: torch.optim.Optimizer, loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Back-propagate `loss` and step `opt` (through the AMP scaler on CUDA)."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
