"""How many seeds a board needs: the smallest difference against erm it can detect, from a committed store.

For every method of a comparison (its default trial), the per-seed differences against the reference method
give the seed-to-seed spread of a difference (training randomness: it averages out over seeds); a paired
bootstrap of the shared test rows of seed 0 gives the spread from sampling the one test set (it does not average
out, since every seed is scored on the same rows).  Both are pooled over methods by their median (the typical
method; the root mean square, dominated by the noisiest methods, is printed beside it), and
`metrics.compare.minimum_detectable_difference` turns them into the smallest true difference a paired comparison
detects with 80% power, at α = 0.05 and at Holm's first step over all methods against the reference (α/m).

    python scripts/power_estimate.py stores/utkface [--reference erm] [--boot 200]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from tabulate import tabulate

from fairfacebench.metrics.compare import minimum_detectable_difference
from fairfacebench.metrics.hierarchical import crossed_draws, crossed_replicates, seed_predictions
from fairfacebench.store import ResultStore

METRICS = ("acc", "eod_max", "wga")


def default_runs(store: ResultStore) -> dict[tuple[str, str], dict[str, dict[int, object]]]:
    """(dataset, task) -> method -> seed -> the finished record of trial 0."""
    runs: dict[tuple[str, str], dict[str, dict[int, object]]] = defaultdict(lambda: defaultdict(dict))
    for r in store.records():
        if r.ok and r.trial == 0:
            runs[(r.spec.dataset, r.spec.task)][r.method][r.seed] = r
    return runs


def seed_sd(method: dict[int, object], reference: dict[int, object], metric: str) -> float | None:
    seeds = sorted(set(method) & set(reference))
    d = [method[s].test_metric(metric) - reference[s].test_metric(metric) for s in seeds]
    return float(np.std(d, ddof=1)) if len(d) >= 2 else None


def test_sd(store: ResultStore, a: object, b: object, boot: int, seed: int) -> dict[str, float]:
    """Std of metric(a) − metric(b) over paired bootstrap resamples of their shared test rows (the crossed bootstrap
    of `metrics.hierarchical` on one seed: rows only)."""
    n_classes = store.predictions(a.run_id)["test_scores"].shape[1]
    y, g, predictions = seed_predictions([store.predictions(a.run_id), store.predictions(b.run_id)], n_classes)
    index, weights = crossed_draws(1, len(y), boot, seed)
    groups = len(a.task_info.group_names)
    diffs = crossed_replicates(y, g, [predictions[:1], predictions[1:]], groups, n_classes, index, weights)
    return {m: float(np.nanstd(diffs[m], ddof=1)) for m in METRICS}


def rms(values: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values else float("nan")


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("store")
    p.add_argument("--reference", default="erm")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    args = p.parse_args()
    store = ResultStore(args.store, create=False)
    for (dataset, task), methods in sorted(default_runs(store).items()):
        reference = methods.get(args.reference)
        others = [m for m in sorted(methods) if m != args.reference]
        if not reference or not others:
            continue
        seed_sds = {m: [v for o in others if (v := seed_sd(methods[o], reference, m)) is not None] for m in METRICS}
        first = min(reference)
        tests = [
            test_sd(store, methods[o][first], reference[first], args.boot, seed=i)
            for i, o in enumerate(others)
            if first in methods[o]
        ]
        rows = []
        for m in METRICS:
            t_sds = [t[m] for t in tests]
            s_sd, t_sd = median(seed_sds[m]), median(t_sds)
            spreads = [f"{s_sd:.4f} ({rms(seed_sds[m]):.4f})", f"{t_sd:.4f} ({rms(t_sds):.4f})"]
            for alpha, label in ((0.05, "0.05"), (0.05 / len(others), f"0.05/{len(others)} (Holm, first step)")):
                mdes = [minimum_detectable_difference(s_sd, n, t_sd, alpha) for n in args.seeds]
                rows.append([m, *spreads, label, *[f"{v:.3f}" for v in mdes]])
        seeds = sorted({s for runs in methods.values() for s in runs})
        print(
            f"\n{dataset}/{task}: {len(others)} methods against {args.reference}, seeds {seeds}, "
            f"test-row bootstrap of seed {first} ({args.boot} resamples)"
        )
        headers = [
            "metric",
            "seed sd of diff (rms)",
            "test sd of diff (rms)",
            "alpha",
            *[f"MDE n={n}" for n in args.seeds],
        ]
        print(tabulate(rows, headers, tablefmt="github"))


if __name__ == "__main__":
    main()
