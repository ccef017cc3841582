"""JTT: Just Train Twice (Liu et al., ICML 2021, Algorithm 1) — no sensitive labels.

1. identification: an ERM model trained for T steps, T = ``first_frac`` of the
   budget (the paper's few epochs); the error set E is every training example
   it misclassifies (scored without augmentation, in evaluation mode);
2. up-sampling: E is up-weighted by λ_up.  The paper duplicates E λ_up times;
   batches drawn i.i.d. with probability ∝ λ_up for i ∈ E and ∝ 1 otherwise
   have the same distribution;
3. final model: a fresh ERM model (ImageNet initialisation, as the paper
   retrains from scratch) on the up-sampled data for the rest of the budget.
"""

from __future__ import annotations

import numpy as np

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, uniform
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import Predictor, predict_scores


def error_set(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E = {i : argmax scores_i ≠ y_i}, the identification model's training errors (Algorithm 1, stage 1), as a mask."""
    return scores.argmax(1) != y


def upsampling_probabilities(errors: np.ndarray, lambda_up: float) -> np.ndarray:
    """Sampling probabilities of the up-sampled set: ∝ λ_up on E, ∝ 1 elsewhere (Algorithm 1, stage 2)."""
    w = np.where(errors, float(lambda_up), 1.0)
    return w / w.sum()


class JTT(Method):
    name = "jtt"
    description = "Just Train Twice: train ERM briefly, then retrain with its training errors up-sampled"
    citation = "Liu et al., Just Train Twice: Improving Group Robustness without Training Group Information, ICML 2021"
    labels = LabelUse(target="train")
    space = {
        "first_frac": Hparam(0.25, uniform(0.1, 0.5), "share of the budget for the identification model (T)"),
        "lambda_up": Hparam(20.0, choice([5.0, 10.0, 20.0, 50.0]), "up-sampling factor λ_up of the error set"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        total = ctx.budget.remaining
        first_steps = max(1, int(round(hp["first_frac"] * total)))

        identifier = ctx.new_classifier()
        ctx.train_classifier(identifier, first_steps, erm_loss, stage="identify")
        with ctx.stage("identify-errors"):  # one inference pass over the training set
            errors = error_set(predict_scores(identifier, ctx.train.images, ctx.device), ctx.train.y)
        probs = upsampling_probabilities(errors, hp["lambda_up"])
        ctx.log.stage(
            "identify",
            steps=first_steps,
            error_set_size=int(errors.sum()),
            error_rate=round(float(errors.mean()), 4),
            share_of_draws_from_errors=round(float(probs[errors].sum()), 4),
        )
        del identifier

        model = ctx.new_classifier()
        ctx.train_classifier(
            model, ctx.budget.remaining, erm_loss, sampler=ctx.sampler(weights=probs, stream="upsampled"), stage="final"
        )
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [JTT]
