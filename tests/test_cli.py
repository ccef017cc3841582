"""The command line: every late failure now fails before training (exit 2, one line), --dry-run, the CLI's shape."""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from datetime import datetime, timedelta, timezone

import pytest
from records import fake_record

from fairfacebench import __version__
from fairfacebench.cli import main, parser, until_time
from fairfacebench.errors import ConfigError
from fairfacebench.plan import expand, load_plan
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

TINY = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]


@pytest.fixture()
def no_training(monkeypatch):
    """Any run that starts fails the test."""

    def refuse(self, spec):
        raise AssertionError(f"{spec.label} was computed")

    monkeypatch.setattr(SpecRunner, "__call__", refuse)


def fails_early(capsys, argv, message, out=None):
    """exit 2, exactly one line on stderr naming the problem, no traceback, no result store."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"fairbench {argv[0]}: error: ") and message in err, err
    if out is not None:
        assert not out.exists()
    return err


def run_argv(tmp_path, *flags):
    return ["run", "--methods", "erm", "--budget", "smoke", *TINY, "--out", str(tmp_path / "runs"), *flags]


def test_an_unknown_selection_rule_fails_before_training(tmp_path, capsys, no_training):
    fails_early(capsys, run_argv(tmp_path, "--selection", "foo"), "unknown selection rule 'foo'", tmp_path / "runs")


def test_an_unknown_final_selection_fails_before_training_not_once_the_search_is_done(tmp_path, capsys, no_training):
    config = tmp_path / "search.toml"
    config.write_text('seeds = 3\nhparam_trials = 2\nsearch_seeds = 1\nfinal_selection = ["val_acc", "oracle"]\n')
    err = fails_early(capsys, run_argv(tmp_path, "--config", str(config)), "final_selection: unknown selection rule")
    assert "'oracle'" in err and "or 'test oracle'" in err
    assert not (tmp_path / "runs").exists()


def test_until_reads_a_time_of_day_a_duration_or_an_iso_date_time():
    now = datetime(2026, 12, 6, 13, 0, tzinfo=timezone.utc)
    assert until_time("14:30", now) == datetime(2026, 12, 6, 14, 30, tzinfo=timezone.utc)
    assert until_time("12:55", now) == datetime(2026, 12, 6, 12, 55, tzinfo=timezone.utc)  # passed: nothing starts
    assert until_time("0:30", now) == datetime(2026, 12, 7, 0, 30, tzinfo=timezone.utc)  # the nearest: tomorrow's
    late = datetime(2026, 12, 6, 23, 0, tzinfo=timezone.utc)
    assert until_time("01:00", late) == datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)
    assert until_time("22:00", late) == datetime(2026, 12, 6, 22, 0, tzinfo=timezone.utc)
    assert until_time("+90m", now) == now + timedelta(minutes=90)
    assert until_time("+2h", now) == until_time("+1h60m", now) == now + timedelta(hours=2)
    assert until_time("2026-12-06T14:30+00:00", now) == datetime(2026, 12, 6, 14, 30, tzinfo=timezone.utc)
    assert until_time("2026-12-06T14:30", now).tzinfo is not None  # local time, made explicit
    for bad in ("2pm", "+", "+90", "25:00", "14:60", "2026-12-06", "tomorrow"):
        with pytest.raises(ConfigError, match=f"--until '{re.escape(bad)}': give a time of day"):
            until_time(bad, now)


def test_a_bad_until_fails_before_any_planning(tmp_path, capsys, no_training):
    fails_early(capsys, run_argv(tmp_path, "--until", "soon"), "--until 'soon': give a time of day", tmp_path / "runs")


def test_past_until_the_grid_starts_nothing_and_says_how_many_runs_wait(tmp_path, capsys, no_training):
    assert main(run_argv(tmp_path, "--until", "2020-01-01T00:00+00:00")) == 0
    out = capsys.readouterr().out
    assert "--until 2020-01-01 00:00 UTC: 1 run(s) not started" in out and "the same command computes them" in out
    assert not list((tmp_path / "runs").glob("*/record.json"))


def test_cuda_without_a_gpu_fails_before_training(tmp_path, capsys, no_training):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    fails_early(capsys, run_argv(tmp_path, "--device", "cuda"), "--device cuda: torch", tmp_path / "runs")


def test_the_ray_executor_without_ray_fails_before_training(tmp_path, capsys, no_training, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    message = "--executor ray: Ray is not installed; install it with pip install 'fairfacebench[ray]'"
    fails_early(capsys, run_argv(tmp_path, "--executor", "ray"), message, tmp_path / "runs")


@pytest.mark.parametrize(
    "config, message",
    [
        ('seeds = "two"\n', "'seeds' must be an integer >= 1, got 'two' (str)"),
        ("[augment]\nflipp = true\n", "[augment]: unknown key(s) ['flipp']"),
    ],
)
def test_config_type_and_key_errors_fail_before_training(tmp_path, capsys, no_training, config, message):
    path = tmp_path / "bench.toml"
    path.write_text(config)
    fails_early(capsys, run_argv(tmp_path, "--config", str(path)), f"{path}: {message}", tmp_path / "runs")


def test_a_bad_timm_backbone_fails_before_training_and_leaves_no_records(tmp_path, capsys, no_training):
    message = "unknown backbone 'timm:x': timm"
    fails_early(capsys, run_argv(tmp_path, "--backbone", "timm:x"), message, tmp_path / "runs")


def test_a_missing_or_wrong_data_root_fails_before_training(tmp_path, capsys, no_training):
    argv = ["run", "--methods", "erm", "--datasets", "utkface", "--out", str(tmp_path / "runs")]
    fails_early(capsys, argv, "no data root was given: pass --data-root", tmp_path / "runs")
    fails_early(capsys, [*argv, "--data-root", str(tmp_path / "nope")], "is not a directory", tmp_path / "runs")


def test_data_check_of_a_generated_dataset_is_one_line(tmp_path, capsys):
    fails_early(capsys, ["data", "check", "synthfaces", "--data-root", str(tmp_path)], "generated on the fly")


@pytest.mark.parametrize("action", ["tables", "build"])
def test_a_leaderboard_of_a_missing_store_fails_and_creates_nothing(tmp_path, capsys, action):
    missing = tmp_path / "nonexistent"
    fails_early(capsys, ["leaderboard", action, str(missing)], f"no result store at {missing}", missing)
    (tmp_path / "empty").mkdir()
    fails_early(capsys, ["leaderboard", action, str(tmp_path / "empty")], "holds no run records")


def test_dry_run_prints_the_plan_and_the_runs_and_computes_nothing(tmp_path, capsys, no_training):
    argv = ["run", "--methods", "erm,groupdro", "--seeds", "2", "--budget", "smoke", *TINY, "--dry-run"]
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert out.count("compute (~") == 4 and "synthfaces/smiling/skin_tone groupdro seed 1 trial 0" in out
    plan_text = out.split("# the resolved plan", 1)[1].split("\n", 1)[1].split("\ncompute", 1)[0]
    (tmp_path / "plan.toml").write_text(plan_text)
    assert tomllib.loads(plan_text)["methods"] == ["erm", "groupdro"]
    plan = load_plan(tmp_path / "plan.toml")  # the printed plan is a config file
    assert plan.seeds == 2 and plan.dataset_options == {"synthfaces": SMALL_SYNTHFACES}
    # with a run already stored, the dry run says it would be skipped
    store = ResultStore(tmp_path / "runs")
    first = expand(plan)[0]
    store.write(first.run_id, fake_record(spec=first))
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.count("compute (~") == 3 and "skip (ok in the store)" in out and "3 to compute, 1 already in" in out


def test_dry_run_with_until_says_how_many_runs_would_start_before_it(tmp_path, capsys, no_training):
    argv = ["run", "--methods", "erm,groupdro", "--seeds", "2", "--budget", "smoke", *TINY, "--dry-run"]
    assert main([*argv, "--out", str(tmp_path / "runs"), "--until", "2020-01-01T00:00+00:00"]) == 0
    out = capsys.readouterr().out
    assert "--until 2020-01-01 00:00 UTC: by the estimate, 0 of 4 run(s) start before it; the same command " in out
    assert "computes the other 4 later" in out and not (tmp_path / "runs").exists()
    assert main([*argv, "--out", str(tmp_path / "runs"), "--until", "+12h"]) == 0
    out = capsys.readouterr().out
    assert "by the estimate, 4 of 4 run(s) start before it, the last ending about " in out
    assert "computes the other 0 later" in out
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 0
    assert "--until" not in capsys.readouterr().out


def test_dry_run_beside_a_running_grid_names_the_runs_it_holds_and_leaves_them_out_of_the_estimate(
    tmp_path, capsys, no_training
):
    import json
    import socket
    import subprocess

    from fairfacebench.store import CLAIMS, process_start

    argv = ["run", "--methods", "erm,groupdro", "--seeds", "2", "--budget", "smoke", *TINY, "--dry-run"]
    argv += ["--out", str(tmp_path / "runs")]
    assert main(argv) == 0
    plan_text = capsys.readouterr().out.split("# the resolved plan", 1)[1].split("\n", 1)[1].split("\ncompute", 1)[0]
    (tmp_path / "plan.toml").write_text(plan_text)
    held = expand(load_plan(tmp_path / "plan.toml"))[0]
    (tmp_path / "runs" / CLAIMS).mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        claim = {"pid": holder.pid, "host": socket.gethostname(), "pid_start": process_start(holder.pid)}
        (tmp_path / "runs" / CLAIMS / f"{held.run_id}.json").write_text(json.dumps({**claim, "claimed": "then"}))
        assert main([*argv, "--until", "+12h"]) == 0
        out = capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()
    assert f"skip (claimed by pid {holder.pid} on {socket.gethostname()} since then: another grid's)" in out
    assert out.count("compute (~") == 3 and "1 run(s) claimed by another process" in out
    assert "for 3 run(s) to compute" in out and "by the estimate, 3 of 3 run(s) start before it" in out
    assert main(argv) == 0  # its process gone: the claim is stale, the run is to compute again
    assert capsys.readouterr().out.count("compute (~") == 4


def test_every_option_has_help_and_version_answers(capsys):
    def walk(p: argparse.ArgumentParser, path: str):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield path, action

    missing = [f"{path}: {a.option_strings or a.dest}" for path, a in walk(parser(), "fairbench") if not a.help]
    assert not missing
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"fairbench (fairfacebench) {__version__}"


def test_one_spelling_per_concept():
    """Output directories are --out, data folders --data-root, everywhere."""
    options = set()
    stack = [parser()]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            options.update(action.option_strings)
    assert {"--out", "--data-root"} <= options
    assert not options & {"--site", "--root", "--dir", "--size"}


@pytest.mark.parametrize("what", ["methods", "datasets", "budgets"])
def test_list_is_narrow_by_default_and_complete_as_json(capsys, what):
    import json

    assert main(["list", what]) == 0
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= 120
    assert main(["list", what, "--format", "json"]) == 0
    items = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    if what == "methods":
        assert "Vapnik" in items["erm"]["citation"] and items["ssl-pipeline"]["needs_vlm"] is True
        assert items["erm"]["hyperparameters"]["lr"]["default"] == pytest.approx(1e-3)
    elif what == "datasets":
        assert items["csv"]["needs_data_root"] and items["utkface"]["tasks"][0]["name"] == "gender/race"
    else:
        assert items["default"]["steps"] == 70 and items["default"]["resolution"] == 48


def test_verbose_may_follow_the_command():
    args = parser().parse_args(["run", "-v", "--dry-run"])
    assert args.verbose is True
    assert parser().parse_args(["run"]).verbose is False


@pytest.mark.parametrize("text", ['{"status": "ok", "run_id"', "[1, 2]", ""])
def test_a_damaged_record_is_named_and_counts_as_unfinished_in_run_and_dry_run(tmp_path, capsys, caplog, text):
    """`run` reads stored statuses through the store: a truncated or non-object record is named, never a traceback."""
    argv = ["run", "--methods", "erm", "--budget", "smoke", *TINY, "--out", str(tmp_path / "runs"), "--dry-run"]
    flags = {"methods": ["erm"], "budget": "smoke", "dataset_options": {"synthfaces": SMALL_SYNTHFACES}}
    spec = expand(load_plan(None, flags))[0]
    (tmp_path / "runs" / spec.run_id).mkdir(parents=True)
    (tmp_path / "runs" / spec.run_id / "record.json").write_text(text)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 to compute, 0 already in" in out and out.count("compute (~") == 1
    assert f"damaged run record {tmp_path / 'runs' / spec.run_id / 'record.json'}" in caplog.text


# ---------------------------------------------------------------- issue 28: CLI and preflight


def test_methods_naming_nothing_is_refused_rather_than_running_every_method(tmp_path, capsys, no_training):
    fails_early(capsys, [*run_argv(tmp_path), "--methods", "", "--dry-run"], "'methods' names no method")


def test_the_root_of_the_file_system_is_no_result_store(tmp_path, capsys, no_training):
    argv = ["run", "--methods", "erm", "--budget", "smoke", *TINY, "--out", "/", "--dry-run"]
    fails_early(capsys, argv, "--out / is the root of the file system")


def test_a_cache_folder_that_cannot_be_written_is_refused(tmp_path, capsys, no_training, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "file" / "cache"))
    fails_early(
        capsys, run_argv(tmp_path, "--dry-run"), f"cache folder {tmp_path / 'file' / 'cache'} cannot be written"
    )


def test_a_weights_file_is_read_before_any_run(tmp_path, capsys, no_training):
    import torch

    garbage, other = tmp_path / "garbage.pth", tmp_path / "other.pth"
    garbage.write_bytes(b"not weights")
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    fails_early(capsys, run_argv(tmp_path, "--weights", str(garbage)), "cannot be read as torch weights")
    err = fails_early(capsys, run_argv(tmp_path, "--weights", str(other)), "not weights of mobilenet_v2")
    assert "2 unknown, e.g. ['bias', 'weight']" in err


def test_an_open_clip_tag_not_in_the_cache_is_refused_offline(tmp_path, capsys, no_training, monkeypatch):
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "empty-cache"))
    argv = run_argv(tmp_path, "--vlm", "open_clip:ViT-B-32:laion2b_s34b_b79k", "--dry-run")
    fails_early(capsys, argv, "weights 'laion2b_s34b_b79k': downloads disabled (FAIRBENCH_OFFLINE=1) and not in")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--threads", "500"], "--threads 500: this machine has"),
        (["--resolution", "4"], "--resolution 4: images of fewer than 8 px"),
        (["--bootstrap", "5"], "--bootstrap 5: pass 0 (no bootstrap) or 100 to 100,000"),
        (["--bootstrap", "1000000000"], "--bootstrap 1000000000: pass 0"),
        (["--hparam-trials", "1000000", "--seeds", "3"], "the plan has 3,000,000 runs"),
    ],
)
def test_bad_settings_are_refused_before_any_run(tmp_path, capsys, no_training, flags, message):
    fails_early(capsys, run_argv(tmp_path, "--dry-run", *flags), message)


def test_mixing_weights_need_a_positive_alpha(tmp_path, capsys, no_training):
    config = tmp_path / "plan.toml"
    config.write_text('[augment]\nmix = "mixup"\nmix_alpha = 0\n')
    fails_early(capsys, run_argv(tmp_path, "--config", str(config), "--dry-run"), "augment.mix_alpha = 0 with mix")


def test_a_pool_folder_without_images_or_holding_the_store_is_refused(tmp_path, capsys, no_training):
    from fixtures_layouts import build_pool_folder

    empty = tmp_path / "texts"
    empty.mkdir()
    (empty / "a.txt").write_text("no image")
    argv = ["run", "--methods", "erm", "--budget", "smoke", *TINY, "--dry-run"]
    fails_early(capsys, [*argv, "--pool", f"folder:{empty}", "--out", str(tmp_path / "runs")], "holds no image among")
    pool = tmp_path / "pool"
    build_pool_folder(pool)
    err = fails_early(capsys, [*argv, "--pool", f"folder:{pool}", "--out", str(pool / "runs")], "lies inside the pool")
    assert "change with every run" in err


def test_runs_another_live_process_holds_are_named_not_skipped_silently(tmp_path, capsys, no_training):
    import json

    from fairfacebench.store import process_start

    flags = {"methods": ["erm"], "budget": "smoke", "dataset_options": {"synthfaces": SMALL_SYNTHFACES}}
    (spec,) = expand(load_plan(None, flags))
    claims = tmp_path / "runs" / ".claims"
    claims.mkdir(parents=True)
    holder = {"pid": 1, "pid_start": process_start(1), "host": __import__("socket").gethostname(), "time": 0}
    (claims / f"{spec.run_id}.json").write_text(json.dumps({**holder, "claimed": "2026-01-01T00:00:00"}))
    assert main(run_argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"not computed here: {spec.dataset}/{spec.task} erm seed 0 trial 0: claimed by pid 1 on" in out
    assert "1 run(s) not computed here: another process holds them" in out
