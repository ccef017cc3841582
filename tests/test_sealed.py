"""The sealed runner (docs/ARCHITECTURE.md, "Threat model"): its sandbox holds only what it binds and nothing in it
outlives the run; a sealed run computes exactly what a run in the harness's process computes; and every hostile
plugin of the red-team round (tests/hostile_plugin) fails its run or finds nothing when sealed, while the
conformance kit reports each of them."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from plugin_install import install_plugin

from fairfacebench.errors import ConfigError
from fairfacebench.method_code import MethodCode, method_code
from fairfacebench.plan import expand, load_plan
from fairfacebench.record import Isolation
from fairfacebench.runner import SpecRunner
from fairfacebench.sealed import (
    SANDBOX,
    BudgetOvershoot,
    Counted,
    LabelCard,
    MethodCard,
    SealedRunner,
    TrialCard,
    check_counts,
    child_env,
    child_layout,
    run_child,
    sealed_registry,
    sealed_vlm_info,
)
from fairfacebench.sealed_child import ChildReport
from fairfacebench.testing import SMALL_SYNTHFACES

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fairfacebench.cli"]
TINY = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]
HOSTILE = [
    "hostile-gc-labels",
    "hostile-stack-labels",
    "hostile-data-root",
    "hostile-stored-predictions",
    "hostile-overwrites-selection",
    "hostile-trains-in-predict",
    "hostile-thread-trains",
    "hostile-subprocess-writes",
    "hostile-resets-meter",
    "hostile-switches-off-meter",
    "hostile-vandalises-store",
]
READS_LABELS = ["hostile-gc-labels", "hostile-stack-labels", "hostile-data-root", "hostile-stored-predictions"]


# ---------------------------------------------------------------- the sandbox itself

PROBE = r"""
import json, os, socket, subprocess, sys
found = {"caps": open("/proc/self/status").read().split("CapEff:")[1].split()[0], "pid": os.getpid()}
found["seen"] = {p: sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p) for p in sys.argv[1:]}
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    found["net"] = "connected"
except OSError as exc:
    found["net"] = type(exc).__name__
found["remount"] = subprocess.run(["mount", "-o", "remount,rw", "/usr"], capture_output=True).returncode
try:
    open(os.path.join(sys.prefix, "planted"), "w")
    found["write"] = "written"
except OSError as exc:
    found["write"] = exc.errno
found["processes"] = sorted(p for p in os.listdir("/proc") if p.isdigit())
json.dump(found, open("/sealed/out/probe.json", "w"))
"""


def sandboxed(tmp_path, argv, hidden=()):
    folder = tmp_path / "sandbox"
    (folder / "root").mkdir(parents=True)
    (folder / "io" / "out").mkdir(parents=True)
    read_fd, write_fd = os.pipe()
    layout = child_layout(folder, argv, child_env(tmp_path / "cache"), list(hidden), [], [])
    started = time.monotonic()
    code, counted, cpu = run_child(layout, folder, read_fd, write_fd)
    return folder, code, counted, time.monotonic() - started


def test_the_sandbox_shows_only_what_it_binds_without_network_or_capabilities(tmp_path):
    store, data = tmp_path / "store", tmp_path / "data"
    for folder in (store, data):
        folder.mkdir()
        (folder / "secret.txt").write_text("test labels")
    results = ROOT / "stores"  # the stores inside the repository: not bound
    home_cache = Path.home() / ".cache"
    paths = [str(store), str(data), str(results), str(home_cache), os.environ.get("FAIRBENCH_CACHE", "/nonexistent")]
    folder, code, _, _ = sandboxed(tmp_path, [sys.executable, "-c", PROBE, *paths], hidden=[str(store)])
    assert code == 0, (folder / "child.log").read_text()
    found = json.loads((folder / "io" / "out" / "probe.json").read_text())
    assert found["caps"] == "0000000000000000" and found["pid"] == 1
    assert found["net"] in ("OSError", "ConnectionRefusedError") and found["net"] != "connected"
    assert found["remount"] != 0 and found["write"] != "written"  # read-only, and no capability to change that
    assert found["seen"][str(store)] is False and found["seen"][str(data)] is False
    assert found["seen"][str(home_cache)] is False and found["seen"][paths[-1]] is False
    assert found["seen"][str(results)] in (False, [])  # the folder of the published results shows nothing
    assert found["processes"] == ["1"]  # its own PID namespace: no process of the machine in sight


LINGERS = r"""
import subprocess, sys
fd = int(sys.argv[1])
late = f"import os, time; time.sleep(20); os.write({fd}, b'step 1 late\\n')"
subprocess.Popen([sys.executable, "-c", late], pass_fds=(fd,), start_new_session=True)
"""


def test_no_process_outlives_the_child(tmp_path):
    """A detached grandchild that holds the tally pipe would keep the harness reading for 20 s and then write a
    step; the PID namespace ends it with the child, so the run ends at once and the late step is never counted."""
    folder = tmp_path / "sandbox"
    (folder / "root").mkdir(parents=True)
    (folder / "io" / "out").mkdir(parents=True)
    read_fd, write_fd = os.pipe()
    layout = child_layout(folder, [sys.executable, "-c", LINGERS, str(write_fd)], child_env(tmp_path), [], [], [])
    started = time.monotonic()
    exit_code, counted, _ = run_child(layout, folder, read_fd, write_fd)
    assert exit_code == 0, (folder / "child.log").read_text()
    assert time.monotonic() - started < 15 and counted.steps == 0


# ---------------------------------------------------------------- the harness's side


def test_the_tally_counts_fit_and_prediction_and_refuses_garbage():
    counted = Counted()
    counted.feed(b"step 1 train\nstep 1 tr")
    counted.feed(b"ain\nforward 32 backbone\nphase predict\nforward 64 backbone\n")
    assert (counted.steps, counted.forwards, counted.predict_forwards, counted.problems) == (2, 32, 64, [])
    counted.feed(b"rm -rf /\n")
    assert counted.problems and "unreadable" in counted.problems[0]
    flood = Counted()
    flood.feed(b"x" * 10_000)
    assert "longer than" in flood.problems[0]


def report(steps, forwards):
    return ChildReport({"steps": steps, "forward_samples": forwards}, [], None, {}, [], {}, 0, 0.0, [], None)


def test_the_budget_is_checked_on_what_the_harness_counted():
    spec = expand(load_plan(flags={"methods": ["erm"], "budget": "smoke"}))[0]
    honest = Counted(steps=12, forwards=384, predict_forwards=200)
    check_counts(honest, report(12, 384), spec, 1800, 100)
    with pytest.raises(BudgetOvershoot, match="counted 24 optimizer steps"):  # a meter reset or lifted
        check_counts(Counted(steps=24, forwards=384), report(24, 384), spec, 1800, 100)
    with pytest.raises(BudgetOvershoot, match="tampered"):  # a meter that reports less than it charged
        check_counts(honest, report(0, 0), spec, 1800, 100)
    with pytest.raises(BudgetOvershoot, match="while predicting"):  # training passes inside predict
        check_counts(Counted(steps=12, forwards=384, predict_forwards=301), report(12, 384), spec, 1800, 100)


def test_a_sealed_runs_vlm_info_is_the_harness_own_with_the_childs_embedding_cost():
    harness = {"id": "enc-1", "report": {"captions_name": ["skin_tone"], "samples": 0, "train_time_s": 0.0}}
    child = {"captions_name": [], "samples": 152, "train_time_s": 14.2, "arrays": {"d1": {"images": 152}}}
    # the child's cost, the harness's id and captions (a child cannot hide what its captions name)
    assert sealed_vlm_info(harness, child) == {
        "id": "enc-1",
        "report": {"captions_name": ["skin_tone"], "samples": 152, "train_time_s": 14.2, "arrays": child["arrays"]},
    }
    assert sealed_vlm_info(None, child) is None and sealed_vlm_info({"id": "e"}, child) == {"id": "e"}
    assert sealed_vlm_info(harness, None) == harness


def test_a_described_method_plans_like_a_method_without_its_code():
    labels = LabelCard("train", "", "", False, "y:train")
    trials = [TrialCard({"lr": 0.1}, labels)]
    code = MethodCode("0123456789abcdef", ["outside_pkg"])
    card = MethodCard("outside", "outside_pkg", "d", "c", 2, None, False, False, False, "-", labels, {}, trials, code)
    reg = sealed_registry([replace(card, plugin="outside-dist:outside")])
    reg.distributions["outside-dist:outside"] = ("outside-dist", "1.2")  # as its installed metadata says
    cls = reg.method("outside")
    assert reg.modules["method:outside"] == "outside_pkg" and "erm" in reg.methods
    # its code is known from the fingerprint its describing child took, never from importing it here
    assert method_code(cls, reg.provider("method", "outside")) == replace(
        code, distribution="outside-dist", version="1.2"
    )
    plan = load_plan(flags={"methods": ["outside"], "budget": "smoke"})
    (spec,) = expand(plan, reg)
    assert spec.hparams == {"lr": 0.1} and spec.method_version == 2
    assert cls.label_use(spec.hparams).summary() == "y:train"
    with pytest.raises(ConfigError, match="sealed"):
        load_plan(flags={"sealed": "yes"})


def test_a_record_discloses_whether_its_run_was_sealed_and_older_records_ran_in_process(tmp_path):
    from records import fake_record

    from fairfacebench.record import parse_record
    from fairfacebench.store import ResultStore
    from fairfacebench.typed import PlainTypeError, to_plain

    store = ResultStore(tmp_path / "runs")
    sealed = replace(fake_record("erm", run_id="r1"), isolation=Isolation("sealed", SANDBOX))
    store.write("r1", sealed)
    plain = json.loads((store.path("r1") / "record.json").read_text())
    assert plain["isolation"] == {"mode": "sealed", "sandbox": SANDBOX} and store.record("r1").sealed
    older = {k: v for k, v in to_plain(fake_record("erm")).items() if k != "isolation"}  # before sealed runs
    assert parse_record(older).isolation is None and not parse_record(older).sealed
    with pytest.raises(PlainTypeError, match=r"isolation.mode: expected one of \['sealed', 'in-process'\]"):
        parse_record({**plain, "isolation": {"mode": "sandboxed"}})


# ---------------------------------------------------------------- sealed runs


def tiny_spec(method):
    options = {"synthfaces": SMALL_SYNTHFACES}
    flags = {"methods": [method], "budget": "smoke", "bootstrap": 0, "dataset_options": options}
    return expand(load_plan(flags=flags))[0]


def test_a_sealed_run_computes_what_a_run_in_the_harness_process_computes():
    spec = tiny_spec("erm")
    plain, plain_arrays = SpecRunner("cpu")(spec)
    sealed, sealed_arrays = SealedRunner("cpu")(spec)
    assert plain.ok and sealed.ok, sealed.error
    assert sealed.run_id == plain.run_id and sealed.metrics == plain.metrics
    for key in ("test_scores", "val_scores", "test_y", "val_ids"):
        assert np.array_equal(plain_arrays[key], sealed_arrays[key]), key
    assert sealed.isolation == Isolation("sealed", SANDBOX) and sealed.sealed  # provenance, not in the run id
    assert plain.isolation == Isolation("in-process") and not plain.sealed
    assert sealed.budget_report["sealed_child"]["child_cpu_s"] > 0
    assert sealed.budget_report["steps"] == plain.budget_report["steps"] == 12
    assert sealed.labels_touched == plain.labels_touched == ["train.target"]


@pytest.fixture(scope="module")
def hostile_env(tmp_path_factory):
    """PYTHONPATH with the hostile test plugin installed (the venv itself is not touched)."""
    target = tmp_path_factory.mktemp("hostile-site")
    return install_plugin(Path(__file__).parent / "hostile_plugin", target)


def records(out):
    return {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*/record.json"))}


def fairbench_run(env, out, methods, *flags):
    ran = subprocess.run(
        [*CLI, "run", "--methods", ",".join(methods), "--budget", "smoke", "--bootstrap", "0", "--workers", "1",
         "--progress", "plain", "--out", str(out), *TINY, *flags],
        env=env, capture_output=True, text=True, timeout=1800, cwd=out.parent,
    )  # fmt: skip
    return ran, records(out)


@pytest.mark.slow
def test_every_hostile_plugin_fails_or_finds_nothing_when_sealed(tmp_path, hostile_env):
    out = tmp_path / "runs"
    ran, found = fairbench_run(hostile_env, out, ["erm", *HOSTILE, "hostile-patcher"], "--sealed")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # some runs failed, as they should
    erm = found["erm"]
    assert erm["status"] == "ok" and erm["isolation"]["mode"] == "sealed"
    for name in HOSTILE:
        record = found[name]
        if record["status"] == "ok":  # it ran, and its attack found nothing to exploit
            assert record["stages"].get("attack") in (None, {"found": False}), name
            assert record["metrics"]["test"]["acc"] == erm["metrics"]["test"]["acc"], name
    errors = {n: found[n].get("error", "") for n in HOSTILE}
    assert (
        errors["hostile-overwrites-selection"].startswith("PredictorChanged")
        and "scores of request 1" in (errors["hostile-overwrites-selection"])
    )
    assert errors["hostile-trains-in-predict"].startswith("PredictorChanged")
    assert errors["hostile-thread-trains"].startswith("PredictorChanged")
    assert errors["hostile-resets-meter"].startswith("UnmeteredCompute")
    assert errors["hostile-switches-off-meter"].startswith("BudgetOvershoot: the harness counted 24 optimizer steps")
    time.sleep(4)  # the detached writer of hostile-subprocess-writes would have written by now
    assert not list(out.rglob("INTRUDER")) and len(found) == len(HOSTILE) + 2  # no folder deleted, none forged
    assert found["hostile-patcher"]["status"] == "ok"  # its import-time patch reached its own child only
    board = json.loads((out / "leaderboard.json").read_text())["tables"][0]["rows"]
    assert {r["method"]: r["status"] for r in board}["hostile-switches-off-meter"] == "failed"


@pytest.mark.slow
def test_in_the_harness_process_the_attacks_work_and_an_installed_plugin_changes_erm(tmp_path, hostile_env):
    """What the sealed runner stops: trusted in-process (sealed = false) the label readers score 1.000 and the merely
    installed patcher changes erm's scores; by default ("auto") erm runs untouched, the plugin never imported."""
    (tmp_path / "auto").mkdir()
    _, auto = fairbench_run(hostile_env, tmp_path / "auto" / "runs", ["erm"])
    (tmp_path / "trusted").mkdir()
    methods = ["erm", "hostile-gc-labels", "hostile-stack-labels", "hostile-data-root", "hostile-stored-predictions"]
    ran, trusted = fairbench_run(hostile_env, tmp_path / "trusted" / "runs", methods, "--trust-plugins")
    assert "run in this process, trusted" in ran.stderr
    for name in methods[1:]:
        record = trusted[name]
        said = {k: record.get(k) for k in ("status", "error", "stages")}
        assert record["status"] == "ok" and record["stages"].get("attack") == {"found": True}, (name, said)
        assert record["metrics"]["test"]["acc"] == 1.0, name
    erm_auto, erm_trusted = auto["erm"]["metrics"]["test"]["acc"], trusted["erm"]["metrics"]["test"]["acc"]
    assert erm_trusted != erm_auto  # the patcher reversed erm's scores in the trusting process


KIT = r"""
import json, sys
from fairfacebench.store import ResultStore
from fairfacebench.testing import check_method
names, classes = sys.argv[1].split(","), {}
store = ResultStore(sys.argv[2])  # the store a grid's process holds, with one finished run
(store.root / "0123456789abcdef").mkdir()
(store.root / "0123456789abcdef" / "record.json").write_text('{"status": "ok"}')
if names == ["hostile-patcher"]:
    from fairbench_hostile_plugin.patcher import Patcher
    classes = {"hostile-patcher": Patcher}
else:
    import fairbench_hostile_plugin
    classes = {c.name: c for c in fairbench_hostile_plugin.fairfacebench_methods()}
print(json.dumps({n: check_method(classes[n], raise_on_failure=False).failures for n in names}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("names", [HOSTILE, ["hostile-patcher"]], ids=["attacks", "import-time-patch"])
def test_the_conformance_kit_reports_every_hostile_plugin(tmp_path, hostile_env, names):
    ran = subprocess.run(
        [sys.executable, "-c", KIT, ",".join(names), str(tmp_path / "store")],
        env=hostile_env, capture_output=True, text=True, timeout=1800, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    failures = json.loads(ran.stdout.strip().splitlines()[-1])
    assert all(failures[n] for n in names), failures
    if names == ["hostile-patcher"]:
        assert any("harness" in f and "predict_scores" in f for f in failures["hostile-patcher"])
    else:
        assert not (Path(tmp_path / "store" / "INTRUDER")).exists()
        assert (tmp_path / "store" / "0123456789abcdef" / "record.json").exists()  # the kit stopped the vandal


def test_sealed_runs_refuse_ray():
    with pytest.raises(ConfigError, match="local sandboxes"):
        SealedRunner("cpu").sharding_on_ray()
