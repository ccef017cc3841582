"""Fitting a method under the meter: the one place where a fit context is built and a method is watched as it fits,
and where its predictor is asked for scores.

The runner (`runner.run_one`), the sealed child (`sealed_child`) and the conformance kit (`testing.fit_predict`)
call `fit_under_meter` and then `predict_under_meter`, so a method is metered, guarded and isolated the same way
in a run in the harness's process, in a sealed run and in the kit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from fairfacebench.budget import BudgetMeter
from fairfacebench.context import Embed, FitContext, FitSettings, RunLog
from fairfacebench.data import TaskData
from fairfacebench.guards import PredictorChanged, UnmeteredCompute, Violations, changed_state, state_digest, watch
from fairfacebench.sharding import RayShards, embed_in_shards


@dataclass
class Fitted:
    """What one fit left behind: the predictor, the meter's report and what the method did."""

    predictor: Any
    budget_report: dict[str, Any]
    steps: int
    forward_samples: int
    forward_limit: int | None
    touched: set[str]
    log: RunLog
    weights: dict[str, Any]
    violations: Violations
    meter: BudgetMeter  # closed; the sealed child reopens it to count prediction's forwards


def readable_arrays(cls: type, data: TaskData) -> list[np.ndarray]:
    """The image arrays a run lets its method read while it fits: train, the fit part of validation, the pool, test
    images if transductive."""
    arrays = [data.train.images, data.val.images]
    if cls.needs_pool and data.pool is not None:
        arrays.append(data.pool.images)
    if cls.transductive:
        arrays.append(data.test.images)
    return arrays


def readable_images(cls: type, data: TaskData) -> int:
    """Images a run lets its method read while it fits (`readable_arrays`): what its forward limit is counted on."""
    return sum(len(images) for images in readable_arrays(cls, data))


def embedder(shards: RayShards | None) -> Embed:
    """How a run's VLM embeds an array: shard by shard in this process, or as Ray tasks (`--executor ray`)."""
    if shards is not None:
        return shards
    return lambda encoder, images: embed_in_shards(encoder.encode_images, images)


def fit_under_meter(
    method_cls: type,
    data: TaskData,
    settings: FitSettings,
    vlm: Any = None,
    shards: RayShards | None = None,
    before_fit: Callable[[FitContext], None] | None = None,
    tally: Callable[[str, int, str], None] | None = None,
) -> Fitted:
    """Fit `method_cls` on `data` through a fresh fit context, every step and forward metered and watched.

    `before_fit(ctx)` sees the context the method will get (the conformance kit walks it for held-back data);
    `tally` hears of every charge to the meter as it happens (the sealed child sends them to the harness).
    """
    torch.manual_seed(settings.seed)
    budget = settings.budget
    limit = budget.forward_limit(readable_images(method_cls, data))
    meter = BudgetMeter(budget, forward_limit=limit, tally=tally)
    ctx = FitContext(data, settings, meter, vlm, embedder(shards))
    if before_fit is not None:
        before_fit(ctx)
    with watch(meter) as violations:
        predictor = method_cls().fit(ctx)
        meter.close()
    if shards is not None and shards.report():
        ctx.log.stage("vlm-shards", **shards.report())
    return Fitted(
        predictor,
        meter.report(),
        meter.steps,
        meter.forward_samples,
        meter.forward_limit,
        set(ctx._touched),
        ctx.log,
        ctx._weights_info,
        violations,
        meter,
    )


def predict_images(predictor: Any, images: np.ndarray, groups: np.ndarray | None) -> Any:
    """The predictor's scores of `images` (with their groups when given), under `torch.inference_mode()`: nothing
    a predictor computes can be trained by autograd."""
    with torch.inference_mode():
        return predictor.predict(images) if groups is None else predictor.predict(images, groups=groups)


@dataclass
class Predicted:
    """The scores of each request, in order (copies, as returned), and what predicting them cost."""

    scores: list[Any]
    forward_samples: int
    seconds: list[float]  # of each request


def snapshot(scores: Any) -> Any:
    """A float64 copy of returned scores (the object itself when it is not numeric: `checked_scores` says why)."""
    try:
        return np.array(scores, dtype=np.float64)
    except (TypeError, ValueError):
        return scores


def predict_under_meter(fitted: Fitted, requests: list[tuple[np.ndarray, np.ndarray | None]]) -> Predicted:
    """Ask the fitted predictor for the scores of each (images, groups or None), in order, watched.

    The meter is reopened for prediction (at most `inference_passes` forwards per image, no optimizer step),
    the guard watches for unmetered compute, and prediction fails when the predictor changed its tensors or
    arrays (it trained on what it scored) or an array of scores it had already returned.
    """
    meter, predictor = fitted.meter, fitted.predictor
    meter.open_for_prediction(sum(len(images) for images, _ in requests))
    before = state_digest(predictor)
    returned, scores, seconds = [], [], []
    with watch(meter) as violations:
        for images, groups in requests:
            started = time.perf_counter()
            returned.append(predict_images(predictor, images, groups))
            scores.append(snapshot(returned[-1]))  # at once: what the predictor keeps cannot change it later
            seconds.append(time.perf_counter() - started)
    meter.close()
    if violations:
        raise UnmeteredCompute(f"while predicting: {violations.describe()}")
    changed = changed_state(before, state_digest(predictor))
    changed += [f"scores of request {i + 1}" for i, (r, s) in enumerate(zip(returned, scores)) if changed_scores(r, s)]
    if changed:
        raise PredictorChanged(
            f"the predictor changed {len(changed)} tensor(s) or array(s) while predicting (first: {changed[0]}): "
            "it may not train or adapt on the images it scores, nor change scores it returned"
        )
    return Predicted(scores, meter.forward_samples - fitted.forward_samples, seconds)


def changed_scores(returned: Any, kept: Any) -> bool:
    """Whether an array of scores the predictor returned differs from the copy taken when it was returned."""
    if not isinstance(returned, np.ndarray) or not isinstance(kept, np.ndarray) or returned.shape != kept.shape:
        return False
    return not np.array_equal(np.asarray(returned, dtype=np.float64), kept, equal_nan=True)
