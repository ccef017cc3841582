"""Done-when of the contributor kit: scaffold a method, install it, list it, run it, pass the conformance kit."""

import json
import subprocess
import sys

import pytest
from plugin_install import install_plugin

from fairfacebench.cli import main
from fairfacebench.scaffold import names
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH

TINY_OPTIONS = [f"--dataset-option={k}={v}" for k, v in TINY_SYNTH.items()]
CLI = [sys.executable, "-m", "fairfacebench.cli"]


def test_scaffolded_method_installs_lists_runs_and_conforms(tmp_path, capsys):
    assert main(["new-method", "scaffold-demo", "--out", str(tmp_path)]) == 0
    pkg = tmp_path / "fairbench-scaffold-demo"
    assert str(pkg) in capsys.readouterr().out
    assert {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()} == {
        "pyproject.toml",
        "README.md",
        "src/fairbench_scaffold_demo/__init__.py",
        "tests/test_conformance.py",
    }
    target = tmp_path / "site-packages"
    env = install_plugin(pkg, target, OMP_NUM_THREADS="1")

    listed = subprocess.run(
        [*CLI, "list", "methods", "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    assert "scaffold-demo" in listed.stdout and "scaffold: replace with your method" in listed.stdout

    out = tmp_path / "runs"
    ran = subprocess.run(
        [
            *CLI,
            "run",
            "--methods",
            "scaffold-demo",
            "--datasets",
            "synthfaces",
            "--budget",
            "smoke",
            "--bootstrap",
            "0",
            "--out",
            str(out),
            *TINY_OPTIONS,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (row,) = json.loads((out / "leaderboard.json").read_text())["tables"][0]["rows"]
    assert row["method"] == "scaffold-demo" and row["status"] == "ok" and row["budget_report"][0]["steps"] == 12

    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")],
        env=env,
        cwd=pkg,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr


def test_new_method_refuses_bad_taken_and_existing_names(tmp_path, capsys):
    assert names("my-method") == {
        "name": "my-method",
        "dist": "fairbench-my-method",
        "module": "fairbench_my_method",
        "cls": "MyMethod",
    }
    for bad in ("My Method", "my_method", "-x", "x--y", "<script>"):
        with pytest.raises(ValueError, match="not valid"):
            names(bad)
    (tmp_path / "fairbench-taken").mkdir()
    for name, message in (("My Method", "not valid"), ("erm", "'erm' is already installed"), ("taken", "exists")):
        assert main(["new-method", name, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fairbench new-method: error: ") and message in err
