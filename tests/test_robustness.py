"""Trustworthy under attack and accident (issue 16): predictions checked before scoring, sys.exit in a method,
damaged records, claimed runs, concurrent writers, --out checks, and the same numbers whatever --workers is."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from records import fake_record, fake_spec

from fairfacebench import hookimpl
from fairfacebench.cli import main
from fairfacebench.errors import ConfigError
from fairfacebench.grid import execute
from fairfacebench.leaderboard.tables import build, write
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import build_registry
from fairfacebench.runner import SpecRunner
from fairfacebench.spec import COMPARISON_FIELDS, RunSpec
from fairfacebench.store import CLAIMS, RECORD, ResultStore, process_start
from fairfacebench.testing import SMALL_SYNTHFACES

SPAWN = multiprocessing.get_context("spawn")


class Scores:
    """A predictor returning `make(n)` for n images, whatever they show."""

    def __init__(self, make):
        self.make = make

    def predict(self, images):
        return self.make(len(images))


def fixed_scores(name: str, make) -> type:
    def fit(self, ctx):
        return Scores(make)

    return type(name, (Method,), {"name": name, "description": "test double", "labels": LabelUse(), "fit": fit})


def exits(name: str, code) -> type:
    def fit(self, ctx):
        sys.exit(code)

    return type(name, (Method,), {"name": name, "description": "test double", "labels": LabelUse(), "fit": fit})


HALF = fixed_scores("half", lambda n: np.full((n, 2), 0.5))
NAN = fixed_scores("nan-scores", lambda n: np.full((n, 2), np.nan))
INF = fixed_scores("inf-scores", lambda n: np.tile([np.inf, 0.0], (n, 1)))
FLAT = fixed_scores("flat-scores", lambda n: np.full(n, 0.5))
SHORT = fixed_scores("short-scores", lambda n: np.full((n - 1, 2), 0.5))
LOGITS = fixed_scores("logit-scores", lambda n: np.tile([3.0, -1.0], (n, 1)))
UNNORMALISED = fixed_scores("unnormalised-scores", lambda n: np.full((n, 2), 0.9))
EXIT3 = exits("exits-3", 3)
EXIT_NONE = exits("exits-none", None)


class _Plugins:
    @hookimpl
    def fairfacebench_methods(self):
        return [HALF, NAN, INF, FLAT, SHORT, LOGITS, UNNORMALISED, EXIT3, EXIT_NONE]


@pytest.fixture(scope="module")
def reg():
    return build_registry(extra=(_Plugins(),))


def specs_of(reg, methods, **flags):
    plan = load_plan(
        flags={
            "datasets": ["synthfaces"],
            "methods": methods,
            "budget": "smoke",
            "bootstrap": 0,
            "dataset_options": {"synthfaces": SMALL_SYNTHFACES},
            **flags,
        }
    )
    return expand(plan, reg)


# --- predictions are checked before scoring ---------------------------------------------------------------------


def test_scores_that_are_not_probabilities_fail_the_run_with_one_line(tmp_path, reg):
    methods = ["half", "nan-scores", "inf-scores", "flat-scores", "short-scores", "logit-scores", "unnormalised-scores"]
    store = ResultStore(tmp_path)
    counts = execute(specs_of(reg, methods), store, SpecRunner("cpu", reg=reg))
    assert counts == {"ok": 1, "failed": 6, "skipped": 0}
    errors = {r.method: r.error for r in store.records()}
    assert errors["half"] is None
    assert errors["nan-scores"].startswith("InvalidPredictions: validation scores hold 96 NaN or infinite value(s)")
    assert "NaN or infinite" in errors["inf-scores"]
    assert "shape (48,), expected (48, 2)" in errors["flat-scores"]
    assert "shape (47, 2), expected (48, 2)" in errors["short-scores"]
    assert "not probabilities (values in [-1, 3]" in errors["logit-scores"]
    assert "row 0 sums to 1.8" in errors["unnormalised-scores"]
    assert all("\n" not in e for e in errors.values() if e)
    row = {r.method: r for r in build(tmp_path).tables[0].rows}["nan-scores"]
    assert row.status == "failed" and row.eod_max.n == 0  # no "perfectly fair" 0.000


# --- sys.exit in a method, in-process -----------------------------------------------------------------------------


def test_sys_exit_in_a_method_fails_its_run_and_the_grid_goes_on_in_process(tmp_path, reg):
    store = ResultStore(tmp_path)
    seen = []
    counts = execute(
        specs_of(reg, ["exits-3", "exits-none", "half"]),
        store,
        SpecRunner("cpu", reg=reg),
        on_result=lambda spec, status: seen.append((spec.method, status)),
        workers=1,
    )
    assert counts == {"ok": 1, "failed": 2, "skipped": 0}
    assert [m for m, _ in seen] == ["exits-3", "exits-none", "half"]
    errors = {r.method: r.error for r in store.records()}
    assert errors["exits-3"] == "SystemExit: the method called sys.exit(3); a method must raise an exception instead"
    assert "sys.exit(None)" in errors["exits-none"]


# --- damaged records -----------------------------------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "null": lambda text: "null",
    "array": lambda text: "[]",
    "object": lambda text: "{}",
    "no-spec": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "spec"}),
    "binary": lambda text: "\udcff",
}


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory, reg):
    """A store of two finished runs (erm-free test doubles: seconds)."""
    root = tmp_path_factory.mktemp("finished")
    specs = specs_of(reg, ["half"], seeds=2)
    execute(specs, ResultStore(root), SpecRunner("cpu", reg=reg))
    return root, specs


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_record_is_named_recomputed_and_skipped_by_the_leaderboard(
    damage, finished_store, tmp_path, reg, caplog
):
    source, specs = finished_store
    root = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(source), str(root)], check=True)
    broken = root / specs[0].run_id / RECORD
    text = DAMAGE[damage](broken.read_text())
    broken.write_bytes(text.encode("utf-8", "surrogateescape"))
    caplog.set_level("WARNING", logger="fairfacebench")

    board = build(root)  # the leaderboard skips it, naming the file
    assert board.tables[0].rows[0].runs == 1
    assert f"damaged run record {broken}" in caplog.text

    caplog.clear()
    store = ResultStore(root)
    assert store.status(specs[0].run_id) is None and store.status(specs[1].run_id) == "ok"
    seen = []
    counts = execute(specs, store, SpecRunner("cpu", reg=reg), on_result=lambda s, st: seen.append(st))
    assert counts == {"ok": 1, "failed": 0, "skipped": 1}
    assert f"damaged run record {broken}" in caplog.text
    assert store.status(specs[0].run_id) == "ok" and len(list(store.records())) == 2


def test_leaderboard_commands_skip_a_damaged_record_with_a_warning(finished_store, tmp_path, caplog):
    source, specs = finished_store
    root = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(source), str(root)], check=True)
    broken = root / specs[1].run_id / RECORD
    broken.write_text('{"status": "ok", "run_id": ')
    assert main(["leaderboard", "tables", str(root)]) == 0
    assert main(["leaderboard", "build", str(root), "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").is_file()
    assert f"damaged run record {broken}: not valid JSON" in caplog.text


# --- --out checks --------------------------------------------------------------------------------------------------


def test_a_file_as_out_is_refused_before_any_run(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    assert main(["run", "--methods", "erm", "--budget", "smoke", "--out", str(tmp_path / "runs")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"result store .*runs is a file, not a folder: pass --out a folder"):
        ResultStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"cannot be written"):
        ResultStore(tmp_path / "runs" / "below")


CHECK_READ_ONLY = """
import sys
from fairfacebench.errors import ConfigError
from fairfacebench.store import ResultStore
try:
    ResultStore(sys.argv[1])
except ConfigError as exc:
    print(exc)
"""


def test_a_read_only_out_is_refused_before_any_run(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    check = [sys.executable, "-c", CHECK_READ_ONLY, str(folder)]
    if os.geteuid() == 0:  # root writes anywhere: check without its capabilities, as a user would run
        if not shutil.which("setpriv"):
            pytest.skip("running as root without util-linux setpriv to drop root's capabilities")
        check = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *check]
    ran = subprocess.run(check, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert f"result store {folder} cannot be written (Permission denied)" in ran.stdout


# --- claims: two processes on one store never compute a run twice -------------------------------------------------


class CountingRunner:
    """Stands in for SpecRunner: appends the run id to a log file, takes a moment, returns a minimal record."""

    device = "cpu"

    def __init__(self, log: Path, seconds: float = 0.05):
        self.log, self.seconds = log, seconds

    def needs_vlm(self, spec):
        return False

    def is_heavy(self, spec):
        return False

    def __call__(self, spec):
        with open(self.log, "a") as out:
            out.write(f"{spec.run_id} {os.getpid()}\n")
        time.sleep(self.seconds)
        return fake_record(spec=spec), None


def toy_specs(n: int) -> list[RunSpec]:
    return [fake_spec("m", seed, resolution=8) for seed in range(n)]


def _execute_in_child(root: str, log: str, n: int, start) -> None:
    start.wait()
    execute(toy_specs(n), ResultStore(root), CountingRunner(Path(log)))


def test_two_processes_on_one_store_compute_each_run_once(tmp_path):
    start = SPAWN.Barrier(2)
    log = tmp_path / "computed.log"
    procs = [SPAWN.Process(target=_execute_in_child, args=(str(tmp_path / "runs"), str(log), 12, start)) for _ in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    computed = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(computed) == sorted(s.run_id for s in toy_specs(12))  # each once
    store = ResultStore(tmp_path / "runs")
    assert all(store.status(s.run_id) == "ok" for s in toy_specs(12))
    assert not (tmp_path / "runs" / CLAIMS).exists()


def _write_repeatedly(root: str, start, times: int) -> None:
    store = ResultStore(root)
    start.wait()
    for i in range(times):
        record = fake_record(spec=toy_specs(1)[0])
        record.stages = {"writer": {"pid": os.getpid(), "i": i}}
        store.write("same-run", record)


def test_concurrent_writers_of_one_run_do_not_race(tmp_path):
    start = SPAWN.Barrier(3)
    procs = [SPAWN.Process(target=_write_repeatedly, args=(str(tmp_path), start, 60)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert ResultStore(tmp_path).status("same-run") == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["same-run"]


def claim_file(root: Path, run_id: str, **claim) -> Path:
    path = root / CLAIMS / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(claim))
    return path


def test_a_run_claimed_by_a_live_process_is_skipped_and_taken_over_once_it_is_gone(tmp_path):
    specs = toy_specs(2)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        live = {"pid": holder.pid, "host": socket.gethostname(), "pid_start": process_start(holder.pid), "time": 0}
        claim_file(tmp_path, specs[0].run_id, **live, claimed="then")
        seen = []
        counts = execute(
            specs, ResultStore(tmp_path), CountingRunner(tmp_path / "log"), on_result=lambda s, st: seen.append(st)
        )
        assert counts == {"ok": 1, "failed": 0, "skipped": 1}
        assert seen[0] == f"skipped (claimed by pid {holder.pid} on {socket.gethostname()} since then)"
    finally:
        holder.kill()
        holder.wait()
    counts = execute(specs, ResultStore(tmp_path), CountingRunner(tmp_path / "log"))  # its pid is gone: stale
    assert counts == {"ok": 1, "failed": 0, "skipped": 1}
    assert not (tmp_path / CLAIMS).exists()


@pytest.mark.parametrize(
    "claim, taken_over",
    [
        ({"pid": 1, "host": "elsewhere", "time": "TIME"}, False),  # another host, recent: cannot check its pid
        ({"pid": 1, "host": "elsewhere", "time": 0}, True),  # another host, older than the timeout
        ({"pid": 1, "host": "HOST", "pid_start": "no-such-start", "time": "TIME"}, True),  # pid reused since
        ({}, True),  # a torn claim file
    ],
)
def test_stale_claims_are_recovered(tmp_path, claim, taken_over):
    claim = {k: time.time() if v == "TIME" else socket.gethostname() if v == "HOST" else v for k, v in claim.items()}
    spec = toy_specs(1)[0]
    claim_file(tmp_path, spec.run_id, **claim)
    counts = execute([spec], ResultStore(tmp_path, claim_timeout_s=3600), CountingRunner(tmp_path / "log"))
    assert counts["ok" if taken_over else "skipped"] == 1


def test_an_interrupted_grid_frees_its_claims(tmp_path):
    def interrupt(spec, status):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(toy_specs(3), ResultStore(tmp_path), CountingRunner(tmp_path / "log"), on_result=interrupt)
    assert not (tmp_path / CLAIMS).exists()


# --- determinism: threads per run are part of the spec, not of the executor ----------------------------------------


def test_threads_are_a_comparison_setting_in_the_run_id():
    one, two = (fake_spec(threads=n) for n in (1, 2))
    assert "threads" in COMPARISON_FIELDS
    assert one.run_id != two.run_id and one.comparison_id != two.comparison_id
    assert load_plan(flags={"threads": 2}).threads == 2 and load_plan().threads == 1
    with pytest.raises(ConfigError, match="'threads' must be an integer >= 1"):
        load_plan(flags={"threads": 0})


def test_threads_flag_is_checked_and_oversubscription_warned(tmp_path, capsys, caplog, monkeypatch):
    assert main(["run", "--methods", "erm", "--threads", "0", "--out", str(tmp_path / "runs")]) == 2
    assert "the command line: 'threads' must be an integer >= 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    specs = [fake_spec("m", seed, threads=2) for seed in range(2)]
    execute(specs, ResultStore(tmp_path / "w1"), CountingRunner(tmp_path / "log"), workers=1)
    assert "compete for the cores" not in caplog.text
    execute(specs, ResultStore(tmp_path / "w2"), CountingRunner(tmp_path / "log"), workers=2)
    assert "2 workers x 2 threads per run = 4 compute threads on 2 CPU(s)" in caplog.text


@pytest.mark.slow
def test_the_same_spec_gives_identical_scores_with_one_or_two_workers(tmp_path, reg):
    specs = specs_of(reg, ["erm"], threads=2)  # before: in-process 2 threads, a worker's child cpu_count // 2
    stores = {}
    for workers in (1, 2):
        stores[workers] = ResultStore(tmp_path / f"w{workers}")
        counts = execute(specs, stores[workers], SpecRunner("cpu", reg=None), workers=workers)
        assert counts["ok"] == 1
    for spec in specs:
        a, b = (stores[w].predictions(spec.run_id)["test_scores"] for w in (1, 2))
        np.testing.assert_array_equal(a, b)
        hosts = [json.loads((stores[w].path(spec.run_id) / RECORD).read_text())["host"] for w in (1, 2)]
        assert [h["cpu_threads"] for h in hosts] == [2, 2]
        assert hosts[0]["cpu_model"] and hosts[0]["cpu_flags"] and hosts[0]["torch_cpu_capability"]
    write(tmp_path / "w1")


def test_a_finished_run_from_other_hardware_is_reported_not_skipped_silently(tmp_path, caplog):
    store = ResultStore(tmp_path)
    spec = toy_specs(1)[0]
    record = fake_record(spec=spec, run_id=spec.run_id)
    record.host = {"cpu_model": "Some Other CPU", "torch_cpu_capability": "AVX2"}
    store.write(spec.run_id, record)
    seen = []
    counts = execute([spec], store, CountingRunner(tmp_path / "log"), on_result=lambda s, st: seen.append(st))
    assert counts["skipped"] == 1 and seen == ["skipped (ok, computed on other hardware: Some Other CPU (AVX2))"]
    assert "1 finished run(s)" in caplog.text and "other hardware than this machine" in caplog.text


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda r: r["metrics"]["val"].update(acc="0.9x"), "metrics.val.acc: expected a number, got '0.9x'"),
        (lambda r: r["spec"].pop("dataset"), "spec: missing field(s) ['dataset']"),
        (lambda r: r["spec"].update(method_version="2.1"), "spec.method_version: expected an integer, got '2.1'"),
        (lambda r: r.update(schema=99), "schema 99 is not one this fairbench reads"),
    ],
)
def test_a_record_of_the_wrong_shape_is_named_and_skipped_by_run_and_the_leaderboard(
    damage, named, finished_store, tmp_path, caplog
):
    """A record that parses but holds a wrong type is damaged: named once, skipped, never fatal (issue 28)."""
    source, specs = finished_store
    root = tmp_path / "runs"
    subprocess.run(["cp", "-r", str(source), str(root)], check=True)
    path = root / specs[0].run_id / RECORD
    plain = json.loads(path.read_text())
    damage(plain)
    path.write_text(json.dumps(plain))
    assert main(["leaderboard", "tables", str(root)]) == 0
    assert main(["leaderboard", "build", str(root), "--out", str(tmp_path / "site")]) == 0
    assert ResultStore(root).status(specs[0].run_id) is None and len(list(ResultStore(root).records())) == 1
    assert f"damaged run record {path}: {named}" in caplog.text
