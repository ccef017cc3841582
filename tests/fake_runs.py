"""A stand-in for `runner.SpecRunner` that executors can pickle into worker processes: no data, no training.

The spec's method says what a run does: 'steps' reports five steps of a stage, logs and prints; 'hang' writes its
pid into `dataset_options['pid_dir']` and never returns; the methods of `MISCHIEF` misbehave as their comments say
(run in this process: their runner records no exception of theirs); anything else finishes at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from records import fake_record

from fairfacebench.budget import Budget
from fairfacebench.progress import StageSteps
from fairfacebench.record import RunRecord
from fairfacebench.spec import RunSpec

log = logging.getLogger("fairfacebench.fake")


def fake_spec(method: str, seed: int = 0, **options) -> RunSpec:
    return RunSpec(
        dataset="fake",
        task="t",
        method=method,
        hparams={},
        seed=seed,
        budget=Budget("fake", steps=5, batch_size=1),
        resolution=8,
        dataset_options=options,
    )


def record_of(spec: RunSpec, error: str | None = None) -> RunRecord:
    """A finished record of `spec` (failed with `error`), written by the process that computed it."""
    record = fake_record(spec=spec, error=error)
    record.stages = {"fake": {"pid": os.getpid()}}
    return record


class Mischief(BaseException):
    """Not an Exception: what no runner records."""


def swallow(spec: RunSpec) -> RunRecord:
    """Catches the first stop and returns a finished run."""
    try:
        while True:
            time.sleep(0.01)
    except BaseException:
        return record_of(spec)


def ignore_alarm(spec: RunSpec) -> RunRecord:
    """Ignores SIGALRM and goes on forever."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        time.sleep(0.01)


def stubborn(spec: RunSpec) -> RunRecord:
    """Ignores SIGALRM and catches every exception, forever."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        try:
            time.sleep(0.01)
        except BaseException:
            pass


def ctrl_c(spec: RunSpec) -> RunRecord:
    """The user presses Ctrl-C while the run goes on."""
    os.kill(os.getpid(), signal.SIGINT)
    while True:
        time.sleep(0.01)


def raise_(exc: BaseException):
    raise exc


MISCHIEF = {
    "swallow": swallow,
    "ignore-alarm": ignore_alarm,
    "stubborn": stubborn,
    "ctrl-c": ctrl_c,
    "keyboard-interrupt": lambda spec: raise_(KeyboardInterrupt("raised by the method")),
    "base-exception": lambda spec: raise_(Mischief("not an Exception")),
}


class FakeRunner:
    device = "cpu"

    def __call__(self, spec: RunSpec) -> tuple[RunRecord, None]:
        if spec.method in MISCHIEF:
            return MISCHIEF[spec.method](spec), None
        if spec.method == "hang":
            Path(spec.dataset_options["pid_dir"], str(os.getpid())).write_text(spec.run_id)
            while True:
                time.sleep(0.05)
        if spec.method == "steps":
            bar = StageSteps("fit", 5)
            for _ in range(5):
                bar.update()
            bar.close()
            log.info("hello from worker %d", os.getpid())
            print(f"printed by worker {os.getpid()}")
            print("tqdm-like\rredrawn line", file=sys.stderr)
        return record_of(spec), None

    def crashed(self, spec: RunSpec, error: str) -> RunRecord:
        return record_of(spec, error)

    def prepare_vlm(self, value: str) -> None:
        pass

    def is_heavy(self, spec: RunSpec) -> bool:
        return False

    def needs_vlm(self, spec: RunSpec) -> bool:
        return False


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
