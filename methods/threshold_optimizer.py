"""Equalized-odds post-processing (Hardt, Price & Srebro, NeurIPS 2016) with fairlearn's ThresholdOptimizer.

The whole budget trains ERM; its positive-class scores on the fit half of validation then fit group-specific
(randomised) thresholds that equalise TPR and FPR across groups while maximising accuracy.  Prediction needs
each image's sensitive group (disclosed as "a at inference"); the randomisation is seeded, so it is
deterministic.  Binary targets only.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import predict_scores


@lru_cache(maxsize=1)
def score_column() -> type:
    """A prefit sklearn classifier over one column X = the base model's positive-class score.

    Built on first use: scikit-learn and fairlearn add a second to the start of every worker that loads plugins.
    """
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoreColumn(ClassifierMixin, BaseEstimator):
        def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "ScoreColumn":
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            p = np.asarray(X, dtype=np.float64)[:, 0]
            return np.stack([1.0 - p, p], axis=1)

        def predict(self, X: np.ndarray) -> np.ndarray:
            return (np.asarray(X)[:, 0] >= 0.5).astype(np.int64)

    return ScoreColumn


def fit_thresholds(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, constraints: str, grid_size: int):
    """fairlearn's ThresholdOptimizer fitted on positive-class scores, labels and groups."""
    from fairlearn.postprocessing import ThresholdOptimizer  # fairlearn imports pandas and scipy: load on use

    optimizer = ThresholdOptimizer(
        estimator=score_column()().fit(scores[:, None]),
        constraints=constraints,
        objective="accuracy_score",
        prefit=True,
        predict_method="predict_proba",
        grid_size=grid_size,
    )
    return optimizer.fit(scores[:, None], y, sensitive_features=groups)


class ThresholdedPredictor:
    """Base-model scores -> group-specific thresholds -> one-hot decisions (seeded randomisation)."""

    def __init__(self, model: torch.nn.Module, optimizer, device: torch.device, seed: int):
        self.model, self.optimizer, self.device, self.seed = model, optimizer, device, seed

    def predict(self, images: np.ndarray, groups: np.ndarray) -> np.ndarray:
        positive = predict_scores(self.model, images, self.device)[:, 1]
        decided = self.optimizer.predict(positive[:, None], sensitive_features=groups, random_state=self.seed)
        return np.eye(2, dtype=np.float32)[np.asarray(decided, dtype=np.int64)]


class ThresholdOptimizer(Method):
    name = "threshold-optimizer"
    description = "ERM, then group-specific randomised thresholds for equalized odds fitted on validation (fairlearn)"
    citation = "Hardt, Price & Srebro, Equality of Opportunity in Supervised Learning, NeurIPS 2016; fairlearn"
    labels = LabelUse(
        target="train+val",
        sensitive="val",
        sensitive_at_inference=True,
        note="thresholds fitted on the fit half of validation",
    )
    space = {
        "constraints": Hparam(
            "equalized_odds", choice(["equalized_odds"]), "fairlearn constraint (the board's metric)"
        ),
        "grid_size": Hparam(1000, choice([200, 1000]), "threshold grid of fairlearn's ThresholdOptimizer"),
    }

    def fit(self, ctx):
        if ctx.n_classes != 2:
            raise ValueError(
                f"threshold-optimizer needs a binary target; task '{ctx.task.name}' has {ctx.n_classes} classes"
            )
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss)
        with ctx.stage("thresholds"):
            scores = predict_scores(model, ctx.val.images, ctx.device)[:, 1]
            optimizer = fit_thresholds(
                scores, ctx.val.y, ctx.val.a, ctx.hparams["constraints"], ctx.hparams["grid_size"]
            )
        return ThresholdedPredictor(model, optimizer, ctx.device, ctx.seed)


@hookimpl
def fairfacebench_methods():
    return [ThresholdOptimizer]
