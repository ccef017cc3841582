"""Does the paired interval over seeds and test rows cover the truth?  A simulation of a board's design.

Each experiment draws one test set of n rows from a population (rows differ in how hard they are, for both methods
and, by `--method-row-sd`, for each method apart: the rows one method gets right and the other not, whatever the
seed) and trains S seeds of two methods (each seed shifts a method's log-odds of being right everywhere by a seed
effect); every seed is scored on the same rows, as on the board.  With the default spreads the shared row part of
a paired difference's row-level variance is what the v1 board's pairs show: the variance of a 3-seed mean under
one shared row resample is 1.4-2.0 times that under independent resamples per seed there, about 1.9 here.  The
truth is the population difference in expected accuracy (method A − method B), computed once by Monte Carlo on a
large sample of rows and seeds.  For each experiment the 95% interval of the paired difference comes from

- the crossed bootstrap (`metrics.hierarchical.crossed_paired_difference`: seeds and one shared row resample),
  with its few-seed correction (the board's interval) and without it (its percentile interval), and
- the nested two-level bootstrap it replaced (seeds, then an independent row resample per drawn seed),

and the script prints how often each covers the truth, and their mean widths.

    python scripts/bootstrap_coverage.py [--experiments 200] [--seeds 5] [--rows 1000] [--seed-sd 0.15]
                                         [--method-row-sd 2.5] [--no-nested]

`--seed-sd 0.6 --method-row-sd 0.3` is a regime where the seed-to-seed spread dominates.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import expit

from fairfacebench.metrics.hierarchical import crossed_paired_difference

SHIFT = 0.15  # method A's advantage in log-odds
ROW_SD = 1.5  # spread of row difficulty, in log-odds


def rows(rng: np.random.Generator, n: int, method_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, groups and each method's difficulty (log-odds of being right; (2, n)) of n rows of the population."""
    shared = rng.normal(1.5, ROW_SD, n)
    return rng.integers(0, 2, n), rng.integers(0, 2, n), shared[None] + rng.normal(0, method_sd, (2, n))


def predictions(rng, y, difficulty, shift: float, seeds: int, seed_sd: float) -> np.ndarray:
    """(S, n) predictions: right with probability expit(difficulty + shift + seed effect)."""
    effect = rng.normal(0, seed_sd, (seeds, 1))
    right = rng.random((seeds, len(y))) < expit(difficulty[None] + shift + effect)
    return np.where(right, y[None], 1 - y[None])


def truth(rng: np.random.Generator, method_sd: float, seed_sd: float, draws: int = 400_000) -> float:
    """Population difference in expected accuracy, A − B (seed effects integrated out)."""
    _, _, d = rows(rng, draws, method_sd)
    effect_a, effect_b = rng.normal(0, seed_sd, draws), rng.normal(0, seed_sd, draws)
    return float(np.mean(expit(d[0] + SHIFT + effect_a) - expit(d[1] + effect_b)))


def nested_interval(y, pa, pb, resamples: int, rng: np.random.Generator) -> list[float]:
    """The replaced design: seeds with replacement, then for each drawn seed its own row resample."""
    seeds, n = pa.shape
    values = np.empty(resamples)
    for b in range(resamples):
        drawn = rng.integers(0, seeds, seeds)
        diffs = []
        for s in drawn:
            i = rng.integers(0, n, n)
            diffs.append(np.mean(pa[s, i] == y[i]) - np.mean(pb[s, i] == y[i]))
        values[b] = np.mean(diffs)
    return list(np.quantile(values, [0.025, 0.975]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiments", type=int, default=200)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--resamples", type=int, default=500)
    p.add_argument("--method-row-sd", type=float, default=2.5)
    p.add_argument("--seed-sd", type=float, default=0.15, help="spread of a seed's effect, in log-odds")
    p.add_argument("--no-nested", action="store_true", help="leave out the (slow) nested bootstrap")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    target = truth(rng, args.method_row_sd, args.seed_sd)
    names = ["crossed", "crossed, uncorrected"] + ([] if args.no_nested else ["nested"])
    covered = dict.fromkeys(names, 0)
    widths: dict[str, list[float]] = {name: [] for name in names}
    for e in range(args.experiments):
        y, g, d = rows(rng, args.rows, args.method_row_sd)
        pa = predictions(rng, y, d[0], SHIFT, args.seeds, args.seed_sd)
        pb = predictions(rng, y, d[1], 0.0, args.seeds, args.seed_sd)
        acc = crossed_paired_difference(y, g, pa, pb, 2, 2, args.resamples, seed=e)["metrics"]["acc"]
        intervals = {"crossed": acc["interval"], "crossed, uncorrected": acc["percentile_interval"]}
        if not args.no_nested:
            intervals["nested"] = nested_interval(y, pa, pb, args.resamples, rng)
        for name, (lo, hi) in intervals.items():
            covered[name] += lo <= target <= hi
            widths[name].append(hi - lo)
    print(
        f"truth (A − B accuracy) {target:.4f}; {args.experiments} experiments, {args.seeds} seeds, "
        f"{args.rows} shared test rows, {args.resamples} resamples, method-row sd {args.method_row_sd}, "
        f"seed sd {args.seed_sd}"
    )
    for name in covered:
        print(
            f"{name:21s} coverage of the 95% interval {covered[name] / args.experiments:.3f}, "
            f"mean width {np.mean(widths[name]):.4f}"
        )


if __name__ == "__main__":
    main()
