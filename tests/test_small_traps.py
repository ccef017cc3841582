"""Small traps a reader falls into: a data-check hint that fails as suggested, a dry-run plan naming a dataset the
run does not use, the leaderboard path printed twice, normal training logged as a warning, carriage-return frames in
piped logs, unlabeled-pool files dropped without a word, and a run that ends without its results."""

from __future__ import annotations

import logging
import re
import shlex
import tomllib
from pathlib import Path

import numpy as np
import pytest
from fixtures_layouts import build_csv_folder, build_pool_folder
from records import fake_record, fake_spec, metrics

from fairfacebench import progress
from fairfacebench.cli import main, pool_notes, results_rows
from fairfacebench.data import LabeledSplit, TaskData, TaskSpec, UnlabeledPool
from fairfacebench.datasets.pools import FolderPool
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import registry
from fairfacebench.record import LISTING_LIMIT
from fairfacebench.runner import dataset_info

ROOT = Path(__file__).resolve().parents[1]
CSV_OPTIONS = ["--dataset-option", "csv.target=smiling", "--dataset-option", "csv.sensitive=skin"]


def test_the_data_check_a_csv_error_suggests_runs_with_the_users_options(tmp_path, capsys):
    root = build_csv_folder(tmp_path / "mine")
    (root / "labels.csv").rename(root / "labels-old.csv")
    argv = ["run", "--methods", "erm", "--datasets", "csv", "--data-root", str(root), *CSV_OPTIONS, "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    suggested = re.search(r"`(fairbench data check [^`]*)` reports the layout", err)[1]
    assert suggested == (
        f"fairbench data check csv --data-root {root} --dataset-option csv.target=smiling "
        "--dataset-option csv.sensitive=skin"
    )
    assert main(shlex.split(suggested)[1:]) == 1  # the suggested command runs: it reports the problem
    assert f"problem: {root / 'labels.csv'} does not exist" in capsys.readouterr().out


def test_the_dry_run_plan_shows_the_runs_settings_and_reads_back(tmp_path, capsys):
    root = build_csv_folder(tmp_path / "mine", n=600)  # 10 images per (smiling, skin) cell in validation
    argv = ["run", "--methods", "erm", "--datasets", "csv", "--data-root", str(root), *CSV_OPTIONS, "--dry-run"]
    assert main([*argv, "--budget", "smoke", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    text = out.split("# the resolved plan", 1)[1].split("\n", 1)[1].split("\ncompute", 1)[0]
    plan = tomllib.loads(text)
    assert plan["resolution"] == 32 and plan["tasks"] == {"csv": ["smiling/skin"]}  # smoke budget: 32 px
    assert "synthfaces" not in text
    (tmp_path / "plan.toml").write_text(text)
    (spec,) = expand(load_plan(tmp_path / "plan.toml"))
    assert f"[run {spec.run_id}]" in out  # the printed plan is a config file giving the same runs


def test_make_bench_leaves_the_leaderboard_path_to_run():
    recipe = ROOT.joinpath("Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "fairbench run" in recipe and "echo" not in recipe and "leaderboard" not in recipe


def test_training_the_mini_clip_is_logged_as_information_not_as_a_warning(tmp_path, caplog, monkeypatch):
    from fairfacebench.datasets.synthfaces import mini_clip

    class Trained(Exception):
        pass

    def train(cfg, progress):  # stands in for the minutes of training; what matters is the line before it
        raise Trained

    monkeypatch.setattr(mini_clip, "train_mini_clip", train)
    with caplog.at_level(logging.INFO), pytest.raises(Trained):
        mini_clip.load_or_train(mini_clip.MiniClipConfig(), tmp_path)
    lines = [r for r in caplog.records if "training the synthfaces mini-CLIP" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO]


def test_progress_into_a_pipe_is_plain_lines(tmp_path, capsys, monkeypatch):
    expected = build_pool_folder(tmp_path / "pool")
    FolderPool().load(tmp_path / "pool", 12, tmp_path / "cache", workers=1, progress=True)
    err = capsys.readouterr().err  # not a terminal: no tqdm frames
    decoded = expected["files"] - expected["duplicates"]  # a duplicate is never decoded
    assert "\r" not in err and f"caching folder-pool at 12px: {decoded}/{decoded} img in " in err
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)  # a long job: a line now and then, then the last one
    with progress.progress_bar(3, "embedding", "img") as bar:
        for _ in range(3):
            bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["embedding: 1/3 img (33%), 0s", "embedding: 2/3 img (67%), 0s"]
    assert lines[2] == "embedding: 3/3 img in 0s" and len(lines) == 3


def test_a_pool_says_what_it_dropped_in_the_record_and_on_the_console(tmp_path):
    build_pool_folder(tmp_path / "pool")
    pool = FolderPool().load(tmp_path / "pool", 12, tmp_path / "cache", workers=1, progress=False)
    summary = (
        "11 files, 7 images read: dropped 1 exact duplicate(s) of another file (identical bytes; the first in path "
        "order is kept); 2 not image(s); 1 corrupt image(s)"
    )
    assert pool.report["summary"] == summary
    split = LabeledSplit(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), np.array([0, 1]), np.array(["a", "b"]))
    task = TaskSpec("y/a", "y", ("a",))
    data = TaskData("d", task, None, (), ("g0", "g1"), split, split, split, pool=pool, info={"seed": 0})
    info = dataset_info(data)
    assert info["seed"] == 0 and info["pool"]["name"] == "folder:pool" and info["pool"]["images"] == 7
    assert info["pool"]["summary"] == summary and info["pool"]["duplicate_of"] == {"sub/deeper/a copy.jpg": "a.jpg"}
    copies = {f"{i:02d}.jpg": "00.jpg" for i in range(1, 31)}  # a long mapping: listed as pairs, cut like a list
    many = UnlabeledPool("folder:big", pool.images, pool.ids, report={"duplicate_of": copies})
    cut = dataset_info(TaskData("d", task, None, (), ("g0", "g1"), split, split, split, pool=many))["pool"]
    assert cut["duplicate_of"]["count"] == 30 and cut["duplicate_of"]["first"][0] == ["01.jpg", "00.jpg"]
    assert len(cut["duplicate_of"]["first"]) == LISTING_LIMIT
    record = fake_record()
    record.dataset_info = dataset_info(data)
    assert pool_notes([record, record]) == [f"pool folder:pool: {summary}"]  # once per pool


def test_the_results_table_selects_one_trial_per_seed_and_flags_like_the_leaderboard():
    # two groups of 50 test images, 25 positives each: majority 0.5, at chance below 0.5 + 2 sqrt(0.25 / 100) = 0.6
    groups = [{"group": g, "n": 50, "positives": 25, "selection_rate": 0.5} for g in ("g0", "g1")]
    runs = {  # (seed, trial): (validation accuracy, test accuracy); val_acc picks the trial per seed
        (0, 0): (0.6, 0.90),
        (0, 1): (0.7, 0.55),  # chosen for seed 0: at chance
        (1, 0): (0.8, 0.80),  # chosen for seed 1
        (1, 1): (0.5, 0.30),
    }
    specs, records = [], {}
    for (seed, trial), (val_acc, test_acc) in runs.items():
        spec = fake_spec("m", seed, trial)
        specs.append(spec)
        test = metrics(test_acc, wga=test_acc - 0.1, eod=0.1 * (seed + 1))
        records[spec.run_id] = fake_record(
            spec=spec, run_id=spec.run_id, val=metrics(val_acc), test=test, groups=groups
        )
    chosen_seed_1 = specs[2].run_id
    records[chosen_seed_1].tiny_groups = {"test": {"0|g0": 3}}
    rows = results_rows(specs, records, registry().selection_rule("val_acc"), {chosen_seed_1})
    # means of the chosen trials: acc (0.55 + 0.80) / 2, eod_max (0.1 + 0.2) / 2, wga (0.45 + 0.70) / 2
    ((task, method, seeds, acc, eod, wga, flags),) = rows
    assert (task, method, seeds) == ("d/t", "m", 2)
    assert (acc, eod, wga) == pytest.approx((0.675, 0.15, 0.575))
    assert flags == "at-chance (1 of 2 seeds); other-code (1 of 2 seeds); tiny-cells (1 of 2 seeds)"


def test_the_results_table_of_a_search_is_the_leaderboards_row_not_a_pick_per_seed():
    # trials 0-1 on the search seed 0 (val_acc picks 1), the pick on seed 1; per seed, val_acc would take trial 0 on
    # seed 1 (0.9 > 0.5): the table must show trial 1 on both seeds, as the leaderboard's row does
    search = {"seeds": 2, "search_seeds": 1, "hparam_trials": 2}
    runs = {(0, 0): (0.6, 0.70), (0, 1): (0.8, 0.80), (1, 0): (0.9, 0.72), (1, 1): (0.5, 0.82)}
    made = [
        fake_record("m", seed, trial, val=metrics(v), test=metrics(t), hparams={"trial": trial}, config=search)
        for (seed, trial), (v, t) in runs.items()
    ]
    specs, records = [r.spec for r in made], {r.spec.run_id: r for r in made}
    rule = registry().selection_rule("val_acc")
    ((_, _, seeds, acc, *_),) = results_rows(specs, records, rule, set())
    assert seeds == 2 and acc == pytest.approx((0.80 + 0.82) / 2)
    records[made[3].spec.run_id] = None  # the pick has not run on seed 1 yet: the defaults, as the leaderboard
    ((_, _, seeds, acc, *_),) = results_rows(specs, records, rule, set())
    assert seeds == 2 and acc == pytest.approx((0.70 + 0.72) / 2)
