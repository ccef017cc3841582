"""scripts/compare_verdicts.py (issue 25: which v1 verdicts survive on v2) on two hand-made boards."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "compare_verdicts.py"
spec = importlib.util.spec_from_file_location("compare_verdicts", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

FREE, TIED = "fairer (eod_max) at no significant accuracy cost", "not distinguishable in eod_max"


def board(rule, verdict):
    table = {"task": "gender/race", "comparison": {"vlm": "none"}, "verdict": verdict, "ablation_verdict": []}
    return {"selection_rule": rule, "tables": [table]}


def test_verdicts_are_matched_by_task_encoder_and_method_and_changes_are_named():
    old = board("val_acc", [{"category": FREE, "methods": ["reweight (train labels)", "fscl (train labels)"]}])
    new = board(
        "val_acc",
        [
            {"category": FREE, "methods": ["reweight (train labels)"]},
            {"category": TIED, "methods": ["fscl (train labels)", "bcbb (train labels)"]},
        ],
    )
    lines = script.side_by_side(old, new, ("v1", "v2"))
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
    lines = script.side_by_side(board("val_acc", old_entries), board("val_acc", entries), ("v1", "v2"))
    assert f"| fscl | {FREE} | {few} |  |" in lines
    assert f"| jtt | {few} | {few} |  |" in lines  # not judged on either board: not "same"
    assert "1 of 1 methods judged on both boards keep their verdict (2 more not judged on one or both)." in lines
