"""The fair-comparison protocol: equal trials, validation-only selection, intervals,
config files, executors, faults and resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from plugin_install import install_plugin
from records import fake_record, metrics

from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, load_or_train
from fairfacebench.errors import ConfigError
from fairfacebench.leaderboard.render import to_markdown
from fairfacebench.leaderboard.tables import build, get_rule
from fairfacebench.methods.base import Hparam, uniform
from fairfacebench.methods.erm import ERM
from fairfacebench.methods.reweight import Reweight
from fairfacebench.plan import expand, expand_final, load_plan, possible_final, trial_hparams
from fairfacebench.plugins import registry
from fairfacebench.provenance import machine_folders, portable
from fairfacebench.spec import spec_hash
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH

TINY_OPTIONS = [f"--dataset-option={k}={v}" for k, v in TINY_SYNTH.items()]
CLI = [sys.executable, "-m", "fairfacebench.cli"]


# --- equal hyperparameter search ---------------------------------------------------------------


def test_every_method_gets_the_same_trials_and_trial_zero_is_the_defaults():
    plan = load_plan(
        flags={
            "datasets": ["synthfaces"],
            "methods": ["erm", "reweight", "val-reweight"],
            "hparam_trials": 3,
            "seeds": 2,
        }
    )
    specs = expand(plan)
    per_method = {}
    for s in specs:
        per_method.setdefault(s.method, set()).add((s.trial, s.seed))
    assert all(v == {(t, s) for t in range(3) for s in range(2)} for v in per_method.values())
    assert trial_hparams(Reweight, 0) == Reweight.default_hparams()
    # each draw comes from its own stream, seeded by (method, trial, hyperparameter name): recomputed here by hand
    seed = int(spec_hash({"method": "reweight", "trial": 1, "hparam": "lr"}), 16) % 2**32
    assert trial_hparams(Reweight, 1)["lr"] == Reweight.search_space()["lr"].sample(np.random.default_rng(seed))
    assert trial_hparams(ERM, 1) != trial_hparams(ERM, 2)
    assert len({s.run_id for s in specs}) == len(specs)


def test_adding_a_hyperparameter_leaves_the_other_draws_of_a_method_unchanged():
    class Extended(Reweight):  # same method name; new names sort before and after the existing ones
        space = {**Reweight.space, "aaa_new": Hparam(0.5, uniform(0, 1)), "zzz_new": Hparam(0.5, uniform(0, 1))}

    for trial in range(1, 6):
        before, after = trial_hparams(Reweight, trial), trial_hparams(Extended, trial)
        assert {k: after[k] for k in before} == before and {"aaa_new", "zzz_new"} <= set(after)


# --- validation-only model selection -------------------------------------------------------------


def _record(method, seed, trial, val, test):
    """A finished run record with the fields the leaderboard reads."""
    group = {"group": "g0", "n": 10, "acc": test["acc"], "tpr": 0.5, "fpr": 0.1, "selection_rate": 0.3}
    return fake_record(method, seed, trial, val=val, test=test, groups=[group], hparams={"trial": trial})


_m = metrics


def test_selection_uses_validation_only_never_test(tmp_path):
    store = ResultStore(tmp_path)
    # trial 1 is planted: best on test by far, worst on validation
    store.write("a", _record("m", 0, 0, val=_m(0.80), test=_m(0.70)))
    store.write("b", _record("m", 0, 1, val=_m(0.60), test=_m(0.99)))
    store.write("c", _record("m", 0, 2, val=_m(0.75, wga=0.7), test=_m(0.72)))
    rows = build(tmp_path, "val_acc").tables[0].rows
    assert rows[0].selected[0].trial == 0 and rows[0].acc.mean == 0.70
    rows = build(tmp_path, "val_wga").tables[0].rows
    assert rows[0].selected[0].trial == 2


def test_only_the_newest_method_version_is_tabled(tmp_path):
    store = ResultStore(tmp_path)
    old = _record("m", 0, 0, val=_m(0.95), test=_m(0.95))  # better on validation, but of version 1
    store.write("old", replace(old, spec=replace(old.spec, method_version=1), run_id="old"))
    for seed in (0, 1):
        rec = _record("m", seed, 0, val=_m(0.6), test=_m(0.6))
        store.write(f"new{seed}", replace(rec, spec=replace(rec.spec, method_version=2)))
    row = build(tmp_path, "val_acc").tables[0].rows[0]
    assert row.method_version == 2 and row.superseded_runs == 1
    assert row.seeds == 2 and row.acc.mean == 0.6 and "old" not in [s.run_id for s in row.selected]
    assert "older method version, left out" in to_markdown(build(tmp_path, "val_acc"))


def test_constrained_rule_picks_best_accuracy_within_the_fairness_bound(tmp_path):
    store = ResultStore(tmp_path)
    store.write("a", _record("m", 0, 0, val=_m(0.90, eod=0.30), test=_m(0.9)))
    store.write("b", _record("m", 0, 1, val=_m(0.80, eod=0.05), test=_m(0.8)))
    store.write("c", _record("m", 0, 2, val=_m(0.70, eod=0.02), test=_m(0.7)))
    board = build(tmp_path, "val_acc@val_eod_max<=0.1")
    assert board.tables[0].rows[0].selected[0].trial == 1
    assert "eod_max <= 0.1" in board.tables[0].selection_rule
    # nothing qualifies: the fairest trial is chosen, as documented
    assert build(tmp_path, "val_acc@val_eod_max<=0.01").tables[0].rows[0].selected[0].trial == 2
    with pytest.raises(KeyError, match="unknown selection rule"):
        get_rule("test_acc")


def test_seed_intervals_on_the_leaderboard(tmp_path):
    store = ResultStore(tmp_path)
    for seed, acc in enumerate([0.70, 0.80, 0.90]):
        store.write(f"s{seed}", _record("m", seed, 0, val=_m(acc), test=_m(acc)))
    board = build(tmp_path)
    row = board.tables[0].rows[0]
    assert row.acc.mean == pytest.approx(0.8) and row.acc.std == pytest.approx(0.1)
    # t_{0.975,2} = 4.3027; half-width = 4.3027 * 0.1 / sqrt(3) = 0.2484; the upper end 1.048 is clipped to 1
    lo, hi = row.acc.interval
    assert (lo, hi) == (pytest.approx(0.8 - 0.2484, abs=1e-3), 1.0)
    md = to_markdown(board)
    assert "0.800 ± 0.100 [0.552, 1.000]" in md and "Student-t" in md


# --- config files ------------------------------------------------------------------------------


def test_default_config_file_reproduces_the_default_plan(tmp_path):
    repo_default = Path(__file__).parents[1] / "benchmark" / "configs" / "default.toml"
    plan = load_plan(repo_default)
    assert plan == load_plan() and plan.method_names(registry().methods) == sorted(
        n for n, m in registry().methods.items() if not m.ablation_of
    )
    assert plan.datasets == ("synthfaces",) and plan.budget == "default" and plan.input_resolution == 48
    custom = tmp_path / "bench.toml"
    custom.write_text('methods = ["erm"]\nseeds = 3\n[augment]\nmix = "cutmix"\n')
    plan = load_plan(custom, {"seeds": 2})
    assert plan.methods == ("erm",) and plan.seeds == 2 and plan.augment.mix == "cutmix" and plan.augment.crop == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("method = ['erm']\n", r"bench.toml: unknown key\(s\) \['method'\]; valid keys: \["),
        ('seeds = "two"\n', r"bench.toml: 'seeds' must be an integer >= 1, got 'two' \(str\)"),
        ("seeds = 0\n", r"'seeds' must be an integer >= 1, got 0"),
        ("[augment]\nflipp = true\n", r"\[augment\]: unknown key\(s\) \['flipp'\]; valid keys: \['crop', 'flip', "),
        ("[augment]\nflip = 1\n", r"'augment.flip' must be true or false, got 1 \(int\)"),
        (
            'budget = "huge"\n',
            r"'budget' must be one of \['smoke', 'default', 'small', 'paper', 'board-cpu', 'board-cpu-v2', "
            r"'board-gpu'\], got 'huge'",
        ),
        ('methods = "erm"\n', r"'methods' must be a list of names, got 'erm'"),
        ("seeds = [\n", r"bench.toml: not valid TOML"),
    ],
)
def test_config_errors_name_the_file_the_key_and_what_was_expected(tmp_path, text, message):
    custom = tmp_path / "bench.toml"
    custom.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_plan(custom)


# --- faults, executors, resume -----------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_env(tmp_path_factory):
    """PYTHONPATH with the faulty test plugin installed (the venv itself is not touched)."""
    target = tmp_path_factory.mktemp("faulty-site")
    pkg = Path(__file__).parent / "faulty_plugin"
    return install_plugin(pkg, target)


def _rows(out):
    return {r["method"]: r for r in json.loads((out / "leaderboard.json").read_text())["tables"][0]["rows"]}


def test_faults_are_recorded_and_the_grid_continues_in_worker_processes(tmp_path, faulty_env):
    out = tmp_path / "runs"
    methods = "fault-raises,fault-nan-loss,fault-kills-worker,erm"
    cmd = [*CLI, "run", "--methods", methods, "--budget", "smoke", "--workers", "2", "--trust-plugins"]
    ran = subprocess.run(
        [*cmd, "--out", str(out), *TINY_OPTIONS],
        env=faulty_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr  # failures are reported in the exit code
    rows = _rows(out)
    assert rows["erm"]["status"] == "ok"
    errors = {m: rows[m]["failed_runs"][0]["error"] for m in methods.split(",")[:3]}
    assert all(rows[m]["status"] == "failed" for m in errors)
    assert "planted failure inside fit" in errors["fault-raises"]
    assert "NonFiniteLoss" in errors["fault-nan-loss"]
    assert "WorkerDied" in errors["fault-kills-worker"] and "17" in errors["fault-kills-worker"]
    md = (out / "leaderboard.md").read_text()
    assert md.count("| failed") >= 3  # failed cells are shown, not dropped
    records = {
        json.loads(p.read_text())["spec"]["method"]: json.loads(p.read_text()) for p in out.glob("*/record.json")
    }
    assert "Traceback" in records["fault-raises"]["traceback"]
    assert_names_no_folder_of_this_machine(records["fault-raises"])


def assert_names_no_folder_of_this_machine(record):
    """A failed record names the harness's files from the checkout's name, and no checkout or environment folder."""
    text = record["traceback"] + record["error"]
    assert '"<fairbench>/benchmark/' in text, text
    assert not [f for f in machine_folders() if f + "/" in text], text


def test_a_traceback_names_the_folders_of_the_machine_by_name_the_longest_first():
    folders = {"/home/ann": "~", "/home/ann/fb": "<fairbench>", "/home/ann/fb/.venv": "<env>", "/": "<root>"}
    text = (
        'File "/home/ann/fb/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1783\n'
        'File "/home/ann/fb/benchmark/runner.py", line 360\n'
        'File "/home/ann/plugins/mine.py", line 3\n'
        "FileNotFoundError: /home/anna/x and /data/faces/1.jpg"
    )
    assert portable(text, folders) == (
        'File "<env>/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1783\n'
        'File "<fairbench>/benchmark/runner.py", line 360\n'
        'File "~/plugins/mine.py", line 3\n'
        "FileNotFoundError: /home/anna/x and /data/faces/1.jpg"  # another folder, and the root is never replaced
    )


def test_faults_of_sealed_runs_are_recorded_even_with_one_worker(tmp_path, faulty_env):
    """Sealed (the default for plugins from outside the repository), `os._exit` ends the run's sandboxed child,
    never the grid, even with `--workers 1`; the error of a method that raises is its own line and traceback."""
    out = tmp_path / "runs"
    cmd = [*CLI, "run", "--methods", "fault-kills-worker,fault-raises", "--budget", "smoke", "--workers", "1"]
    ran = subprocess.run([*cmd, "--out", str(out), *TINY_OPTIONS], env=faulty_env, capture_output=True, text=True)
    assert ran.returncode == 1 and "sealed (methods from outside this repository)" in ran.stdout, ran.stderr
    records = {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*/record.json"))}
    assert records["fault-kills-worker"]["error"].startswith("ChildDied: the sealed child exited with code 17")
    assert records["fault-raises"]["error"] == "ValueError: planted failure inside fit"
    assert "in fit" in records["fault-raises"]["traceback"]
    assert_names_no_folder_of_this_machine(records["fault-raises"])


def test_ray_executor_runs_the_grid_on_a_local_cluster(tmp_path, faulty_env):
    pytest.importorskip("ray", reason="Ray is installed by `make setup` (extra 'ray')")
    out = tmp_path / "runs"
    ran = subprocess.run(
        [
            *CLI,
            "run",
            "--methods",
            "erm,fault-kills-worker,fault-raises",
            "--budget",
            "smoke",
            "--executor",
            "ray",
            "--workers",
            "2",
            "--trust-plugins",  # Ray workers are not sealed
            "--out",
            str(out),
            *TINY_OPTIONS,
        ],
        env=faulty_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    rows = _rows(out)
    assert rows["erm"]["status"] == "ok" and rows["erm"]["seeds"] == 1
    assert rows["fault-kills-worker"]["status"] == "failed" and rows["fault-raises"]["status"] == "failed"
    assert "planted failure" in rows["fault-raises"]["failed_runs"][0]["error"]


def test_on_ray_a_run_embeds_its_pool_in_ray_tasks_with_the_numbers_of_a_local_run(tmp_path):
    pytest.importorskip("ray", reason="Ray is installed by `make setup` (extra 'ray')")
    load_or_train(MiniClipConfig(), Path(os.environ["FAIRBENCH_CACHE"]))  # the session's mini-CLIP, trained once
    records = {}
    for name, executor in (("local", ["--workers", "1"]), ("ray", ["--executor", "ray", "--workers", "2"])):
        cache = tmp_path / f"cache-{name}"  # each its own embedding cache: both runs compute their embeddings
        shutil.copytree(Path(os.environ["FAIRBENCH_CACHE"]) / "vlm", cache / "vlm")
        env = {**os.environ, "FAIRBENCH_CACHE": str(cache), "FAIRBENCH_EMBED_SHARD": "256"}
        out = tmp_path / name
        cmd = [*CLI, "run", "--methods", "ssl-pipeline", "--budget", "smoke", *executor, "--out", str(out)]
        options = [*TINY_OPTIONS, "--dataset-option=n_pool=600", "--bootstrap", "0"]
        ran = subprocess.run([*cmd, *options], env=env, capture_output=True, text=True, timeout=900)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        (record,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
        records[name] = (record, np.load(next(out.glob("*/predictions.npz"))))
    (local, local_scores), (on_ray, ray_scores) = records["local"], records["ray"]
    assert "vlm-shards" not in local["stages"]
    embedded = on_ray["stages"]["1-embed"]
    assert (embedded["pool"], embedded["train_images"]) == (600, 320)
    # the pool and the training images in shards of 256: 3 + 2 Ray tasks
    assert on_ray["stages"]["vlm-shards"]["shards"] == 5 and on_ray["stages"]["vlm-shards"]["calls"] == 2
    # curation first, stage by stage, so that a difference names the stage where it began
    for stage in ("2-dedup", "3-retrieve", "4-pseudo-labels"):
        assert on_ray["stages"].get(stage) == local["stages"].get(stage), stage
    assert on_ray["budget_report"]["forward_samples"] == local["budget_report"]["forward_samples"]
    assert on_ray["metrics"] == local["metrics"]  # the same numbers whatever the executor
    assert np.array_equal(ray_scores["test_scores"], local_scores["test_scores"])


def test_sigkill_then_resume_recomputes_only_unfinished_runs(tmp_path):
    out = tmp_path / "runs"
    cmd = [*CLI, "run", "--methods", "erm", "--seeds", "3", "--budget", "smoke", "--out", str(out), *TINY_OPTIONS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob("[!.]*/record.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a run directory is finished once it is renamed into place; a hidden one is still being written
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("[!.]*/record.json")}
    assert 1 <= len(finished) < 3
    # nothing half-written: every visible run directory is complete
    assert all((d / "record.json").exists() for d in out.iterdir() if d.is_dir() and not d.name.startswith("."))
    ran = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    seen = f"finished before the kill: {sorted(finished)}\n{ran.stdout}\n{ran.stderr}"
    assert f"{3 - len(finished)} to compute, {len(finished)} already in" in ran.stdout, seen
    assert {k: (out / k / "record.json").stat().st_mtime_ns for k in finished} == finished


def test_run_record_holds_config_versions_commit_weights_and_intervals(tmp_path):
    from fairfacebench.cli import main

    out = tmp_path / "runs"
    assert (
        main(["run", "--methods", "erm", "--budget", "smoke", "--out", str(out), "--bootstrap", "200", *TINY_OPTIONS])
        == 0
    )
    (rec,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    assert rec["config"]["budget"] == "smoke" and rec["config"]["bootstrap"] == 200
    assert rec["versions"]["torch"] and "python" in rec["versions"]
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert rec["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert rec["weights"]["source"] != "random-init" and rec["weights"]["sha256"].startswith("b0353104")
    iv = rec["test_intervals"]
    assert iv["n_resamples"] == 200 and "bootstrap" in iv["method"]
    lo, hi = iv["intervals"]["acc"]
    assert lo <= rec["metrics"]["test"]["acc"] <= hi
    assert rec["budget_report"]["steps"] == 12 and rec["budget_report"]["samples_seen"] == 12 * 32
    np.testing.assert_equal(len(ResultStore(out).predictions(rec["run_id"])["test_scores"]), TINY_SYNTH["n_test"])


def test_the_board_configs_resolve_to_the_documented_cpu_and_gpu_plans():
    cpu, gpu = load_plan("utkface-board"), load_plan("utkface-board-gpu")
    assert cpu.datasets == gpu.datasets == ("utkface-cb",) and cpu.tasks == gpu.tasks == {
        "utkface-cb": ("gender/race",)
    }
    assert cpu.seeds == gpu.seeds == 3 and cpu.methods == gpu.methods == "all"
    assert (cpu.budget_profile.steps, cpu.budget_profile.batch_size, cpu.input_resolution) == (600, 64, 64)
    assert (cpu.backbone, cpu.workers, cpu.device) == ("mobilenet_v2", 2, "auto")
    # the GPU profile of the same board: ResNet-18 at 128 px, mixed precision, as the literature trains it
    assert (gpu.backbone, gpu.input_resolution, gpu.device) == ("resnet18", 128, "cuda") and gpu.budget_profile.amp
    v1 = {"utkface-cb": {"rho": 0.9, "split_seed": 0, "near_duplicates": "off"}}  # the split before grouping
    assert gpu.dataset_options == cpu.dataset_options == v1
    with pytest.raises(
        ConfigError, match=r"config 'no-such-board' is neither a file nor a packaged config; packaged: \["
    ):
        load_plan("no-such-board")


def test_a_search_runs_trials_on_the_search_seeds_then_each_rules_pick_on_the_rest():
    plan = load_plan(
        flags={
            "methods": ["erm"],
            "hparam_trials": 3,
            "seeds": 3,
            "search_seeds": 1,
            "final_selection": ["val_acc", "val_wga"],
            "budget": "smoke",
        }
    )
    specs = expand(plan)
    assert sorted((s.trial, s.seed) for s in specs) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)]
    search = [s for s in specs if s.seed == 0]
    assert expand_final(plan, specs, [], registry()) == ([], 1)  # nothing finished: the method waits
    # what it may add at most (the dry run's bound): each of the two rules picking its own trial, on seeds 1 and 2
    bound = possible_final(plan, specs, [])
    assert sorted((s.trial, s.seed) for s in bound) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # trial 1 best on validation accuracy, trial 2 on worst-group accuracy: both run on seeds 1 and 2
    vals = {0: _m(0.70, wga=0.50), 1: _m(0.90, wga=0.40), 2: _m(0.80, wga=0.60)}
    records = [fake_record(spec=s, run_id=s.run_id, val=vals[s.trial]) for s in search]
    final, waiting = expand_final(plan, specs, records, registry())
    assert waiting == 0 and sorted((s.trial, s.seed) for s in final) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(f.hparams == next(s.hparams for s in search if s.trial == f.trial) for f in final)
    # a rule that picks the defaults adds nothing: trial 0 already runs on every seed
    vals[0] = _m(0.95, wga=0.9)
    records = [fake_record(spec=s, run_id=s.run_id, val=vals[s.trial]) for s in search]
    assert expand_final(plan, specs, records, registry()) == ([], 0)
    assert possible_final(plan, specs, records) == []  # the search has finished: nothing left to bound


def test_a_plan_that_names_the_test_oracle_runs_its_pick_on_the_final_seeds_too():
    flags = {"methods": ["erm"], "hparam_trials": 3, "seeds": 3, "search_seeds": 1, "budget": "smoke"}
    plan = load_plan(flags={**flags, "final_selection": ["val_acc", "test oracle"]})
    specs = expand(plan)
    search = [s for s in specs if s.seed == 0]
    assert len(possible_final(plan, specs, [])) == 4  # two regimes, two trials beyond the defaults, seeds 1-2
    # validation accuracy picks trial 1; test accuracy (the oracle, read only because the plan names it) trial 2
    val, test = {0: _m(0.70), 1: _m(0.90), 2: _m(0.80)}, {0: _m(0.70), 1: _m(0.75), 2: _m(0.85)}
    records = [fake_record(spec=s, run_id=s.run_id, val=val[s.trial], test=test[s.trial]) for s in search]
    final, _ = expand_final(plan, specs, records, registry())
    assert sorted((s.trial, s.seed) for s in final) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # without it, the plan never reads test metrics: only the rule's pick runs
    plan = load_plan(flags={**flags, "final_selection": ["val_acc"]})
    final, _ = expand_final(plan, specs, records, registry())
    assert sorted((s.trial, s.seed) for s in final) == [(1, 1), (1, 2)]
    with pytest.raises(KeyError, match="unknown selection rule"):  # never a selection rule of a board's rows
        get_rule("test oracle")
