"""An equal search end to end through the command line (issue 25): the trials on the search seed, each selection
rule's pick on the other seeds, the board's tuned rows beside the defaults, and the scripts that report them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fairfacebench.cli import main
from fairfacebench.leaderboard.model import DEFAULT
from fairfacebench.leaderboard.search import ORACLE
from fairfacebench.leaderboard.tables import build
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
OPTIONS = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]
CONFIG = 'seeds = 3\nhparam_trials = 3\nsearch_seeds = 1\nfinal_selection = ["val_acc", "val_wga", "test oracle"]\n'
METHODS = ("erm", "groupdro")


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pick(search: dict, metric: str, split: str = "val") -> int:
    """The trial with the best `metric` on the search seed, ties to the lowest (by hand, not the code's)."""
    return max(search, key=lambda trial: (getattr(search[trial], f"{split}_metric")(metric), -trial))


@pytest.mark.slow
def test_a_search_runs_to_each_rules_pick_and_the_board_shows_default_vs_tuned(tmp_path, capsys, monkeypatch):
    config, out = tmp_path / "search.toml", tmp_path / "runs"
    config.write_text(CONFIG)
    argv = ["run", "--config", str(config), "--methods", ",".join(METHODS), "--budget", "smoke", "--out", str(out)]
    assert main([*argv, *OPTIONS]) == 0, capsys.readouterr().out
    records = [r for r in ResultStore(out).records() if r.ok]
    picks = {}
    for method in METHODS:
        mine = [r for r in records if r.method == method]
        search = {r.trial: r for r in mine if r.seed == 0}
        assert sorted(search) == [0, 1, 2], method
        picks[method] = {rule: pick(search, rule.removeprefix("val_")) for rule in ("val_acc", "val_wga")}
        picks[method][ORACLE] = pick(search, "acc", "test")
        for seed in (1, 2):  # the defaults and each regime's pick, nothing else
            assert sorted(r.trial for r in mine if r.seed == seed) == sorted({0, *picks[method].values()}), method

    board = build(out, "val_acc")
    (table,) = board.tables
    for row in table.rows:
        chosen = picks[row.method]
        assert not row.search_pending and "searching" not in {f.code for f in row.flags}, row.method
        assert [(s.seed, s.trial) for s in row.selected] == [(seed, chosen["val_acc"]) for seed in range(3)]
        regimes = {g.regime: g for g in row.regimes}
        assert set(regimes) == {DEFAULT, "val_acc", "val_wga", ORACLE}
        assert (regimes[DEFAULT].trial, regimes[DEFAULT].seeds) == (0, [0, 1, 2])
        assert (regimes["val_wga"].trial, regimes["val_wga"].seeds) == (chosen["val_wga"], [0, 1, 2])
        assert regimes[ORACLE].upper_bound and not regimes["val_acc"].upper_bound
        assert (regimes[ORACLE].trial, regimes[ORACLE].seeds) == (chosen[ORACLE], [0, 1, 2])  # the plan ran it

    # the same command again: every run, the picks included, is already in the store
    assert main([*argv, *OPTIONS]) == 0
    assert "0 to compute" in capsys.readouterr().out

    # the scripts that write the README's Results read the same board
    verdicts = script("compare_verdicts")
    boards = [verdicts.load_board(f"{out}:{rule}") for rule in ("defaults", "val_acc", "val_wga", ORACLE)]
    assert [b["selection_rule"] for b in boards] == ["default", "val_acc", "val_wga", ORACLE]
    lines = verdicts.side_by_side(boards, ["default", "val_acc", "val_wga", "oracle"])
    assert f"### {table.task}, encoder {table.comparison['vlm']}: against erm" in lines
    assert lines[2].startswith("oracle: each method at the trial with the best test accuracy on the search seeds")
    monkeypatch.setattr(sys, "argv", ["board_summary.py", str(out), "--regimes", "--no-total"])
    script("board_summary").main()
    printed = capsys.readouterr().out
    (line,) = [line for line in printed.splitlines() if line.startswith("| groupdro ") and "trial 0 (3 seeds)" in line]
    assert f"trial {picks['groupdro']['val_wga']} (3 seeds): " in line.split("|")[4]  # default, val_acc, val_wga
