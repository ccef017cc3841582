"""The child process of a sealed run: one method fitted and asked to predict, inside the OS sandbox.

`sealed.py` starts it as ``python -m fairfacebench.sealed_child run FOLDER TALLY_FD`` inside the sandbox
(`sandbox.py`), where FOLDER is the only data it can see: the arrays the method's declared label use allows
(`sealed.write_inputs`) and `run.json` (a `ChildRun`).  The child imports the one module that registers the
method, fits it through `fitting.fit_under_meter` (meter and guards as in any run, every charge also told to
the harness through the tally pipe, where a reset meter cannot take it back), then predicts the selection
images, the test images and each transfer dataset's test images (`--eval-on`; images only, with the run's own
group codes of them for a method that reads groups) under inference mode, prediction's forwards counted and the
predictor's tensors compared before and after, and writes the scores and a `ChildReport`.  The harness scores
them; nothing here knows a test, selection or transfer label.

``python -m fairfacebench.sealed_child describe FOLDER MODULE TRIALS`` writes the cards of the methods a
module registers (what the harness shows and plans with), for plugins the harness does not import.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairfacebench.budget import Budget
from fairfacebench.context import FitSettings, IsolationError
from fairfacebench.data import Attribute, LabeledSplit, TaskData, TaskSpec, UnlabeledPool
from fairfacebench.fitting import fit_under_meter, predict_under_meter
from fairfacebench.guards import UnmeteredCompute
from fairfacebench.method_code import method_code
from fairfacebench.plan import trial_hparams
from fairfacebench.progress import ChannelHandler, reporting
from fairfacebench.scoring import checked_scores
from fairfacebench.settings import Augment
from fairfacebench.threads import compute_threads
from fairfacebench.typed import from_plain, to_plain
from fairfacebench.vlm import load_vlm

RUN = "run.json"
OUT = "out"
REPORT = "report.json"
ERROR = "error.json"
EVIDENCE = "evidence.npz"
CARDS = "cards.json"
PREDICTED = ("select", "test")  # the order the predictor is asked in, as in a run in the harness's process
SPLITS = {"select": "validation", "test": "test"}
LABEL_FILES = {"target": "y", "sensitive": "a"}
TEXT_CHARS = 2000  # of a log line sent to the harness


@dataclass
class ChildRun:
    """Everything the child knows about its run besides the arrays (`run.json`)."""

    method: str
    module: str  # the module whose `fairfacebench_methods` hook registers the method
    hparams: dict[str, Any]
    seed: int
    budget: Budget
    device: str
    augment: Augment
    backbone: str
    weights: str
    transductive: bool
    threads: int
    dataset: str
    task: TaskSpec
    target_attribute: Attribute
    sensitive_attributes: list[Attribute]
    group_names: list[str]
    labels: list[str]  # the label arrays handed out, e.g. ['train.target'], as the method declares them
    label_summary: str  # the declaration, for the error a read of a label it did not declare raises
    groups_at_inference: bool  # the predictor receives each image's group (declared `sensitive_at_inference`)
    transfers: list[str]  # the transfer datasets whose test images it predicts after test (transfer{i}_images.npy)
    pool: str | None  # the pool's name when the method reads one
    vlm: str  # 'none' or the encoder value
    vlm_module: str | None  # the module whose `fairfacebench_encoders` hook registers the encoder
    cache_dir: str
    log_level: int = logging.WARNING


@dataclass
class ChildReport:
    """What the child tells the harness besides the scores: the meter's report of fit and what the method did."""

    fit_report: dict[str, Any]
    touched: list[str]
    variant: str | None
    stages: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    weights: dict[str, Any]
    predict_forward_samples: int
    predict_time_s: float  # of the selection and test images
    transfer_predict_s: list[float]  # of each transfer dataset's images
    vlm_report: dict[str, Any] | None  # the encoder's `info["report"]` here: what embedding the run's arrays cost


class Withheld:
    """A label array the child never had: any use raises, saying why."""

    def __init__(self, message: str):
        self._message = message

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise IsolationError(self._message)

    __array__ = __getitem__ = __len__ = __iter__ = __int__ = __index__ = _refuse

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()


def undeclared(key: str, declared: str) -> Withheld:
    return Withheld(
        f"the method read {key} labels, which its label_use(hparams) = '{declared}' does not declare; "
        "a sealed run hands a method only the labels it declares"
    )


TEST_LABELS = Withheld("the method read test labels: a method never receives them (its ctx holds test images only)")


class Tally:
    """Lines to the harness over the pipe `fd`: every meter charge, phase changes, progress events, log lines."""

    def __init__(self, fd: int):
        self.fd, self.lock = fd, threading.Lock()

    def line(self, text: str) -> None:
        data = (text.replace("\n", " ") + "\n").encode()
        with self.lock:  # one line is one write, whole, from any thread
            os.write(self.fd, data)

    def charge(self, kind: str, n: int, where: str) -> None:
        self.line(f"{kind} {n} {where.replace(' ', '_')}")

    def event(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("text"), str):
            event = {**event, "text": event["text"][:TEXT_CHARS]}
        self.line("event " + json.dumps(event, default=str))


def method_class(module: str, name: str, hook: str = "fairfacebench_methods") -> type:
    """The class `module`'s hook registers under `name` (the module alone is imported)."""
    registered = {getattr(c, "name", None): c for c in getattr(importlib.import_module(module), hook)() or []}
    if name not in registered:
        raise LookupError(f"module {module} registers no {name!r} through {hook} (it registers {sorted(registered)})")
    return registered[name]


def split(folder: Path, name: str, run: ChildRun) -> LabeledSplit:
    """A split as handed out: its images, the labels the method declared, ids that are row numbers only."""
    images = np.load(folder / f"{name}_images.npy", mmap_mode="r")
    labels = {}
    for kind, short in LABEL_FILES.items():
        key = f"{name}.{kind}"
        handed = key in run.labels
        labels[short] = np.load(folder / f"{name}_{short}.npy") if handed else undeclared(key, run.label_summary)
    return LabeledSplit(images, labels["y"], labels["a"], row_ids(name, len(images)))


def row_ids(name: str, n: int) -> np.ndarray:
    """Ids the child may see: file names can carry labels (UTKFace's do), so rows are numbered instead."""
    return np.array([f"{name}/{i}" for i in range(n)])


def task_data(folder: Path, run: ChildRun) -> TaskData:
    """The task as the child holds it: no selection part, no test or pool labels, no pool truth."""
    test = np.load(folder / "test_images.npy", mmap_mode="r")
    pool = None
    if run.pool is not None:
        images = np.load(folder / "pool_images.npy", mmap_mode="r")
        pool = UnlabeledPool(run.pool, images, row_ids("pool", len(images)))
    return TaskData(
        dataset=run.dataset,
        task=run.task,
        target_attribute=run.target_attribute,
        sensitive_attributes=tuple(run.sensitive_attributes),
        group_names=tuple(run.group_names),
        train=split(folder, "train", run),
        val=split(folder, "val", run),
        test=LabeledSplit(test, TEST_LABELS, TEST_LABELS, row_ids("test", len(test))),
        pool=pool,
    )


def fit_and_predict(folder: Path, run: ChildRun, tally: Tally) -> None:
    """Fit, predict the selection and test images, write the scores and the report into FOLDER/out."""
    cls = method_class(run.module, run.method)
    data = task_data(folder, run)
    device = torch.device(run.device)
    vlm = None
    if cls.needs_vlm and run.vlm != "none":
        name = run.vlm.partition(":")[0]
        encoders = {name: method_class(run.vlm_module or "", name, "fairfacebench_encoders")}
        vlm = load_vlm(run.vlm, encoders, Path(run.cache_dir), device)
    settings = FitSettings(
        run.hparams, run.seed, run.budget, device, run.augment, run.backbone, run.weights, run.transductive
    )
    fitted = fit_under_meter(cls, data, settings, vlm, tally=tally.charge)
    if fitted.violations:
        raise UnmeteredCompute(fitted.violations.describe())
    tally.line("phase predict")
    names = [*PREDICTED, *(f"transfer{i}" for i in range(len(run.transfers)))]
    splits = [*(SPLITS[name] for name in PREDICTED), *(f"{dataset} test" for dataset in run.transfers)]
    images = {name: np.load(folder / f"{name}_images.npy", mmap_mode="r") for name in names}
    groups = {n: np.load(folder / f"{n}_groups.npy") if run.groups_at_inference else None for n in names}
    predicted = predict_under_meter(fitted, [(images[name], groups[name]) for name in names])
    out = folder / OUT
    for name, split, values in zip(names, splits, predicted.scores):  # refused here as in any run; checked again
        np.save(out / f"scores_{name}.npy", checked_scores(values, len(images[name]), data.n_classes, split))
    evidence = {f"{stage}/{key}": v for stage, arrays in fitted.log.evidence.items() for key, v in arrays.items()}
    np.savez(out / EVIDENCE, **evidence)
    report = ChildReport(
        fit_report=fitted.budget_report,
        touched=sorted(fitted.touched),
        variant=fitted.log.variant,
        stages=fitted.log.stages,
        history=fitted.log.history,
        weights=fitted.weights,
        predict_forward_samples=predicted.forward_samples,
        predict_time_s=round(sum(predicted.seconds[: len(PREDICTED)]), 3),
        transfer_predict_s=[round(t, 3) for t in predicted.seconds[len(PREDICTED) :]],
        vlm_report=(getattr(vlm, "info", None) or {}).get("report"),
    )
    (out / REPORT).write_text(json.dumps(to_plain(report), default=str))


def describe(folder: Path, module: str, trials: int) -> None:
    """Write the cards of the methods `module` registers: metadata, and per trial its hyperparameters and labels."""
    from_module = importlib.import_module(module)
    cards = []
    for cls in getattr(from_module, "fairfacebench_methods")() or []:
        cards.append(method_card(cls, module, trials))
    (folder / OUT / CARDS).write_text(json.dumps(cards, default=str))


def method_card(cls: type, module: str, trials: int) -> dict[str, Any]:
    """A method as the harness plans with and shows it, without importing it."""

    def labels(use: Any) -> dict[str, Any]:
        return {
            "target": use.target,
            "sensitive": use.sensitive,
            "note": use.note,
            "sensitive_at_inference": use.sensitive_at_inference,
            "summary_text": use.summary(),
        }

    chosen = [trial_hparams(cls, t) for t in range(trials)]
    return {
        "name": cls.name,
        "module": module,
        "description": cls.description,
        "citation": cls.citation,
        "version": getattr(cls, "version", 1),
        "ablation_of": getattr(cls, "ablation_of", None),
        "needs_vlm": cls.needs_vlm,
        "needs_pool": cls.needs_pool,
        "transductive": cls.transductive,
        "requirements": cls.requirements(),
        "labels": labels(cls.labels),
        "space": {k: {"default": h.default, "doc": h.doc} for k, h in cls.search_space().items()},
        "trials": [{"hparams": hp, "labels": labels(cls.label_use(hp))} for hp in chosen],
        "code": to_plain(method_code(cls, None)),
        "same_results_as": list(getattr(cls, "same_results_as", ())),
    }


def main(argv: list[str]) -> int:
    """`run FOLDER TALLY_FD` or `describe FOLDER MODULE TRIALS`; a failure is written to FOLDER/out/error.json."""
    command, folder = argv[1], Path(argv[2])
    (folder / OUT).mkdir(exist_ok=True)
    try:
        if command == "describe":
            describe(folder, argv[3], int(argv[4]))
            return 0
        tally = Tally(int(argv[3]))
        run = from_plain(ChildRun, json.loads((folder / RUN).read_text()))
        logging.getLogger().addHandler(ChannelHandler(tally.event, run.log_level))
        with reporting(tally.event), compute_threads(run.threads):
            fit_and_predict(folder, run, tally)
    except (Exception, SystemExit) as exc:  # the harness records it as the run's error
        error = (
            f"SystemExit: the method called sys.exit({exc.code!r}); a method must raise an exception instead"
            if isinstance(exc, SystemExit)
            else f"{type(exc).__name__}: {exc}"
        )
        (folder / OUT / ERROR).write_text(json.dumps({"error": error, "traceback": traceback.format_exc()}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
