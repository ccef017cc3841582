"""The speed settings: layout per backbone and precision, bfloat16 as a budget setting refused where it is not native,
and the plan's wall-time estimate (hand-checked packing, method costs from records, the dry run prints it)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from records import fake_record, fake_spec

from fairfacebench import estimate as est
from fairfacebench import preflight
from fairfacebench.budget import Budget
from fairfacebench.cli import main
from fairfacebench.errors import ConfigError
from fairfacebench.speed import memory_format, precision
from fairfacebench.testing import SMALL_SYNTHFACES


def test_each_backbone_trains_in_its_measured_layout():
    assert memory_format("mobilenet_v2", "fp32", "cpu") == torch.channels_last
    assert memory_format("resnet18", "fp32", "cpu") == torch.contiguous_format  # measured slower channels-last
    assert memory_format("resnet18", "bf16", "cpu") == torch.channels_last
    assert memory_format("timm:vit_tiny", "fp32", "cpu") == torch.channels_last  # not measured: the default
    assert memory_format("resnet18", "fp32", "cuda") == torch.channels_last


def test_bf16_is_a_budget_setting_in_the_comparison_key_and_absent_from_old_ids():
    plain = Budget("b", steps=5, batch_size=10)
    assert "bf16" not in plain.to_dict()  # budgets without it keep the run ids they had before the field
    spec = fake_spec(budget=plain)
    bf16 = replace(spec, budget=replace(plain, bf16=True))
    assert bf16.comparison_id != spec.comparison_id and bf16.budget.to_dict()["bf16"] is True
    assert precision(bf16.budget, "cpu") == "bf16" and precision(plain, "cpu") == "fp32"
    assert precision(replace(plain, amp=True), "cuda") == "fp16"


def test_a_bf16_budget_is_refused_on_a_cpu_without_native_bfloat16(monkeypatch):
    monkeypatch.setattr(preflight, "bf16_native", lambda: False)
    with pytest.raises(ConfigError, match="does not support natively"):
        preflight.check_precision(Budget("b", 5, 10, bf16=True), "cpu")
    preflight.check_precision(Budget("b", 5, 10), "cpu")  # float32: always fine
    monkeypatch.setattr(preflight, "bf16_native", lambda: True)
    preflight.check_precision(Budget("b", 5, 10, bf16=True), "cpu")


def test_runs_are_packed_heaviest_first_on_the_worker_free_first():
    # 10, 8, 6, 4 on two workers: [10], [8] -> 6 joins 8 (14) -> 4 joins 10 (14): wall 14
    assert est.packed([4, 6, 8, 10], 2) == 14
    assert est.packed([4, 6, 8, 10], 1) == 28 and est.packed([], 2) == 0


def test_a_runs_estimate_is_steps_times_step_cost_times_method_cost_plus_evaluation():
    step = est.StepCost(train_step_s=0.5, infer_image_s=0.001, measured="test")
    a, b = fake_spec("erm", budget=Budget("b", 100, 8)), fake_spec("simclr", budget=Budget("b", 100, 8))
    out = est.estimate([a, b], {"erm": 1.0, "simclr": 2.0}, step, eval_images=1000, workers=2)
    # erm: 100 x 0.5 + 1000 x 0.001 + start; simclr: 100 x 0.5 x 2 + 1 + start; two workers: the longer one
    assert out.seconds[a.run_id] == pytest.approx(51 + est.RUN_START_S)
    assert out.wall_s == pytest.approx(101 + est.RUN_START_S) and not out.notes
    assert est.estimate([fake_spec("new")], {}, step, 0, 1).notes == ["no measured cost for 'new': counted as erm"]


def test_method_costs_are_wall_time_per_step_relative_to_erm_in_the_same_comparison():
    def rec(method, seed, seconds):
        record = fake_record(method, seed)
        record.budget_report = {**record.budget_report, "steps": 10, "wall_time_per_stage_s": {"train": seconds}}
        return record

    costs = est.method_costs([rec("erm", 0, 10.0), rec("erm", 1, 12.0), rec("simclr", 0, 22.0), rec("jtt", 0, 11.0)])
    assert costs == {"erm": 1.0, "simclr": 2.0, "jtt": 1.0}  # erm's median 1.1 s per step


def test_the_dry_run_prints_an_estimate_of_each_run_and_of_the_grid(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(0.25, 0.0, "test"))
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["run", "--methods", "erm,simclr", "--budget", "smoke", "--seeds", "2", "--dry-run"]
    options = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]
    assert main([*argv, *options, "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    # erm: 12 x 0.25 + start = 9 s; simclr x 1.48: 10.4 s; two each on two workers: 19 s
    assert out.count("compute (~9s)") == 2 and out.count("compute (~10s)") == 2
    assert "estimated wall time: 19s for 4 run(s) to compute on 2 worker(s)" in out
