"""scripts/seed_systems_table.py (issue 26's item-4 table) on a hand-made board."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "seed_systems_table.py"
spec = importlib.util.spec_from_file_location("seed_systems_table", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def cell(mean, low, high):
    return {"mean": mean, "interval": [low, high]}


def paired(mean, low, high, tied):
    return {"mean": mean, "ci95": [low, high], "tied": tied}


BOARD = {
    "selection_rule": "val_acc",
    "tables": [
        {
            "task": "gender/race",
            "comparison": {"vlm": "face-descriptor"},
            "rows": [
                {"method": "erm", "seeds": 5, "acc": cell(0.88, 0.87, 0.89)},
                {
                    "method": "clip-cluster",
                    "seeds": 5,
                    "acc": cell(0.89, 0.88, 0.9),
                    "vs_erm": {"eod_max": paired(-0.03, -0.05, -0.01, False)},
                    "mechanisms": [{"quantity": "ami_with_true_groups", "mean": 0.3341}],
                },
                {
                    "method": "ssl-pipeline:no-meta-weights",
                    "seeds": 5,
                    "system_vs_ablation": {"eod_max": paired(0.001, -0.02, 0.02, True)},
                    "mechanisms": [
                        {"quantity": "accuracy_all_per_group.White", "mean": 0.876},
                        {"quantity": "accuracy_all_per_group.non-White", "mean": 0.9393},
                    ],
                },
            ],
        }
    ],
}


def test_the_table_reads_rows_paired_differences_and_stage_diagnostics():
    lines = script.table(BOARD, "gender/race")
    header, rule, erm, clip, ssl = lines[2:7]
    assert header.count("|") == rule.count("|") == erm.count("|") == 14  # 13 columns
    assert "| erm | — | 5 | 0.880 [0.870, 0.890] |" in erm
    assert "-0.030 [-0.050, -0.010] |" in clip and "| 0.334 |" in clip and "face descriptor" in clip
    assert "+0.001 [-0.020, +0.020] tied" in ssl and "White 0.876, non-White 0.939" in ssl


def test_each_comparison_says_where_it_ran_and_which_rows_mixed_machines():
    board = {
        "tables": [
            {
                "task": "gender/race",
                "comparison": {"vlm": "face-descriptor"},
                "hardware": [
                    {"hardware": "AMD EPYC (AVX512)", "runs": 27},
                    {"hardware": "Intel Xeon (AVX512)", "runs": 3},
                ],
                "rows": [
                    {"method": "erm", "flags": [{"code": "mixed-hardware", "detail": "seeds 0-3 on A; seed 4 on B"}]},
                    {"method": "clip-cluster", "flags": [{"code": "few-seeds", "detail": "1 seed"}]},
                ],
            }
        ]
    }
    lines = script.table(board, "gender/race")
    assert lines[-2] == (
        "Hardware (face descriptor): AMD EPYC (AVX512): 27 runs; Intel Xeon (AVX512): 3 runs. "
        "Mixed: erm (seeds 0-3 on A; seed 4 on B)."
    )


def test_defaults_builds_the_table_from_the_store_at_trial_0_whatever_the_search_picked(tmp_path, monkeypatch, capsys):
    import sys

    from records import fake_record, metrics

    from fairfacebench.leaderboard.tables import write
    from fairfacebench.store import ResultStore

    store = ResultStore(tmp_path)
    search = {"seeds": 2, "search_seeds": 1, "hparam_trials": 2}
    for seed in (0, 1):
        for trial, (val_acc, test_acc) in enumerate([(0.80, 0.70), (0.90, 0.95)]):  # val_acc picks trial 1
            r = fake_record("erm", seed, trial, val=metrics(val_acc), test=metrics(test_acc), config=search,
                            hparams={"trial": trial})  # fmt: skip
            store.write(r.run_id, r)
    write(tmp_path)  # the store's own board: the search's pick
    for flags, acc, source in (([], "0.950", "leaderboard.json"), (["--defaults"], "0.700", "at its defaults")):
        monkeypatch.setattr(sys, "argv", ["seed_systems_table.py", str(tmp_path), *flags])
        script.main()
        out = capsys.readouterr().out
        (erm,) = [line for line in out.splitlines() if line.startswith("| erm |")]
        assert erm.split("|")[4].strip().startswith(acc) and source in out.splitlines()[0], (flags, out)
