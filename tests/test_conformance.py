"""The conformance kit: every built-in method passes it, and each check catches the violation it is for."""

import gc

import numpy as np
import pytest

from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.plugins import registry
from fairfacebench.testing import ConformanceError, ConformanceWarning, check_method
from fairfacebench.vlm import VLMUnavailable


@pytest.mark.parametrize("name", sorted(registry().methods))
def test_every_installed_method_conforms(name):
    # check_method hands no VLM by default (vlm=None), so VLM methods are checked on their named no-VLM variant;
    # tests/test_encoders.py runs them with the embedded mini-CLIP.
    report = check_method(registry().method(name))
    assert report.steps is not None and not report.failures, str(report)


class Constant:
    """A predictor that returns fixed scores per image, so the kit's own tests train no network."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float64)

    def predict(self, images):
        return np.tile(self.scores, (len(images), 1))


class Prior(Method):
    """Predicts the training class frequencies: conforms to every check, at zero optimizer steps."""

    name = "kit-prior"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        return Constant(np.bincount(ctx.train.y, minlength=ctx.n_classes) / len(ctx.train))


class Greedy(Prior):
    name = "kit-greedy"

    def fit(self, ctx):
        model = ctx.new_classifier()
        for _ in range(ctx.budget.steps + 1):
            ctx.train_classifier(model, 1, erm_loss)
        return super().fit(ctx)


class RewritesItsBudget(Prior):
    """Resets the step count of the meter behind the fit context and trains past its budget."""

    name = "kit-rewrites-budget"

    def fit(self, ctx):
        model = ctx.new_classifier()
        for steps in (ctx.budget.steps, ctx.budget.steps, 5):
            ctx.train_classifier(model, steps, erm_loss, stage=f"s{steps}")
            ctx._meter.steps = 0
        return super().fit(ctx)


def held_back_splits() -> list:
    """What a hostile plugin finds of the harness's test split by walking the interpreter's objects."""
    return [o for o in gc.get_objects() if type(o).__name__ == "PoisonedTest"]


class Peeks(Prior):
    name = "kit-peeks"

    def fit(self, ctx):
        for held in held_back_splits():
            held.y  # a read of the held-back labels, even if unused
        return super().fit(ctx)


class CopiesTestLabels(Prior):
    """Uses test labels through a private attribute, so only the changed-poison comparison can catch it."""

    name = "kit-copies"

    def fit(self, ctx):
        labels = next(held._y for held in held_back_splits())
        prior = super().fit(ctx)

        class Cheat:
            def predict(self, images):
                return np.eye(ctx.n_classes)[labels] if len(images) == len(labels) else prior.predict(images)

        return Cheat()


class Noisy(Prior):
    name = "kit-noisy"

    def fit(self, ctx):
        p = super().fit(ctx).scores + np.random.rand(ctx.n_classes)  # global state: not reproducible from the seed
        return Constant(p / p.sum())


class Unnormalised(Prior):
    name = "kit-unnormalised"

    def fit(self, ctx):
        return Constant(np.bincount(ctx.train.y, minlength=ctx.n_classes))


class FlatScores(Prior):
    name = "kit-flat"

    def fit(self, ctx):
        super().fit(ctx)

        class Flat:
            def predict(self, images):
                return np.zeros(len(images))

        return Flat()


class UndeclaredGroups(Prior):
    name = "kit-undeclared"

    def fit(self, ctx):
        ctx.train.a
        return super().fit(ctx)


class UnusedPool(Prior):
    name = "kit-unused-pool"
    needs_pool = True


class SilentVLM(Prior):
    name = "kit-silent-vlm"
    needs_vlm = True

    def fit(self, ctx):
        ctx.vlm
        return super().fit(ctx)


class NamedFallback(SilentVLM):
    name = "kit-named-fallback"

    def fit(self, ctx):
        if ctx.vlm is None:
            ctx.log.variant = "prior-without-vlm"
        return super().fit(ctx)


class RefusesWithoutVLM(SilentVLM):
    name = "kit-refuses"

    def fit(self, ctx):
        if ctx.vlm is None:
            raise VLMUnavailable("no encoder: pass --vlm TAG")
        return super().fit(ctx)


class OverDeclares(Prior):
    name = "kit-over-declares"
    labels = LabelUse(target="train+val", sensitive="train")


def test_a_conforming_method_passes_every_check():
    report = check_method(Prior)
    assert report.steps == 0 and report.touched == ["train.target"]
    checks = {check for check, status, _ in report.results if status == "PASS"}
    assert checks == {
        "harness",
        "budget",
        "reach",
        "threads",
        "metering",
        "isolation",
        "test labels",
        "determinism",
        "predictions",
        "requirements",
    }


@pytest.mark.parametrize(
    "method, check, words",
    [
        (Greedy, "budget", "BudgetExceeded"),
        (RewritesItsBudget, "metering", "29 optimizer step(s) the meter did not charge"),
        (Peeks, "test labels", "read the test split's target labels during fit"),
        (CopiesTestLabels, "test labels", "change when only the (poisoned) test labels change"),
        (Noisy, "determinism", "different predictions"),
        (Unnormalised, "predictions", "rows sum to 1 only within"),
        (FlatScores, "predictions", "shape (48,), expected (48, 2)"),
        (UndeclaredGroups, "requirements", "read ['train.sensitive'] which"),
        (UnusedPool, "requirements", "needs_pool = True but the method never reads ctx.pool"),
        (SilentVLM, "requirements", "named no fallback variant"),
        (RefusesWithoutVLM, "requirements", "pass check_method(..., vlm=ENCODER)"),
    ],
)
def test_each_check_catches_its_violation(method, check, words):
    with pytest.raises(ConformanceError) as err:
        check_method(method)
    failures = err.value.report.failures
    assert any(f.startswith(f"{check}:") and words in f for f in failures), str(err.value.report)


def test_a_named_fallback_without_vlm_passes():
    report = check_method(NamedFallback)
    assert report.variant == "prior-without-vlm" and not report.failures


def test_hparams_override_the_defaults_and_must_exist():
    assert check_method(Prior, hparams={"lr": 0.01}).hparams["lr"] == 0.01
    with pytest.raises(ValueError, match=r"no hyperparameter\(s\) \['alpha'\]; its space is \['lr', 'weight_decay'\]"):
        check_method(Prior, hparams={"alpha": 1.0})


def test_declared_labels_never_read_only_warn():
    with pytest.warns(ConformanceWarning, match=r"declares \['val.target', 'train.sensitive'\] but never read them"):
        report = check_method(OverDeclares)
    assert not report.failures and len(report.warnings) == 1
