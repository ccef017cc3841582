"""The `fairbench` command line.

Only light modules load at start, so `fairbench --help` answers at once;
each command imports what it needs (torch and the plugins) when it runs:
the one place in the package with function-level imports of its own modules.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tabulate import tabulate

from fairfacebench.budget import BUDGET_RESOLUTION, BUDGETS
from fairfacebench.errors import USER_ERRORS


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_list(args: argparse.Namespace) -> int:
    from fairfacebench.plugins import registry

    reg = registry()
    if args.what == "methods":
        rows = [
            [
                m.name,
                m.description,
                m.citation,
                m.labels.summary(),
                "yes" if m.needs_vlm else "no",
                "yes" if m.needs_pool else "no",
            ]
            for m in sorted(reg.methods.values(), key=lambda m: m.name)
        ]
        print(
            tabulate(
                rows,
                headers=["method", "description", "citation", "labels used", "VLM", "unlabeled pool"],
                tablefmt="github",
            )
        )
    elif args.what == "datasets":
        rows = [
            [
                d.name,
                d.description,
                d.citation,
                "; ".join(f"{t.name}" for t in d.tasks),
                "yes" if d.needs_root else "no (generated)",
            ]
            for d in sorted(reg.datasets.values(), key=lambda d: d.name)
        ]
        print(
            tabulate(
                rows,
                headers=["dataset", "description", "citation", "tasks (first = default)", "needs --data-root"],
                tablefmt="github",
            )
        )
    else:
        rows = [[name, b.steps, b.batch_size, BUDGET_RESOLUTION[name], b.amp] for name, b in BUDGETS.items()]
        print(
            tabulate(
                rows,
                headers=["budget", "optimizer steps", "batch size", "resolution (default)", "amp (cuda)"],
                tablefmt="github",
            )
        )
    return 0


def _data_roots(values: list[str], datasets: tuple[str, ...], reg) -> dict[str, str]:
    """--data-root PATH (for the one dataset that needs a root) or --data-root NAME=PATH."""
    roots: dict[str, str] = {}
    for v in values:
        if "=" in v:
            name, path = v.split("=", 1)
            roots[name] = path
        else:
            needing = [d for d in datasets if reg.dataset(d).needs_root]
            if len(needing) != 1:
                raise SystemExit(f"--data-root {v} is ambiguous for datasets {needing}; use --data-root NAME=PATH")
            roots[needing[0]] = v
    return roots


def _dataset_options(values: list[str], datasets: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep:
            raise SystemExit(f"--dataset-option {v}: expected KEY=VALUE")
        ds, dot, name = key.rpartition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        for target in [ds] if dot else datasets:
            out.setdefault(target, {})[name] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from fairfacebench.leaderboard.tables import write
    from fairfacebench.plan import expand, load_plan
    from fairfacebench.plugins import registry
    from fairfacebench.runner import SpecRunner, execute
    from fairfacebench.store import ResultStore

    reg = registry()
    flags = {
        "methods": "all" if args.methods == "all" else (_split(args.methods) if args.methods else None),
        "datasets": _split(args.datasets) if args.datasets else None,
        "seeds": args.seeds,
        "hparam_trials": args.hparam_trials,
        "budget": args.budget,
        "resolution": args.resolution,
        "backbone": args.backbone,
        "weights": args.weights,
        "selection": args.selection,
        "device": args.device,
        "executor": args.executor,
        "workers": args.workers,
        "threads": args.threads,
        "ray_address": args.ray_address,
        "out": args.out,
        "bootstrap": args.bootstrap,
        "vlm": args.vlm,
        "pool": args.pool,
        "augment": {"mix": args.mix} if args.mix else None,
    }
    datasets = load_plan(args.config, flags).datasets
    flags["tasks"] = _tasks(args.tasks, datasets) or None
    flags["data_roots"] = _data_roots(args.data_root, datasets, reg) or None
    flags["dataset_options"] = _dataset_options(args.dataset_option, datasets) or None
    plan = load_plan(args.config, flags)
    specs = expand(plan, reg)
    store = ResultStore(plan.out)
    n_methods = len(plan.method_names(reg.methods))
    print(
        f"{len(specs)} runs: {len(plan.datasets)} dataset(s) x {n_methods} method(s) x {plan.hparam_trials} trial(s) "
        f"x {plan.seeds} seed(s), budget '{plan.budget}', executor '{plan.executor}'"
    )

    def report(spec, status):
        print(f"  {spec.label}: {status}", flush=True)

    runner = SpecRunner(plan.device, config=plan.to_dict(), progress=args.progress)
    counts = execute(
        specs,
        store,
        runner,
        retry_failed=args.retry_failed,
        on_result=report,
        executor=plan.executor,
        workers=plan.workers,
        ray_address=plan.ray_address or None,
    )
    paths = write(plan.out, rule=plan.selection)
    print(f"done: {counts}. Leaderboard: {paths['md']}")
    return 0 if counts["failed"] == 0 else 1


def _tasks(text: str | None, datasets: tuple[str, ...]) -> dict[str, list[str]]:
    tasks: dict[str, list[str]] = {}
    for t in _split(text or ""):
        ds, _, task = t.partition(":")
        if not task:
            if len(datasets) != 1:
                raise SystemExit(f"--tasks {t}: write DATASET:TASK when running several datasets")
            ds, task = datasets[0], t
        tasks.setdefault(ds, []).append(task)
    return tasks


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """`leaderboard DIR` writes the tables; `leaderboard build DIR [--site OUT]` renders the static site."""
    if args.dir == "build":
        from fairfacebench.leaderboard.site import build_site

        if not args.store or not Path(args.store).is_dir():
            raise SystemExit(
                f"fairbench leaderboard build DIR: no result store at '{args.store or ''}' "
                "(the --out of `fairbench run`)"
            )
        paths = build_site(args.store, args.site or Path(args.store) / "site", rule=args.selection)
        print(f"site: {paths['index']} (data: {paths['json']}, {paths['csv']})")
        return 0
    if args.store or args.site:
        raise SystemExit(
            f"unexpected argument '{args.store or '--site'}': use `fairbench leaderboard DIR` "
            "or `fairbench leaderboard build DIR --site OUT`"
        )
    from fairfacebench.leaderboard.tables import write

    paths = write(args.dir, args.out, rule=args.selection)
    print(paths["md"].read_text())
    return 0


def cmd_new_method(args: argparse.Namespace) -> int:
    from fairfacebench.scaffold import new_method

    try:
        root = new_method(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as exc:
        raise SystemExit(f"fairbench new-method: {exc}") from None
    print(f"created {root}\nnext: pip install -e {root}, then `fairbench list methods` and `pytest {root}`")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from fairfacebench.plugins import registry

    plugin = registry().dataset(args.name)
    if args.action == "check":
        report = plugin.check(Path(args.root))
        print(json.dumps(report, indent=1, default=str))
        return 0 if not report.get("problems") else 1
    from fairfacebench.runner import default_cache_dir

    result = plugin.prepare(
        Path(args.root),
        args.size,
        Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        workers=args.workers,
    )
    print(json.dumps(result, indent=1, default=str))
    return 0


def cmd_vlm(args: argparse.Namespace) -> int:
    """`fairbench vlm list` / `fairbench vlm train-mini-clip`: encoders, and the embedded mini-CLIP of synthfaces."""
    from fairfacebench.plugins import registry

    reg = registry()
    if args.action == "list":
        rows = [
            [e.name, e.description, ", ".join(getattr(e, "embedded_for", ())) or "-"]
            for e in sorted(reg.encoders.values(), key=lambda e: e.name)
        ]
        print(tabulate(rows, headers=["encoder", "description", "embedded VLM of (--vlm auto)"], tablefmt="github"))
        return 0
    from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, load_or_train
    from fairfacebench.runner import default_cache_dir

    encoder = load_or_train(
        MiniClipConfig(seed=args.seed),
        Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        retrain=args.retrain,
        progress=args.progress,
    )
    print(json.dumps(encoder.info, indent=1, default=str))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairbench", description="Benchmark fair facial attribute classification methods.")
    p.add_argument("-v", "--verbose", action="store_true", help="log stage numbers as runs go")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list installed methods, datasets or budgets")
    ls.add_argument("what", choices=["methods", "datasets", "budgets"])
    ls.set_defaults(func=cmd_list)

    run = sub.add_parser(
        "run",
        help="train and evaluate methods on dataset tasks under one budget",
        description="Defaults come from the packaged configs/default.toml; --config FILE replaces them; "
        "flags override single keys.",
    )
    run.add_argument("--config", default=None, help="benchmark config (TOML), e.g. benchmark/configs/default.toml")
    run.add_argument("--methods", default=None, help="'all' or a comma-separated list (see `fairbench list methods`)")
    run.add_argument("--datasets", default=None, help="comma-separated dataset names (default: synthfaces)")
    run.add_argument(
        "--tasks", default=None, help="comma-separated TASK or DATASET:TASK (default: each dataset's first)"
    )
    run.add_argument(
        "--data-root", action="append", default=[], help="PATH, or NAME=PATH when several datasets need one"
    )
    run.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="[DATASET.]KEY=VALUE",
        help="dataset loader option, e.g. n_train=2000 (values parsed as JSON when possible)",
    )
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    run.add_argument(
        "--hparam-trials", type=int, default=None, help="hyperparameter trials per method (trial 0 = defaults)"
    )
    run.add_argument("--budget", default=None, choices=sorted(BUDGETS))
    run.add_argument("--resolution", type=int, default=None, help="override the budget's input resolution")
    run.add_argument("--backbone", default=None, help="mobilenet_v2, resnet18 or timm:<name>")
    run.add_argument("--weights", default=None, help="'imagenet', 'none' (random init) or a local .pth file")
    run.add_argument("--mix", default=None, choices=["none", "mixup", "cutmix"], help="MixUp/CutMix for every method")
    run.add_argument("--selection", default=None, help="model selection: val_acc, val_wga or val_acc@val_eod_max<=EPS")
    run.add_argument("--bootstrap", type=int, default=None, help="test-set bootstrap resamples per run (0 = none)")
    run.add_argument(
        "--vlm",
        default=None,
        help="VLM of methods that use one: auto (default; synthfaces: mini-clip), none, "
        "open_clip:ARCH:TAG (downloads when online) or open_clip:ARCH:/path/to/checkpoint",
    )
    run.add_argument(
        "--pool",
        default=None,
        help="unlabeled pool of pool methods: auto (the dataset's own), none, "
        "folder:DIR or dataset-train:NAME (another dataset's training images, labels withheld)",
    )
    run.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    run.add_argument("--executor", default=None, choices=["local", "ray"])
    run.add_argument(
        "--workers", type=int, default=None, help="parallel runs (local: child processes; ray: CPUs of a local cluster)"
    )
    run.add_argument(
        "--threads", type=int, default=None, help="torch compute threads per run (default 1; part of the run id)"
    )
    run.add_argument("--ray-address", default=None, help="join an existing Ray cluster instead of starting a local one")
    run.add_argument("--out", default=None, help="result store directory (default: runs)")
    run.add_argument("--retry-failed", action="store_true", help="re-run runs recorded as failed")
    run.add_argument("--progress", action="store_true", help="show a progress bar per training stage")
    run.set_defaults(func=cmd_run)

    lb = sub.add_parser(
        "leaderboard",
        help="write Markdown/CSV/JSON leaderboards, or `build` the static site, from a result store",
        usage="fairbench leaderboard DIR [--out OUT] | fairbench leaderboard build DIR [--site OUT]",
    )
    lb.add_argument("dir", help="result store, or 'build' followed by the result store")
    lb.add_argument("store", nargs="?", help=argparse.SUPPRESS)
    lb.add_argument("--out", default=None, help="output directory of the tables (default: the store)")
    lb.add_argument("--site", default=None, help="with build: output directory of the site (default: DIR/site)")
    lb.add_argument("--selection", default="val_acc")
    lb.set_defaults(func=cmd_leaderboard)

    new = sub.add_parser("new-method", help="scaffold an installable method plugin package")
    new.add_argument("name", help="method name, e.g. my-method")
    new.add_argument("--dir", default=".", help="parent directory of the new package (default: here)")
    new.set_defaults(func=cmd_new_method)

    data = sub.add_parser("data", help="check a dataset layout or prepare its image cache")
    data.add_argument("action", choices=["check", "prepare"])
    data.add_argument("name")
    data.add_argument("--root", required=True)
    data.add_argument("--size", type=int, default=64)
    data.add_argument("--workers", type=int, default=None)
    data.add_argument("--cache-dir", default=None)
    data.set_defaults(func=cmd_data)

    vlm = sub.add_parser("vlm", help="list VLM encoders, or train the embedded mini-CLIP of synthfaces (cached)")
    vlm.add_argument("action", choices=["list", "train-mini-clip"])
    vlm.add_argument(
        "--seed", type=int, default=0, help="mini-CLIP training seed (runs use seed 0 unless --vlm mini-clip:SEED)"
    )
    vlm.add_argument("--retrain", action="store_true", help="train again even when cached weights exist")
    vlm.add_argument(
        "--cache-dir", default=None, help="cache directory (default: $FAIRBENCH_CACHE or ~/.cache/fairbench)"
    )
    vlm.add_argument("--progress", action="store_true")
    vlm.set_defaults(func=cmd_vlm)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except USER_ERRORS as e:
        # Runs already finished are in the store; re-running the same command resumes from there.
        print(f"{p.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
