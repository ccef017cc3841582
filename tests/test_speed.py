"""The speed settings: layout per backbone and precision, bfloat16 as a budget setting refused where it is not native,
and the plan's wall-time estimate (hand-checked packing, method costs from records, the dry run prints it)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from records import fake_record, fake_spec

from fairfacebench import estimate as est
from fairfacebench import preflight, speed
from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.cli import main
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.errors import ConfigError
from fairfacebench.speed import memory_format, precision
from fairfacebench.testing import SMALL_SYNTHFACES, tiny_task


def test_each_backbone_trains_in_its_measured_layout():
    assert memory_format("mobilenet_v2", "fp32", "cpu") == torch.channels_last
    assert memory_format("resnet18", "fp32", "cpu") == torch.channels_last  # a draw: what the harness computed
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


def test_until_starts_runs_in_order_on_the_worker_free_first_and_none_once_the_horizon_has_passed():
    # 10, 5, 5, 5 on two workers, horizon 8: [10], [5] -> a 5 starts at 5 (8 not reached) -> the next worker is
    # free at 10, after the horizon: 3 start, the last ends at 10
    assert est.started_before([10, 5, 5, 5], 2, 8) == (3, 10)
    assert est.started_before([10, 5, 5, 5], 2, 1e9) == (4, 15)
    assert est.started_before([5, 5, 5, 10], 2, 5) == (2, 5)  # a worker free exactly at the horizon starts nothing
    assert est.started_before([5, 5], 2, 0) == (0, 0) and est.started_before([5], 2, -60) == (0, 0)


def test_worker_processes_start_the_waves_in_turn_and_the_heavy_runs_first_in_each():
    from fairfacebench.executors import launch_order

    todo = [fake_spec(m, seed) for seed in (0, 1) for m in ("erm", "ssl", "jtt")] + [fake_spec("ssl", 0, trial=1)]
    order = launch_order(todo, lambda spec: spec.method == "ssl")
    assert [(s.method, s.seed, s.trial) for s in order] == [
        ("ssl", 0, 0), ("erm", 0, 0), ("jtt", 0, 0), ("ssl", 1, 0), ("erm", 1, 0), ("jtt", 1, 0), ("ssl", 0, 1)
    ]  # fmt: skip


def test_each_executor_starts_runs_in_its_own_order():
    from fairfacebench.executors import launch_order, start_order

    todo = [fake_spec(m, seed) for seed in (0, 1) for m in ("erm", "ssl")]
    heavy = lambda spec: spec.method == "ssl"  # noqa: E731
    assert start_order("local", 2, todo, heavy) == launch_order(todo, heavy) != todo  # worker processes
    assert start_order("local", 1, todo, heavy) == todo and start_order("ray", 4, todo, heavy) == todo


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


def test_a_configuration_that_ran_before_costs_what_it_cost_then_on_any_task_and_seed(tmp_path, monkeypatch):
    # a search trial may cost several times its method's defaults (ssl-pipeline's meta_scope "all": 8x): the trial's
    # run on one task prices the same trial on the other task, and a pick's final seeds
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(1.0, 0.0, "calibrated"))
    budget = Budget("b", 100, 8)
    cheap, dear = {"scope": "tail"}, {"scope": "all"}

    def rec(method, seed, seconds_per_step, hparams, task="t1"):
        record = fake_record(method, seed, budget=budget, hparams=hparams, task=task)
        return replace(record, budget_report={"steps": 100, "wall_time_per_stage_s": {"train": seconds_per_step * 100}})

    records = [rec("erm", 0, 0.5, {}), rec("m", 0, 1.0, cheap), rec("m", 1, 1.5, cheap), rec("m", 2, 4.0, dear)]
    assert est.method_costs(records, est.configuration) == {
        ("erm", "{}"): 1.0,
        ("m", '{"scope":"tail"}'): 2.5,  # median 1.25 s / 0.5 s
        ("m", '{"scope":"all"}'): 8.0,
    }
    assert est.method_costs(records) == {"erm": 1.0, "m": 3.0}  # the method's median over its runs: 1.5 s / 0.5 s
    again = fake_spec("m", seed=4, budget=budget, hparams=dear, task="t2")
    new = fake_spec("m", seed=4, budget=budget, hparams={"scope": "head"}, task="t2")
    out = est.plan_estimate([again, new], 1, tmp_path, records, lambda spec: {"train": 5, "val": 1, "test": 1})
    # 100 steps x the calibrated 1.0 s per step x the configuration's 8.0, or the method's 3.0 for one never run
    assert out.seconds[again.run_id] == pytest.approx(800 + est.RUN_START_S)
    assert out.seconds[new.run_id] == pytest.approx(300 + est.RUN_START_S)
    assert "1 run(s) at the cost of a finished run of the same method and hyperparameters" in out.notes


def test_this_machines_records_set_the_step_cost_and_method_costs_over_other_hardware(tmp_path, monkeypatch):
    # A calibration on an idle process misses the workers' contention, and another CPU's records their ratios:
    # erm's runs on this machine give the step cost, this machine's ratios beat another machine's.
    here = {"cpu_model": "Here CPU", "torch_cpu_capability": "AVX512"}
    there = {"cpu_model": "Other CPU", "torch_cpu_capability": "AVX2"}
    monkeypatch.setattr(est, "cpu_info", lambda: here)
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(1.0, 0.01, "calibrated"))
    budget = Budget("b", 100, 8)

    def rec(method, seed, seconds_per_step, host):
        record = fake_record(method, seed, host=host, budget=budget, dataset=f"d{seed}")
        report = {"steps": 100, "wall_time_per_stage_s": {"train": seconds_per_step * 100}}
        return replace(record, budget_report=report)

    records = [
        rec("erm", 0, 0.3, here),
        rec("erm", 1, 0.5, here),  # erm's median on this machine: 0.4 s
        rec("simclr", 0, 0.6, here),  # ratio 2 here (0.6 / 0.3)
        rec("erm", 2, 0.1, there),
        rec("simclr", 2, 0.5, there),  # ratio 5 there: overridden
        rec("jtt", 2, 0.3, there),  # ratio 3, only there: kept
    ]
    specs = [fake_spec(m, budget=budget) for m in ("erm", "simclr", "jtt")]
    out = est.plan_estimate(specs, 1, tmp_path, records, lambda spec: {"train": 5, "val": 100, "test": 100})
    # 100 steps x 0.4 s x ratio + 200 images x 0.01 s + start
    expected = {"erm": 40 + 2, "simclr": 80 + 2, "jtt": 120 + 2}
    assert out.seconds == {s.run_id: pytest.approx(expected[s.method] + est.RUN_START_S) for s in specs}
    assert any("0.400 s, the median of erm's 2 run(s) on this machine" in n and "1.000" in n for n in out.notes)
    # without this machine's records: the calibration and the other machine's ratios
    alone = est.plan_estimate(specs, 1, tmp_path, records[3:], lambda spec: {"train": 5, "val": 100, "test": 100})
    assert alone.seconds[specs[1].run_id] == pytest.approx(100 * 1.0 * 5 + 2 + est.RUN_START_S)


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


def test_a_dry_run_bounds_the_chosen_trials_of_a_search_that_has_not_finished(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(0.25, 0.0, "test"))
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "search.toml"
    config.write_text('seeds = 3\nhparam_trials = 3\nsearch_seeds = 1\nfinal_selection = ["val_acc", "val_wga"]\n')
    options = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]
    argv = ["run", "--config", str(config), "--methods", "jtt", "--budget", "smoke", "--dry-run"]
    assert main([*argv, *options, "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    # the search: trial 0 on seeds 0-2, trials 1-2 on seed 0; then at most trials 1 and 2 on seeds 1 and 2: four
    # runs of jtt (12 x 0.25 x 1.05 + start = 9.15 s each): the five of the search on two workers take three
    # runs' time, the four after it two runs' time
    assert "estimated wall time: 27s for 5 run(s)" in out
    assert "then: the chosen trials on seeds 1..2 of 1 method(s) whose search has not finished: none if every " in out
    assert "at most 4 run(s), ~18s more on 2 worker(s) (each of the 2 regime(s) of final_selection picking its " in out


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_the_table_decides_the_layout_of_the_inputs_too(monkeypatch, layout):
    # The harness's images arrive channels-last-strided (an NHWC permute) and a CPU convolution computes in its
    # input's layout, so without converting the input a "contiguous" table entry would still compute channels-last.
    monkeypatch.setitem(speed.CPU_LAYOUT, ("mobilenet_v2", "fp32"), layout)
    budget = Budget("t", 1, 4)
    ctx = FitContext(tiny_task(needs_pool=False), FitSettings({}, 0, budget, weights="none"), BudgetMeter(budget))
    model = ctx.new_classifier()
    seen = []
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    model(ctx.images_to_input(ctx.train.images[:4]))
    x, out = seen[0]
    expected = speed.LAYOUTS[layout]
    assert x.is_contiguous(memory_format=expected) and out.is_contiguous(memory_format=expected)


def test_the_estimate_counts_evaluation_from_the_dataset_and_the_encoder_trained_first(tmp_path, monkeypatch):
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(0.5, 0.01, "test"))
    a, b = fake_spec("erm", budget=Budget("b", 100, 8)), fake_spec("simclr", budget=Budget("b", 100, 8))
    prep = est.Preparation("mini-clip:0", "mobilenet_v2", 64, 128, 40, 30.0)
    out = est.plan_estimate([a, b], 2, tmp_path, [], lambda spec: {"train": 50, "val": 100, "test": 200}, [prep])
    # erm: 100 x 0.5 + (100 + 200) x 0.01 + start 6 = 59; simclr (1.48 at a budget other than default):
    # 74 + 3 + 6 = 83; the mini-CLIP: 40 x 0.5 + 30 = 50; two workers: [83], [59] -> 50 joins 59: wall 109
    assert out.seconds == {a.run_id: pytest.approx(59), b.run_id: pytest.approx(83)}
    assert out.preparing == {"mini-clip:0": pytest.approx(50)} and out.wall_s == pytest.approx(109)
    assert not out.notes


def test_the_default_budget_has_its_own_method_costs():
    step = est.StepCost(0.5, 0.0, "test")
    short = fake_spec("clip-cluster", budget=Budget("default", 70, 64))
    (default,) = est.estimate([short], est.METHOD_COST["default"], step, 0, 1).seconds.values()
    (small,) = est.estimate([short], est.METHOD_COST_SMALL, step, 0, 1).seconds.values()
    # clip-cluster's clustering stage is a larger share of 70 steps than of 400: 1.98 vs 1.14 erm steps per step
    assert default == pytest.approx(70 * 0.5 * 1.98 + est.RUN_START_S) and small < default


def test_a_dry_run_on_an_empty_cache_names_the_encoder_it_trains_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(est, "measure_step", lambda *a: est.StepCost(0.25, 0.001, "test"))
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    options = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]
    argv = ["run", "--methods", "erm,clip-cluster", "--budget", "smoke", "--dry-run", "--out", str(tmp_path / "runs")]
    assert main([*argv, *options]) == 0
    out = capsys.readouterr().out
    # mini-CLIP: 100 steps x 0.25 + 30 s = 55 s; evaluation of 96 + 160 images at 1 ms per image is counted
    assert "first: training mini-clip:0 (~55s; its cache is empty)" in out
    assert "evaluation not counted" not in out
    assert main([*argv[:2], "erm", *argv[3:], *options]) == 0  # no VLM method: nothing to train first
    assert "first: training" not in capsys.readouterr().out


def test_synthfaces_tells_its_split_sizes_before_rendering():
    from fairfacebench.datasets.synthfaces import SynthFaces

    assert SynthFaces().split_sizes("smiling/skin_tone", **SMALL_SYNTHFACES) == {"train": 320, "val": 96, "test": 160}


def test_the_mini_clip_names_its_preparation_until_cached_and_refuses_a_seed_that_is_not_an_integer(tmp_path):
    from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, MiniClipPlugin, cache_path
    from fairfacebench.errors import VLMUnavailable

    plugin = MiniClipPlugin()
    prep = plugin.preparation("3", tmp_path)
    assert (prep.name, prep.steps, prep.batch_size) == ("mini-clip:3", 100, 128)  # MiniClipConfig's defaults
    folder = cache_path(tmp_path, MiniClipConfig(seed=3))
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(b"w")
    assert plugin.preparation("3", tmp_path) is not None  # weights without the report: still trained first
    (folder / "report.json").write_text("{}")
    assert plugin.preparation("3", tmp_path) is None
    with pytest.raises(VLMUnavailable, match="the argument is the training seed, an integer"):
        plugin.preparation("x", tmp_path)
