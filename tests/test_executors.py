"""Executors: progress and logs of worker processes reach the parent, wall-clock limits, workers die with the parent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fake_runs import FakeRunner, alive, fake_spec

from fairfacebench import executors, hookimpl
from fairfacebench.cli import main
from fairfacebench.executors import RunTimeout, time_limit
from fairfacebench.grid import execute
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import build_registry
from fairfacebench.progress import GridView
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

TESTS = Path(__file__).resolve().parent


class RecordingView(GridView):
    """A silent view that keeps what it was told."""

    def __init__(self):
        super().__init__(0)
        self.events, self.ends = [], []

    def event(self, event):
        self.events.append(event)
        super().event(event)

    def end(self, key, status, detail="", run_s=None):
        self.ends.append((key, status, detail))
        super().end(key, status, detail, run_s)


def test_progress_log_records_and_output_of_a_worker_process_reach_the_parent(tmp_path):
    logging.getLogger().setLevel(logging.INFO)  # what -v sets; workers log at their parent's level
    try:
        view = RecordingView()
        spec = fake_spec("steps")
        counts = execute([spec], ResultStore(tmp_path), FakeRunner(), workers=2, view=view)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    assert counts == {"ok": 1, "failed": 0, "skipped": 0}
    worker_pid = json.loads((tmp_path / spec.run_id / "record.json").read_text())["stages"]["fake"]["pid"]
    assert worker_pid != os.getpid()
    mine = [e for e in view.events if e["job"] == spec.run_id]
    steps = [e for e in mine if e["kind"] == "step"]
    assert steps and steps[-1] == {**steps[-1], "stage": "fit", "step": 5, "steps": 5}
    lines = [e["text"] for e in mine if e["kind"] == "line"]
    assert f"INFO fairfacebench.fake: hello from worker {worker_pid}" in lines
    assert f"printed by worker {worker_pid}" in lines and "redrawn line" in lines  # a \r-redrawn line: its last state
    assert view.ends == [(spec.run_id, "ok", "")]


def test_without_a_view_the_output_of_workers_still_reaches_stderr(tmp_path, capsys):
    spec = fake_spec("steps")
    assert execute([spec], ResultStore(tmp_path), FakeRunner(), workers=2) == {"ok": 1, "failed": 0, "skipped": 0}
    captured = capsys.readouterr()
    assert "printed by worker" in captured.err and captured.out == ""


def test_a_worker_past_its_time_limit_is_stopped_and_recorded_and_the_grid_goes_on(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    hang, quick = fake_spec("hang", pid_dir=str(pids)), fake_spec("quick")
    store = ResultStore(tmp_path / "runs")
    started = time.monotonic()
    counts = execute([hang, quick], store, FakeRunner(), workers=2, run_timeout_s=15)
    assert counts == {"ok": 1, "failed": 1, "skipped": 0}
    assert time.monotonic() - started < 60
    record = json.loads((store.path(hang.run_id) / "record.json").read_text())
    assert record["error"].startswith("RunTimeout: the run did not finish within its wall-clock limit of 15 s")
    (pid,) = [int(p.name) for p in pids.iterdir()]
    assert not alive(pid)


class Sleeper(Method):
    """Never returns from fit (sleeps in a loop)."""

    name = "sleeper"
    description = "test method that hangs"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        while True:
            time.sleep(0.05)


class _Plugins:
    @hookimpl
    def fairfacebench_methods(self):
        return [Sleeper]


def test_a_run_in_this_process_past_its_time_limit_fails_with_run_timeout(tmp_path):
    reg = build_registry(extra=(_Plugins(),))
    plan = load_plan(
        flags={
            "methods": ["sleeper"],
            "budget": "smoke",
            "workers": 1,
            "dataset_options": {"synthfaces": SMALL_SYNTHFACES},
        }
    )
    (spec,) = expand(plan, reg)
    store = ResultStore(tmp_path)
    counts = execute([spec], store, SpecRunner("cpu", reg=reg), run_timeout_s=3)
    assert counts == {"ok": 0, "failed": 1, "skipped": 0}
    (record,) = store.records()
    assert record.error.startswith(f"{RunTimeout.__name__}: the run did not finish within its wall-clock limit")
    assert "Sleeper" not in record.error and "time.sleep" in record.traceback


def test_the_derived_time_limit_grows_with_the_budget_and_can_be_overridden():
    small = fake_spec("x")
    large = replace(small, budget=replace(small.budget, steps=600, batch_size=128))
    assert time_limit(small) < time_limit(large)
    assert time_limit(large, run_timeout_s=30) == 30


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fake_runs import FakeRunner, fake_spec
from fairfacebench.grid import execute
from fairfacebench.store import ResultStore
specs = [fake_spec("hang", seed=s, pid_dir={pids!r}) for s in range(2)]
execute(specs, ResultStore({store!r}), FakeRunner(), workers=2)
"""


def test_killing_the_parent_of_worker_processes_stops_them(tmp_path):
    pids, store = tmp_path / "pids", tmp_path / "runs"
    pids.mkdir()
    code = KILL_SCRIPT.format(tests=str(TESTS), pids=str(pids), store=str(store))
    parent = subprocess.Popen([sys.executable, "-c", code])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert all(alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "workers outlived their parent"
        assert not list(store.glob("*/record.json"))
    finally:
        parent.kill()
        for pid in filter(alive, workers):  # only when the test failed
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("live", [False, True])
def test_the_view_numbers_runs_and_shows_stage_step_elapsed_and_eta(live):
    class Out:
        text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    now = [0.0]
    out = Out()
    view = GridView(0, live=live, stream=out, work_per_run=10, clock=lambda: now[0])
    view.begin(2)
    view.start("a", "synthfaces/smiling/skin_tone erm seed 0 trial 0", work=10)
    view.event({"job": "a", "kind": "step", "stage": "train", "step": 1, "steps": 10, "used": 1, "total": 10})
    now[0] = 4.0
    view.event({"job": "a", "kind": "step", "stage": "train", "step": 5, "steps": 10, "used": 5, "total": 10})
    line = view.job_line(view.jobs["a"], now[0])
    assert line == "[1/2] synthfaces/smiling/skin_tone erm seed 0 trial 0: train, step 5/10, 4s, ETA 5s"
    assert "1/2" not in view.footer() and "ETA 12s" in view.footer()  # 5 of 20 steps in 4 s
    now[0] = 8.0
    view.end("a", "ok", run_s=5.2)  # 8 s since its launch, 5 s of its own (the rest: starting its worker)
    view.close()
    assert "[1/2] synthfaces/smiling/skin_tone erm seed 0 trial 0: ok in 8s, run 5s" in out.text
    assert ("\x1b[" in out.text) == live  # plain lines never move the cursor


@pytest.fixture
def quick_stops(monkeypatch):
    """Stops of a run in this process repeated every 0.1 s instead of every second, and SIGINT as Python sets it in a
    foreground process (a background job, e.g. under nohup, starts with SIGINT ignored, which the grid respects)."""
    monkeypatch.setattr(executors, "REPEAT_S", 0.1)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "method, error",
    [
        ("swallow", "RunTimeout: the run did not finish within its wall-clock limit of 0.3 s"),
        ("ignore-alarm", "RunTimeout: the run did not finish within its wall-clock limit of 0.3 s"),
        ("keyboard-interrupt", "KeyboardInterrupt: raised by the method (raised by the run, not by Ctrl-C"),
        ("base-exception", "Mischief: not an Exception (raised by the run, not by Ctrl-C"),
    ],
)
def test_a_run_in_this_process_ends_with_a_record_whatever_the_method_does_and_the_grid_goes_on(
    method, error, tmp_path, quick_stops
):
    """Issue 28: with --workers 1 a method that catches the stop, ignores SIGALRM or raises a BaseException other
    than the user's Ctrl-C aborted or hung the grid."""
    store = ResultStore(tmp_path)
    bad, good = fake_spec(method), fake_spec("quick")
    started = time.monotonic()
    counts = execute([bad, good], store, FakeRunner(), run_timeout_s=0.3)
    assert counts == {"ok": 1, "failed": 1, "skipped": 0} and time.monotonic() - started < 10
    assert store.record(bad.run_id).error.startswith(error)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_users_ctrl_c_still_ends_a_grid_in_this_process(tmp_path, quick_stops):
    store = ResultStore(tmp_path)
    spec = fake_spec("ctrl-c")
    with pytest.raises(KeyboardInterrupt):
        execute([spec, fake_spec("quick")], store, FakeRunner(), run_timeout_s=30)
    assert list(store.records()) == [] and not (tmp_path / ".claims").exists()


@pytest.mark.parametrize("limit, shown", [(1e-6, "1e-06"), (0.25, "0.25")])
def test_a_tiny_time_limit_fails_each_run_with_a_record(limit, shown, tmp_path):
    store = ResultStore(tmp_path)
    spec = fake_spec("hang", pid_dir=str(tmp_path))
    assert execute([spec], store, FakeRunner(), run_timeout_s=limit) == {"ok": 0, "failed": 1, "skipped": 0}
    assert f"wall-clock limit of {shown} s" in store.record(spec.run_id).error


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_a_time_limit_that_is_no_finite_number_is_refused_before_any_run(value, capsys):
    assert main(["run", "--run-timeout", value, "--dry-run", "--methods", "erm"]) == 2
    assert "'run_timeout_s' must be a finite number >= 0" in capsys.readouterr().err


STUCK_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fake_runs import FakeRunner, fake_spec
from fairfacebench import executors
from fairfacebench.grid import execute
from fairfacebench.store import ResultStore
executors.REPEAT_S, executors.HARD_STOP_S = 0.1, 0.5
execute([fake_spec("stubborn"), fake_spec("quick")], ResultStore({store!r}), FakeRunner(), run_timeout_s=0.3)
"""


def test_a_run_that_ignores_every_stop_is_recorded_and_ends_the_grid_instead_of_hanging(tmp_path):
    code = STUCK_SCRIPT.format(tests=str(TESTS), store=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (record,) = ResultStore(tmp_path).records()
    assert record.method == "stubborn" and "it ignored every stop for 0.5 s more, so the grid" in record.error
    assert "run methods that may hang with --workers 2" in done.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_past_until_no_run_starts_and_every_claim_is_left_for_the_next_grid(tmp_path, workers):
    specs = [fake_spec("erm", seed) for seed in range(3)]
    store, seen = ResultStore(tmp_path), []
    counts = execute(specs, store, FakeRunner(), workers=workers, on_result=lambda s, st: seen.append(st),
                     launch_until=time.time() - 1)  # fmt: skip
    assert counts == {"ok": 0, "failed": 0, "skipped": 0} and seen == []
    assert all(store.status(s.run_id) is None for s in specs)
    assert all(store.claim(s.run_id) is None for s in specs)  # free at once: nothing holds them
    # a time still ahead changes nothing
    counts = execute(specs, ResultStore(tmp_path / "ahead"), FakeRunner(), workers=workers,
                     launch_until=time.time() + 3600)  # fmt: skip
    assert counts == {"ok": 3, "failed": 0, "skipped": 0}


def test_the_runs_started_before_until_finish_and_no_other_starts(tmp_path):
    # two workers, four runs; launching stops once two have started: both finish and are recorded, no third starts
    specs = [fake_spec("erm", seed) for seed in range(4)]
    view, started, finished = RecordingView(), [], []
    shown = view.start

    def start(key, *args, **kwargs):
        started.append(key)
        return shown(key, *args, **kwargs)

    view.start = start
    grid = executors.Grid(ResultStore(tmp_path), FakeRunner(), view, lambda spec, record: finished.append(spec.run_id),
                          may_launch=lambda: len(started) < 2)  # fmt: skip
    executors.run_in_processes(grid, specs, workers=2)
    assert len(started) == 2 and sorted(finished) == sorted(started)
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "record.json").exists()) == sorted(started)
