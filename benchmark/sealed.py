"""The sealed runner: a method's fit and predict run in a child process that holds only what the method may read.

The harness (this process) loads the task and keeps everything: test labels,
the selection part of validation, pool truth, the store, the data root.  For
one run it writes into a fresh folder only what the method's declared label
use allows (training images and the declared labels, the fit part of
validation, pool images, the selection and test images to predict and those
of each transfer dataset, their groups only for a method that declares them
at inference; ids are row numbers), and starts `python -m fairfacebench.sealed_child` in the OS sandbox
(`sandbox.py`: no network, no view of anything but that folder, the system
libraries and the Python packages, read-only).  A run with an encoder gets the
embeddings of the images its method may read while it fits, computed or loaded
here through the embedding cache and bound read-only where the child's encoder
looks for them (`shared_embeddings`), so the child does not embed them again.
The child imports the one module that registers the method.  Every charge to its meter comes to the
harness over a pipe as it happens, so a method that resets its meter cannot
take back what it spent; the harness then checks the scores, scores them,
runs the diagnostics, writes the record and alone writes the store.

Which runs are sealed follows the plan key `sealed`: "auto" seals every
method from outside this repository, true seals every run, false trusts every
plugin (in-process runs, for debugging).  Third-party
methods are never imported here: `describe_methods` asks a sandboxed child for
their cards (metadata, hyperparameters per trial, declared labels), and a run
of a third-party dataset, pool, encoder or selection rule is refused, since
those run in the harness's own process with every label in reach.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairfacebench import sandbox
from fairfacebench.audit import import_folders, import_path, non_code_folders, package_folders
from fairfacebench.backbones import BACKBONES, resolve_weights
from fairfacebench.context import RunLog
from fairfacebench.data import TaskData
from fairfacebench.errors import ConfigError, PluginError
from fairfacebench.fitting import readable_arrays, readable_images
from fairfacebench.method_code import MethodCode
from fairfacebench.plugins import ListedPlugin, Registry, listed_plugins, trusted_registry
from fairfacebench.progress import emit
from fairfacebench.record import Isolation
from fairfacebench.runner import MethodOutput, RemoteFailure, SpecRunner, outcome, selection_split, supervision
from fairfacebench.scoring import checked_scores
from fairfacebench.sealed_child import (
    CARDS,
    ERROR,
    EVIDENCE,
    LABEL_FILES,
    OUT,
    REPORT,
    RUN,
    ChildReport,
    ChildRun,
)
from fairfacebench.sharding import embed_in_shards, shard_size, shard_starts
from fairfacebench.spec import RunSpec
from fairfacebench.transfer import TransferInput, TransferPlan
from fairfacebench.typed import PlainTypeError, from_plain, to_plain
from fairfacebench.vlm import cache_entry

log = logging.getLogger("fairfacebench")

SANDBOX = "Linux user, mount, network and PID namespaces (util-linux unshare), no capabilities"
# Environment settings that change how torch computes (threads, instruction sets), passed on unchanged.
NUMERIC_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS_", "ATEN_", "CUDA_VISIBLE_DEVICES", "FAIRBENCH_EMBED_SHARD")
TICK_S = 0.25
EXIT_WAIT_S = 10.0  # for `unshare` to exit once its child's pipe closed, before it is killed
LINE_BYTES = 8192  # of one line on the tally pipe; longer is a broken protocol
TALLY_BYTES = 64 << 20  # all lines of one run; more is a flood
CARD_BYTES = 1 << 20
REPORT_BYTES = 32 << 20
LOG_TAIL = 40  # lines of the child's output in the error of a child that died


class SandboxUnavailable(ConfigError):
    """The OS sandbox cannot be built on this machine (the message names the command and its error)."""


class SealedProtocolError(RuntimeError):
    """The child broke the protocol with the harness (a garbled tally, a missing or malformed result)."""


class BudgetOvershoot(RuntimeError):
    """The harness counted more compute than the budget allows, or other than the child's meter reported."""


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why the sandbox cannot start here (None when it can): `unshare` is run once with the sealed runner's flags."""
    command = [*sandbox.UNSHARE, "--", "true"]
    if shutil.which("unshare") is None or not os.path.exists(sandbox.SETPRIV[0]):
        return "util-linux's unshare and setpriv are not installed (Debian: apt-get install util-linux)"
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"`{' '.join(command)}` failed: {done.stderr.strip() or f'exit code {done.returncode}'}"
    return None


def require_sandbox() -> None:
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(
            f"the sealed runner needs Linux namespaces: {problem}; allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or run with sealed = false, which trusts every plugin"
        )


# ---------------------------------------------------------------- what the child sees


def child_layout(
    folder: Path, argv: list[str], env: dict[str, str], hidden: list[str], files: list[str], scratch: list[str]
) -> sandbox.Layout:
    """The child's sandbox: the system, the Python packages, `files` read-only; `folder`/io at /sealed read-write;
    `hidden` covered wherever it lies inside a bound folder."""
    layout = sandbox.system_layout(folder / "root", argv, env, "/sealed")
    layout.binds.append((str(folder / "io"), "/sealed", True))
    sandbox.bind_folders(layout, import_folders())
    bound = [target for _, target, _ in layout.binds]
    layout.binds += [(f, f, False) for f in files if os.path.isfile(f) and not sandbox.covered(f, bound)]
    masks = [m for folder in package_folders() for m in non_code_folders(folder)]
    sandbox.hide(layout, masks + [os.path.abspath(p) for p in hidden])
    layout.scratch += scratch
    return layout


def child_env(cache_dir: Path) -> dict[str, str]:
    """The child's whole environment: no data roots, no home, no credentials; what changes numbers is kept."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "FAIRBENCH_OFFLINE": "1",
        "FAIRBENCH_CACHE": str(cache_dir),
        "TORCH_HOME": str(Path(torch.hub.get_dir()).parent),
    }
    path = import_path()  # the child imports from where the harness imports (`child_layout` binds these folders)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    env.update({k: v for k, v in os.environ.items() if k.startswith(NUMERIC_ENV)})
    return env


def shared_embeddings(encoder: Any, arrays: list[np.ndarray]) -> list[str]:
    """The harness's embedding-cache entries of `arrays`, computed here through the normal cache when it lacks them,
    shard by shard as a method's encoder asks for them (`fitting.embedder`): bound read-only into the child, where
    its encoder reads them as a run in this process reads its cache, so the child embeds none of them again."""
    files = []
    for images in arrays:
        embed_in_shards(encoder.encode_images, images)
        for start in shard_starts(len(images), shard_size()):
            files += [str(path) for path in cache_entry(encoder, images[start : start + shard_size()])]
    return files


def embedded_in_child(own: Path) -> int:
    """Arrays the child's encoder embedded itself: the entries it wrote into its own cache folder `own` (the shared
    ones are bound there over empty files), counted without following a link the child may have left."""
    written = 0
    for folder, _, names in os.walk(own):
        for name in names:
            found = os.lstat(os.path.join(folder, name))
            stem, suffix = os.path.splitext(name)
            written += suffix == ".npy" and "." not in stem and stat.S_ISREG(found.st_mode) and found.st_size > 0
    return written


def weight_files(spec: RunSpec) -> list[str]:
    """The pretrained weights file the run's backbone loads, found here as the child will look for it."""
    if spec.weights == "none" or spec.backbone not in BACKBONES:
        return []
    path, _ = resolve_weights(BACKBONES[spec.backbone], spec.weights)
    return [str(path)] if path is not None else []


# ---------------------------------------------------------------- the harness's side of a sealed run


@dataclass
class Counted:
    """What the harness counted from the child's tally pipe: steps and forwards of fit, forwards of prediction."""

    steps: int = 0
    forwards: int = 0
    predict_steps: int = 0
    predict_forwards: int = 0
    predicting: bool = False
    received: int = 0
    problems: list[str] = field(default_factory=list)
    pending: bytes = b""

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > TALLY_BYTES:
            self.problems.append(f"the child sent more than {TALLY_BYTES >> 20} MiB of tally lines")
            return
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > LINE_BYTES:
            self.problems.append(f"a tally line longer than {LINE_BYTES} bytes")
            self.pending = b""
        for line in lines:
            self.line(line.decode("utf-8", "replace"))

    def line(self, text: str) -> None:
        kind, _, rest = text.partition(" ")
        try:
            if kind in ("step", "forward"):
                n = int(rest.split(" ", 1)[0])
                if n < 0:
                    raise ValueError(n)
                name = f"{'predict_' if self.predicting else ''}{'steps' if kind == 'step' else 'forwards'}"
                setattr(self, name, getattr(self, name) + n)
            elif text == "phase predict":
                self.predicting = True
            elif kind == "event":
                forward_event(json.loads(rest))
            else:
                raise ValueError(kind)
        except ValueError:
            self.problems.append(f"an unreadable tally line {text[:80]!r}")


def forward_event(event: Any) -> None:
    """A progress event of the child into this process's view (only the kinds a run reports)."""
    if isinstance(event, dict) and event.get("kind") in ("step", "stage", "line"):
        emit({k: v for k, v in event.items() if k != "job"})


def run_child(layout: sandbox.Layout, folder: Path, tally_read: int, tally_write: int) -> tuple[int, Counted, float]:
    """Start the child in its sandbox and read its tally until every process of it is gone: the exit code, the
    counts, and the CPU seconds of the child and all it started (measured here, outside its reach)."""
    counted = Counted()
    with open(folder / "child.log", "wb") as output:
        proc = subprocess.Popen(
            sandbox.command(layout.write(folder / "layout.json")),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(tally_write,),
            start_new_session=True,  # its own process group, ended as a whole below
        )
    os.close(tally_write)
    usage = None
    try:
        while not counted.problems:  # end of file once no process holds the pipe (the PID namespace is gone)
            ready, _, _ = select.select([tally_read], [], [], TICK_S)
            chunk = os.read(tally_read, 1 << 16) if ready else b"."
            if not chunk:
                break
            if ready:
                counted.feed(chunk)
        deadline = time.monotonic() + EXIT_WAIT_S
        while usage is None and time.monotonic() < deadline and not counted.problems:
            pid, status, found = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode, usage = os.waitstatus_to_exitcode(status), found
            else:
                time.sleep(0.05)
    finally:
        if usage is None:  # stopped (a broken tally, a timeout, an interrupt) or slow to exit: end it all
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        os.close(tally_read)
    return proc.returncode, counted, usage.ru_utime + usage.ru_stime


def child_run(
    spec: RunSpec, cls: Any, data: TaskData, device: str, cache_dir: Path, reg: Registry, transfers: list[str]
) -> ChildRun:
    """What the child is told: the run's settings, the task's facts, which label arrays it gets (the declared), the
    transfer datasets whose test images it predicts."""
    use = cls.label_use(spec.hparams)
    handed = [
        f"{split}.{kind}"
        for kind, declared in (("target", use.target), ("sensitive", use.sensitive))
        for split in ("train", "val")
        if split in declared.split("+")
    ]
    encoder = spec.vlm.partition(":")[0]
    return ChildRun(
        method=spec.method,
        module=method_module(reg, spec.method),
        hparams=dict(spec.hparams),
        seed=spec.seed,
        budget=spec.budget,
        device=device,
        augment=spec.augment,
        backbone=spec.backbone,
        weights=spec.weights,
        transductive=cls.transductive,
        threads=spec.threads,
        dataset=data.dataset,
        task=data.task,
        target_attribute=data.target_attribute,
        sensitive_attributes=list(data.sensitive_attributes),
        group_names=list(data.group_names),
        labels=handed,
        label_summary=use.summary(),
        groups_at_inference=use.sensitive_at_inference,
        transfers=transfers,
        pool=data.pool.name if cls.needs_pool and data.pool is not None else None,
        vlm=spec.vlm if cls.needs_vlm else "none",
        vlm_module=reg.modules.get(f"encoder:{encoder}") if cls.needs_vlm and spec.vlm != "none" else None,
        cache_dir=str(cache_dir),
        log_level=logging.getLogger().getEffectiveLevel(),
    )


def method_module(reg: Registry, name: str) -> str:
    module = reg.modules.get(f"method:{name}")
    if not module:
        raise PluginError(f"method '{name}' was not registered by an importable module, so it cannot run sealed")
    return module


def write_inputs(io: Path, run: ChildRun, data: TaskData, transfer: list[TransferInput]) -> None:
    """Everything the child may read, and nothing else: images, the declared labels, the groups at inference, the
    transfer datasets' test images (their labels stay here)."""
    arrays = {
        "train_images": data.train.images,
        "val_images": data.val.images,
        "test_images": data.test.images,
        "select_images": selection_split(data).images,
    }
    for handed in run.labels:
        split, kind = handed.split(".")
        short = LABEL_FILES[kind]
        arrays[f"{split}_{short}"] = getattr(getattr(data, split), short)
    if run.groups_at_inference:
        arrays["select_groups"], arrays["test_groups"] = selection_split(data).a, data.test.a
    for i, asked in enumerate(transfer):
        arrays[f"transfer{i}_images"] = asked.images
        if run.groups_at_inference:
            arrays[f"transfer{i}_groups"] = asked.given_groups
    if run.pool is not None:
        arrays["pool_images"] = data.pool.images
    for name, array in arrays.items():
        np.save(io / f"{name}.npy", np.asarray(array))
    (io / RUN).write_text(json.dumps(to_plain(run)))


def read_report(out: Path) -> ChildReport:
    path = out / REPORT
    if not path.is_file() or path.stat().st_size > REPORT_BYTES:
        raise SealedProtocolError("the child wrote no report (or one past its size limit)")
    try:
        return from_plain(ChildReport, json.loads(path.read_text()))
    except (json.JSONDecodeError, PlainTypeError) as exc:
        raise SealedProtocolError(f"the child's report is malformed: {exc}") from None


def read_scores(out: Path, name: str, n: int, n_classes: int, split: str) -> np.ndarray:
    """The child's scores of a split, checked like every predictor's (`scoring.checked_scores`)."""
    try:
        scores = np.load(out / f"scores_{name}.npy", allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise SealedProtocolError(f"the child's {split} scores cannot be read: {exc}") from None
    if scores.shape != (n, n_classes):  # before reading: a huge array is refused unread
        return checked_scores(scores[:0], n, n_classes, split)
    return checked_scores(np.array(scores), n, n_classes, split)


def read_evidence(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """The arrays the method recorded for the diagnostics (judged here, against truth the child never had)."""
    evidence: dict[str, dict[str, np.ndarray]] = {}
    try:
        with np.load(out / EVIDENCE, allow_pickle=False) as stored:
            for key in stored.files:
                stage, _, name = key.rpartition("/")
                evidence.setdefault(stage, {})[name] = stored[key]
    except (OSError, ValueError) as exc:
        raise SealedProtocolError(f"the child's evidence cannot be read: {exc}") from None
    return evidence


def check_counts(counted: Counted, report: ChildReport, spec: RunSpec, limit: int, predicted: int) -> None:
    """The compute the harness counted against the budget, and against what the child's meter reported."""
    budget = spec.budget
    if counted.steps > budget.steps or counted.forwards > limit:
        raise BudgetOvershoot(
            f"the harness counted {counted.steps} optimizer steps and {counted.forwards} forward samples during fit; "
            f"budget '{budget.name}' allows {budget.steps} and {limit} (the method's meter reported "
            f"{report.fit_report.get('steps')} and {report.fit_report.get('forward_samples')})"
        )
    reported = (report.fit_report.get("steps"), report.fit_report.get("forward_samples"))
    if reported != (counted.steps, counted.forwards):
        raise BudgetOvershoot(
            f"the method's meter reported {reported[0]} steps and {reported[1]} forward samples, but the harness "
            f"counted {counted.steps} and {counted.forwards} as they were charged: the meter was tampered with"
        )
    allowed = budget.inference_passes * predicted
    if counted.predict_steps or counted.predict_forwards > allowed:
        raise BudgetOvershoot(
            f"while predicting, the harness counted {counted.predict_steps} optimizer steps and "
            f"{counted.predict_forwards} forward samples ({allowed} allowed for {predicted} images)"
        )


def run_sealed(
    spec: RunSpec,
    data: TaskData,
    cls: Any,
    reg: Registry,
    device: str,
    cache_dir: Path,
    vlm: Any,
    hidden: list[str],
    transfer: list[TransferInput],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One run with its fit and predict (selection, test and `transfer` images) in a sandboxed child: the ok
    record's fields and the prediction arrays.  `vlm`: the run's encoder as loaded here (None without one)."""
    require_sandbox()
    folder = Path(tempfile.mkdtemp(prefix="fairbench-sealed-"))
    try:
        (folder / "root").mkdir()
        io = folder / "io"
        (io / OUT).mkdir(parents=True)
        started = time.perf_counter()
        run = child_run(spec, cls, data, device, cache_dir, reg, [asked.target.pairing.dataset for asked in transfer])
        shared = shared_embeddings(vlm, readable_arrays(cls, data)) if run.vlm != "none" else []
        embedded = time.perf_counter() - started
        write_inputs(io, run, data, transfer)
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-m", "fairfacebench.sealed_child", "run", "/sealed", str(write_fd)]
        vlm_folders = [str(cache_dir / sub) for sub in ("vlm", "open_clip")] if run.vlm != "none" else []
        files = [*weight_files(spec), *shared]
        layout = child_layout(folder, argv, child_env(cache_dir), [*hidden, str(cache_dir)], files, [])
        sandbox.bind_folders(layout, [f for f in vlm_folders if os.path.isdir(f)])
        own = folder / "embeddings"
        if run.vlm != "none":  # the encoder's cache: the shared entries read-only, what else it embeds its own
            own.mkdir()
            layout.binds.append((str(own), str(cache_dir / "embeddings"), True))
        if device.startswith("cuda"):
            layout.devices += sorted(glob.glob("/dev/nvidia*"))
        written = time.perf_counter() - started - embedded
        code, counted, cpu = run_child(layout, folder, read_fd, write_fd)
        child_s = time.perf_counter() - started - embedded - written
        out = io / OUT
        costs = {"child_cpu_s": cpu, "child_wall_s": child_s, "inputs_written_s": written}
        if run.vlm != "none":
            costs.update(embeddings_shared_s=embedded, child_embedded_arrays=embedded_in_child(own))
        info = getattr(vlm, "info", None)
        return score_child(spec, data, cls, folder, out, code, counted, info, costs, transfer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def score_child(
    spec: RunSpec,
    data: TaskData,
    cls: Any,
    folder: Path,
    out: Path,
    code: int,
    counted: Counted,
    vlm_info: dict[str, Any] | None,
    costs: dict[str, float],
    transfer: list[TransferInput],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The child's result checked and scored by the harness (a failure of the child raises its error here); `costs`:
    the child's CPU and wall seconds and the seconds writing its inputs took (with an encoder: the seconds the shared
    embeddings took here and the arrays the child embedded itself)."""
    if counted.problems:
        raise SealedProtocolError(f"{counted.problems[0]}; the child was stopped")
    if (out / ERROR).is_file():
        raise child_failure(out / ERROR)
    if code != 0:
        tail = (folder / "child.log").read_bytes()[-20_000:].decode("utf-8", "replace").splitlines()[-LOG_TAIL:]
        raise RemoteFailure(
            f"ChildDied: the sealed child exited with code {code} before writing a result", "\n".join(tail)
        )
    report = read_report(out)
    selection = selection_split(data)
    limit = spec.budget.forward_limit(readable_images(cls, data))
    predicted = len(selection) + len(data.test) + sum(len(asked.images) for asked in transfer)
    check_counts(counted, report, spec, limit, predicted)
    if len(report.transfer_predict_s) != len(transfer):
        raise SealedProtocolError(f"the child timed {len(report.transfer_predict_s)} of {len(transfer)} transfer sets")
    val = read_scores(out, "select", len(selection), data.n_classes, "validation")
    test = read_scores(out, "test", len(data.test), data.n_classes, "test")
    transferred = [
        (asked, read_scores(out, f"transfer{i}", len(asked.images), data.n_classes, asked.split), seconds)
        for i, (asked, seconds) in enumerate(zip(transfer, report.transfer_predict_s))
    ]
    fit_log = RunLog(report.stages, report.variant, report.history, read_evidence(out))
    method = MethodOutput(
        report.fit_report, set(report.touched), fit_log, report.weights, supervision(cls, spec.hparams, vlm_info)
    )
    vlm = sealed_vlm_info(vlm_info, report.vlm_report)
    fields, arrays = outcome(spec, data, method, val, test, vlm, report.predict_time_s, transferred)
    fields["budget_report"]["sealed_child"] = {
        **{key: round(value, 3) for key, value in costs.items()},
        "predict_forward_samples": counted.predict_forwards,
    }
    return fields, arrays


def sealed_vlm_info(harness: dict[str, Any] | None, child_report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The encoder's info a sealed run records: the harness's own (its id, weights and provenance) with the report of
    the encoder in the child, which served the run's arrays from the shared cache entries (their cost, whichever run
    paid it, as a run in this process records it);
    what the encoder's captions name stays the harness's word (`supervision` reads it from the harness's info)."""
    report = (harness or {}).get("report")
    if harness is None or report is None or child_report is None:
        return harness
    return {**harness, "report": {**child_report, "captions_name": report.get("captions_name")}}


def child_failure(path: Path) -> RemoteFailure:
    try:
        found = json.loads(path.read_bytes()[:REPORT_BYTES])
        return RemoteFailure(str(found["error"]), str(found.get("traceback", "")))
    except (ValueError, KeyError, TypeError):
        return RemoteFailure("SealedProtocolError: the child's error file is malformed", "")


# ---------------------------------------------------------------- methods the harness does not import


@dataclass
class LabelCard:
    target: str
    sensitive: str
    note: str
    sensitive_at_inference: bool
    summary_text: str = ""

    def summary(self) -> str:
        return self.summary_text

    def allows(self, touched: str) -> bool:
        split, kind = touched.split(".")
        return split in (self.target if kind == "target" else self.sensitive).split("+")


@dataclass
class TrialCard:
    hparams: dict[str, Any]
    labels: LabelCard


@dataclass
class MethodCard:
    """A method as a sandboxed child described it: what the harness plans with and shows, without its code."""

    name: str
    module: str
    description: str
    citation: str
    version: int
    ablation_of: str | None
    needs_vlm: bool
    needs_pool: bool
    transductive: bool
    requirements: str
    labels: LabelCard
    space: dict[str, dict[str, Any]]
    trials: list[TrialCard]
    code: MethodCode | None  # its code's fingerprint, taken in the describing child (`method_code.method_code`)
    same_results_as: tuple[str, ...] = ()  # earlier fingerprints it declares to compute the same (`results_code`)
    plugin: str = ""  # the entry point that registers it ('distribution:name'), set by the harness


class DescribedMethod:
    """The harness's stand-in for a method it does not import: class attributes from its card (`described`)."""

    card: MethodCard

    @classmethod
    def label_use(cls, hparams: dict[str, Any]) -> LabelCard:
        for trial in cls.card.trials:
            if trial.hparams == dict(hparams):
                return trial.labels
        raise PluginError(f"method '{cls.card.name}' was not described for the hyperparameters {hparams}")

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return dict(cls.card.trials[0].hparams)

    @classmethod
    def requirements(cls) -> str:
        return cls.card.requirements

    @classmethod
    def trial_hparams(cls, trial: int) -> dict[str, Any]:
        if trial >= len(cls.card.trials):
            raise PluginError(f"method '{cls.card.name}' was described for {len(cls.card.trials)} trial(s) only")
        return dict(cls.card.trials[trial].hparams)


def described(card: MethodCard) -> type:
    """A class the registry and the plan can use like a method class; it holds no code of the plugin."""
    named = ("name", "description", "citation", "version", "ablation_of", "same_results_as")
    attributes = {k: getattr(card, k) for k in named}
    flags = {k: getattr(card, k) for k in ("needs_vlm", "needs_pool", "transductive")}
    known = {"card": card, "labels": card.labels, "described_code": card.code}
    return type(f"Described[{card.name}]", (DescribedMethod,), {**known, **attributes, **flags})


def describe_module(plugin: ListedPlugin, trials: int) -> list[MethodCard]:
    """The cards of the methods the entry point `plugin` registers, written by a child in the sandbox (no data, no
    network)."""
    require_sandbox()
    module = plugin.module
    folder = Path(tempfile.mkdtemp(prefix="fairbench-describe-"))
    try:
        (folder / "root").mkdir()
        (folder / "io" / OUT).mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-m", "fairfacebench.sealed_child", "describe", "/sealed", module, str(trials)]
        layout = child_layout(folder, argv, child_env(Path("/nonexistent")), [], [], [])
        code, counted, _ = run_child(layout, folder, read_fd, write_fd)
        out = folder / "io" / OUT
        if (out / ERROR).is_file():
            failure = child_failure(out / ERROR)
            raise PluginError(f"plugin module {module} could not be described in the sandbox: {failure.error}")
        path = out / CARDS
        if code != 0 or not path.is_file() or path.stat().st_size > CARD_BYTES:
            raise PluginError(f"plugin module {module}: its describing child exited with code {code} and no cards")
        try:
            cards = from_plain(list[MethodCard], json.loads(path.read_text()))
            return [replace(card, plugin=f"{plugin.distribution}:{plugin.name}") for card in cards]
        except (json.JSONDecodeError, PlainTypeError) as exc:
            raise PluginError(f"plugin module {module}: malformed method cards ({exc})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def describe_methods(trials: int) -> list[MethodCard]:
    """Cards of every method from outside this repository, each entry point described in its own sandbox."""
    cards = []
    for plugin in listed_plugins():
        if not plugin.builtin:
            cards += describe_module(plugin, trials)
    return cards


def sealed_registry(cards: list[MethodCard]) -> Registry:
    """This repository's plugins, imported, and the described third-party methods (no third-party import)."""
    base = trusted_registry()
    reg = Registry(
        datasets=dict(base.datasets),
        methods=dict(base.methods),
        pools=dict(base.pools),
        encoders=dict(base.encoders),
        selection_rules=dict(base.selection_rules),
        sources=dict(base.sources),
        # read now from every entry point's metadata (nothing imported): `base` is cached from before any plugin
        # installed since
        distributions={f"{p.distribution}:{p.name}": (p.distribution, p.version) for p in listed_plugins()},
        modules=dict(base.modules),
    )
    for card in cards:
        if card.name in reg.methods:
            first = reg.sources[f"method:{card.name}"]
            raise PluginError(f"method '{card.name}' of {card.module} is registered twice (first by {first})")
        reg.methods[card.name] = described(card)
        reg.sources[f"method:{card.name}"] = card.plugin or card.module
        reg.modules[f"method:{card.name}"] = card.module
    return reg


class SealedRunner(SpecRunner):
    """A `SpecRunner` whose runs of untrusted methods (all methods with `seal_all`) fit and predict in a sandboxed
    child; the harness never imports a plugin from outside this repository.  Picklable like `SpecRunner`."""

    def __init__(
        self,
        device: str = "auto",
        cache_dir: Path | None = None,
        config: dict | None = None,
        progress: bool = False,
        transfer: TransferPlan | None = None,
        cards: list[MethodCard] | None = None,
        seal_all: bool = True,
        hidden: tuple[str, ...] = (),
    ):
        super().__init__(device, cache_dir, config, progress, transfer=transfer)
        self.cards, self.seal_all, self.hidden = list(cards or []), seal_all, tuple(hidden)
        self.reg = None

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "reg": None}

    @property
    def loader(self) -> Any:
        if self.reg is None:
            self.reg = sealed_registry(self.cards)
        return super().loader

    def sharding_on_ray(self) -> "SealedRunner":
        if self.seal_all or self.cards:
            raise ConfigError(
                "sealed runs execute in local sandboxes: use executor = 'local' (Ray workers are not sealed)"
            )
        return super().sharding_on_ray()  # nothing to seal: this repository's methods only, none imported from outside

    def seals(self, spec: RunSpec) -> bool:
        return self.seal_all or issubclass(self.loader.reg.method(spec.method), DescribedMethod)

    def isolation(self, spec: RunSpec) -> Isolation:
        return Isolation("sealed", SANDBOX) if self.seals(spec) else super().isolation(spec)

    def fit_and_score(
        self,
        spec: RunSpec,
        data: TaskData,
        device: torch.device,
        reg: Registry,
        vlm: Any,
        transfer: list[TransferInput],
    ) -> Any:
        if not self.seals(spec):
            return super().fit_and_score(spec, data, device, reg, vlm, transfer)
        cls = reg.method(spec.method)
        return run_sealed(spec, data, cls, reg, str(device), self.cache_dir, vlm, list(self.hidden), transfer)
