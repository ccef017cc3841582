"""The harness: budget metering, store, resume, loss weights, augmentation."""

import json
import re

import numpy as np
import pytest
import torch
from records import fake_record

from fairfacebench import hookimpl
from fairfacebench.budget import Budget, BudgetExceeded, BudgetMeter
from fairfacebench.context import Batch, BudgetView, FitContext, FitSettings, loss_curve
from fairfacebench.grid import execute
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import cross_entropy
from fairfacebench.methods.erm import ERM
from fairfacebench.methods.reweight import inverse_frequency_weights, kamiran_calders_weights
from fairfacebench.methods.val_reweight import attention_scores, cell_accuracy
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import build_registry
from fairfacebench.record import listings_cut
from fairfacebench.runner import SpecRunner
from fairfacebench.settings import Augment
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH
from fairfacebench.testing import tiny_task
from fairfacebench.training import Predictor, augment_batch


def test_meter_refuses_the_step_after_the_budget():
    meter = BudgetMeter(Budget("t", steps=2, batch_size=4))
    meter.charge(4, "a")
    meter.charge(4, "b")
    with pytest.raises(BudgetExceeded, match="allows 2 optimizer steps"):
        meter.charge(4, "b")
    assert meter.report()["steps_per_stage"] == {"a": 1, "b": 1}
    assert meter.samples == 8


class BudgetHog(Method):
    """Asks for one step more than it has."""

    name = "budget-hog"
    description = "test method that overspends"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining + 1, lambda m, b: cross_entropy(m(b.x), b).mean())


class SneakyHog(Method):
    """Runs its own loop of one-step stages, one step too many."""

    name = "sneaky-hog"
    description = "test method that overspends in a hand-written loop"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        for _ in range(ctx.budget.steps + 1):
            ctx.train_classifier(model, 1, lambda m, b: cross_entropy(m(b.x), b).mean(), stage="custom")


class RewritesItsBudget(Method):
    """The hostile plugin of the structure review: resets the step count and claims to be inside a metered step."""

    name = "rewrites-its-budget"
    description = "test method that rewrites its meter"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        ctx.meter.steps = 0
        ctx.meter.stepping = True


class ResetsThePrivateMeter(Method):
    """Digs out the harness's meter behind the fit context, resets it twice and trains 29 steps on a 12-step budget."""

    name = "resets-the-private-meter"
    description = "test method that resets the meter it should not reach"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        for steps in (ctx.budget.steps, ctx.budget.steps, 5):
            ctx.train_classifier(model, steps, lambda m, b: cross_entropy(m(b.x), b).mean(), stage=f"s{steps}")
            ctx._meter.steps = 0
        return Predictor(model, ctx.device)


class _TestPlugins:
    @hookimpl
    def fairfacebench_methods(self):
        return [BudgetHog, SneakyHog, RewritesItsBudget, ResetsThePrivateMeter]


@pytest.fixture(scope="module")
def reg():
    return build_registry(extra=(_TestPlugins(),))


def tiny_grid(methods, seeds=1, budget="smoke"):
    return load_plan(
        flags={
            "datasets": ["synthfaces"],
            "methods": methods,
            "seeds": seeds,
            "budget": budget,
            "dataset_options": {"synthfaces": TINY_SYNTH},
        }
    )


def test_a_method_exceeding_the_budget_is_stopped_and_recorded(tmp_path, reg):
    store = ResultStore(tmp_path)
    counts = execute(expand(tiny_grid(["budget-hog", "sneaky-hog"]), reg), store, SpecRunner("cpu", reg=reg))
    assert counts == {"ok": 0, "failed": 2, "skipped": 0}
    errors = {r.method: r.error for r in store.records()}
    assert "BudgetExceeded" in errors["budget-hog"] and "asked for 13 steps" in errors["budget-hog"]
    assert "BudgetExceeded" in errors["sneaky-hog"] and "only 0 of 12 remain" in errors["sneaky-hog"]


def test_a_method_cannot_rewrite_its_budget(tmp_path, reg):
    """ctx.budget is a read-only view; the meter and the guard's step count stay out of a method's reach, so
    rewriting the budget fails the run (before: ctx.meter was the live meter, and 29 steps on a 12-step budget
    passed as "took 12 of 12")."""
    store = ResultStore(tmp_path)
    specs = expand(tiny_grid(["rewrites-its-budget", "resets-the-private-meter"]), reg)
    counts = execute(specs, store, SpecRunner("cpu", reg=reg))
    assert counts == {"ok": 0, "failed": 2, "skipped": 0}
    errors = {r.method: r.error for r in store.records()}
    assert errors["rewrites-its-budget"].startswith("AttributeError") and "meter" in errors["rewrites-its-budget"]
    assert errors["resets-the-private-meter"].startswith("UnmeteredCompute: 29 optimizer step(s) the meter did not")
    with pytest.raises(AttributeError, match="ctx.budget is read-only"):
        setattr(BudgetView(BudgetMeter(Budget("t", 2, 4))), "remaining", 99)


def test_interrupted_grid_recomputes_only_missing_runs(tmp_path, reg, monkeypatch):
    calls = []
    original = ERM.fit
    monkeypatch.setattr(ERM, "fit", lambda self, ctx: calls.append(ctx.seed) or original(self, ctx))
    specs = expand(tiny_grid(["erm"], seeds=3), reg)
    store = ResultStore(tmp_path)

    def interrupt_after_first(spec, status):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(specs, store, SpecRunner("cpu", reg=reg), on_result=interrupt_after_first)
    assert calls == [0] and store.status(specs[0].run_id) == "ok"
    (tmp_path / ".half-written").mkdir()  # a temp dir left by a killed writer is ignored
    counts = execute(specs, store, SpecRunner("cpu", reg=reg))
    assert calls == [0, 1, 2]
    assert counts == {"ok": 2, "failed": 0, "skipped": 1}
    assert len(list(store.records())) == 3


def test_same_spec_and_seed_give_identical_metrics(tmp_path, reg):
    spec = expand(tiny_grid(["erm"]), reg)[0]
    for out in ("a", "b"):
        execute([spec], ResultStore(tmp_path / out), SpecRunner("cpu", reg=reg))
    a, b = (json.loads((tmp_path / o / spec.run_id / "record.json").read_text()) for o in ("a", "b"))
    assert a["metrics"] == b["metrics"]


def test_inverse_frequency_weights_by_hand():
    # cells (a,y): (0,0) x3, (0,1) x1, (1,0) x1, (1,1) x1 -> raw 1/n = [[1/3, 1], [1, 1]]
    y = np.array([0, 0, 0, 1, 0, 1])
    a = np.array([0, 0, 0, 0, 1, 1])
    w = inverse_frequency_weights(y, a, 2, 2)
    # mean over samples of raw weights = (3*(1/3) + 1 + 1 + 1) / 6 = 4/6
    np.testing.assert_allclose(w, np.array([[1 / 3, 1], [1, 1]]) / (4 / 6))
    assert w[a, y].mean() == pytest.approx(1.0)


def test_kamiran_calders_weights_by_hand():
    y = np.array([0, 0, 0, 1, 0, 1])
    a = np.array([0, 0, 0, 0, 1, 1])
    # n=6; n(a=0)=4, n(a=1)=2; n(y=0)=4, n(y=1)=2
    # w(0,0)=4*4/(6*3)=16/18; w(0,1)=2*4/(6*1)=8/6; w(1,0)=4*2/(6*1)=8/6; w(1,1)=2*2/(6*1)=4/6
    np.testing.assert_allclose(kamiran_calders_weights(y, a, 2, 2), [[16 / 18, 8 / 6], [8 / 6, 4 / 6]])


def test_attention_scores_weight_up_underperforming_cells():
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 0, 1, 0, 0])  # group 1 does worse
    acc = cell_accuracy(y, a, pred, 2, 2)
    np.testing.assert_allclose(acc, [[1, 1], [0.5, 0]])
    s = attention_scores(acc)
    # err+δ = [0.01, 0.01, 0.51, 1.01], mean 0.385
    np.testing.assert_allclose(s, np.array([[0.01, 0.01], [0.51, 1.01]]) / 0.385)


def test_mixing_cross_entropy_is_the_weighted_sum_of_both_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    view = type("V", (), {"a": np.zeros(2, dtype=int)})()
    plain = cross_entropy(logits, Batch(torch.zeros(2, 3, 4, 4), np.arange(2), y, view))
    mixed = cross_entropy(
        logits, Batch(torch.zeros(2, 3, 4, 4), np.arange(2), y, view, perm=torch.tensor([1, 0]), lam=0.75)
    )
    swapped = cross_entropy(logits, Batch(torch.zeros(2, 3, 4, 4), np.arange(2), y.flip(0), view))
    torch.testing.assert_close(mixed, 0.75 * plain + 0.25 * swapped)


def test_augmentation_is_seeded_and_keeps_shape_and_range():
    x = torch.rand(8, 3, 16, 16)
    aug = Augment(flip=True, crop=3, jitter=0.3)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    out1, out2 = augment_batch(x, aug, g1), augment_batch(x, aug, g2)
    assert out1.shape == x.shape and torch.equal(out1, out2)
    assert out1.min() >= 0 and out1.max() <= 1 and not torch.equal(out1, x)
    assert torch.equal(augment_batch(x, Augment(flip=False, crop=0, jitter=0.0), g1), x)


def test_store_writes_are_atomic_and_replace_old_attempts(tmp_path):
    store = ResultStore(tmp_path)
    failed = fake_record(run_id="r1", error="E: boom")
    failed.wall_time_s = float("nan")  # stored as null
    store.write("r1", failed)
    assert store.status("r1") == "failed" and store.record("r1").wall_time_s is None
    store.write("r1", fake_record(run_id="r1"), {"p": np.arange(3)})
    assert store.status("r1") == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["r1"]
    np.testing.assert_array_equal(store.predictions("r1")["p"], np.arange(3))


def test_a_record_keeps_the_first_entries_of_a_plugins_long_listings_with_their_count_and_hash():
    info = {"skipped_files": [f"f{i}" for i in range(12)], "near": {"conflicts": [["a", "b"]] * 3}, "n": 5}
    cut = listings_cut(info, limit=10)
    assert cut["skipped_files"]["first"] == [f"f{i}" for i in range(10)] and cut["skipped_files"]["count"] == 12
    assert len(cut["skipped_files"]["sha256"]) == 64 and cut["near"] == info["near"] and cut["n"] == 5


def test_plain_data_is_checked_against_the_annotations_and_named_by_path():
    from dataclasses import dataclass, field
    from typing import Literal

    from fairfacebench.typed import PlainTypeError, from_plain, to_plain

    @dataclass
    class Inner:
        x: float
        tag: Literal["a", "b"] = "a"

    @dataclass
    class Outer:
        name: str
        inner: Inner
        counts: dict[str, int] = field(default_factory=dict)
        note: str | None = None
        OMIT_WHEN_NONE = ("note",)

    value = from_plain(Outer, {"name": "n", "inner": {"x": 1}, "counts": {"a": 2}})
    assert value == Outer("n", Inner(1), {"a": 2}) and to_plain(value) == {
        "name": "n",
        "inner": {"x": 1, "tag": "a"},
        "counts": {"a": 2},
    }  # an integer is a number; a None field in OMIT_WHEN_NONE is left out
    for plain, message in [
        ({"name": "n", "inner": {"x": "1"}}, "inner.x: expected a number, got '1'"),
        ({"name": "n", "inner": {"x": 1, "tag": "c"}}, "inner.tag: expected one of ['a', 'b'], got 'c'"),
        ({"name": "n", "inner": {"x": 1}, "counts": {"a": True}}, "counts.a: expected an integer, got True"),
        ({"name": "n", "inner": {"x": 1}, "note": 3}, "note: expected a string, got 3"),
        ({"name": "n"}, "the record: missing field(s) ['inner']"),
        ({"name": "n", "inner": {"x": 1}, "extra": 1}, "the record: unknown field(s) ['extra']"),
    ]:
        with pytest.raises(PlainTypeError, match=re.escape(message)):
            from_plain(Outer, plain)


def test_loss_curve_keeps_at_most_50_evenly_spaced_steps_with_the_first_and_the_last():
    assert loss_curve([3.0, 2.0, 1.5]) == [[1, 3.0], [2, 2.0], [3, 1.5]]  # short stages keep every step
    # 99 steps: spacing (99 - 1) / 49 = 2 exactly, so steps 1, 3, ..., 99
    curve = loss_curve([float(t) for t in range(99)])
    assert len(curve) == 50 and curve[:2] == [[1, 0.0], [3, 2.0]] and curve[-1] == [99, 98.0]
    # 120 steps: index i * 119 // 49, e.g. i = 1 -> 2 (step 3), i = 48 -> 5712 // 49 = 116 (step 117)
    curve = loss_curve([float(t) for t in range(120)])
    assert len(curve) == 50 and curve[1] == [3, 2.0] and curve[-2:] == [[117, 116.0], [120, 119.0]]
    assert len({step for step, _ in curve}) == 50
    assert loss_curve([]) == []


def test_optimize_records_the_stage_loss_curve_next_to_its_first_and_last_loss():
    budget = Budget("t", 120, 8)
    ctx = FitContext(tiny_task(needs_pool=False), FitSettings({}, 0, budget, weights="none"), BudgetMeter(budget))
    w = torch.nn.Parameter(torch.zeros(1))
    losses = ctx.optimize([w], 120, lambda t: (w * 0.0).sum() + float(t), lr=0.1, stage="probe")  # loss t at step t
    (entry,) = ctx.log.history
    assert losses == [float(t) for t in range(120)]
    assert {k: entry[k] for k in ("stage", "steps", "first_loss", "last_loss")} == {
        "stage": "probe",
        "steps": 120,
        "first_loss": 0.0,
        "last_loss": 119.0,
    }
    assert entry["loss_curve"] == loss_curve(losses) and entry["loss_curve"][-1] == [120, 119.0]
