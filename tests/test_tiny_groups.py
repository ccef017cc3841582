"""Tiny groups in your own data: `data check` prints the (target class, group) cells per split and warns below
MIN_CELL_IMAGES in validation or test; `run` refuses such a task before training unless --allow-tiny-groups, and
then every record names the cells (`tiny_groups`)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_layouts import build_csv_folder

from fairfacebench.cli import main
from fairfacebench.data import (
    MIN_CELL_IMAGES,
    Attribute,
    Split,
    TaskSpec,
    cell_counts,
    describe_tiny,
    task_cells,
    tiny_cells,
)
from fairfacebench.runner import SpecRunner

CLI_OPTIONS = ["--dataset-option", "csv.target=smiling", "--dataset-option", "csv.sensitive=skin,glasses"]


@pytest.fixture()
def no_training(monkeypatch):
    def refuse(self, spec):
        raise AssertionError(f"{spec.label} was computed")

    monkeypatch.setattr(SpecRunner, "__call__", refuse)


def test_cell_counts_are_images_per_target_class_and_group():
    # rows (y, a): (0,0) (0,1) (1,0) (1,0) (1,1) -> no|g0 row 0, yes|g0 rows 2 and 3, no|g1 row 1, yes|g1 row 4
    counts = cell_counts(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 0, 1]), ("no", "yes"), ("g0", "g1"))
    assert counts == {"no|g0": 1, "yes|g0": 2, "no|g1": 1, "yes|g1": 1}


def test_tiny_cells_are_those_of_validation_and_test_below_the_minimum():
    assert MIN_CELL_IMAGES == 10
    cells = {"train": {"a": 1}, "val": {"a": 10, "b": 9}, "test": {"a": 0, "b": 30}}
    tiny = tiny_cells(cells)
    assert tiny == {"val": {"b": 9}, "test": {"a": 0}}  # train is not scored; 10 is enough
    assert describe_tiny(tiny) == "test a 0, val b 9"  # smallest first
    assert tiny_cells({"val": {"a": 10}, "test": {"a": 11}}) == {}


def test_task_cells_of_an_intersectional_task_leave_out_rows_it_does_not_apply_to():
    attributes = {
        "y": Attribute("y", ("no", "yes")),
        "s": Attribute("s", ("f", "m")),
        "r": Attribute("r", ("p", "q")),
    }
    # rows: (y, s, r) = (0,0,0) (1,0,0) (1,1,1) (0,1,-1: r not applicable, left out)
    labels = {"y": np.array([0, 1, 1, 0]), "s": np.array([0, 0, 1, 1]), "r": np.array([0, 0, 1, -1])}
    split = Split(np.zeros((4, 1, 1, 3), np.uint8), labels, np.arange(4))
    (cells,) = task_cells({"test": split}, attributes, TaskSpec("y/s+r", "y", ("s", "r"))).values()
    assert cells == {
        "no|f|p": 1,
        "yes|f|p": 1,
        "no|f|q": 0,
        "yes|f|q": 0,
        "no|m|p": 0,
        "yes|m|p": 0,
        "no|m|q": 0,
        "yes|m|q": 1,
    }


def test_data_check_prints_the_cells_of_a_task_and_warns_about_tiny_ones(tmp_path, capsys):
    root = build_csv_folder(tmp_path / "mine")  # 60 images, split 70/10/20 per (smiling, skin, glasses) stratum
    argv = ["data", "check", "csv", "--data-root", str(root), *CLI_OPTIONS]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"csv at {root}: ok, 1 warning(s)\n")
    assert "task smiling/skin: images per (target class|group) cell; * fewer than 10 in val or test" in out
    # each (smiling, skin, glasses) stratum of 5 images is cut 3/1/1, so a (smiling, skin) cell holds 6/2/2
    assert "| no|dark    |       6 |    2* |     2* |" in out
    assert "warning: task smiling/skin: (target class|group) cells with fewer than 10 images in validation" in out
    assert main([*argv, "--tasks", "smiling/skin+glasses"]) == 0
    out = capsys.readouterr().out
    assert "task smiling/skin+glasses:" in out and "| yes|light|1 " in out and "task smiling/skin:" not in out


def test_run_refuses_a_task_with_tiny_cells_before_training_unless_allowed(tmp_path, capsys, no_training):
    root = build_csv_folder(tmp_path / "mine")
    argv = ["run", "--methods", "erm", "--datasets", "csv", "--data-root", str(root), *CLI_OPTIONS, "--budget", "smoke"]
    argv += ["--tasks", "csv:smiling/skin+glasses", "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "fairbench run: error: dataset 'csv', task 'smiling/skin+glasses': (target class|group) cells with fewer "
        "than 10 images in validation or test: test no|dark|0 1, test no|dark|1 1, test no|light|0 1, "
    )
    assert "... (24 cells)" in err and "--allow-tiny-groups" in err
    assert not (tmp_path / "runs").exists()
    assert main([*argv, "--allow-tiny-groups", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "1 to compute" in captured.out
    assert "fairbench run: warning: dataset 'csv', task 'smiling/skin+glasses': (target class|group)" in captured.err
