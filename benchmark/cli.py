"""The `fairbench` command line.

Only light modules load at start, so `fairbench --help` answers at once;
each command imports what it needs (torch and the plugins) when it runs:
the one place in the package with function-level imports of its own modules.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fairfacebench import __version__
from fairfacebench.budget import BUDGET_RESOLUTION, BUDGETS
from fairfacebench.data import MIN_CELL_IMAGES
from fairfacebench.errors import USER_ERRORS, ConfigError

TABLE_WIDTH = 120  # of `list` tables: long texts wrap inside their column, nothing is cut
PROGRESS_MODES = ("auto", "live", "plain")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=1, default=str))


# ---------------------------------------------------------------- list


def method_info(m: type, reg: Any) -> dict[str, Any]:
    """Everything `list methods` knows about a method (its JSON form), the package that provides it included."""
    provider = reg.provider("method", m.name)
    return {
        "name": m.name,
        "description": m.description,
        "citation": m.citation,
        "labels_used": m.labels.summary(),
        "needs_vlm": m.needs_vlm,
        "needs_pool": m.needs_pool,
        "transductive": getattr(m, "transductive", False),
        "version": getattr(m, "version", 1),
        "ablation_of": getattr(m, "ablation_of", None),
        "package": {"distribution": provider[0], "version": provider[1]} if provider else None,
        "registered_by": reg.sources.get(f"method:{m.name}"),
        "hyperparameters": {
            name: {"default": hp.default, "search": search_distribution(hp.sample), "doc": hp.doc}
            for name, hp in m.search_space().items()
        },
    }


def search_distribution(sampler: Any) -> str:
    """How a hyperparameter's trials are drawn: the sampler's own name of it, or the function's name."""
    if inspect.isfunction(sampler) or inspect.ismethod(sampler):
        return f"custom sampler {sampler.__qualname__}"
    return str(sampler)


def dataset_info(d: Any, reg: Any) -> dict[str, Any]:
    provider = reg.provider("dataset", d.name)
    return {
        "name": d.name,
        "description": d.description,
        "citation": d.citation,
        "needs_data_root": d.needs_root,
        "tasks": [task_info(d, t) for t in d.tasks],
        "task_names": getattr(d, "task_help", None),
        "attributes": {name: list(a.classes) for name, a in d.attributes.items()},
        "package": {"distribution": provider[0], "version": provider[1]} if provider else None,
    }


def task_info(d: Any, t: Any) -> dict[str, Any]:
    return {
        "dataset": d.name,
        "name": t.name,
        "target": t.target,
        "sensitive": list(t.sensitive),
        "description": t.description,
        "default": bool(d.tasks) and t.name == d.tasks[0].name,
    }


def _package(info: dict[str, Any], with_version: bool = False) -> str:
    package = info["package"]
    if package is None:
        return "- (not installed)"
    return f"{package['distribution']} {package['version']}" if with_version else package["distribution"]


def _reads(info: dict[str, Any]) -> str:
    """A method's labels used without their note ('(…)': `list methods NAME` has it) and what else it needs."""
    labels = info["labels_used"].split(" (", 1)
    needs = [n for n, k in (("VLM", "needs_vlm"), ("pool", "needs_pool")) if info[k]]
    return labels[0] + (" (…)" if len(labels) > 1 else "") + (f"; needs {', '.join(needs)}" if needs else "")


def narrow_table(rows: list[list[Any]], headers: list[str], widths: list[int | None]) -> str:
    """A GitHub table at most TABLE_WIDTH characters wide: columns with a width wrap at it, the column whose width
    is 0 takes what the others leave (never less than 24), nothing is cut."""
    fixed = [
        w if w else max([len(str(h)), *(len(line) for r in rows for line in str(r[i]).splitlines())])
        for i, (h, w) in enumerate(zip(headers, widths))
    ]
    rest = TABLE_WIDTH - 1 - 3 * len(headers) - sum(f for f, w in zip(fixed, widths) if w != 0)
    limits = [max(24, rest) if w == 0 else w for w in widths]
    return tabulate(rows, headers=headers, tablefmt="github", maxcolwidths=limits)


def list_table(what: str, infos: list[dict[str, Any]]) -> str:
    """The narrow table of `fairbench list WHAT`."""
    if what == "methods":
        rows = [[i["name"], _reads(i), _package(i), i["description"]] for i in infos]
        return narrow_table(rows, ["method", "labels used; needs", "package", "description"], [None, 22, 14, 0])
    if what == "datasets":
        rows = [
            [
                i["name"],
                "\n".join(t["name"] for t in i["tasks"]) or i["task_names"] or "-",
                "--data-root" if i["needs_data_root"] else "generated",
                i["description"],
            ]
            for i in infos
        ]
        return narrow_table(rows, ["dataset", "tasks (first = default)", "data", "description"], [None, None, None, 0])
    rows = [
        [
            i["dataset"],
            i["name"] + (" (default)" if i["default"] else ""),
            i["target"],
            " x ".join(i["sensitive"]),
            i["description"],
        ]
        for i in infos
    ]
    return narrow_table(rows, ["dataset", "task", "target", "sensitive", "description"], [None, None, None, 18, 0])


def all_tasks(reg: Any) -> list[dict[str, Any]]:
    """Every task of every installed dataset; a dataset whose tasks its options name (csv) says how to name one."""
    infos = []
    for d in sorted(reg.datasets.values(), key=lambda d: d.name):
        infos += [task_info(d, t) for t in d.tasks]
        if not d.tasks:
            help_text = getattr(d, "task_help", None) or "named by the dataset's options"
            infos.append(
                {
                    "dataset": d.name,
                    "name": "TARGET/SENSITIVE",
                    "target": "TARGET",
                    "sensitive": ["SENSITIVE"],
                    "description": help_text,
                    "default": False,
                }
            )
    return infos


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, TABLE_WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def _fields(fields: dict[str, str]) -> list[str]:
    """'  name:        value' lines, long values wrapped under their start."""
    return [line for name, value in fields.items() for line in _wrap(f"  {name + ':':<14}{value}", " " * 16)]


def method_detail(info: dict[str, Any]) -> str:
    """`fairbench list methods NAME`: everything a reader needs to judge one method."""
    needs = ", ".join(n for n, k in (("a VLM", "needs_vlm"), ("an unlabeled pool", "needs_pool")) if info[k])
    fields = {
        "paper": info["citation"] or "-",
        "labels used": info["labels_used"],
        "needs": (needs or "-") + ("; reads the test images (transductive)" if info["transductive"] else ""),
        "package": f"{_package(info, with_version=True)} (entry point {info['registered_by'] or '-'})",
        "version": f"{info['version']} (part of every run id; bumped when the method's results change)",
        **({"ablation of": info["ablation_of"]} if info["ablation_of"] else {}),
    }
    lines = [*_wrap(f"{info['name']}: {info['description']}", ""), *_fields(fields)]
    space = info["hyperparameters"]
    rows = [[name, repr(hp["default"]), hp["search"], hp["doc"]] for name, hp in space.items()]
    table = narrow_table(rows, ["hyperparameter", "default", "search distribution", "meaning"], [None, 14, 28, 0])
    lines += ["", "Hyperparameters: trial 0 runs the defaults, trial k > 0 draws each from its distribution.", table]
    return "\n".join(lines)


def dataset_detail(info: dict[str, Any]) -> str:
    """`fairbench list datasets NAME`: its attributes with their classes and its tasks."""
    fields = {
        "paper": info["citation"] or "-",
        "data": "--data-root (files on disk)" if info["needs_data_root"] else "generated",
        "package": _package(info, with_version=True),
    }
    lines = [*_wrap(f"{info['name']}: {info['description']}", ""), *_fields(fields)]
    if info["attributes"]:
        rows = [[name, ", ".join(classes)] for name, classes in info["attributes"].items()]
        lines += ["", narrow_table(rows, ["attribute", "classes"], [None, 0])]
    rows = [[t["name"] + (" (default)" if t["default"] else ""), t["description"]] for t in info["tasks"]]
    lines += ["", narrow_table(rows, ["task", "description"], [None, 0]) if rows else f"tasks: {info['task_names']}"]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """`fairbench list WHAT [NAME]`: a narrow table or JSON of what is installed, or one method or dataset in full."""
    if args.what == "budgets":
        return _list_budgets(args)
    from fairfacebench.plugins import registry

    reg = registry()
    if args.name and args.what != "tasks":
        return _show_one(args, reg)
    infos = _listed_tasks(args.name, reg) if args.what == "tasks" else _listed_plugins(args.what, reg)
    _print_list(args, infos)
    return 0


def _list_budgets(args: argparse.Namespace) -> int:
    """`list budgets`: every field of every budget, so a name has nothing more to show and is refused."""
    if args.name:
        raise ConfigError(f"`fairbench list budgets` takes no name (got {args.name!r}): every field is listed")
    infos = [{**b.to_dict(), "resolution": BUDGET_RESOLUTION[name]} for name, b in BUDGETS.items()]
    rows = [[i["name"], i["steps"], i["batch_size"], i["resolution"], "yes" if i["amp"] else "no"] for i in infos]
    text = tabulate(rows, headers=["budget", "steps", "batch", "resolution", "amp (cuda)"], tablefmt="github")
    print(json.dumps(infos, indent=1) if args.format == "json" else text)
    return 0


def _show_one(args: argparse.Namespace, reg: Any) -> int:
    """`list methods NAME` or `list datasets NAME` in full; an unknown name is refused with the closest installed."""
    if args.what == "methods":
        info, detail = method_info(reg.method(args.name), reg), method_detail
    else:
        info, detail = dataset_info(reg.dataset(args.name), reg), dataset_detail
    print(json.dumps(info, indent=1, default=str) if args.format == "json" else detail(info))
    return 0


def _listed_tasks(name: str | None, reg: Any) -> list[dict[str, Any]]:
    """Every task, or one dataset's; that dataset is looked up so an unknown name is refused, not listed empty."""
    infos = [i for i in all_tasks(reg) if name in (None, i["dataset"])]
    if name:
        reg.dataset(name)  # an unknown dataset is named, with the closest installed ones
    return infos


def _listed_plugins(what: str, reg: Any) -> list[dict[str, Any]]:
    """Every installed method or dataset by name, in its JSON form, so tables and JSON list the same order."""
    if what == "methods":
        return [method_info(m, reg) for m in sorted(reg.methods.values(), key=lambda m: m.name)]
    return [dataset_info(d, reg) for d in sorted(reg.datasets.values(), key=lambda d: d.name)]


def _print_list(args: argparse.Namespace, infos: list[dict[str, Any]]) -> None:
    """The complete JSON, or the narrow table with a pointer to the detail view where there is one."""
    if args.format == "json":
        print(json.dumps(infos, indent=1, default=str))
        return
    print(list_table(args.what, infos))
    if args.what in ("methods", "datasets"):
        print(f"one in full: fairbench list {args.what} NAME")


# ---------------------------------------------------------------- run


def _data_roots(values: list[str], datasets: tuple[str, ...], reg: Any) -> dict[str, str]:
    """--data-root PATH (for the one dataset that needs a root) or --data-root NAME=PATH."""
    roots: dict[str, str] = {}
    for v in values:
        if "=" in v:
            name, path = v.split("=", 1)
            roots[name] = path
        else:
            needing = [d for d in datasets if reg.dataset(d).needs_root]
            if len(needing) != 1:
                raise ConfigError(
                    f"--data-root {v}: name the dataset (--data-root NAME=PATH); datasets needing a root: {needing}"
                )
            roots[needing[0]] = v
    return roots


def _dataset_options(values: list[str], datasets: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key:
            raise ConfigError(f"--dataset-option {v}: expected [DATASET.]KEY=VALUE, e.g. n_train=2000")
        ds, dot, name = key.rpartition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        for target in [ds] if dot else datasets:
            out.setdefault(target, {})[name] = value
    return out


def _tasks(text: str | None, datasets: tuple[str, ...]) -> dict[str, list[str]]:
    tasks: dict[str, list[str]] = {}
    for t in _split(text or ""):
        ds, sep, task = t.partition(":")
        if not sep:
            if len(datasets) != 1:
                raise ConfigError(f"--tasks {t}: write DATASET:TASK when running several datasets")
            ds, task = datasets[0], t
        tasks.setdefault(ds, []).append(task)
    return tasks


def _eval_on(values: list[str]) -> dict[str, Any]:
    """--eval-on DATASET[:ROOT] (repeatable): the plan's `eval_on` and the data roots given with it."""
    names: dict[str, None] = {}
    roots: dict[str, str] = {}
    for v in values:
        name, sep, root = v.partition(":")
        if not name or (sep and not root):
            raise ConfigError(f"--eval-on {v}: expected DATASET or DATASET:ROOT, e.g. fairface:/data/FairFace")
        names[name] = None
        if root:
            roots[name] = root
    return {"eval_on": list(names) or None, "data_roots": roots or None}


def _lacking_transfer(out: Path, specs: list[Any], transfer: Any) -> dict[str, list[str]]:
    """Finished runs whose records lack a transfer evaluation the plan asks for (run id -> those datasets): the model
    is not stored, so they are computed again (one run id gives the same numbers, so nothing else changes)."""
    from fairfacebench.store import ResultStore

    if not transfer.targets or not out.is_dir():
        return {}
    store = ResultStore(out, create=False)
    lacking = {}
    for spec in specs:
        record = store.record(spec.run_id) if transfer.for_spec(spec) else None
        missing = transfer.lacking(record) if record is not None and record.ok else []
        if missing:
            lacking[spec.run_id] = missing
    return lacking


def run_plan(args: argparse.Namespace, reg: Any) -> Any:
    """Packaged defaults < --config < flags, validated into one Plan."""
    from fairfacebench.plan import load_plan

    flags = _run_flags(args)

    def dataset_flags(datasets: tuple[str, ...]) -> dict[str, Any]:
        for name in datasets:
            reg.dataset(name)  # an unknown dataset is named before its flags are read
        return {
            "tasks": _tasks(args.tasks, datasets) or None,
            "data_roots": _data_roots(args.data_root, datasets, reg) or None,
            "dataset_options": _dataset_options(args.dataset_option, datasets) or None,
        }

    return load_plan(args.config, flags, dataset_flags)


def _run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of `fairbench run` whose meaning does not depend on the plan's datasets."""
    return {
        "methods": "all" if args.methods == "all" else (None if args.methods is None else _split(args.methods)),
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
        "run_timeout_s": args.run_timeout,
        "out": args.out,
        "bootstrap": args.bootstrap,
        "vlm": args.vlm,
        "pool": args.pool,
        "augment": {"mix": args.mix} if args.mix else None,
        **_eval_on(args.eval_on),
        "sealed": args.sealed,
    }


def _run_plugins(args: argparse.Namespace) -> tuple[Any, Any]:
    """The plugins a run may use, and the cards of the methods it runs sealed without importing them (None when
    `sealed = false`: then every installed plugin is imported here and trusted).  Nothing from outside this
    repository is imported otherwise (docs/ARCHITECTURE.md, "Threat model")."""
    from fairfacebench.plan import load_plan
    from fairfacebench.plugins import listed_plugins, registry, trusted_registry
    from fairfacebench.sealed import describe_methods, require_sandbox, sealed_registry

    plan = load_plan(args.config, _run_flags(args))
    outside = sorted({f"{p.name} ({p.distribution})" for p in listed_plugins() if not p.builtin})
    if plan.sealed is False:
        if outside:
            print(
                f"fairbench run: sealed = false: plugins from outside this repository ({', '.join(outside)}) run in "
                "this process, trusted with every label, the result store and the data root (debugging only)",
                file=sys.stderr,
            )
        return registry(), None
    foreign = [d for d in dict.fromkeys([*plan.datasets, *plan.eval_on]) if d not in trusted_registry().datasets]
    if foreign and outside:
        raise ConfigError(
            f"dataset(s) {foreign} are not this repository's: a dataset plugin runs in this process with every "
            f"label, so plugins from outside the repository ({', '.join(outside)}) are imported only with "
            "--trust-plugins (sealed = false)"
        )
    trusted = trusted_registry().methods
    wanted = plan.methods == "all" or any(m not in trusted for m in plan.methods)
    cards = describe_methods(plan.hparam_trials) if outside and wanted else []
    if plan.sealed is True or cards:
        if plan.executor == "ray":
            raise ConfigError("sealed runs execute in local sandboxes: use --executor local (or sealed = false)")
        require_sandbox()
    if cards:
        print(f"sealed (methods from outside this repository): {', '.join(c.name for c in cards)}")
    return sealed_registry(cards), cards


def _runner(plan: Any, cards: Any, transfer: Any) -> Any:
    """In-process runs that trust every plugin (`cards` None), else a runner that seals untrusted ones (all runs
    under `sealed = true`); both evaluate each run's model on the `transfer` datasets."""
    from fairfacebench.runner import SpecRunner
    from fairfacebench.sealed import SealedRunner

    if cards is None:
        return SpecRunner(plan.device, config=plan.to_dict(), transfer=transfer)
    return SealedRunner(
        plan.device,
        config=plan.to_dict(),
        transfer=transfer,
        cards=cards,
        seal_all=plan.sealed is True,
        hidden=(plan.out,),
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def plan_toml(plan: dict[str, Any]) -> str:
    """The resolved plan as a config file `fairbench run --config` reads back."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in plan.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{k}]\n" + "".join(f"{json.dumps(name)} = {_toml_value(v)}\n" for name, v in table.items())
        for k, table in plan.items()
        if isinstance(table, dict)
    ]
    return "\n".join(scalars) + "\n" + "".join(tables)


def resolved_plan(plan: Any, specs: list[Any]) -> dict[str, Any]:
    """The plan as its runs see it, for `--dry-run`: the resolution in pixels, the tasks each dataset runs (default
    tasks named) and the tables of the plan's datasets only; `--config` reads it back into the same runs."""
    out = plan.to_dict()
    out["resolution"] = plan.input_resolution
    tasks: dict[str, list[str]] = {}
    for spec in specs:
        if spec.task not in tasks.setdefault(spec.dataset, []):
            tasks[spec.dataset].append(spec.task)
    out["tasks"] = {ds: tasks.get(ds) or list(plan.tasks.get(ds, ())) for ds in plan.datasets}
    for key in ("data_roots", "dataset_options"):
        out[key] = {ds: value for ds, value in out[key].items() if ds in plan.datasets}
    return out


def _will_compute(status: str | None, retry_failed: bool) -> bool:
    return status is None or (status == "failed" and retry_failed)


def code_check(specs: list[Any], stored: dict[str, Any], reg: Any) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Per method, the stored runs made with other code than is installed now (their run ids), and the number of
    stored runs that cannot be checked (recorded before code fingerprints)."""
    from fairfacebench.method_code import made_with_other_code, results_code

    installed = {m: results_code(m, reg) for m in sorted({s.method for s in specs})}
    changed: dict[str, list[str]] = {}
    unchecked: dict[str, int] = {}
    for spec in specs:
        record = stored[spec.run_id]
        if record is None:
            continue
        other = made_with_other_code(record, installed[spec.method])
        if other:
            changed.setdefault(spec.method, []).append(spec.run_id)
        elif other is None:
            unchecked[spec.method] = unchecked.get(spec.method, 0) + 1
    return changed, unchecked


def recomputed(stored: dict[str, Any], changed: dict[str, list[str]], args: argparse.Namespace) -> set[str]:
    """The stored runs to compute again: every one with --force, those made with other code with --rerun-changed."""
    if args.force:
        return {run_id for run_id, record in stored.items() if record is not None}
    return {run_id for ids in changed.values() for run_id in ids} if args.rerun_changed else set()


def _stored_runs(n: int) -> str:
    return f"{n} stored run{'s' if n != 1 else ''}"


def code_notes(changed: dict[str, list[str]], unchecked: dict[str, int], args: argparse.Namespace) -> list[str]:
    """What `run` and `--dry-run` say about stored runs made with other code than is installed."""
    notes = []
    for method, ids in sorted(changed.items()):
        were, them = ("were", "them") if len(ids) != 1 else ("was", "it")
        text = f"{_stored_runs(len(ids))} of {method} {were} made with other code than the installed {method}"
        if args.force or args.rerun_changed:
            notes.append(f"{text}: recomputing {them}")
        else:
            notes.append(
                f"{text}: --rerun-changed recomputes {them} (--force: every run); bump the method's `version` when "
                "its algorithm changed"
            )
    for method, n in sorted(unchecked.items()):
        if not args.force:
            predate = "predate" if n != 1 else "predates"
            notes.append(f"{_stored_runs(n)} of {method} {predate} code fingerprints and cannot be checked (--force)")
    return notes


@dataclass
class Work:
    """What `run` will do: every run of the plan (and the chosen trials after a finished search), what the store
    holds of them, which stored ones are computed again and why, and what is left to compute."""

    specs: list[Any]
    statuses: dict[str, str | None]
    changed: dict[str, list[str]]  # method -> stored runs made with other code than is installed
    unchecked: dict[str, int]
    lacking: dict[str, list[str]]  # run id -> --eval-on datasets its record lacks
    again: set[str]  # stored runs computed again
    todo: list[Any]
    waiting: int  # methods whose search has not finished
    stale: dict[str, list[str]] = field(default_factory=dict)  # run id -> what it read that holds other bytes now


def until_time(text: str, now: datetime) -> datetime:
    """`--until`: 'HH:MM' (local time: the occurrence nearest to now, within 12 hours either way, so '14:30' read at
    14:35 has passed, while '01:00' read at 23:00 is two hours ahead), '+90m', '+2h', '+1h30m' (from now), or an ISO
    date-time ('2026-12-06T14:30', local time unless it names its zone)."""
    text = text.strip()
    relative = re.fullmatch(r"\+(?:(\d+)h)?(?:(\d+)m)?", text)
    if relative and any(relative.groups()):
        hours, minutes = (int(g or 0) for g in relative.groups())
        return now + timedelta(hours=hours, minutes=minutes)
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if clock and int(clock[1]) < 24 and int(clock[2]) < 60:
        at = now.replace(hour=int(clock[1]), minute=int(clock[2]), second=0, microsecond=0)
        return min((at + timedelta(days=d) for d in (-1, 0, 1)), key=lambda t: (abs(t - now), t < now))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or "T" not in text:
        raise ConfigError(
            f"--until {text!r}: give a time of day (14:30: the nearest, 12 hours either way), a duration from now "
            "(+90m, +2h, +1h30m) or an ISO date-time (2026-12-06T14:30)"
        )
    return at if at.tzinfo is not None else at.astimezone()


def cmd_run(args: argparse.Namespace) -> int:
    from fairfacebench.preflight import check_plan

    if args.until is not None:  # before any planning: a typo fails at once
        args.until = until_time(args.until, datetime.now().astimezone())
    reg, cards = _run_plugins(args)
    checked = check_plan(run_plan(args, reg), reg, args.allow_tiny_groups)
    plan = checked.plan
    for warning in checked.warnings:
        print(f"fairbench run: warning: {warning}", file=sys.stderr)
    work = _work(plan, checked, reg, args)
    methods = plan.method_names(reg.methods)
    print(
        f"{len(work.specs)} runs: {len(plan.datasets)} dataset(s) x {len(methods)} method(s) x {plan.hparam_trials} "
        f"trial(s) x {plan.seeds} seed(s), budget '{plan.budget}', executor '{plan.executor}' "
        f"({plan.workers} worker(s)); {len(work.todo)} to compute, {len(work.specs) - len(work.todo)} already in "
        f"{plan.out}"
    )
    for note in code_notes(work.changed, work.unchecked, args):
        print(f"fairbench run: warning: {note}", file=sys.stderr)
    if args.dry_run:
        _dry_run(plan, work, methods, args, reg)
        return 0
    return _compute(plan, work, checked, reg, args, cards)


def _work(plan: Any, checked: Any, reg: Any, args: argparse.Namespace) -> Work:
    from fairfacebench.store import stored_records

    final, waiting = _after_search(plan, checked.specs, reg)
    specs = checked.specs + final
    stored = stored_records(Path(plan.out), [s.run_id for s in specs])
    statuses = {run_id: record.status if record else None for run_id, record in stored.items()}
    changed, unchecked = code_check(specs, stored, reg)
    lacking = _lacking_transfer(Path(plan.out), specs, checked.transfer)
    stale = _stale(specs, stored)
    again = recomputed(stored, changed, args) | set(lacking) | set(stale)
    todo = [s for s in specs if s.run_id in again or _will_compute(statuses[s.run_id], args.retry_failed)]
    return Work(specs, statuses, changed, unchecked, lacking, again, todo, waiting, stale)


def _stale(specs: list[Any], stored: dict[str, Any]) -> dict[str, list[str]]:
    """Finished runs that read data, weights or a pool holding other bytes now (same names and sizes)."""
    from fairfacebench.grid import content_changes

    changes = {s.run_id: content_changes(stored[s.run_id], s) for s in specs}
    return {run_id: parts for run_id, parts in changes.items() if parts}


def _dry_run(plan: Any, work: Work, methods: list[str], args: argparse.Namespace, reg: Any) -> None:
    """The resolved plan, each run's action and estimated time, and the grid's estimate; nothing computed."""
    from fairfacebench.progress import duration, run_title

    print(f"\n# the resolved plan (methods: {', '.join(methods)})\n{plan_toml(resolved_plan(plan, work.specs))}")
    running = _held_elsewhere(plan, work.todo)
    todo = [s for s in work.todo if s.run_id not in running]
    expected = _estimate(todo, plan, reg)
    other_code = {run_id for ids in work.changed.values() for run_id in ids}
    for spec in work.specs:
        seconds = expected.seconds.get(spec.run_id)
        action = dry_run_action(spec.run_id, work.statuses, work.again, other_code, work.lacking, args, seconds)
        if spec.run_id in work.stale and not args.force:
            action = f"recompute (its {' and '.join(work.stale[spec.run_id])} changed, ~{duration(seconds)})"
        if spec.run_id in running:
            action = f"skip ({running[spec.run_id]}: another grid's)"
        print(f"{action:<30} {run_title(spec)}  [run {spec.run_id}]")
    if running:
        print(
            f"{len(running)} run(s) claimed by another process (a grid claims all its runs as it starts, and frees "
            "those it leaves): this command would skip them; not in the estimate"
        )
    _print_estimate(expected)
    if args.until is not None:
        print(until_estimate(plan, todo, expected, args.until, reg))
    if work.waiting:
        possible, bound = _possible_final(plan, work.specs), "none otherwise"
        if possible:
            after = _estimate(possible, plan, reg)
            bound = (
                f"at most {len(possible)} run(s), ~{duration(after.wall_s)} more on {after.workers} worker(s) (each "
                f"of the {len(plan.final_selection)} regime(s) of final_selection picking its own trial)"
            )
        print(
            f"then: the chosen trials on seeds {plan.search_seeds}..{plan.seeds - 1} of {work.waiting} method(s) "
            f"whose search has not finished: none if every rule keeps the defaults, {bound}"
        )
    print("dry run: nothing computed")


def _held_elsewhere(plan: Any, todo: list[Any]) -> dict[str, str]:
    """The runs to compute that another process holds a live claim on (a grid that computes them, now or later in its
    queue): who holds each."""
    from fairfacebench.store import ResultStore

    if not Path(plan.out).is_dir():
        return {}
    store = ResultStore(plan.out, create=False)
    return {s.run_id: held for s in todo if (held := store.held_elsewhere(s.run_id))}


def until_estimate(plan: Any, todo: list[Any], expected: Any, until: datetime, reg: Any) -> str:
    """What `--until` would leave, by the estimate: the runs started in the executor's order (worker processes: the
    waves in turn, heavy runs first; else the plan's order), each on the worker free first, none after `until`."""
    from fairfacebench.estimate import started_before
    from fairfacebench.executors import start_order

    todo = start_order(plan.executor, plan.workers, todo, lambda spec: reg.heavy(spec.method))
    now = datetime.now().astimezone()
    seconds = [*expected.preparing.values(), *(expected.seconds[s.run_id] for s in todo)]
    jobs, end_s = started_before(seconds, expected.workers, (until - now).total_seconds())
    started = max(0, jobs - len(expected.preparing))
    ending = f", the last ending about {now + timedelta(seconds=end_s):%H:%M}" if started else ""
    return (
        f"--until {until:%Y-%m-%d %H:%M %Z}: by the estimate, {started} of {len(todo)} run(s) start before it{ending}; "
        f"the same command computes the other {len(todo) - started} later"
    )


def _compute(plan: Any, work: Work, checked: Any, reg: Any, args: argparse.Namespace, cards: Any) -> int:
    """Compute the work (then the chosen trials, should the search finish in this grid) and report it; `cards`
    as `_run_plugins` gives them."""
    import time

    from fairfacebench.grid import execute
    from fairfacebench.leaderboard.render import current_exports
    from fairfacebench.leaderboard.tables import write
    from fairfacebench.progress import SUMMARY_HEADERS, SUMMARY_TIMES, GridView, duration, run_title, summary_rows
    from fairfacebench.store import RECORD, ResultStore

    live = args.progress == "live" or (args.progress == "auto" and sys.stdout.isatty())
    view = GridView(0, live=live, stream=sys.stdout, work_per_run=plan.budget_profile.steps)
    outcomes: list[tuple[Any, str]] = []
    started = time.monotonic()

    def grid(runs: list[Any]) -> dict[str, int]:
        return execute(
            runs,
            ResultStore(plan.out),
            _runner(plan, cards, checked.transfer),
            retry_failed=args.retry_failed,
            on_result=lambda spec, status: outcomes.append((spec, status)),
            executor=plan.executor,
            workers=plan.workers,
            ray_address=plan.ray_address or None,
            view=view,
            run_timeout_s=plan.run_timeout_s,
            rerun=lambda record: record.run_id in work.again,
            launch_until=None if args.until is None else args.until.timestamp(),
        )

    new: list[Any] = []
    try:
        counts = grid(work.specs)
        after, _ = _after_search(plan, work.specs, reg)  # the search may have finished in this grid
        new = [s for s in after if s not in work.specs]
        if new:
            print(f"search finished: {len(new)} run(s) of the chosen trials on seeds {plan.search_seeds}..")
            counts = {k: v + counts[k] for k, v in grid(new).items()}
    finally:
        view.close()
    computed = any(not status.startswith("skipped") for _, status in outcomes)
    paths = None if computed else current_exports(Path(plan.out), plan.selection, Path(plan.out).glob(f"*/{RECORD}"))
    if paths is None:
        paths = write(plan.out, rule=plan.selection)
    else:
        print(
            f"nothing computed: the leaderboard in {plan.out} is up to date with its records and kept (`fairbench "
            f"leaderboard tables {plan.out}` builds it again)"
        )
    store = ResultStore(plan.out, create=False)
    print(tabulate(summary_rows(_outcome_rows(outcomes, store)), headers=SUMMARY_HEADERS, tablefmt="github"))
    print(SUMMARY_TIMES)
    print_results(work.specs + new, Path(plan.out), reg, plan.selection)
    for spec, status in outcomes:
        if status.startswith("FAILED"):
            print(f"failed: {run_title(spec)}: {status.removeprefix('FAILED: ').splitlines()[0]}")
    for line in _claimed_elsewhere(outcomes, plan.out):
        print(line)
    left = _not_started(work.todo + new, outcomes) if args.until is not None else 0
    if left:
        print(
            f"--until {args.until:%Y-%m-%d %H:%M %Z}: {left} run(s) not started (the running ones finished and are "
            "recorded); the same command computes them"
        )
    print(f"wall time {duration(time.monotonic() - started)}; leaderboard: {paths['md']}")
    return 0 if counts["failed"] == 0 else 1


def _search_records(plan: Any) -> list[Any]:
    """The store's records when the plan searches (what the chosen trials depend on), else none."""
    from fairfacebench.store import ResultStore

    out = Path(plan.out)
    return list(ResultStore(out, create=False).records()) if out.is_dir() and plan.search_seeds else []


def _after_search(plan: Any, specs: list[Any], reg: Any) -> tuple[list[Any], int]:
    """The runs of the trials chosen on the search seeds (from the store), and how many methods still search."""
    from fairfacebench.plan import expand_final

    return expand_final(plan, specs, _search_records(plan), reg)


def _possible_final(plan: Any, specs: list[Any]) -> list[Any]:
    """The most runs the chosen trials of the methods still searching can add (`plan.possible_final`)."""
    from fairfacebench.plan import possible_final

    return possible_final(plan, specs, _search_records(plan))


def _estimate(todo: list[Any], plan: Any, reg: Any) -> Any:
    """The wall-time estimate of the runs to compute, on this machine and the plan's workers: with the evaluation
    sizes datasets tell before loading and the encoders the grid trains first (an empty cache)."""
    from fairfacebench.estimate import plan_estimate
    from fairfacebench.runner import loads_vlm
    from fairfacebench.settings import default_cache_dir
    from fairfacebench.store import ResultStore

    out = Path(plan.out)
    records = list(ResultStore(out, create=False).records()) if out.is_dir() else []
    workers = plan.workers if plan.executor == "local" else 1
    cache = default_cache_dir()

    def split_sizes(spec: Any) -> dict[str, int] | None:
        sizes = getattr(reg.dataset(spec.dataset), "split_sizes", None)
        return sizes(spec.task, **spec.dataset_options) if sizes else None

    preparations = []
    for value in sorted({s.vlm for s in todo if loads_vlm(s, reg)}):
        name, _, argument = value.partition(":")
        prepare = getattr(reg.encoders.get(name), "preparation", None)
        if prepare is not None and (prep := prepare(argument, cache)) is not None:
            preparations.append(prep)
    return plan_estimate(todo, workers, cache, records, split_sizes, preparations)


def _print_estimate(expected: Any) -> None:
    from fairfacebench.progress import duration

    runs = len(expected.seconds)
    for name, seconds in expected.preparing.items():
        print(f"first: training {name} (~{duration(seconds)}; its cache is empty), beside the runs that do not use it")
    print(
        f"estimated wall time: {duration(expected.wall_s)} for {runs} run(s) to compute on {expected.workers} "
        f"worker(s) (sum of runs {duration(sum(expected.seconds.values()))}; this machine's measured step costs, "
        "method costs relative to erm; docs/PERFORMANCE.md)"
    )
    for note in expected.notes:
        print(f"  estimate note: {note}")


def dry_run_action(
    run_id: str,
    statuses: dict[str, str | None],
    again: set[str],
    other_code: set[str],
    lacking: dict[str, list[str]],
    args: argparse.Namespace,
    seconds: float | None,
) -> str:
    """What `run` would do with one run: compute or recompute (why, and its estimated time), or skip (and what the
    store holds)."""
    from fairfacebench.progress import duration

    status = statuses[run_id]
    if run_id in lacking and not args.force:
        return f"recompute (its record lacks --eval-on {','.join(lacking[run_id])}, ~{duration(seconds)})"
    if run_id in again:
        return f"recompute ({'other code' if run_id in other_code else '--force'}, ~{duration(seconds)})"
    if _will_compute(status, args.retry_failed):
        return f"compute (~{duration(seconds)})"
    return f"skip ({status} in the store{', other code' if run_id in other_code else ''})"


RESULT_HEADERS = ["dataset/task", "method", "seeds", "acc", "eod_max", "wga", "flags"]


def print_results(specs: list[Any], out: Path, reg: Any, rule: str) -> None:
    """The plan's results as the leaderboard tables them, in short: test accuracy, eod_max and worst-group accuracy
    per (task, method), flags, and what was dropped from the unlabeled pools."""
    from fairfacebench.store import stored_records

    records = stored_records(out, [s.run_id for s in specs])
    changed, _ = code_check(specs, records, reg)
    rows = results_rows(specs, records, reg.selection_rule(rule), {i for ids in changed.values() for i in ids})
    if rows:
        print(f"\nresults on test: mean over seeds of the trial {rule} chooses on validation, as the leaderboard")
        print(tabulate(rows, headers=RESULT_HEADERS, tablefmt="github", floatfmt=".3f", missingval="-"))
    for note in pool_notes(r for r in records.values() if r is not None):
        print(note)


def results_rows(specs: list[Any], records: dict[str, Any], rule: Any, other_code: set[str]) -> list[list[Any]]:
    """One row per (task, method) with finished runs: the means of the runs the leaderboard's row stands for
    (`leaderboard.tables.method_runs`: the trial `rule` selects per seed; with a search, the trial it picks on the
    search seeds once the search and the pick have run, else the defaults) and their flags, the leaderboard's
    (`flags.run_flags`: degenerate, at or near chance, a budget that is not a result, tiny groups, ...) plus
    'tiny-cells' (cells below the minimum the run recorded) and 'other-code', each with its count when not every seed
    has it."""
    from fairfacebench.flags import run_flags
    from fairfacebench.leaderboard.search import planned_trials, search_seeds
    from fairfacebench.leaderboard.tables import method_runs

    seeds: dict[tuple[str, str], dict[int, list[Any]]] = {}
    for spec in specs:
        record = records[spec.run_id]
        if record is not None:
            per_seed = seeds.setdefault((f"{spec.dataset}/{spec.task}", spec.method), {})
            per_seed.setdefault(spec.seed, []).append(record)
    of_task: dict[str, list[Any]] = {}
    for (task, _), per_seed in seeds.items():
        of_task.setdefault(task, []).extend(r for runs in per_seed.values() for r in runs)
    rows = []
    for (task, method), per_seed in seeds.items():
        chosen = method_runs(per_seed, rule, search_seeds(of_task[task]), planned_trials(of_task[task])).ok
        if not chosen:
            continue
        flags: dict[str, int] = {}
        for r in chosen:
            reasons = {flag.code for flag in run_flags(r, r.test_intervals)}
            reasons |= {"tiny-cells"} if r.tiny_groups else set()
            reasons |= {"other-code"} if r.run_id in other_code else set()
            for reason in reasons:
                flags[reason] = flags.get(reason, 0) + 1
        means = [_mean([r.test_metric(m) for r in chosen]) for m in ("acc", "eod_max", "wga")]
        flagged = [f if n == len(chosen) else f"{f} ({n} of {len(chosen)} seeds)" for f, n in sorted(flags.items())]
        rows.append([task, method, len(chosen), *means, "; ".join(flagged) or "-"])
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def pool_notes(records: Any) -> list[str]:
    """One line per unlabeled pool the runs read that dropped files, with how many and why (its report's summary)."""
    summaries = {}
    for record in records:
        pool = (record.dataset_info or {}).get("pool") or {}
        if pool.get("summary") and ": dropped " in pool["summary"]:
            summaries[pool.get("name")] = pool["summary"]
    return [f"pool {name}: {summary}" for name, summary in sorted(summaries.items())]


def _not_started(todo: list[Any], outcomes: list[tuple[Any, str]]) -> int:
    """How many runs this command was to compute have no outcome: `--until` came before they started."""
    reported = {spec.run_id for spec, _ in outcomes}
    return len({spec.run_id for spec in todo} - reported)


def _claimed_elsewhere(outcomes: list[tuple[Any, str]], out: str) -> list[str]:
    """Why runs this command was to compute were skipped: another process (here, or on another host) holds them."""
    from fairfacebench.progress import run_title
    from fairfacebench.store import CLAIM_TIMEOUT_S

    held = [(spec, status) for spec, status in outcomes if status.startswith("skipped (claimed by")]
    lines = [f"not computed here: {run_title(spec)}: {status[len('skipped (') : -1]}" for spec, status in held]
    if held:
        lines.append(
            f"{len(held)} run(s) not computed here: another process holds them (a live one on this host; one on "
            f"another host until its claim is {CLAIM_TIMEOUT_S // 3600} h old or {out}/.claims/RUN_ID.json is "
            "removed); run again when it is done"
        )
    return lines


def _outcome_rows(outcomes: list[tuple[Any, str]], store: Any) -> list[tuple[str, str, float]]:
    """(method, 'ok' | 'failed' | 'skipped', wall time of the run) per run of this invocation."""
    rows = []
    for spec, status in outcomes:
        kind = "skipped" if status.startswith("skipped") else "ok" if status == "ok" else "failed"
        seconds = 0.0
        if kind != "skipped":
            record = store.record(spec.run_id)
            seconds = (record.wall_time_s if record else None) or 0.0
        rows.append((spec.method, kind, float(seconds)))
    return rows


# ---------------------------------------------------------------- leaderboard, export


def _store_dir(text: str, command: str) -> Path:
    """A result store that exists and holds runs (nothing is created for a mistyped path)."""
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"no result store at {path}: pass the --out directory of `fairbench run` to {command}")
    if not any(path.glob("*/record.json")):
        raise ConfigError(f"{path} holds no run records (*/record.json): pass the --out directory of `fairbench run`")
    return path


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from fairfacebench.plugins import selection_rule
    from fairfacebench.readback import data_access

    store = _store_dir(args.dir, f"`fairbench leaderboard {args.action}`")
    if args.defaults and args.selection is not None:
        raise ConfigError(
            f"--defaults and --selection {args.selection}: a board of the defaults has one trial per method and seed, "
            "so no rule picks; pass one of them"
        )
    rule = args.selection or "val_acc"
    selection_rule(rule)
    access = data_access(args.data_root, args.intersect, args.min_cell)
    if args.action == "build":
        from fairfacebench.leaderboard.site import build_site

        paths = build_site(store, args.out or store / "site", rule=rule, access=access, defaults_only=args.defaults)
        print(f"site: {paths['index']} (data: {paths['json']}, {paths['csv']})")
        return 0
    from fairfacebench.leaderboard.tables import write

    paths = write(store, args.out, rule=rule, access=access, defaults_only=args.defaults)
    print(paths["md"].read_text())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fairfacebench.export import export_mlflow

    store = _store_dir(args.dir, "`fairbench export mlflow`")
    result = export_mlflow(store, out=args.out, tracking_uri=args.tracking_uri, experiment=args.experiment)
    print(f"exported {result['runs']} run(s) to experiment '{result['experiment']}' at {result['tracking_uri']}")
    return 0


# ---------------------------------------------------------------- new-method, data, vlm


def cmd_new_method(args: argparse.Namespace) -> int:
    from fairfacebench.scaffold import new_method

    try:
        root = new_method(args.name, Path(args.out))
    except (ValueError, FileExistsError) as exc:
        raise ConfigError(str(exc)) from None
    print(f"created {root}\nnext: pip install -e {root}, then `fairbench list methods` and `pytest {root}`")
    return 0


def check_table(report: dict[str, Any]) -> str:
    """Rows per (attribute, class), a column per split: the counts of `data check`."""
    splits = list(report.get("splits", {}))
    groups = report.get("groups", {})
    first = groups.get(splits[0], {}) if splits else {}
    rows = [
        [attr, cls, *(groups.get(s, {}).get(attr, {}).get(cls, 0) for s in splits)]
        for attr, classes in first.items()
        for cls in classes
    ]
    totals = ["all", "", *(report["splits"][s] for s in splits)]
    return tabulate([*rows, totals], headers=["attribute", "class", *splits], tablefmt="github")


def print_check(report: dict[str, Any]) -> None:
    """A check report as tables (one per task for datasets whose splits depend on the task), the (target class,
    group) cells of each task, then its warnings and problems."""
    for task, part in (report.get("tasks") or {None: report}).items():
        if task is not None:
            print(f"\ntask {task}:")
        if part.get("splits"):
            print(check_table(part))
        near = (part.get("info") or {}).get("near_duplicates") or {}
        if "conflicts" in near:
            print(
                f"near-duplicates (hashes within {near['threshold']} bits): {near['groups']} groups of "
                f"{near['images_in_groups']} images, each group in one split; {near['conflict_groups']} groups of "
                f"{near['removed_for_label_conflicts']} images left out for conflicting labels:"
            )
            for group in near["conflicts"]:
                print("  " + " | ".join(", ".join(map(str, member.values())) for member in group))
    for task, cells in (report.get("cells") or {}).items():
        print(f"\ntask {task}: images per (target class|group) cell; * fewer than {MIN_CELL_IMAGES} in val or test")
        print(cells_table(cells))
    for warning in report.get("warnings", []):
        print(f"warning: {warning}")
    for problem in report.get("problems", []):
        print(f"problem: {problem}")


def cells_table(cells: dict[str, dict[str, int]]) -> str:
    """One row per (target class|group) cell, a column per split; cells too small to score are starred."""
    from fairfacebench.data import tiny_cells

    tiny = tiny_cells(cells)
    names = list(next(iter(cells.values()), {}))
    rows = [[c, *(f"{cells[s][c]}{'*' if c in tiny.get(s, {}) else ''}" for s in cells)] for c in names]
    return tabulate(rows, headers=["cell", *cells], tablefmt="github", colalign=("left", *("right",) * len(cells)))


def add_cells(report: dict[str, Any], plugin: Any, root: Path, options: dict[str, Any], tasks: list[str]) -> None:
    """The (target class, group) cells of `tasks` (default: every task the dataset lists, or its default task) and
    a warning per task whose validation or test cells are below the minimum runs accept."""
    from fairfacebench.data import describe_tiny, tiny_cells

    names = tasks or [t.name for t in plugin.tasks] or [plugin.default_task(**options)]
    report["cells"] = plugin.cells(root, [plugin.task(name).name for name in names], **options) or {}
    report["warnings"] = [*report.get("warnings", [])] + [
        f"task {name}: (target class|group) cells with fewer than {MIN_CELL_IMAGES} images in validation or test: "
        f"{describe_tiny(tiny)}; `fairbench run` refuses the task unless --allow-tiny-groups"
        for name, found in report["cells"].items()
        if (tiny := tiny_cells(found))
    ]


def cmd_data(args: argparse.Namespace) -> int:
    from fairfacebench.plugins import registry
    from fairfacebench.preflight import check_options

    plugin = registry().dataset(args.name)
    if not plugin.needs_root:
        raise ConfigError(f"dataset '{plugin.name}' is generated on the fly: it has no files to {args.action}")
    options = _dataset_options(args.dataset_option, (plugin.name,)).get(plugin.name, {})
    check_options(plugin, options)
    root = Path(args.data_root)
    if args.action == "check":
        report = plugin.check(root, **options) if options else plugin.check(root)
        if report.get("splits") or report.get("tasks"):
            add_cells(report, plugin, root, options, _split(args.tasks or ""))
        if args.format == "json":
            _print_json(report)
        else:
            verdict = "ok" if report.get("ok") else "PROBLEMS"
            warned = len(report.get("warnings", []))
            print(f"{plugin.name} at {root}: {verdict}{f', {warned} warning(s)' if warned else ''}")
            print_check(report)
        return 0 if not report.get("problems") else 1
    from fairfacebench.settings import default_cache_dir

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    _print_json(plugin.prepare(root, args.resolution, cache, workers=args.workers, **options))
    return 0


def cmd_vlm(args: argparse.Namespace) -> int:
    """`fairbench vlm list` / `fairbench vlm train-mini-clip`: encoders, and the embedded mini-CLIP of synthfaces."""
    from fairfacebench.plugins import registry

    reg = registry()
    if args.action == "list":
        infos = [
            {"name": e.name, "description": e.description, "embedded_for": list(getattr(e, "embedded_for", ()))}
            for e in sorted(reg.encoders.values(), key=lambda e: e.name)
        ]
        if args.format == "json":
            _print_json(infos)
        else:
            rows = [[i["name"], ", ".join(i["embedded_for"]) or "-", i["description"]] for i in infos]
            print(narrow_table(rows, ["encoder", "--vlm auto of", "description"], [None, None, 0]))
        return 0
    from fairfacebench.progress import GridView, reporting
    from fairfacebench.settings import default_cache_dir

    live = args.progress == "live" or (args.progress == "auto" and sys.stdout.isatty())
    view = GridView(0, live=live, stream=sys.stdout)
    view.start("vlm", "mini-CLIP", counted=False)
    try:
        with view.capture(), reporting(view.sink("vlm")):
            encoder = reg.encoders["mini-clip"].load(
                str(args.seed), Path(args.cache_dir) if args.cache_dir else default_cache_dir(), retrain=args.retrain
            )
        view.end("vlm", "ready")
    finally:
        view.close()
    _print_json(encoder.info)
    return 0


# ---------------------------------------------------------------- the parser


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        nargs="?",
        const="live",
        default="auto",
        choices=PROGRESS_MODES,
        help="auto (default): a live view of running jobs on a terminal, one line per finished run otherwise; "
        "live (also plain --progress): the live view always; plain: the lines always",
    )


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", default="table", choices=["table", "json"], help="a narrow table (default) or JSON with every field"
    )


def _dataset_option(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="[DATASET.]KEY=VALUE",
        help=f"dataset loader option, repeatable, e.g. {example} (values parsed as JSON when possible)",
    )


def add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="train and evaluate methods on dataset tasks under one budget",
        description="Defaults come from the packaged configs/default.toml; --config FILE replaces them; "
        "flags override single keys. Everything is checked before any training.",
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
    _dataset_option(run, "n_train=2000 or csv.target=smiling")
    run.add_argument(
        "--eval-on",
        action="append",
        default=[],
        metavar="DATASET[:ROOT]",
        help="transfer, repeatable: also score every trained model on this dataset's test split through the shared "
        "attribute vocabulary (docs/DATASETS.md); refused when the task's attributes do not map",
    )
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    run.add_argument(
        "--hparam-trials", type=int, default=None, help="hyperparameter trials per method (trial 0 = defaults)"
    )
    run.add_argument("--budget", default=None, choices=sorted(BUDGETS), help="see `fairbench list budgets`")
    run.add_argument("--resolution", type=int, default=None, help="input pixels (default: the budget's resolution)")
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
    run.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="auto: cuda when torch sees one")
    run.add_argument("--executor", default=None, choices=["local", "ray"], help="local processes, or a Ray cluster")
    run.add_argument(
        "--workers", type=int, default=None, help="parallel runs (local: child processes; ray: CPUs of a local cluster)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads per run: torch, BLAS and OpenMP (default 1; part of the run id)",
    )
    run.add_argument("--ray-address", default=None, help="join an existing Ray cluster instead of starting a local one")
    run.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock limit of one run; a run past it is stopped and recorded as failed (0 = from the budget)",
    )
    sealing = run.add_mutually_exclusive_group()
    sealing.add_argument(
        "--sealed",
        action="store_const",
        const=True,
        default=None,
        help="every run's fit and predict in a sandboxed child process (default: only plugins from outside this "
        "repository; utkface-board and utkface-board-gpu seal every run)",
    )
    sealing.add_argument(
        "--trust-plugins",
        dest="sealed",
        action="store_const",
        const=False,
        help="run every plugin in this process, trusted with the harness's data and store (debugging)",
    )
    run.add_argument("--out", default=None, help="result store directory (default: runs)")
    run.add_argument("--retry-failed", action="store_true", help="re-run runs recorded as failed")
    run.add_argument(
        "--until",
        default=None,
        metavar="WHEN",
        help="start no run after WHEN (14:30, +2h, +1h30m, or 2026-12-06T14:30): the running ones finish and are "
        "recorded, the rest wait for the same command again (a grid run in sittings); with --dry-run, how many runs "
        "would start before WHEN by the estimate",
    )
    run.add_argument(
        "--rerun-changed",
        action="store_true",
        help="re-run stored runs whose method's code differs from the installed code (run and --dry-run name them)",
    )
    run.add_argument("--force", action="store_true", help="re-run every run of the plan, finished or not")
    run.add_argument(
        "--allow-tiny-groups",
        action="store_true",
        help="run tasks whose validation or test (target class, group) cells hold fewer than 10 images "
        "(refused otherwise; the records name those cells)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the resolved plan and the runs to compute or skip")
    _progress_option(run)
    run.set_defaults(func=cmd_run)


def add_leaderboard(sub: Any, common: argparse.ArgumentParser) -> None:
    lb = sub.add_parser("leaderboard", parents=[common], help="leaderboard tables or the static site of a result store")
    actions = lb.add_subparsers(dest="action", required=True, metavar="{tables,build}")
    tables = actions.add_parser(
        "tables", parents=[common], help="write leaderboard.md/.csv/.json and print the Markdown"
    )
    build = actions.add_parser("build", parents=[common], help="render the static HTML site (open OUT/index.html)")
    for p, out_help in (
        (tables, "output directory (default: the store)"),
        (build, "site directory (default: DIR/site)"),
    ):
        p.add_argument("dir", metavar="DIR", help="result store (the --out of `fairbench run`)")
        p.add_argument("--out", default=None, help=out_help)
        p.add_argument("--selection", default=None, help="model-selection rule (default: val_acc)")
        p.add_argument(
            "--defaults",
            action="store_true",
            help="every method at its defaults (trial 0), as if no search had run: the untuned board",
        )
        p.add_argument(
            "--data-root",
            action="append",
            default=[],
            help="PATH or NAME=PATH: read back the labels the store lacks (accuracy at equal fairness, --intersect)",
        )
        p.add_argument("--intersect", default=None, help="DATASET:A+B: gaps over intersectional groups of A x B")
        p.add_argument("--min-cell", type=int, default=10, help="--intersect: fewest images per (class, cell)")
        p.set_defaults(func=cmd_leaderboard)


def add_data(sub: Any, common: argparse.ArgumentParser) -> None:
    data = sub.add_parser("data", parents=[common], help="check a dataset folder or prepare its image cache")
    actions = data.add_subparsers(dest="action", required=True, metavar="{check,prepare}")
    check = actions.add_parser("check", parents=[common], help="counts per split and group, and problems")
    prepare = actions.add_parser("prepare", parents=[common], help="build the decoded-image cache ahead of runs")
    for p in (check, prepare):
        p.add_argument("name", help="dataset name (see `fairbench list datasets`)")
        p.add_argument("--data-root", required=True, help="the dataset folder")
        _dataset_option(p, "csv.target=smiling")
        p.set_defaults(func=cmd_data)
    _format_option(check)
    check.add_argument(
        "--tasks",
        default=None,
        help="comma-separated tasks whose (target class, group) cells to count (default: every task the dataset "
        "lists; csv: TARGET/S1+S2 of the named columns, default its first target and sensitive column)",
    )
    prepare.add_argument("--resolution", type=int, default=64, help="decoded image size in pixels (default: 64)")
    prepare.add_argument("--workers", type=int, default=None, help="decoding processes (default: the CPU cores)")
    prepare.add_argument("--cache-dir", default=None, help="default: $FAIRBENCH_CACHE or ~/.cache/fairbench")


def add_vlm(sub: Any, common: argparse.ArgumentParser) -> None:
    vlm = sub.add_parser("vlm", parents=[common], help="VLM encoders, and the embedded mini-CLIP of synthfaces")
    actions = vlm.add_subparsers(dest="action", required=True, metavar="{list,train-mini-clip}")
    listing = actions.add_parser("list", parents=[common], help="installed encoders")
    _format_option(listing)
    train = actions.add_parser("train-mini-clip", parents=[common], help="train (or load) the cached mini-CLIP")
    train.add_argument(
        "--seed", type=int, default=0, help="training seed (runs use seed 0 unless --vlm mini-clip:SEED)"
    )
    train.add_argument("--retrain", action="store_true", help="train again even when cached weights exist")
    train.add_argument("--cache-dir", default=None, help="default: $FAIRBENCH_CACHE or ~/.cache/fairbench")
    _progress_option(train)
    for p in (listing, train):
        p.set_defaults(func=cmd_vlm)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairbench", description="Benchmark fair facial attribute classification methods.")
    p.add_argument("-V", "--version", action="version", version=f"fairbench (fairfacebench) {__version__}")
    verbose_help = "log stage numbers and plugin messages as runs go (worker processes too)"
    p.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    common = argparse.ArgumentParser(add_help=False)  # -v after the command as well
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", parents=[common], help="installed methods, datasets, their tasks, or budgets")
    ls.add_argument("what", choices=["methods", "datasets", "tasks", "budgets"], help="what to list")
    ls.add_argument(
        "name",
        nargs="?",
        default=None,
        help="one method or dataset in detail (methods: paper, hyperparameter space, labels, package), "
        "or the tasks of one dataset",
    )
    _format_option(ls)
    ls.set_defaults(func=cmd_list)
    add_run(sub, common)
    add_leaderboard(sub, common)
    export = sub.add_parser("export", parents=[common], help="send a result store to an experiment tracker")
    trackers = export.add_subparsers(dest="tracker", required=True, metavar="{mlflow}")
    mlflow = trackers.add_parser("mlflow", parents=[common], help="every run's params, metrics and per-group table")
    mlflow.add_argument("dir", metavar="DIR", help="result store (the --out of `fairbench run`)")
    mlflow.add_argument("--out", default=None, help="local MLflow store directory (default: DIR/mlflow)")
    mlflow.add_argument("--tracking-uri", default=None, help="an MLflow tracking URI instead of --out (e.g. a server)")
    mlflow.add_argument("--experiment", default="fairbench", help="experiment name (default: fairbench)")
    mlflow.set_defaults(func=cmd_export)
    new = sub.add_parser("new-method", parents=[common], help="scaffold an installable method plugin package")
    new.add_argument("name", help="method name, e.g. my-method")
    new.add_argument("--out", default=".", help="parent directory of the new package (default: here)")
    new.set_defaults(func=cmd_new_method)
    add_data(sub, common)
    add_vlm(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except USER_ERRORS as e:
        # Runs already finished are in the store; re-running the same command resumes from there.
        print(f"{p.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{p.prog} {args.command}: interrupted; finished runs are in the store, the same command resumes")
        return 130
    except BrokenPipeError:  # the reader of the output went away (`fairbench list methods | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is silent
        return 141


if __name__ == "__main__":
    sys.exit(main())
