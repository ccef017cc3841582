"""scripts/board_summary.py: the default-vs-tuned cells of the README's regime table, on hand-made regimes."""

import dataclasses
import importlib.util
from pathlib import Path

from fairfacebench.leaderboard.model import MetricSummary, PairedDifference, RegimeResult

SCRIPT = Path(__file__).parents[1] / "scripts" / "board_summary.py"
spec = importlib.util.spec_from_file_location("board_summary", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def regime(name, trial, seeds, acc, eod, difference=None):
    metrics = {m: MetricSummary(v, None, len(seeds), None) for m, v in (("acc", acc), ("eod_max", eod), ("wga", 0.5))}
    minus = None if difference is None else {"eod_max": difference}
    return RegimeResult(name, "", trial, seeds, metrics, minus, name == "test oracle")


def difference(mean, n, tied):
    return PairedDifference(mean, n, [mean - 0.02, mean + 0.02], list(range(n)), 0.01, 0.03, tied, "bootstrap")


def test_a_regime_cell_names_its_trial_seeds_metrics_and_its_difference_to_the_defaults():
    tuned = regime("val_acc", 2, [0, 1, 2, 3, 4], 0.8841, 0.4459, difference(-0.031, 5, False))
    assert script.regime_cell(tuned) == "trial 2 (5 seeds): 0.884 / 0.446, Δeod_max -0.031 [-0.051, -0.011]"
    tied = regime("val_wga", 1, [0, 1, 2, 3, 4], 0.88, 0.45, difference(-0.01, 5, True))
    assert script.regime_cell(tied).endswith("Δeod_max -0.010 [-0.030, +0.010] tied")
    oracle = regime("test oracle", 3, [0], 0.9, 0.3, difference(-0.1, 1, None))
    assert (
        script.regime_cell(oracle)
        == "trial 3 (1 seed): 0.900 / 0.300, Δeod_max -0.100 [-0.120, -0.080] not judged (n=1)"
    )
    assert (
        script.regime_cell(regime("val_acc", 0, [0, 1], 0.8, 0.4)) == "trial 0 (2 seeds): 0.800 / 0.400, the defaults"
    )
    assert script.regime_cell(regime("default", 0, [0, 1], 0.8, 0.4)) == "trial 0 (2 seeds): 0.800 / 0.400"
    assert script.regime_cell(regime("val_acc", None, [], None, None)) == "no trial finished"
    assert script.regime_cell(None) == ""  # the method reports no such regime: its search is still running
    same = dataclasses.replace(
        regime("val_wga", 2, [0, 1, 2], 0.88, 0.45, difference(-0.03, 3, False)), same_as="val_acc"
    )
    assert script.regime_cell(same) == "trial 2 (3 seeds): 0.880 / 0.450, as val_acc"
    waiting = dataclasses.replace(regime("val_acc", 2, [0, 1], 0.88, 0.45), not_run_on=[2, 3, 4])
    assert script.regime_cell(waiting) == "trial 2 (2 seeds): 0.880 / 0.450, not run on seeds 2, 3, 4"


def test_a_paired_difference_over_fewer_than_3_seeds_reads_not_judged():
    assert script.paired(difference(-0.05, 2, None)) == "-0.050 [-0.070, -0.030] not judged (n=2)"
    assert script.paired(difference(-0.05, 5, True)) == "-0.050 [-0.070, -0.030] tied"
