"""End to end through the `fairbench` command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plugin_install import install_plugin

from fairfacebench.cli import main
from fairfacebench.plugins import registry
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH

TINY_OPTIONS = [f"--dataset-option={k}={v}" for k, v in TINY_SYNTH.items()]


def test_run_all_methods_on_synthfaces_smoke_writes_the_leaderboard(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "--methods", "all", "--budget", "smoke", "--out", str(out), *TINY_OPTIONS])
    assert code == 0, capsys.readouterr().out
    board = json.loads((out / "leaderboard.json").read_text())
    (table,) = board["tables"]
    assert (table["dataset"], table["budget"]) == ("synthfaces", "smoke")
    rows = {r["method"]: r for r in table["rows"]}
    assert set(rows) == {name for name, m in registry().methods.items() if not m.ablation_of}  # ablations by name
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["failed_runs"])
        # the leaderboard's number is the accuracy of the selected run's stored test predictions
        preds = ResultStore(out).predictions(row["selected"][0]["run_id"])
        assert row["acc"]["mean"] == pytest.approx(np.mean(preds["test_scores"].argmax(1) == preds["test_y"])), name
        assert len(row["per_group"]) == 3 and sum(g["n"] for g in row["per_group"]) == TINY_SYNTH["n_test"], name
        assert all(r["steps"] == 12 for r in row["budget_report"]), name
    md = (out / "leaderboard.md").read_text()
    assert "| method" in md and "eod_max" in md and "per-group test metrics of erm" in md
    # re-running the same command finds every run finished, and keeps the leaderboard it would build again
    built = (out / "leaderboard.json").stat().st_mtime_ns
    assert main(["run", "--methods", "all", "--budget", "smoke", "--out", str(out), *TINY_OPTIONS]) == 0
    again = capsys.readouterr().out
    assert f"0 to compute, {len(rows)} already in" in again
    assert "nothing computed: the leaderboard in" in again and (out / "leaderboard.json").stat().st_mtime_ns == built


def test_list_shows_metadata(capsys):
    assert main(["list", "methods"]) == 0
    text = capsys.readouterr().out
    for name in ("erm", "reweight", "resample", "val-reweight"):
        assert name in text
    assert "y:train, a:train" in text
    assert main(["list", "methods", "--format", "json"]) == 0
    assert "Kamiran" in capsys.readouterr().out  # citations: in the JSON listing, not the narrow table
    assert main(["list", "datasets"]) == 0
    text = capsys.readouterr().out
    assert "synthfaces" in text and "utkface" in text


def test_third_party_plugin_installs_lists_and_runs(tmp_path):
    """A tiny package under tests/ registers a method through the public entry-point group."""
    target = tmp_path / "site"
    pkg = Path(__file__).parent / "plugin_pkg"
    env = install_plugin(pkg, target)
    cli = [sys.executable, "-m", "fairfacebench.cli"]
    listed = subprocess.run(
        [*cli, "list", "methods", "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    assert "linear-probe" in listed.stdout and "Kornblith" in listed.stdout
    package = {"distribution": "fairbench-example-plugin", "version": "0.1.0"}
    assert {m["name"]: m for m in json.loads(listed.stdout)}["linear-probe"]["package"] == package
    out = tmp_path / "runs"
    ran = subprocess.run(
        [*cli, "run", "--methods", "linear-probe,erm", "--budget", "smoke", "--out", str(out), *TINY_OPTIONS],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = {r["method"]: r for r in json.loads((out / "leaderboard.json").read_text())["tables"][0]["rows"]}
    assert rows["linear-probe"]["status"] == "ok"
    records = {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*/record.json"))}
    code = records["linear-probe"]["method_code"]
    assert (code["distribution"], code["version"], code["modules"]) == (*package.values(), ["fairbench_example_plugin"])
    assert records["erm"]["method_code"]["distribution"] == "fairfacebench"


@pytest.mark.slow
def test_erm_on_default_synthfaces_shows_a_group_gap(tmp_path):
    """The embedded world is built so that plain ERM learns a measurable bias."""
    out = tmp_path / "runs"
    assert main(["run", "--methods", "erm", "--out", str(out)]) == 0
    (rec,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    groups = rec["per_group"]["test"]["per_group"]
    accs = [g["acc"] for g in groups]
    assert rec["metrics"]["test"]["acc"] > 0.7
    assert max(accs) - min(accs) > 0.05, groups


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--methods", "no-such-method"], "unknown method 'no-such-method'; installed methods: ["),
        (
            ["--methods", "clip-cluster", "--vlm", "clip"],
            "--vlm clip: unknown encoder 'clip'; use 'auto', 'none' or one of",
        ),
        (["--methods", "erm", "--datasets", "nope"], "unknown dataset 'nope'; installed datasets: ["),
        (["--methods", "ermm"], "unknown method 'ermm'; did you mean erm?"),
        (["--methods", "erm", "--datasets", "utkfce"], "unknown dataset 'utkfce'; did you mean utkface or utkface-cb?"),
    ],
)
def test_run_reports_bad_names_without_a_traceback(tmp_path, capsys, flags, message):
    assert main(["run", *flags, "--budget", "smoke", "--out", str(tmp_path / "runs"), *TINY_OPTIONS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench run: error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("dataset", ["fairface", "celeba"])
def test_run_on_a_real_layout_writes_per_group_tables(tmp_path, dataset):
    """`fairbench run` end to end on the official FairFace / CelebA layouts (tiny generated fixtures).

    In a worker process (--workers 2), which must be allowed to start the image-cache builder's own processes.
    """
    from fixtures_layouts import build_celeba, build_fairface

    root = tmp_path / dataset
    build_fairface(root) if dataset == "fairface" else build_celeba(root, "txt", n=60)
    out = tmp_path / "runs"
    argv = [
        "run",
        "--methods",
        "erm",
        "--datasets",
        dataset,
        "--data-root",
        str(root),
        "--budget",
        "smoke",
        "--workers",
        "2",
        "--bootstrap",
        "100",
        "--allow-tiny-groups",  # a handful of images per (target, group) cell
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    (rec,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    assert rec["status"] == "ok" and rec["spec"]["dataset"] == dataset
    assert rec["host"]["cpu_threads"] == rec["spec"]["threads"] == 1  # the run's own threads, whatever --workers is
    groups = [g["group"] for g in rec["per_group"]["test"]["per_group"]]
    assert groups == rec["task_info"]["group_names"] and len(groups) >= 2
    (table,) = json.loads((out / "leaderboard.json").read_text())["tables"]
    assert table["dataset"] == dataset and [r["method"] for r in table["rows"]] == ["erm"]
