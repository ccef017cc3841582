"""scripts/compare_verdicts.py (issue 25: which v1 verdicts survive on v2) on two hand-made boards."""

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
from records import fake_record, metrics

from fairfacebench.leaderboard.render import to_json
from fairfacebench.leaderboard.tables import build
from fairfacebench.store import ResultStore

SCRIPT = Path(__file__).parents[1] / "scripts" / "compare_verdicts.py"
spec = importlib.util.spec_from_file_location("compare_verdicts", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

FREE, TIED = "fairer (eod_max) at no significant accuracy cost", "not distinguishable in eod_max"


def board(rule, verdict, versions=None):
    rows = [{"method": m, "method_version": v} for m, v in (versions or {}).items()]
    table = {"task": "gender/race", "comparison": {"vlm": "none"}, "rows": rows, "verdict": verdict}
    return {"selection_rule": rule, "tables": [table | {"ablation_verdict": []}]}


def test_verdicts_are_matched_by_task_encoder_and_method_and_changes_are_named():
    old = board("val_acc", [{"category": FREE, "methods": ["reweight (train labels)", "fscl (train labels)"]}])
    new = board(
        "val_acc",
        [
            {"category": FREE, "methods": ["reweight (train labels)"]},
            {"category": TIED, "methods": ["fscl (train labels)", "bcbb (train labels)"]},
        ],
    )
    lines = script.side_by_side([old, new], ["v1", "v2"])
    assert "### gender/race, encoder none: against erm" in lines
    assert f"| reweight | {FREE} | {FREE} | same |" in lines
    assert f"| fscl | {FREE} | {TIED} | changed |" in lines
    assert f"| bcbb | — | {TIED} |  |" in lines
    assert "1 of 2 methods judged on both boards keep their verdict." in lines


def test_a_method_not_judged_on_a_board_neither_keeps_nor_changes_its_verdict():
    few = "not judged (fewer than 3 shared seeds: training randomness unmeasured)"
    old_entries = [{"category": FREE, "methods": ["reweight (train labels)", "fscl (train labels)"]}]
    old_entries.append({"category": few, "methods": ["jtt (train labels)"]})
    entries = [{"category": FREE, "methods": ["reweight (train labels)"]}]
    entries.append({"category": few, "methods": ["fscl", "jtt"]})
    lines = script.side_by_side([board("val_acc", old_entries), board("val_acc", entries)], ["v1", "v2"])
    assert f"| fscl | {FREE} | {few} |  |" in lines
    assert f"| jtt | {few} | {few} |  |" in lines  # not judged on either board: not "same"
    assert "1 of 1 methods judged on both boards keep their verdict (2 more not judged on one or more)." in lines


def test_a_method_whose_version_changed_between_the_boards_says_so():
    # v1's undersample redrew its subset every epoch (version 1); v2's is SUBG's fixed subset (version 2): the
    # same verdict is of two different algorithms, and the table and the count say it
    entries = [{"category": FREE, "methods": ["undersample (train labels)", "reweight (train labels)"]}]
    old = board("val_acc", entries, {"undersample": 1, "reweight": 1})
    new = board("val_acc", entries, {"undersample": 2, "reweight": 1})
    lines = script.side_by_side([old, new], ["v1", "v2"])
    assert f"| undersample | {FREE} | {FREE} | same (version 1 -> 2) |" in lines
    assert f"| reweight | {FREE} | {FREE} | same |" in lines
    assert (
        "2 of 2 methods judged on both boards keep their verdict (1 of the 2 a different version of the method "
        "across the boards)." in lines
    )


def test_three_boards_side_by_side_name_what_each_finds_fairer_at_no_accuracy_cost():
    # the regimes of one store (defaults, val_acc's picks, val_wga's picks), built as three boards
    cost = "fairer (eod_max) at a significant accuracy cost"
    default = board("default", [{"category": FREE, "methods": ["reweight (train labels)", "jtt (train labels)"]}])
    by_acc = board("val_acc", [{"category": FREE, "methods": ["reweight (train labels)"]},
                               {"category": cost, "methods": ["jtt (train labels)"]}])  # fmt: skip
    by_wga = board("val_wga", [{"category": FREE, "methods": ["reweight (train labels)", "jtt (train labels)"]}])
    lines = script.side_by_side([default, by_acc, by_wga], ["default", "val_acc", "val_wga"])
    assert "Selection rule: default default, val_acc val_acc, val_wga val_wga." in lines
    assert "| | default | val_acc | val_wga | |" in lines and "|---|---|---|---|---|" in lines
    assert f"| reweight | {FREE} | {FREE} | {FREE} | same |" in lines
    assert f"| jtt | {FREE} | {cost} | {FREE} | changed |" in lines
    assert "1 of 2 methods judged on all 3 boards keep their verdict." in lines
    assert f"- default, {FREE}: jtt, reweight." in lines and f"- val_acc, {FREE}: reweight." in lines


def test_the_script_wants_one_name_per_board(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "b.json"
    path.write_text("{}")
    done = subprocess.run([sys.executable, str(SCRIPT), str(path), str(path), "--names", "one"], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2 and "2 board(s) and 1 name(s)" in done.stderr


def test_a_store_is_built_in_memory_under_the_rule_after_its_colon(tmp_path):
    """`STORE:RULE` is the board `fairbench leaderboard tables STORE --selection RULE` would write; `STORE:defaults`
    the `--defaults` board; a bare store is val_acc's; a built board's file is read as it is."""
    store = ResultStore(tmp_path / "store")
    search = {"seeds": 2, "search_seeds": 1, "hparam_trials": 2}
    values = {(0, 0): (0.80, 0.9), (0, 1): (0.85, 0.1), (1, 0): (0.80, 0.9), (1, 1): (0.85, 0.1)}
    for (seed, trial), (acc, wga) in values.items():
        r = fake_record("m", seed, trial, val=metrics(acc, wga), test=metrics(acc, wga), config=search,
                        hparams={"trial": trial})  # fmt: skip
        store.write(r.run_id, r)
    root = str(tmp_path / "store")
    by_wga, by_acc = script.load_board(f"{root}:val_wga"), script.load_board(root)
    assert by_wga == json.loads(to_json(build(root, "val_wga")))
    assert by_acc == json.loads(to_json(build(root, "val_acc"))) == script.load_board(f"{root}:val_acc")
    assert [r["trial"] for r in by_wga["tables"][0]["rows"][0]["selected"]] == [0, 0]
    assert [r["trial"] for r in by_acc["tables"][0]["rows"][0]["selected"]] == [1, 1]
    defaults = script.load_board(f"{root}:defaults")
    assert defaults["selection_rule"] == "default" and defaults == json.loads(to_json(build(root, defaults_only=True)))
    built = tmp_path / "leaderboard.json"
    built.write_text(json.dumps(by_wga))
    assert script.load_board(str(built)) == by_wga
    with pytest.raises(SystemExit, match="nowhere:val_acc: neither a built board"):
        script.load_board(str(tmp_path / "nowhere") + ":val_acc")


def test_tables_are_kept_by_task_in_the_order_given_by_encoder_and_by_what_they_compare():
    def two_tasks(vlm):
        tables = []
        for task in ("gender/age", "gender/race"):
            verdict = [{"category": FREE, "methods": ["reweight (train labels)"]}]
            ablation = [{"category": TIED, "methods": ["s over s:no-x (train labels)"]}]
            tables.append({"task": task, "comparison": {"vlm": vlm}, "rows": [], "verdict": verdict,
                           "ablation_verdict": ablation})  # fmt: skip
        return tables

    b = {"selection_rule": "val_acc", "tables": two_tasks("none") + two_tasks("face-descriptor")}
    headings = [line for line in script.side_by_side([b, b], ["a", "b"]) if line.startswith("###")]
    assert len(headings) == 8
    kept = script.side_by_side([b, b], ["a", "b"], tasks=["gender/race", "gender/age"], vlm="none", against="erm")
    assert [line for line in kept if line.startswith("###")] == [
        "### gender/race, encoder none: against erm",
        "### gender/age, encoder none: against erm",
    ]
    kept = script.side_by_side([b, b], ["a", "b"], tasks=["gender/age"], against="ablation")
    assert [line for line in kept if line.startswith("###")] == [
        "### gender/age, encoder face-descriptor: against its ablation",
        "### gender/age, encoder none: against its ablation",
    ]


def test_a_method_at_its_defaults_on_a_rule_board_is_marked_and_neither_keeps_nor_changes_its_verdict():
    # on the val_acc board, fscl's search is still running: its row (and its verdict) is the defaults'
    entries = [{"category": FREE, "methods": ["reweight (train labels)", "fscl (train labels)"]}]
    default = board("default", entries, {"reweight": 1, "fscl": 1})
    tuned = board("val_acc", entries, {"reweight": 1, "fscl": 1})
    tuned["tables"][0]["rows"][1]["search_pending"] = True
    lines = script.side_by_side([default, tuned], ["default", "val_acc"])
    assert f"| fscl | {FREE} | {FREE} † |  |" in lines and f"| reweight | {FREE} | {FREE} | same |" in lines
    assert (
        "1 of 1 methods judged on both boards keep their verdict (1 more at their defaults (†) on one or more)."
        in lines
    )
    assert f"- val_acc, {FREE}: fscl †, reweight." in lines
    assert any(line.startswith("- †: at its defaults on that board") for line in lines)
    # nothing pending: no mark, no footnote
    del tuned["tables"][0]["rows"][1]["search_pending"]
    assert not any("†" in line for line in script.side_by_side([default, tuned], ["default", "val_acc"]))


def test_a_table_without_a_search_says_its_verdicts_are_the_defaults_under_any_rule(tmp_path):
    # v1's board, or the face-descriptor tables: every method ran trial 0 only, so under val_acc (or val_wga) the
    # verdicts are the defaults', and the column would otherwise read as a tuned one
    def store_of(name, trials, config):
        store = ResultStore(tmp_path / name)
        for method, seed, trial in itertools.product(("erm", "m"), range(3), trials):
            r = fake_record(method, seed, trial, val=metrics(0.8 + trial / 20, 0.5), test=metrics(0.8, 0.5),
                            config=config, hparams={"trial": trial})  # fmt: skip
            store.write(r.run_id, r)
        return str(tmp_path / name)

    plain = store_of("plain", [0], {})
    searched = store_of("searched", [0, 1], {"seeds": 3, "search_seeds": 1, "hparam_trials": 2})
    every_trial = store_of("every-trial", [0, 1], {})  # no search: both trials on every seed, val_acc picks 1
    note = "no search on this table, every row at its defaults (trial 0): the verdicts are the defaults'"
    lines = script.side_by_side([script.load_board(plain), script.load_board(searched)], ["v1", "v2"])
    assert f"- v1: {note} under that board's rule." in lines
    assert sum(note in line for line in lines) == 1  # the searched store's table has a search
    lines = script.side_by_side([script.load_board(plain), script.load_board(every_trial)], ["v1", "v2"])
    assert f"- v1: {note} under that board's rule." in lines  # v2 picked trial 1 on its seeds: not the defaults
    # a board at its defaults says so in its rule: no note
    lines = script.side_by_side([script.load_board(f"{plain}:defaults"), script.load_board(searched)], ["a", "b"])
    assert not any(note in line for line in lines)
    # the hand-made boards above have no search either: two rule boards are both named
    lines = script.side_by_side([board("val_acc", []), board("val_wga", [])], ["x", "y"])
    assert lines.count(f"- x, y: {note} under that board's rule.") == 0  # no verdicts: no table at all
    entries = [{"category": FREE, "methods": ["reweight (train labels)"]}]
    lines = script.side_by_side([board("val_acc", entries), board("val_wga", entries)], ["x", "y"])
    assert f"- x, y: {note} under that board's rule." in lines
