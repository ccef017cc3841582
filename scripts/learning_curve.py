"""ERM's learning curve on one task: the evidence behind a budget profile (`python scripts/learning_curve.py --help`).

Each point is a separate ERM run with its own one-cycle schedule over that many steps (a checkpoint of one
long run would not be what a shorter budget trains), on the selection half of validation and on test.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from fairfacebench.grid import execute
from fairfacebench.plan import expand, load_plan
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="utkface-cb")
    p.add_argument("--task", default="gender/race")
    p.add_argument("--data-root", required=True)
    p.add_argument("--steps", default="150,300,600,1000", help="comma-separated step counts")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/learning-curve")
    args = p.parse_args()
    plan = load_plan(
        flags={
            "methods": ["erm"],
            "datasets": [args.dataset],
            "tasks": {args.dataset: [args.task]},
            "data_roots": {args.dataset: args.data_root},
            "resolution": args.resolution,
            "seeds": args.seeds,
            "bootstrap": 0,
            "budget": "small",
        }
    )
    base = expand(plan)
    specs = [
        replace(s, budget=replace(s.budget, name=f"curve-{n}", steps=int(n), batch_size=args.batch_size))
        for n in args.steps.split(",")
        for s in base
    ]
    store = ResultStore(args.out)
    execute(specs, store, SpecRunner("cpu", config={"learning_curve": vars(args)}), workers=args.workers)
    rows = {}
    for rec in store.records():
        if rec.ok and rec.spec.budget.name.startswith("curve-"):
            steps = rec.spec.budget.steps
            rows.setdefault(steps, []).append(
                (
                    rec.val_metric("acc"),
                    rec.test_metric("acc"),
                    rec.test_metric("eod_max"),
                    rec.budget_report["wall_time_s"],
                )
            )
    for steps in sorted(rows):
        vals = rows[steps]
        mean = [round(sum(v[i] for v in vals) / len(vals), 4) for i in range(4)]
        print(
            json.dumps(
                {
                    "steps": steps,
                    "batch": args.batch_size,
                    "val_acc": mean[0],
                    "test_acc": mean[1],
                    "test_eod_max": mean[2],
                    "fit_time_s": mean[3],
                    "runs": len(vals),
                }
            )
        )


if __name__ == "__main__":
    main()
