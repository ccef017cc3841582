"""Honest comparisons: compute outside the meter is caught, labels and held-back data are out of reach,
selection reads rows no method fitted on, tables group only runs of one comparison, run ids follow the data."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_layouts import build_utkface
from records import fake_record, metrics
from torchvision.models import mobilenet_v2

from fairfacebench import hookimpl
from fairfacebench.budget import Budget, BudgetExceeded, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import make_task_data
from fairfacebench.datasets.utkface import parse_name
from fairfacebench.grid import execute
from fairfacebench.leaderboard.tables import build
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.simclr import SimCLR, pretrain
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import build_registry, registry
from fairfacebench.record import RunRecord
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES, check_method, reachable_truth, tiny_task
from fairfacebench.training import Predictor


class Prior(Method):
    """Predicts the training class frequencies; the mutants below add one violation each."""

    name = "acct-prior"
    description = "test double"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        probs = np.bincount(ctx.train.y, minlength=ctx.n_classes) / len(ctx.train)
        return Predictor(ConstantNet(probs), ctx.device)


class ConstantNet(torch.nn.Module):
    def __init__(self, probs):
        super().__init__()
        self.register_buffer("logits", torch.log(torch.as_tensor(probs, dtype=torch.float32) + 1e-6))

    def forward(self, x, head="target"):
        return self.logits.expand(len(x), -1)


class OwnNetwork(Prior):
    """Embeds the training images with a network it built itself: forwards the meter never sees."""

    name = "acct-own-network"

    def fit(self, ctx):
        net = mobilenet_v2(weights=None).eval()
        with torch.no_grad():
            net(ctx.images_to_input(ctx.train.images[:16]))
        return super().fit(ctx)


class OwnOptimizer(Prior):
    """Trains the classifier ctx gave it with its own optimizer loop, outside ctx.optimize."""

    name = "acct-own-optimizer"

    def fit(self, ctx):
        model = ctx.new_classifier()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(3):
            b = ctx.batch(np.arange(8), ctx.generator("x"), ctx.rng("x"))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(b.x), b.y).backward()
            opt.step()
        return Predictor(model, ctx.device)


class SearchesContext(Prior):
    """Looks for the test labels along every attribute path from ctx (there is none) and predicts them if found."""

    name = "acct-searches-context"

    def fit(self, ctx):
        found = reachable_truth(ctx)
        assert not found, found  # the harness guarantees this; the kit's isolation check re-proves it
        return super().fit(ctx)


class Greedy(Prior):
    """Embeds the training images over and over: more inference passes than the budget allows."""

    name = "acct-greedy-forwards"

    def fit(self, ctx):
        model = ctx.new_classifier()
        with ctx.stage("embed-again"), torch.no_grad():
            for _ in range(20):
                for start in range(0, len(ctx.train), 64):
                    model.features(ctx.images_to_input(ctx.train.images[start : start + 64]))
        return super().fit(ctx)


def test_a_method_with_its_own_network_is_caught_by_the_kit_and_failed_by_the_runner(tmp_path):
    report = check_method(OwnNetwork, raise_on_failure=False)
    assert any("metering: unmetered forwards (16 images through a Conv2d)" in f for f in report.failures), report
    record = _run_one(tmp_path, OwnNetwork)
    assert record.status == "failed" and record.error.startswith("UnmeteredCompute: unmetered forwards")


def test_a_method_stepping_its_own_optimizer_is_caught_by_the_kit_and_failed_by_the_runner(tmp_path):
    report = check_method(OwnOptimizer, raise_on_failure=False)
    assert any("metering: 3 optimizer step(s) the meter did not charge" in f for f in report.failures), report
    record = _run_one(tmp_path, OwnOptimizer)
    assert record.status == "failed" and "3 optimizer step(s) the meter did not charge" in record.error


def test_nothing_reachable_from_the_context_leads_to_test_labels_or_pool_truth():
    report = check_method(SearchesContext, raise_on_failure=False)
    assert not report.failures and any(c == "isolation" and s == "PASS" for c, s, _ in report.results), report
    data = tiny_task(needs_pool=True)
    budget = Budget("t", 1, 8)
    ctx = FitContext(data, FitSettings({}, 0, budget, weights="none"), BudgetMeter(budget))
    assert reachable_truth(ctx) == []
    ctx.leak = data  # a harness that handed the task data to methods would be caught
    assert reachable_truth(ctx) == ["ctx.leak (TaskData)"]
    with pytest.raises(PermissionError, match="declare `transductive = True`"):
        ctx.test_images


def test_forward_samples_past_the_limit_raise_naming_the_stage():
    report = check_method(Greedy, raise_on_failure=False)
    assert any("budget: BudgetExceeded" in f and "stage 'embed-again'" in f for f in report.failures), report


def test_two_view_contrastive_steps_are_charged_two_forward_samples_per_image():
    data = tiny_task(needs_pool=True)
    budget = Budget("t", steps=3, batch_size=8)
    meter = BudgetMeter(budget, forward_limit=budget.forward_limit(len(data.train)))
    ctx = FitContext(data, FitSettings(SimCLR.default_hparams(), 0, budget, weights="none"), meter)
    pretrain(ctx, ctx.new_classifier(), data.train.images, steps=3)
    assert meter.forward_per_stage["nt-xent"] == {"backbone": 2 * 3 * 8}
    assert meter.report()["forward_samples"] == 48 and meter.steps == 3


def test_the_meter_charges_stages_and_refuses_past_its_limit():
    meter = BudgetMeter(Budget("t", steps=1, batch_size=4), forward_limit=10)
    meter.enter("embed")
    meter.charge_forward(6, "vlm")
    meter.enter("inner")
    meter.charge_forward(4, "backbone")
    with pytest.raises(
        BudgetExceeded, match="allows 10 forward samples.*stage 'inner' asked for 1 more through the backbone"
    ):
        meter.charge_forward(1, "backbone")
    meter.leave()
    meter.close()
    meter.charge_forward(100, "backbone")  # after fit: the harness's evaluation, not charged
    rep = meter.report()
    assert rep["forward_samples_per_stage"] == {"embed": {"vlm": 6}, "inner": {"backbone": 4}}
    assert rep["forward_samples"] == 10 and set(rep["wall_time_per_stage_s"]) >= {"embed", "inner"}
    assert Budget("t", steps=5, batch_size=4).forward_limit(100) == 5 * 4 * 2 + 3 * 100


def test_a_method_fitting_on_validation_labels_is_selected_on_rows_it_never_saw(tmp_path):
    store = ResultStore(tmp_path / "runs")
    plan = load_plan(
        flags={
            "methods": ["val-reweight"],
            "budget": "smoke",
            "bootstrap": 0,
            "dataset_options": {"synthfaces": SMALL_SYNTHFACES},
        }
    )
    (spec,) = expand(plan)
    execute([spec], store, SpecRunner("cpu"))
    (record,) = store.records()
    split = record.dataset_info["val_split"]
    assert split["fit"] + split["select"] == SMALL_SYNTHFACES["n_val"] and split["select"] >= split["fit"]
    selected_on = set(store.predictions(record.run_id)["val_ids"])
    assert sum(g["n"] for g in record.per_group["val"]["per_group"]) == split["select"] == len(selected_on)
    data = make_task_data(
        registry().dataset("synthfaces").load(None, 32, tmp_path, **SMALL_SYNTHFACES),
        registry().dataset("synthfaces").tasks[0],
    )
    assert selected_on.isdisjoint(set(data.val.ids)) and selected_on == set(data.val_select.ids)
    assert "val.target" in record.labels_touched and "y:train+val" in record.labels_used


def _record(run_id, backbone, acc, seed=0, data_root="/a"):
    return fake_record(
        run_id=run_id, seed=seed, test=metrics(acc), backbone=backbone, data_fingerprint="f", data_root=data_root
    )


def test_a_store_with_two_backbones_yields_two_tables_not_one_max_selected_cell(tmp_path):
    store = ResultStore(tmp_path)
    store.write("a", _record("a", "mobilenet_v2", 0.6))
    store.write("b", _record("b", "resnet18", 0.9))
    store.write("c", _record("c", "mobilenet_v2", 0.7, seed=1, data_root="/elsewhere"))  # where data lives: no matter
    tables = build(tmp_path).tables
    assert len(tables) == 2
    by_backbone = {t.distinguished_by["backbone"]: t for t in tables}
    assert by_backbone["resnet18"].rows[0].acc.mean == 0.9
    assert by_backbone["mobilenet_v2"].rows[0].acc.mean == pytest.approx(0.65)
    assert by_backbone["mobilenet_v2"].rows[0].seeds == 2


def test_moving_the_data_folder_keeps_run_ids_and_changing_the_data_changes_them(tmp_path):
    build_utkface(tmp_path / "a" / "UTKFace")

    def ids(root):
        plan = load_plan(
            flags={"datasets": ["utkface"], "methods": ["erm"], "budget": "smoke", "data_roots": {"utkface": str(root)}}
        )
        return [s.run_id for s in expand(plan)]

    before = ids(tmp_path / "a" / "UTKFace")
    shutil.move(tmp_path / "a" / "UTKFace", tmp_path / "b")
    assert ids(tmp_path / "b") == before
    first = next(p for p in sorted((tmp_path / "b").glob("*.jpg")) if not isinstance(parse_name(p.name), str))
    age, gender, race, rest = first.name.split("_", 3)
    first.rename(first.with_name(f"{age}_{1 - int(gender)}_{race}_{rest}"))  # one relabelled face
    assert ids(tmp_path / "b") != before


def _run_one(tmp_path: Path, method: type) -> RunRecord:
    reg = build_registry(extra=(_Plugins(method),))
    plan = load_plan(
        flags={
            "methods": [method.name],
            "budget": "smoke",
            "bootstrap": 0,
            "dataset_options": {"synthfaces": SMALL_SYNTHFACES},
        }
    )
    store = ResultStore(tmp_path / method.name)
    execute(expand(plan, reg), store, SpecRunner("cpu", reg=reg))
    (record,) = store.records()
    return record


class _Plugins:
    """A plugin object registering one test method."""

    def __init__(self, method):
        self.method = method

    @hookimpl
    def fairfacebench_methods(self):
        return [self.method]
