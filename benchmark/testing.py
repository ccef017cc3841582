"""The conformance kit for method plugins, used like scikit-learn's ``check_estimator``::

    from fairfacebench.testing import check_method
    check_method(MyMethod)   # raises ConformanceError naming every failed check

It fits the method twice on a tiny synthfaces task under the smoke budget,
with differently poisoned test labels, and checks the budget, test-label
isolation, determinism, the predictions and the declared requirements.
What each check catches: CONTRIBUTING.md, "Testing it: the conformance kit".
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from fairfacebench.audit import (
    SYSTEM_READS,
    ForbiddenAccess,
    harness_patches,
    home_of,
    import_folders,
    non_code_folders,
    package_folders,
    watching,
)
from fairfacebench.budget import BudgetExceeded, get_budget
from fairfacebench.context import FitSettings, IsolationError
from fairfacebench.data import LabeledSplit, LoadedDataset, TaskData, UnlabeledPool, make_task_data
from fairfacebench.errors import VLMUnavailable
from fairfacebench.fitting import fit_under_meter, predict_under_meter
from fairfacebench.guards import PredictorChanged, UnmeteredCompute
from fairfacebench.plugins import trusted_registry
from fairfacebench.settings import Augment, default_cache_dir

TINY_SYNTHFACES = {"n_train": 320, "n_val": 48, "n_test": 48, "n_pool": 96}
# Small synthfaces splits for end-to-end tests of a plugin (`--dataset-option` values): seconds on a 2-core CPU.
SMALL_SYNTHFACES = {"n_train": 320, "n_val": 96, "n_test": 160}
SUM_TOLERANCE = 1e-4
SAME_TOLERANCE = 1e-6


class ConformanceError(AssertionError):
    """A method broke the plugin contract; the message lists every check and its result."""

    def __init__(self, report: "ConformanceReport"):
        super().__init__(str(report))
        self.report = report


class ConformanceWarning(UserWarning):
    """Not a contract violation, but worth fixing (e.g. labels declared and never read)."""


@dataclass
class ConformanceReport:
    """What check_method found: one (check, status, message) line per finding."""

    method: str
    hparams: dict[str, Any]
    results: list[tuple[str, str, str]] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    steps: int | None = None
    variant: str | None = None

    def add(self, check: str, ok: bool, message: str) -> None:
        self.results.append((check, "PASS" if ok else "FAIL", message))

    def warn(self, check: str, message: str) -> None:
        self.results.append((check, "WARN", message))
        warnings.warn(f"{self.method}: {check}: {message}", ConformanceWarning, stacklevel=4)

    @property
    def failures(self) -> list[str]:
        return [f"{c}: {m}" for c, s, m in self.results if s == "FAIL"]

    @property
    def warnings(self) -> list[str]:
        return [f"{c}: {m}" for c, s, m in self.results if s == "WARN"]

    def __str__(self) -> str:
        head = f"conformance of method '{self.method}' ({len(self.failures)} failed, {len(self.warnings)} warnings)"
        return "\n".join([head, *(f"  {s} {c}: {m}" for c, s, m in self.results)])


class PoisonedTest:
    """The test split as the kit hands it to the harness: real images, random labels that record every read."""

    def __init__(self, split: LabeledSplit, poison: int, n_classes: int, n_groups: int):
        rng = np.random.default_rng(poison)
        self.images, self.ids = split.images, split.ids
        self._y = rng.integers(0, n_classes, len(split))
        self._a = rng.integers(0, n_groups, len(split))
        self.reads: set[str] = set()

    @property
    def y(self) -> np.ndarray:
        self.reads.add("test.target")
        raise TestLabelsRead("the method read the test split's target labels during fit")

    @property
    def a(self) -> np.ndarray:
        self.reads.add("test.sensitive")
        raise TestLabelsRead("the method read the test split's sensitive labels during fit")

    def __len__(self) -> int:
        return len(self.images)


class TestLabelsRead(AssertionError):
    """A guard of the kit: a method reached the test labels (nothing reachable from ctx leads there)."""


class GuardedTruth(dict):
    """The pool's hidden ground truth as the kit holds it: any access raises (methods never see it)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TestLabelsRead("the method read the unlabeled pool's hidden ground truth during fit")

    __getitem__ = get = items = keys = values = __iter__ = __contains__ = _refuse


def reachable_truth(root: Any, limit: int = 20_000) -> list[str]:
    """Attribute paths from `root` to held-back data (test labels, pool truth, the harness's task data)."""
    forbidden = (PoisonedTest, GuardedTruth, TaskData, UnlabeledPool)
    leaf = (np.ndarray, torch.Tensor, str, bytes, int, float, bool, type(None), type, torch.device)
    seen: set[int] = set()
    queue, found = [(root, "ctx")], []
    while queue and len(seen) < limit:
        obj, path = queue.pop()
        if id(obj) in seen or isinstance(obj, leaf):
            continue
        seen.add(id(obj))
        if isinstance(obj, forbidden):
            found.append(f"{path} ({type(obj).__name__})")
            continue
        if isinstance(obj, dict):
            queue += [(v, f"{path}[{k!r}]") for k, v in obj.items()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            queue += [(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        else:
            queue += [(v, f"{path}.{k}") for k, v in (getattr(obj, "__dict__", None) or {}).items()]
    return found


@dataclass
class Outcome:
    """One fit and predict: the scores and what the method touched."""

    val: np.ndarray
    test: np.ndarray
    steps: int
    touched: set[str]
    test_reads: set[str]
    variant: str | None
    forward_samples: int = 0
    forward_limit: int | None = None
    unmetered: str = ""
    leaks: list[str] = field(default_factory=list)
    tallied_steps: int = 0  # optimizer steps the meter charged, as told at each charge (a reset cannot undo them)
    reached: list[str] = field(default_factory=list)  # files, processes, the network the method tried
    threads: list[str] = field(default_factory=list)  # threads the method left running after fit or predict


@lru_cache(maxsize=4)
def _load(resolution: int, options: str, with_pool: bool) -> tuple[LoadedDataset, TaskData]:
    """The kit's dataset and task, loaded once per process; the test labels it holds are poison from the start."""
    plugin, opts = trusted_registry().dataset("synthfaces"), json.loads(options)
    ds = plugin.load(None, resolution, default_cache_dir(), **opts)
    pool = plugin.pool(None, resolution, default_cache_dir(), **opts) if with_pool else None
    task = make_task_data(ds, plugin.tasks[0], pool)
    poison_everywhere(ds, task, 0)
    return ds, task


def tiny_task(needs_pool: bool, resolution: int = 32, dataset_options: dict[str, Any] | None = None) -> TaskData:
    """The kit's task: synthfaces' default task on tiny splits (loaded once per process)."""
    return kit_data(needs_pool, resolution, dataset_options)[1]


def kit_data(
    needs_pool: bool, resolution: int = 32, dataset_options: dict[str, Any] | None = None
) -> tuple[LoadedDataset, TaskData]:
    """The kit's dataset and task (loaded once per process)."""
    return _load(resolution, json.dumps({**TINY_SYNTHFACES, **(dataset_options or {})}, sort_keys=True), needs_pool)


def poison_everywhere(ds: LoadedDataset, task: TaskData, poison: int) -> None:
    """Every test label the kit holds, in the loaded dataset and in the task, becomes a draw seeded by `poison`, in
    place: a method that finds them anyhow (the objects of the process, the call stack) reads the poison of this
    fit, so its predictions change with the poison.  The kit never needs the true test labels."""
    rng = np.random.default_rng(poison)
    for name, codes in ds.splits["test"].labels.items():
        codes[:] = rng.integers(0, ds.attributes[name].n, len(codes))
    task.test.y[:] = rng.integers(0, task.n_classes, len(task.test))
    task.test.a[:] = rng.integers(0, task.n_groups, len(task.test))


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread: faster for tiny models on shared CPUs, and no thread scheduling in the determinism check."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reachable_files(method_cls: type, weights: str) -> tuple[list[str], list[str]]:
    """What a fit may open (Python's folders, the method's package, pretrained weights, the encoders' folders,
    the machine's /proc, /sys and /dev) and what inside those it may not (folders of the import package without
    code: stored results, say)."""
    cache = default_cache_dir()
    allowed = [*import_folders(), home_of(method_cls), str(Path(torch.hub.get_dir())), *SYSTEM_READS]
    allowed += [str(cache / sub) for sub in ("vlm", "embeddings", "open_clip")]
    allowed += [str(Path(weights).resolve())] if Path(weights).is_file() else []
    return allowed, [m for folder in package_folders() for m in non_code_folders(folder)]


def fit_predict(
    method_cls: type,
    clean: TaskData,
    poison: int,
    hparams: dict,
    seed: int,
    budget: Any,
    vlm: Any,
    backbone: str,
    weights: str,
    dataset: LoadedDataset | None = None,
) -> Outcome:
    """Fit on the task with poisoned test labels as the harness does (`fit_under_meter`), and predict its validation
    and test images as the harness does (`predict_under_meter`), files and processes watched.  `dataset` (the
    task's loaded dataset) is poisoned along with the task."""
    if dataset is not None:
        poison_everywhere(dataset, clean, poison)
    test = PoisonedTest(clean.test, poison, clean.n_classes, clean.n_groups)
    pool = None if clean.pool is None else dataclasses.replace(clean.pool, hidden=GuardedTruth(clean.pool.hidden))
    data = dataclasses.replace(clean, test=test, pool=pool)
    settings = FitSettings(
        hparams, seed, budget, torch.device("cpu"), Augment(), backbone, weights, transductive=method_cls.transductive
    )
    leaks: list[str] = []
    tallied = [0]

    def tally(kind: str, n: int, where: str) -> None:
        tallied[0] += n if kind == "step" else 0

    at_inference = method_cls.label_use(hparams).sensitive_at_inference
    requests = [(split.images, split.a if at_inference else None) for split in (clean.val, clean.test)]
    threads_before = set(threading.enumerate())
    allowed, refused = reachable_files(method_cls, weights)
    with watching(method_cls, allowed, refused) as watch:
        fitted = fit_under_meter(
            method_cls, data, settings, vlm, before_fit=lambda ctx: leaks.extend(reachable_truth(ctx)), tally=tally
        )
        left = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        val, test_scores = predict_under_meter(fitted, requests).scores
    left += [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive() and t.name not in left]
    return Outcome(
        np.asarray(val),
        np.asarray(test_scores),
        fitted.steps,
        fitted.touched,
        set(test.reads),
        fitted.log.variant,
        fitted.forward_samples,
        fitted.forward_limit,
        fitted.violations.describe() if fitted.violations else "",
        leaks,
        tallied[0],
        watch.seen,
        left,
    )


def _attempt(report: ConformanceReport, method_cls: type, run: Any) -> Outcome | None:
    """One fit; a raised exception becomes a failed check (and the remaining checks are skipped)."""
    try:
        return run()
    except BudgetExceeded as exc:
        report.add("budget", False, f"BudgetExceeded: {exc}")
    except UnmeteredCompute as exc:
        report.add("metering", False, f"UnmeteredCompute: {exc}")
    except PredictorChanged as exc:
        report.add("prediction", False, f"PredictorChanged: {exc}")
    except ForbiddenAccess as exc:
        report.add("reach", False, f"{exc} ({where(exc, method_cls)})")
    except TestLabelsRead as exc:
        report.add("test labels", False, f"{exc} ({where(exc, method_cls)})")
    except IsolationError as exc:
        report.add("requirements", False, f"{exc} ({where(exc, method_cls)})")
    except VLMUnavailable as exc:
        report.add(
            "requirements",
            False,
            f"needs a vision-language encoder and none was given ({exc}); "
            "pass check_method(..., vlm=ENCODER), or let the method run a named fallback variant without one",
        )
    except Exception as exc:
        report.add("fit", False, f"fit or predict raised {type(exc).__name__}: {exc} ({where(exc, method_cls)})")
    return None


def where(exc: BaseException, method_cls: type) -> str:
    """The innermost line of the method's own module on the traceback, and where the error was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    home = inspect.getsourcefile(method_cls)
    own = [f for f in frames if f.filename == home]
    raised = f"{frames[-1].filename}:{frames[-1].lineno}"
    return (
        f"at {own[-1].filename}:{own[-1].lineno} in {own[-1].name}, raised at {raised}"
        if own
        else f"raised at {raised}"
    )


def same(a: Outcome, b: Outcome) -> bool:
    """Identical predictions (up to float round-off) on validation and test images."""
    return all(
        x.shape == y.shape and np.allclose(x, y, rtol=0, atol=SAME_TOLERANCE, equal_nan=True)
        for x, y in ((a.val, b.val), (a.test, b.test))
    )


def check_scores(report: ConformanceReport, split: str, scores: np.ndarray, n: int, n_classes: int) -> None:
    problems = []
    if scores.shape != (n, n_classes):
        problems.append(f"shape {scores.shape}, expected ({n}, {n_classes})")
    elif not np.isfinite(scores).all():
        problems.append(f"{int((~np.isfinite(scores)).sum())} non-finite values")
    else:
        if scores.min() < -SUM_TOLERANCE or scores.max() > 1 + SUM_TOLERANCE:
            problems.append(f"values outside [0, 1] (min {scores.min():.4g}, max {scores.max():.4g})")
        worst = float(np.abs(scores.sum(axis=1) - 1).max())
        if worst > SUM_TOLERANCE:
            problems.append(
                f"rows sum to 1 only within {worst:.3g} (tolerance {SUM_TOLERANCE}): return probabilities, e.g. softmax"
            )
    report.add(
        "predictions",
        not problems,
        f"{split} scores " + ("; ".join(problems) if problems else f"are ({n}, {n_classes}) probabilities"),
    )


def check_requirements(
    report: ConformanceReport, method_cls: type, hparams: dict, touched: set[str], variant: str | None, vlm: Any
) -> None:
    declared = method_cls.label_use(hparams)
    reads = sorted(t for t in touched if t.endswith((".target", ".sensitive")) and not t.startswith("test."))
    undeclared = [t for t in reads if not declared.allows(t)]
    report.add(
        "requirements",
        not undeclared,
        f"read {undeclared} which label_use(hparams) = '{declared.summary()}' does not declare"
        if undeclared
        else f"label reads {reads} are declared by '{declared.summary()}'",
    )
    unread = [
        f"{split}.{kind}"
        for kind, spec in (("target", declared.target), ("sensitive", declared.sensitive))
        if spec
        for split in spec.split("+")
        if f"{split}.{kind}" not in touched
    ]
    if unread:
        report.warn(
            "requirements", f"declares {unread} but never read them; the leaderboard over-states its supervision"
        )
    for key, attr, what in (("pool", "needs_pool", "an unlabeled pool"), ("vlm", "needs_vlm", "a VLM")):
        declares, reads_it = getattr(method_cls, attr), key in touched
        if declares != reads_it:
            report.add(
                "requirements",
                False,
                f"{attr} = {declares} but the method {'never reads' if declares else 'reads'} "
                f"ctx.{key}; declare {attr} = {not declares} so the harness provides {what} "
                "and the leaderboard says so",
            )
    if method_cls.needs_vlm and vlm is None:
        report.add(
            "requirements",
            variant is not None,
            f"ran without a VLM as the named fallback variant '{variant}'"
            if variant
            else "ran without a VLM but named no fallback variant: set ctx.log.variant (no silent substitution)",
        )


def check_method(
    method_cls: type,
    *,
    hparams: dict[str, Any] | None = None,
    vlm: Any = None,
    seed: int = 0,
    budget: str = "smoke",
    resolution: int = 32,
    backbone: str = "mobilenet_v2",
    weights: str = "none",
    dataset_options: dict[str, Any] | None = None,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Run every conformance check on `method_cls`; raise ConformanceError if one fails.

    hparams override the method's defaults; `vlm` is the vision-language
    encoder handed to ``ctx.vlm`` (None: the method must run its named
    fallback); dataset_options override the tiny synthfaces splits.
    """
    hp = method_cls.default_hparams()
    unknown = sorted(set(hparams or {}) - set(hp))
    if unknown:
        raise ValueError(f"method '{method_cls.name}' has no hyperparameter(s) {unknown}; its space is {sorted(hp)}")
    hp.update(hparams or {})
    spent = get_budget(budget)
    dataset, clean = kit_data(method_cls.needs_pool, resolution, dataset_options)
    report = ConformanceReport(method_cls.name, hp)
    patches = harness_patches(method_cls)
    report.add(
        "harness",
        not patches,
        f"code of the method's package replaced {patches} (at import): a plugin may not change the harness"
        if patches
        else "no function of fairfacebench is replaced by code of the method's package",
    )

    def run(poison: int) -> Outcome | None:
        return _attempt(
            report,
            method_cls,
            lambda: fit_predict(method_cls, clean, poison, hp, seed, spent, vlm, backbone, weights, dataset),
        )

    with single_thread():
        first = run(1)
        second = run(2) if first else None
        third = run(1) if second and not same(first, second) else None
    if first and second:
        report.steps, report.variant, report.touched = first.steps, first.variant, sorted(first.touched)
        report.add(
            "budget",
            first.steps <= spent.steps and first.tallied_steps == first.steps,
            f"took {first.steps} of {spent.steps} optimizer steps and "
            f"{first.forward_samples} of {first.forward_limit} forward samples"
            + ("" if first.tallied_steps == first.steps else f", but the meter charged {first.tallied_steps} steps"),
        )
        reached = sorted(set(first.reached + second.reached))
        report.add(
            "reach",
            not reached,
            f"reached {reached} (refused): a fit reads only what its context hands it"
            if reached
            else "opened no file, process or connection outside Python's folders and the weights",
        )
        threads = sorted(set(first.threads + second.threads))
        report.add(
            "threads",
            not threads,
            f"left thread(s) {threads} running after fit or predict: all work ends when fit returns"
            if threads
            else "left no thread running after fit or predict",
        )
        report.add(
            "metering", not first.unmetered, first.unmetered or "every optimizer step and image forward was metered"
        )
        report.add(
            "isolation",
            not first.leaks,
            f"held-back data reachable from ctx: {first.leaks}"
            if first.leaks
            else "no path from ctx leads to test labels or pool truth",
        )
        reads = sorted(first.test_reads | second.test_reads)
        report.add("test labels", not reads, f"read {reads} during fit" if reads else "no test label read during fit")
        _check_repeat(report, first, second, third)
        check_scores(report, "val", first.val, len(clean.val), clean.n_classes)
        check_scores(report, "test", first.test, len(clean.test), clean.n_classes)
        check_requirements(report, method_cls, hp, first.touched, first.variant, vlm)
    if raise_on_failure and report.failures:
        raise ConformanceError(report)
    return report


def _check_repeat(report: ConformanceReport, first: Outcome, second: Outcome, third: Outcome | None) -> None:
    """Same predictions under different test poisons; if not, the third run tells poison from chance."""
    if same(first, second):
        report.add("determinism", True, "two runs with the same seed gave identical predictions")
        report.add("test labels", True, "predictions do not change with the test labels")
    elif third is not None and same(first, third):
        report.add("determinism", True, "two runs with the same seed and test labels gave identical predictions")
        report.add("test labels", False, "predictions change when only the (poisoned) test labels change")
    elif third is not None:
        report.add(
            "determinism",
            False,
            "two runs with the same seed and test labels gave different predictions: "
            "draw randomness from ctx.generator(...) / ctx.rng(...), not from global state",
        )
