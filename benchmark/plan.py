"""The run plan: the packaged default config, a config file and flags, validated once into typed settings.

Every run of a comparison is derived from one :class:`Plan`: its run specs,
budgets and data settings.  Wrong types, unknown keys and out-of-range values
are refused here, before any training, with one line naming the key and its source.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fairfacebench.budget import BUDGET_RESOLUTION, BUDGETS, Budget, get_budget
from fairfacebench.content import file_sha256, folder_content
from fairfacebench.errors import ConfigError, VLMUnavailable
from fairfacebench.plugins import registry
from fairfacebench.settings import MIX_KINDS, Augment
from fairfacebench.spec import RunSpec, spec_hash

CONFIGS = files("fairfacebench") / "configs"
DEFAULT_CONFIG = CONFIGS / "default.toml"
# ---------------------------------------------------------------- value checks, one line per error

Check = Callable[[str, Any], Any]


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"'{key}' must be {expected}, got {value!r} ({type(value).__name__})")


def integer(minimum: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(key, f"an integer >= {minimum}", value)
        return value

    return check


def number(minimum: float) -> Check:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < math.inf:
            raise _fail(key, f"a finite number >= {minimum:g}", value)
        return float(value)

    return check


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(key, "a string", value)
    return value


def one_of(options: tuple[str, ...]) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise _fail(key, f"one of {list(options)}", value)
        return value

    return check


def sealing(key: str, value: Any) -> bool | str:
    if not (isinstance(value, bool) or value == "auto"):
        raise _fail(key, 'true, false or "auto"', value)
    return value


def names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "a list of names", value)
    return tuple(value)


def methods(key: str, value: Any) -> str | tuple[str, ...]:
    if value == []:
        raise ConfigError(f"'{key}' names no method: name one or more (see `fairbench list methods`), or 'all'")
    return "all" if value == "all" else names(key, value)


def table_of(inner: Check) -> Check:
    def check(key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(key, "a table", value)
        return {k: inner(f"{key}.{k}", v) for k, v in value.items()}

    return check


def options_table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "a table of option = value", value)
    return dict(value)


AUGMENT_CHECKS: dict[str, Check] = {
    "flip": boolean,
    "crop": integer(0),
    "jitter": number(0.0),
    "mix": one_of(MIX_KINDS),
    "mix_alpha": number(0.0),
}


def augment(key: str, value: Any) -> Augment:
    if not isinstance(value, dict):
        raise _fail(key, "a table", value)
    unknown = sorted(set(value) - set(AUGMENT_CHECKS))
    if unknown:
        raise ConfigError(f"[{key}]: unknown key(s) {unknown}; valid keys: {sorted(AUGMENT_CHECKS)}")
    return Augment(**{k: AUGMENT_CHECKS[k](f"{key}.{k}", v) for k, v in value.items()})


SCHEMA: dict[str, Check] = {
    "methods": methods,
    "datasets": names,
    "tasks": table_of(names),
    "eval_on": names,
    "seeds": integer(1),
    "hparam_trials": integer(1),
    "search_seeds": integer(0),
    "final_selection": names,
    "budget": one_of(tuple(BUDGETS)),
    "resolution": integer(0),
    "selection": text,
    "backbone": text,
    "weights": text,
    "bootstrap": integer(0),
    "vlm": text,
    "pool": text,
    "device": one_of(("auto", "cpu", "cuda")),
    "executor": one_of(("local", "ray")),
    "workers": integer(1),
    "threads": integer(1),
    "ray_address": text,
    "run_timeout_s": number(0.0),
    "sealed": sealing,
    "out": text,
    "augment": augment,
    "data_roots": table_of(text),
    "dataset_options": table_of(options_table),
}
MERGED_TABLES = ("augment", "data_roots", "dataset_options")  # a later source updates these key by key


@dataclass(frozen=True)
class Plan:
    """A validated comparison: what runs, under which budget and data settings, and where results go."""

    methods: str | tuple[str, ...]
    datasets: tuple[str, ...]
    tasks: dict[str, tuple[str, ...]]
    eval_on: tuple[str, ...]  # datasets whose test splits every run's model is also evaluated on (transfer.py)
    seeds: int
    hparam_trials: int
    search_seeds: int  # 0: every trial on every seed; N: trials > 0 on seeds < N, then the chosen ones on the rest
    final_selection: tuple[str, ...]  # selection rules (or 'test oracle') whose pick runs on the seeds after the search
    budget: str
    resolution: int
    selection: str
    backbone: str
    weights: str
    bootstrap: int
    vlm: str
    pool: str
    device: str
    executor: str
    workers: int
    threads: int
    ray_address: str
    run_timeout_s: float  # wall-clock limit of one run; 0 = derived from the budget (executors.time_limit)
    sealed: bool | str  # true: every run in a sandboxed child; "auto": runs of plugins from outside this repository
    out: str
    augment: Augment
    data_roots: dict[str, str]
    dataset_options: dict[str, dict[str, Any]]

    @property
    def budget_profile(self) -> Budget:
        return get_budget(self.budget)

    @property
    def input_resolution(self) -> int:
        """The resolution images are decoded at: the plan's, or the one its budget is sized for."""
        return self.resolution or BUDGET_RESOLUTION[self.budget]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored in every run record)."""
        out = asdict(self)
        out["methods"] = self.methods if isinstance(self.methods, str) else list(self.methods)
        out["datasets"] = list(self.datasets)
        out["eval_on"] = list(self.eval_on)
        out["final_selection"] = list(self.final_selection)
        out["tasks"] = {k: list(v) for k, v in self.tasks.items()}
        return out

    def seeds_of(self, trial: int) -> range:
        """The seeds a trial runs on before any selection: all for trial 0 (the defaults, the board's "default"
        row), the search seeds for the others when the plan searches first."""
        return range(self.seeds) if trial == 0 or not self.search_seeds else range(min(self.search_seeds, self.seeds))

    def method_names(self, installed: dict[str, type]) -> list[str]:
        """The plan's methods; "all" is every installed method except ablations (ask for those by name)."""
        if self.methods != "all":
            return list(self.methods)
        return sorted(name for name, cls in installed.items() if not getattr(cls, "ablation_of", None))


def read_toml(path: Path | Any) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror}); pass an existing TOML file") from exc


def packaged_configs() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in CONFIGS.iterdir() if p.name.endswith(".toml"))


def config_file(name: str | Path) -> Path | Any:
    """A config file path, or the name of a packaged config (e.g. `utkface-board`)."""
    path = Path(name)
    if path.exists() or path.suffix:
        return path
    packaged = CONFIGS / f"{name}.toml"
    if packaged.is_file():
        return packaged
    raise ConfigError(f"config '{name}' is neither a file nor a packaged config; packaged: {packaged_configs()}")


def load_plan(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    dataset_flags: Callable[[tuple[str, ...]], dict[str, Any]] | None = None,
) -> Plan:
    """The packaged defaults, updated by the file at `path`, then by `flags` (None values ignored), validated.

    `dataset_flags(datasets)` gives the flags whose meaning depends on the plan's datasets (`--tasks`,
    `--data-root`, `--dataset-option` without a dataset name): they are merged as the command line's too.
    """
    raw = read_toml(DEFAULT_CONFIG)
    origin = dict.fromkeys(raw, "the packaged default config")
    config = None if path is None else config_file(path)
    sources = [(str(path), read_toml(config))] if config is not None else []
    sources.append(("the command line", flags or {}))
    for source, values in sources:
        merge_source(raw, origin, source, values)
    if dataset_flags is not None:
        datasets = checked_value(raw, origin, "datasets")
        merge_source(raw, origin, "the command line", dataset_flags(datasets))
    missing = sorted(set(SCHEMA) - set(raw))
    if missing:
        raise ConfigError(f"the packaged default config lacks key(s) {missing}; reinstall fairfacebench")
    return Plan(**{key: checked_value(raw, origin, key) for key in SCHEMA})


def merge_source(raw: dict[str, Any], origin: dict[str, str], source: str, values: dict[str, Any]) -> None:
    """Update `raw` with one source's values (None values ignored); tables in MERGED_TABLES merge key by key."""
    values = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(values) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(SCHEMA)}")
    for key, value in values.items():
        merge = key in MERGED_TABLES and isinstance(value, dict) and isinstance(raw.get(key), dict)
        if key == "dataset_options" and merge:
            value = {ds: {**raw[key].get(ds, {}), **opts} for ds, opts in value.items()}
        raw[key] = {**raw[key], **value} if merge else value
        origin[key] = source


def checked_value(raw: dict[str, Any], origin: dict[str, str], key: str) -> Any:
    """One key of the merged config, checked; an error names the source that set it."""
    try:
        return SCHEMA[key](key, raw[key])
    except ConfigError as exc:
        raise ConfigError(f"{origin[key]}: {exc}") from None


# ---------------------------------------------------------------- from a plan to run specs


def trial_hparams(method_cls: type, trial: int) -> dict[str, Any]:
    """Trial 0 is the method's defaults; trial k > 0 draws each hyperparameter from its own seeded stream.

    The stream of a draw is seeded by (method, trial, hyperparameter name), so
    adding a hyperparameter to a method leaves the other draws of its trials unchanged.
    """
    if hasattr(method_cls, "trial_hparams"):  # a method the harness knows from a card (`sealed.DescribedMethod`)
        return method_cls.trial_hparams(trial)
    if trial == 0:
        return method_cls.default_hparams()
    out = {}
    for name, hp in sorted(method_cls.search_space().items()):
        seed = int(spec_hash({"method": method_cls.name, "trial": trial, "hparam": name}), 16) % 2**32
        out[name] = hp.sample(np.random.default_rng(seed))
    return out


def resolve_vlm(value: str, dataset: str, encoders: dict[str, Any]) -> str:
    """A concrete encoder name for a run: 'auto' -> the encoder embedded for `dataset` or 'none'; others are checked."""
    if value == "auto":
        embedded = [name for name, plugin in sorted(encoders.items()) if dataset in getattr(plugin, "embedded_for", ())]
        return embedded[0] if embedded else "none"
    if value != "none" and value.partition(":")[0] not in encoders:
        raise VLMUnavailable(
            f"--vlm {value}: unknown encoder '{value.partition(':')[0]}'; "
            f"use 'auto', 'none' or one of {sorted(encoders)} "
            "(e.g. open_clip:ViT-B-32:laion2b_s34b_b79k, open_clip:ViT-B-32:/path/to/checkpoint, mini-clip)"
        )
    return value


def resolve_pool(value: str, dataset: Any, reg: Any, data_roots: dict[str, str]) -> dict[str, Any]:
    """The unlabeled pool of a comparison: 'auto' (the dataset's own, if any), 'none', or KIND:SOURCE of a pool plugin.

    The result names the pool ('source': a dataset or folder name), where it lives ('root', a path that is never
    part of a run id) and what it holds ('fingerprint').
    """
    if value == "auto":
        return {"kind": "dataset", "source": dataset.name} if dataset.has_pool else {"kind": "none"}
    if value == "none":
        return {"kind": "none"}
    kind, sep, source = value.partition(":")
    if not sep or kind not in reg.pools or not source:
        raise ConfigError(
            f"pool '{value}': write auto, none or KIND:SOURCE with KIND one of {sorted(reg.pools)} "
            "(e.g. folder:/path/to/images, dataset-train:utkface)"
        )
    return reg.pools[kind].resolve(source, data_roots, reg)


def content_of(data: str, weights: str, pool: dict[str, Any], vlm: str = "none", reg: Any = None) -> dict[str, str]:
    """The content digests of a comparison's runs (`RunSpec.content`): its data's, its --weights file's (the sha256
    its record keeps in `weights`), its pool's (a folder's files, or the source dataset's of a dataset-train pool) and
    its encoder's weights files given by path (the sha256 its record keeps in `vlm`), each when there is one."""
    out = {"data": data} if data else {}
    if weights not in ("imagenet", "none") and Path(weights).expanduser().is_file():
        out["weights"] = file_sha256(Path(weights).expanduser())
    if pool.get("kind") == "folder" and pool.get("root"):
        out["pool"] = folder_content(Path(pool["root"]))
    elif pool.get("kind") == "dataset-train":
        root = pool.get("root")
        out["pool"] = (reg or registry()).dataset(pool["source"]).content(Path(root) if root else None)
    if vlm != "none":
        name, _, argument = vlm.partition(":")
        digest = getattr((reg or registry()).encoders[name], "weights_digest", None)
        out["vlm"] = digest(argument) if digest is not None else ""
    return {part: digest for part, digest in out.items() if digest}


def read_by(cls: type, content: dict[str, str]) -> dict[str, str]:
    """The digests of what a method reads: a pool's only when it reads the pool, an encoder's when it loads one."""
    return {k: v for k, v in content.items() if (k != "pool" or cls.needs_pool) and (k != "vlm" or cls.needs_vlm)}


def expand(plan: Plan, reg: Any = None) -> list[RunSpec]:
    """Every run of the plan: dataset x task x method x trial x seed, all under the same budget and data settings.

    The data of each dataset is fingerprinted once here (files, sizes, labels), so a run's id follows its data; its
    bytes are digested too (`RunSpec.content`, outside the id), so a resumed grid recomputes a run whose data changed.
    Runs come in waves, dataset by dataset: the defaults (trial 0) seed by seed, each seed for every task and
    method, then the search trials; so an interrupted grid leaves whole seeds rather than all seeds of a few methods.
    """
    reg = reg or registry()
    budget = plan.budget_profile
    specs = []
    for ds_name in plan.datasets:
        ds = reg.dataset(ds_name)
        root = plan.data_roots.get(ds_name)
        options = ds.run_options(plan.dataset_options.get(ds_name, {}))
        vlm = resolve_vlm(plan.vlm, ds_name, reg.encoders)
        pool = resolve_pool(plan.pool, ds, reg, plan.data_roots)
        for task in plan.tasks.get(ds_name) or (ds.default_task(**options),):
            ds.task(task)  # fail early on an unknown task, listing the valid ones
            per_task = {"task": task} if ds.splits_per_task else {}
            fingerprint = ds.fingerprint(Path(root) if root else None, **per_task, **options)
            data = ds.content(Path(root) if root else None, **per_task, **options)
            content = content_of(data, plan.weights, pool, vlm, reg)
            for m_name in plan.method_names(reg.methods):
                cls = reg.method(m_name)
                for trial in range(plan.hparam_trials):
                    hp = trial_hparams(cls, trial)
                    for seed in plan.seeds_of(trial):
                        specs.append(
                            RunSpec(
                                dataset=ds_name,
                                task=task,
                                method=m_name,
                                hparams=hp,
                                seed=seed,
                                budget=budget,
                                resolution=plan.input_resolution,
                                backbone=plan.backbone,
                                weights=plan.weights,
                                augment=plan.augment,
                                trial=trial,
                                data_root=root,
                                data_fingerprint=fingerprint,
                                dataset_options=options,
                                bootstrap=plan.bootstrap,
                                vlm=vlm,
                                pool=pool,
                                method_version=getattr(cls, "version", 1),
                                threads=plan.threads,
                                content=read_by(cls, content),
                            )
                        )
    tasks = {(s.dataset, s.task): i for i, s in enumerate(specs)}
    return sorted(specs, key=lambda s: (plan.datasets.index(s.dataset), s.trial > 0, s.seed, tasks[s.dataset, s.task]))


def expand_final(plan: Plan, specs: list[RunSpec], records: list[Any], reg: Any = None) -> tuple[list[RunSpec], int]:
    """The runs after the search: for each (dataset, task, method) whose search runs have all finished, the trial
    each rule of `plan.final_selection` picks on the search seeds (validation metrics only), on the remaining seeds;
    and how many (dataset, task, method) cells still wait for their search.  Trial 0 already runs on every seed.
    """
    if not plan.search_seeds or plan.search_seeds >= plan.seeds:
        return [], 0
    reg = reg or registry()
    finished = {r.run_id: r for r in records}
    final, waiting = [], 0
    for cell_specs in search_cells(plan, specs).values():
        if any(s.run_id not in finished for s in cell_specs):
            waiting += 1
            continue
        by_trial: dict[int, list[Any]] = {}
        for s in cell_specs:
            by_trial.setdefault(s.trial, []).append(finished[s.run_id])
        chosen = {search_choice(by_trial, final_rule(name, reg.selection_rule)) for name in plan.final_selection}
        template = {s.trial: s for s in cell_specs}
        final += [
            replace(template[trial], seed=seed)
            for trial in sorted(chosen - {0, None})
            for seed in range(plan.search_seeds, plan.seeds)
        ]
    return final, waiting


ORACLE = "test oracle"


@dataclass(frozen=True)
class TestOracle:
    """The trial with the best mean test accuracy on the search seeds: an upper bound on selection for accuracy
    that no method may claim.  Not a selection rule (never registered, never `--selection`): a plan may still run
    its pick on the final seeds (`final_selection` naming it) so that the oracle regime stands on every seed, and
    the leaderboard reports it as a regime (`leaderboard.search`)."""

    name: str = ORACLE
    description: str = (
        "the trial with the best test accuracy on the search seeds: an upper bound on selection for accuracy, "
        "chosen on test labels, that no method may claim"
    )

    @staticmethod
    def key(record: Any) -> tuple:
        acc = record.test_metric("acc")
        return (-math.inf if acc is None or math.isnan(acc) else float(acc),)


def final_rule(name: str, lookup: Callable[[str], Any]) -> Any:
    """A regime by name: the test oracle, or the selection rule `lookup(name)` finds (a registry's
    `selection_rule`).  The one name-to-rule mapping of `final_selection` (whose oracle pick then runs on the final
    seeds too, so that the oracle regime is compared over every seed like the rules'), of the leaderboard's oracle
    board and of the compute tally; the oracle stays an upper bound no method may claim, and never a `--selection`."""
    return TestOracle() if name == ORACLE else lookup(name)


def search_cells(plan: Plan, specs: list[RunSpec]) -> dict[tuple[str, str, str], list[RunSpec]]:
    """(dataset, task, method) -> its runs on the search seeds, every trial."""
    cells: dict[tuple[str, str, str], list[RunSpec]] = {}
    for spec in specs:
        if spec.seed < plan.search_seeds:
            cells.setdefault((spec.dataset, spec.task, spec.method), []).append(spec)
    return cells


def possible_final(plan: Plan, specs: list[RunSpec], records: list[Any]) -> list[RunSpec]:
    """The most runs the chosen trials of the methods still searching can add (for a plan's estimate): each rule of
    `plan.final_selection` picking a different trial other than 0, on the remaining seeds.  None at all when every
    rule keeps the defaults."""
    if not plan.search_seeds or plan.search_seeds >= plan.seeds:
        return []
    finished = {r.run_id for r in records}
    out = []
    for cell_specs in search_cells(plan, specs).values():
        if all(s.run_id in finished for s in cell_specs):
            continue
        template = {s.trial: s for s in cell_specs}
        trials = sorted(set(template) - {0})[: len(plan.final_selection)]
        out += [replace(template[t], seed=seed) for t in trials for seed in range(plan.search_seeds, plan.seeds)]
    return out


def search_choice(by_trial: dict[int, list[Any]], rule: Any) -> int | None:
    """The trial a selection rule picks from the search seeds' runs: the highest mean of the rule's key over the
    search seeds; a trial with a failed run there is not scored (it counts as the worst); ties go to the lowest trial;
    None if every trial has a failed run.  A tuple key is averaged element by element and compared in order (for
    `val_acc@val_eod_max<=EPS`: the fraction of search seeds where the trial is feasible, then the mean of the second
    elements, accuracy where feasible and -eod_max where not; docs/METRICS.md)."""
    scores = {}
    for trial, runs in by_trial.items():
        keys = [rule.key(r) for r in runs if r.ok]
        if len(keys) == len(runs):
            scores[trial] = tuple(sum(k[i] for k in keys) / len(keys) for i in range(len(keys[0])))
    return max(scores, key=lambda t: (scores[t], -t)) if scores else None
