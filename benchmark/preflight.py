"""Checks of a plan before any training: what a run would otherwise fail on late, as one-line errors.

`check_plan` runs every check (selection rule, device, executor, backbone and
weights, result directory, each dataset's options, data root and tasks) and
then expands the plan into run specs, which checks the remaining names
(methods, tasks, VLM, pool).  Problems a loader tolerates (e.g. a missing image
it skips) come back as warnings.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fairfacebench.backbones import BACKBONES, resolve_weights
from fairfacebench.budget import BUDGET_RESOLUTION, Budget
from fairfacebench.data import MIN_CELL_IMAGES, UNMAPPED, describe_tiny, same_data, tiny_cells
from fairfacebench.errors import ConfigError, DataError, UnknownName, WeightsError
from fairfacebench.plan import ORACLE, Plan, expand, final_rule
from fairfacebench.plugins import Registry
from fairfacebench.provenance import cpu_info
from fairfacebench.settings import default_cache_dir
from fairfacebench.spec import RunSpec
from fairfacebench.speed import BF16_FLAGS, bf16_native
from fairfacebench.store import check_writable
from fairfacebench.transfer import TransferPlan, TransferTarget, pair


@dataclass
class Checked:
    """A plan that passed every check: its run specs, warnings about data the loaders will tolerate, and the
    transfer evaluations of its runs (`eval_on`)."""

    plan: Plan
    specs: list[RunSpec]
    warnings: list[str]
    transfer: TransferPlan = TransferPlan()


def check_plan(plan: Plan, reg: Registry, allow_tiny_groups: bool = False) -> Checked:
    """Every check of `plan`; a task with (target class, group) cells below MIN_CELL_IMAGES in validation or test
    is refused unless `allow_tiny_groups` (then it is a warning, and the runs' records name the cells).  Each
    dataset folder is indexed once for all of them (`data.same_data`)."""
    with same_data():
        return _check_plan(plan, reg, allow_tiny_groups)


def _check_plan(plan: Plan, reg: Registry, allow_tiny_groups: bool) -> Checked:
    reg.selection_rule(plan.selection)
    for name in plan.final_selection:  # before any run, not once the search has finished
        try:
            final_rule(name, reg.selection_rule)
        except UnknownName as e:
            raise ConfigError(f"final_selection: {e.args[0]}; or '{ORACLE}' (its pick on the final seeds)") from None
    check_device(plan.device)
    check_executor(plan.executor)
    check_backbone(plan.backbone, plan.weights)
    check_weights_file(plan.backbone, plan.weights)
    check_precision(plan.budget_profile, plan.device)
    check_out(Path(plan.out))
    check_cache(default_cache_dir())
    check_settings(plan, len(plan.method_names(reg.methods)))
    check_vlm(plan.vlm, reg.encoders)
    warnings: list[str] = []
    for name in plan.datasets:
        plugin = reg.dataset(name)
        options = plan.dataset_options.get(name, {})
        tasks = plan.tasks.get(name, ())
        warnings += check_dataset(plugin, plan.data_roots.get(name), options, tasks, allow_tiny_groups)
    specs = expand(plan, reg)
    check_pools(specs, reg, Path(plan.out))
    transfer, transfer_warnings = check_transfer(plan, specs, reg)
    return Checked(plan, transfer.with_content(specs), warnings + transfer_warnings, transfer)


def check_device(name: str) -> None:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device cuda: torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda}); "
            "use --device cpu or --device auto"
        )


def check_executor(name: str) -> None:
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "--executor ray: Ray is not installed; install it with pip install 'fairfacebench[ray]' "
            "or run with --executor local"
        )


def check_backbone(name: str, weights: str) -> None:
    """The backbone exists and its weights can be found (a download is tried where runs would try it)."""
    if weights not in ("imagenet", "none") and not Path(weights).expanduser().is_file():
        raise WeightsError(f"--weights {weights}: no such file; pass an existing .pth file, 'imagenet' or 'none'")
    if name.startswith("timm:"):
        check_timm_model(name.removeprefix("timm:"))
        return
    if name not in BACKBONES:
        raise UnknownName(f"unknown backbone '{name}'; available: {sorted(BACKBONES)} or 'timm:<model name>'")
    if weights == "imagenet":
        resolve_weights(BACKBONES[name], weights)


def check_precision(budget: Budget, device: str) -> None:
    """A budget with bfloat16 autocast runs only on a CPU that computes bfloat16 natively (elsewhere it is emulated,
    slower than float32, and its numbers belong to no comparison worth having)."""
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if budget.bf16 and on_cpu and not bf16_native():
        raise ConfigError(
            f"budget '{budget.name}' computes in bfloat16 on CPU, which this CPU ({cpu_info()['cpu_model']}) does not "
            f"support natively (no {' or '.join(BF16_FLAGS)} flag): pick a float32 budget (`fairbench list budgets`)"
        )


def check_timm_model(model: str) -> None:
    import timm

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(f'timm:{m}' for m in close)}?" if close else ""
        raise UnknownName(f"unknown backbone 'timm:{model}': timm {timm.__version__} has no model '{model}'{hint}")


def check_vlm(value: str, encoders: dict[str, Any]) -> None:
    """An encoder plugin's own `check(argument)`, if it has one (e.g. its optional packages are installed)."""
    name, _, argument = value.partition(":")
    getattr(encoders.get(name), "check", lambda argument: None)(argument)


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"result store {out} is a file, not a folder: pass --out a folder (new, or an earlier store)")
    resolved = out.expanduser().resolve()
    if resolved.parent == resolved:
        raise ConfigError(
            f"--out {out} is the root of the file system: run folders and leaderboard files would land there; pass "
            "--out a folder of its own (new, or an earlier store), e.g. runs"
        )


def check_cache(cache: Path) -> None:
    """The cache folder (decoded images, embeddings, file digests) can be written: every run writes there."""
    check_writable(cache, "cache folder", "set FAIRBENCH_CACHE to a folder you can write to")


MIN_RESOLUTION = 8  # px: below it a face is a few blotches (the backbones run at any size)
MIN_BOOTSTRAP = 100  # resamples: fewer put a 95% interval's ends on the 2 or 3 most extreme of them
MAX_BOOTSTRAP = 100_000
MAX_RUNS = 100_000  # runs of one plan: more is a typo (a grid of 1,000 runs takes days on a CPU)


def check_settings(plan: Plan, methods: int) -> None:
    """Settings whose bad values would fail every run late (or never end): thread count, resolution, mixing weights,
    bootstrap resamples, the number of runs."""
    cpus = os.cpu_count() or 1
    if plan.threads > cpus:
        raise ConfigError(
            f"--threads {plan.threads}: this machine has {cpus} CPU thread(s); pass at most {cpus} (threads is part of "
            "a run's id: runs with more threads belong to a larger machine)"
        )
    if plan.input_resolution < MIN_RESOLUTION:
        raise ConfigError(
            f"--resolution {plan.input_resolution}: images of fewer than {MIN_RESOLUTION} px a side hold no face; pass "
            f"{MIN_RESOLUTION} or more, or 0 for the budget's own ({plan.budget}: "
            f"{BUDGET_RESOLUTION[plan.budget]} px)"
        )
    if plan.augment.mix != "none" and plan.augment.mix_alpha <= 0:
        raise ConfigError(
            f"augment.mix_alpha = {plan.augment.mix_alpha:g} with mix = '{plan.augment.mix}': mixing weights are drawn "
            "from Beta(alpha, alpha), which needs alpha > 0; set mix_alpha > 0 (default 0.4) or mix = 'none'"
        )
    if plan.bootstrap and not MIN_BOOTSTRAP <= plan.bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(
            f"--bootstrap {plan.bootstrap}: pass 0 (no bootstrap) or {MIN_BOOTSTRAP} to {MAX_BOOTSTRAP:,} resamples "
            "(fewer put a 95% interval's ends on a few extreme resamples; more only costs time and memory)"
        )
    tasks = sum(len(plan.tasks.get(d) or (None,)) for d in plan.datasets)
    runs = tasks * methods * plan.hparam_trials * plan.seeds
    if runs > MAX_RUNS:
        raise ConfigError(
            f"the plan has {runs:,} runs ({tasks} task(s) x {methods} method(s) x {plan.hparam_trials} trial(s) x "
            f"{plan.seeds} seed(s)), more than {MAX_RUNS:,}: lower --hparam-trials or --seeds"
        )


def check_weights_file(backbone: str, weights: str) -> None:
    """A --weights file holds a state dict of the backbone's tensors (read before any run trains)."""
    if weights in ("imagenet", "none"):
        return
    path = Path(weights).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is no weights file
        raise WeightsError(
            f"--weights {weights}: cannot be read as torch weights ({type(exc).__name__}: {str(exc)[:200]}); pass "
            "a .pth file saved with torch.save(model.state_dict())"
        ) from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"--weights {weights}: holds no state dict of tensors; save one with torch.save(net.state_dict())"
        )
    if backbone in BACKBONES:
        expected = BACKBONES[backbone].build().state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
        if missing or unexpected or wrong:
            raise WeightsError(
                f"--weights {weights}: not weights of {backbone} ({len(missing)} of its tensors missing, e.g. "
                f"{missing[:3]}; {len(unexpected)} unknown, e.g. {unexpected[:3]}; {len(wrong)} of another shape, "
                f"e.g. {sorted(wrong)[:3]}); pass weights of the --backbone"
            )


def check_pools(specs: list[RunSpec], reg: Registry, out: Path) -> None:
    """A folder pool holds images (its plugin's check) and does not hold the result store (whose files would change
    the pool's fingerprint, so every run's id, on every run)."""
    for kind, root in sorted({(s.pool.kind, s.pool.root) for s in specs if s.pool.root}):
        plugin = reg.pools.get(kind)
        getattr(plugin, "check", lambda root: None)(root)
        folder = Path(root).expanduser().resolve()
        store = out.expanduser().resolve()
        if kind == "folder" and (store == folder or folder in store.parents):
            raise ConfigError(
                f"--out {out} lies inside the pool folder {root}: the pool would hold the store's files and change "
                "with every run (and with it every run id); put the store outside the pool folder"
            )


def check_dataset(
    plugin: Any, root: str | None, options: dict[str, Any], tasks: tuple[str, ...], allow_tiny_groups: bool = False
) -> list[str]:
    """Options, data root and tasks of one dataset; returns the problems its loader tolerates."""
    check_options(plugin, options)
    report = data_report(plugin, root, options)
    tolerated = [*(report or {}).get("problems", []), *(report or {}).get("warnings", [])]
    warnings = [f"dataset '{plugin.name}' at {root}: {p}" for p in tolerated]
    names = [plugin.task(name).name for name in tasks or (plugin.default_task(**options),)]
    for name in names:
        task = plugin.task(name)
        layout = task_report(report, task.name)
        if layout is not None and not layout.get("splits"):
            problem = (layout.get("problems") or ["no images found"])[0]
            hint = f"`{data_check_command(plugin.name, root, options)}` reports the layout"
            raise DataError(f"{problem} ({hint})")
        check_task(plugin, task, root, (layout or {}).get("groups", {}))
    if report is not None:
        warnings += check_cells(plugin, names, root, options, allow_tiny_groups)
    return warnings


def data_check_command(name: str, root: str | None, options: dict[str, Any]) -> str:
    """The `fairbench data check` command of a dataset as the run names it, its options included."""
    words = ["fairbench", "data", "check", name, "--data-root", str(root)]
    for key, value in options.items():
        words += ["--dataset-option", f"{name}.{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return shlex.join(words)


def check_cells(plugin: Any, tasks: list[str], root: str | None, options: dict[str, Any], allow: bool) -> list[str]:
    """Refuse a task whose validation or test (target class, group) cells hold fewer than MIN_CELL_IMAGES images;
    with `allow`, a warning instead."""
    warnings = []
    for task, cells in (plugin.cells(Path(str(root)), tasks, **options) or {}).items():
        tiny = tiny_cells(cells)
        if not tiny:
            continue
        what = (
            f"dataset '{plugin.name}', task '{task}': (target class|group) cells with fewer than {MIN_CELL_IMAGES} "
            f"images in validation or test: {describe_tiny(tiny)}"
        )
        if not allow:
            raise DataError(
                f"{what}; their group metrics would be noise: choose coarser groups or another task, add images, "
                "or pass --allow-tiny-groups to run anyway (its records then name the cells in 'tiny_groups')"
            )
        warnings.append(f"{what} (--allow-tiny-groups: the records name them in 'tiny_groups')")
    return warnings


def task_report(report: dict[str, Any] | None, task: str) -> dict[str, Any] | None:
    """The part of a check report about `task` (datasets whose splits depend on the task report per task)."""
    if report is None or "tasks" not in report:
        return report
    return report["tasks"].get(task)


def check_task(plugin: Any, task: Any, root: str | None, groups: dict[str, dict[str, dict[str, int]]]) -> None:
    """The task's attributes exist in the data, and its sensitive classes have members where runs need them."""
    offered = set(groups.get("train", {}))
    missing = [a for a in (task.target, *task.sensitive) if offered and a not in offered]
    if missing:
        raise DataError(
            f"task '{task.name}' of dataset '{plugin.name}' needs attribute(s) {missing}, "
            f"but the data at {root} offers {sorted(offered)}"
        )
    for split in ("train", "val"):  # as make_task_data refuses: no member of a sensitive class to fit or select on
        for attr in task.sensitive:
            counts = groups.get(split, {}).get(attr, {})
            empty = [c for c, n in counts.items() if n == 0 and c != "(not applicable)"]
            if empty:
                raise DataError(
                    f"dataset '{plugin.name}', task '{task.name}': sensitive class(es) {empty} of '{attr}' have "
                    f"no members in the '{split}' split of {root}; choose another task or fix the data"
                )


def check_options(plugin: Any, options: dict[str, Any]) -> None:
    """Option names a file dataset's `index` does not take (generated datasets check their own)."""
    index = getattr(plugin, "index", None)
    if index is None or not options:
        return
    params = inspect.signature(index).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(set(params) - {"root", "strict", "task"})  # the harness passes `task` itself
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"dataset '{plugin.name}' has no option(s) {unknown}; its options are {valid}")


def data_report(plugin: Any, root: str | None, options: dict[str, Any]) -> dict[str, Any] | None:
    """The plugin's layout check of `root` (None for generated datasets and plugins without a check)."""
    if not plugin.needs_root:
        return None
    if root is None:
        raise DataError(
            f"dataset '{plugin.name}' is read from disk and no data root was given: pass --data-root "
            f"pointing at {getattr(plugin, 'root_hint', 'the dataset folder')}"
        )
    try:
        return plugin.check(Path(root), **options) if options else plugin.check(Path(root))
    except NotImplementedError:
        return None


def check_transfer(plan: Plan, specs: list[RunSpec], reg: Registry) -> tuple[TransferPlan, list[str]]:
    """Every `eval_on` dataset: its options and data root, a test split to score on, data apart from the runs' own,
    and, for each (dataset, task) of the runs, a mapping of the task's attributes onto it (`transfer.pair`), with its
    fingerprint and the digest of its bytes."""
    targets: list[TransferTarget] = []
    warnings: list[str] = []
    for name in dict.fromkeys(plan.eval_on):
        other = reg.dataset(name)
        root = plan.data_roots.get(name)
        options = plan.dataset_options.get(name, {})
        check_options(other, options)
        if other.needs_root and root is None:
            raise DataError(f"--eval-on {name}: no data root; write --eval-on {name}:ROOT or set [data_roots] {name}")
        report = data_report(other, root, options)
        warnings += [f"dataset '{name}' at {root}: {p}" for p in (report or {}).get("problems", [])]
        refuse_shared_folder(plan, name, root)
        fingerprints: dict[str | None, tuple[str, str]] = {}
        for dataset, task in dict.fromkeys((s.dataset, s.task) for s in specs):
            pairing = pair(reg.dataset(dataset), reg.dataset(dataset).task(task), other)
            layout = task_report(report, pairing.loaded_task) if pairing.loaded_task else report
            if layout is not None and not (layout.get("splits") or {}).get("test"):
                problem = (layout.get("problems") or ["its test split is empty"])[0]
                raise DataError(f"--eval-on {name}: {problem} (`fairbench data check {name} --data-root {root}`)")
            run_options = other.run_options(options)
            if pairing.loaded_task not in fingerprints:
                per_task = {"task": pairing.loaded_task} if pairing.loaded_task else {}
                at = Path(root) if root else None
                fingerprints[pairing.loaded_task] = (
                    other.fingerprint(at, **per_task, **run_options),
                    other.content(at, **per_task, **run_options),
                )
            targets.append(TransferTarget(pairing, root, run_options, *fingerprints[pairing.loaded_task]))
    plan_of = TransferPlan(tuple(targets))
    refuse_groups_at_inference(specs, plan_of, reg)
    return plan_of, warnings


def refuse_shared_folder(plan: Plan, name: str, root: str | None) -> None:
    """A transfer dataset read from the folder a run trains on (utkface and utkface-cb share one) holds its training
    images: its test split would not be another dataset's."""
    if root is None:
        return
    for dataset in plan.datasets:
        own = plan.data_roots.get(dataset)
        if (
            dataset != name
            and own is not None
            and Path(own).expanduser().resolve() == Path(root).expanduser().resolve()
        ):
            raise ConfigError(
                f"--eval-on {name}: its data root {root} is the one {dataset} trains on, so its test split shares "
                f"images with {dataset}'s training split; evaluate on another dataset's folder"
            )


def refuse_groups_at_inference(specs: list[RunSpec], transfer: TransferPlan, reg: Registry) -> None:
    """A method that reads each image's group at inference gets the run's own groups: only one-to-one readings of the
    sensitive attributes give them on another dataset."""
    for spec in specs:
        cls = reg.method(spec.method)
        if not cls.label_use(spec.hparams).sensitive_at_inference:
            continue
        for target in transfer.for_spec(spec):
            if not target.pairing.groups_invertible:
                coarse = [
                    f"'{own.attribute}' ({len(own.codes)} classes) reads only as {own.concept} "
                    f"({len(set(own.codes) - {UNMAPPED})} classes)"
                    for own, _ in target.pairing.sensitive
                    if not own.one_to_one
                ]
                raise ConfigError(
                    f"--eval-on {target.pairing.dataset}: method {spec.method} reads each image's group of "
                    f"{spec.dataset} task '{spec.task}' at inference, but on {target.pairing.dataset} "
                    f"{', '.join(coarse)}; evaluate it without --eval-on {target.pairing.dataset}"
                )
