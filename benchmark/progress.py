"""Progress of a grid of runs: every process reports to one view in the parent (docs/ARCHITECTURE.md).

A process has at most one sink (`reporting`).  The training loop
(:class:`StageSteps`), the mini-CLIP's preparation (:func:`track`) and the
runner (:func:`stage`) send events to it; in a worker process the sink is a
:class:`Channel` to the parent, which also carries the worker's log records
and stdout/stderr lines.  The parent's :class:`GridView` is live on a
terminal and prints plain lines otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TextIO

from tqdm import tqdm

Event = dict[str, Any]
Sink = Callable[[Event], None]

STEP_INTERVAL_S = 0.25  # a stage reports at most this often (and always its last step)
PLAIN_INTERVAL_S = 30.0  # a progress bar written to a pipe or a file prints a line at most this often
REDRAW_INTERVAL_S = 0.2
ERROR_CHARS = 160  # of a failed run's error, in its line (the record keeps all of it)

_sink: Sink | None = None  # where this process's progress events go


# ---------------------------------------------------------------- reporting side (any process)


@contextlib.contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Send this process's progress events to `sink` inside the block."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous


def emit(event: Event) -> None:
    if _sink is not None:
        _sink(event)


def stage(name: str) -> None:
    """The run entered a phase without steps (e.g. 'loading data')."""
    emit({"kind": "stage", "stage": name})


class LineProgress:
    """Progress for a log that is not a terminal: a line at most every PLAIN_INTERVAL_S and one when done, never the
    carriage-return frames of a tqdm bar; silent without a stream."""

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO | None):
        self.total, self.desc, self.unit, self.stream, self.n = total, desc, unit, stream, 0
        self.started = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.stream is not None and now - self._last >= PLAIN_INTERVAL_S and self.n < self.total:
            self._last = now
            share = f" ({self.n / self.total:.0%})" if self.total else ""
            self._write(f"{self.n}/{self.total} {self.unit}{share}, {duration(now - self.started)}")

    def close(self) -> None:
        if self.stream is not None:
            self._write(f"{self.n}/{self.total} {self.unit} in {duration(time.monotonic() - self.started)}")
            self.stream = None

    def _write(self, text: str) -> None:
        self.stream.write(f"{self.desc}: {text}\n")  # type: ignore[union-attr]
        self.stream.flush()  # type: ignore[union-attr]

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar when stderr is a terminal, plain lines (`LineProgress`) when it is a pipe or a file, nothing when
    not `enabled`; each has `update(n)`, `close()` and works as a context manager."""
    if enabled and sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, leave=True, dynamic_ncols=True)
    return LineProgress(total, desc, unit, sys.stderr if enabled else None)


class StageSteps:
    """The steps of one stage: reported to this process's sink (throttled), or a progress bar when asked and no sink.

    `meter` (a BudgetMeter) adds the run's steps used and its budget's total, from which the view derives an ETA.
    """

    def __init__(self, name: str, steps: int, meter: Any = None, bar: bool = False):
        self.name, self.steps, self.meter, self.done = name, steps, meter, 0
        self._last = 0.0
        self._bar = progress_bar(steps, name, "steps") if bar and _sink is None else None
        stage(name)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        if _sink is not None and (now - self._last >= STEP_INTERVAL_S or self.done >= self.steps):
            self._last = now
            used, total = (self.meter.steps, self.meter.budget.steps) if self.meter is not None else (0, 0)
            event = {"kind": "step", "stage": self.name, "step": self.done, "steps": self.steps}
            emit({**event, "used": used, "total": total})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def track(iterable: Iterable[Any], name: str, total: int | None = None, bar: bool = False) -> Iterator[Any]:
    """Iterate, reporting each finished item as a step of stage `name`."""
    steps = StageSteps(name, len(iterable) if total is None else total, bar=bar)  # type: ignore[arg-type]
    try:
        for item in iterable:
            yield item
            steps.update()
    finally:
        steps.close()


# ---------------------------------------------------------------- a worker process's way to its parent


@dataclass
class Channel:
    """Sends a job's events to the parent over the write end of a pipe; picklable into the worker process.

    One pipe per job, not one queue for all: a worker killed in the middle of a
    message then garbles only its own pipe, which the parent stops reading.
    """

    conn: Any  # multiprocessing.connection.Connection (write end)
    job: str
    log_level: int = logging.WARNING
    _lock: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lock": None}

    def __call__(self, event: Event) -> None:
        if self._lock is None:
            self._lock = threading.Lock()
        with self._lock:  # log records may come from other threads; a pipe message must be written whole
            try:
                self.conn.send({**event, "job": self.job})
            except (BrokenPipeError, OSError):
                pass  # the parent is gone; the worker is about to be stopped


class ChannelHandler(logging.Handler):
    """Log records of a worker as lines for the parent's view."""

    def __init__(self, sink: Sink, level: int):
        super().__init__(level)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink({"kind": "line", "text": self.format(record)})
        except Exception:  # logging must never take a run down
            self.handleError(record)


class LineStream:
    """A text stream that hands complete lines to `sink`; of a line redrawn with '\\r' (a tqdm bar) the last state."""

    def __init__(self, sink: Callable[[str], None], fileno: int | None = None):
        self.sink, self._fileno, self._buffer = sink, fileno, ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            shown = line.rsplit("\r", 1)[-1].rstrip()
            if shown:
                self.sink(shown)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._buffer.rsplit("\r", 1)[-1].strip():
            self.write("\n")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fileno is None:
            raise OSError("this stream has no file descriptor")
        return self._fileno


@contextlib.contextmanager
def worker_reporting(channel: Channel) -> Iterator[None]:
    """In a worker process: progress, log records (at the parent's level) and stdout/stderr lines go to the parent."""
    root = logging.getLogger()
    root.handlers[:] = [ChannelHandler(channel, channel.log_level)]
    root.setLevel(channel.log_level)
    stream = LineStream(lambda text: channel({"kind": "line", "text": text}), sys.__stderr__.fileno())
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream  # type: ignore[assignment]
    try:
        with reporting(channel):
            yield
    finally:
        stream.close()
        sys.stdout, sys.stderr = saved


# ---------------------------------------------------------------- the parent's view


def duration(seconds: float | None) -> str:
    """'42s', '3:05' or '1:02:03'."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def run_title(spec: Any) -> str:
    """How the view names a run: 'dataset/task method seed S trial T'."""
    return f"{spec.dataset}/{spec.task} {spec.method} seed {spec.seed} trial {spec.trial}"


@dataclass
class Job:
    title: str
    number: int | None  # k of [k/N]; None for a preparation job
    started: float
    work: int = 0  # optimizer steps of the run's budget
    stage: str = "starting"
    step: int = 0
    steps: int = 0
    used: int = 0
    first_step: tuple[float, int] | None = None  # (time, steps used) of the first step report

    def eta(self, now: float) -> float | None:
        """Time left in fit, from the rate of steps since the first one reported."""
        total = self.work or self.steps
        done = self.used if self.work else self.step
        if self.first_step is None or done <= self.first_step[1]:
            return None
        rate = (done - self.first_step[1]) / (now - self.first_step[0])
        return (total - done) / rate if rate > 0 else None


class GridView:
    """The view of a grid: a live block of running jobs on a terminal, or plain lines.

    Without a stream it shows only the jobs' own log records and output lines, on stderr as without a view.
    Jobs are keyed by a string; `start`, `event` (what a sink sends) and `end`
    may come in any order of jobs.  Run numbers [k/N] count runs as they start.
    """

    def __init__(
        self,
        total: int,
        live: bool = False,
        stream: TextIO | None = None,
        work_per_run: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.live, self.stream, self.work_per_run, self.clock = total, live, stream, work_per_run, clock
        self.jobs: dict[str, Job] = {}
        self.started_runs = 0
        self.ended: dict[str, int] = {}
        self.began = clock()
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.RLock()

    # --- what executors and sinks call
    def begin(self, total: int) -> None:
        """The grid starts: `total` runs to compute."""
        self.total, self.began = total, self.clock()

    def start(self, key: str, title: str, work: int = 0, counted: bool = True) -> None:
        with self._lock:
            if counted:
                self.started_runs += 1
            self.jobs[key] = Job(title, self.started_runs if counted else None, self.clock(), work)
            self.tick(force=True)

    def event(self, event: Event) -> None:
        with self._lock:
            job = self.jobs.get(event.get("job", ""))
            if event["kind"] == "line":
                self.output(event["text"])
            elif job is not None and event["kind"] == "stage":
                job.stage, job.step, job.steps = event["stage"], 0, 0
            elif job is not None and event["kind"] == "step":
                job.stage, job.step, job.steps, job.used = event["stage"], event["step"], event["steps"], event["used"]
                job.work = event["total"] or job.work
                if job.first_step is None:
                    job.first_step = (self.clock(), job.used if job.work else job.step)
            self.tick()

    def end(self, key: str, status: str, detail: str = "", run_s: float | None = None) -> None:
        """A job finished: its line is printed for good ('ok', 'failed', 'ready', ...).  'in' counts from the job's
        launch (a worker's start and imports included); `run_s`, the run's own time as its record states it
        (loading, fitting, scoring), follows as 'run'."""
        with self._lock:
            job = self.jobs.pop(key, None)
            if job is None:
                return
            if job.number is not None:
                self.ended[status] = self.ended.get(status, 0) + 1
            text = f"{self._prefix(job)} {job.title}: {status} in {duration(self.clock() - job.started)}"
            if run_s is not None:
                text += f", run {duration(run_s)}"
            if detail:
                first = detail.strip().splitlines()[0] if detail.strip() else ""
                text += f": {first[:ERROR_CHARS]}{'...' if len(first) > ERROR_CHARS else ''}"
            if not self.live and job.number is not None:
                text += f" ({self.footer()})"
            self.line(text)

    def sink(self, key: str) -> Sink:
        """The sink of a job that runs in this process."""
        return lambda event: self.event({**event, "job": key})

    # --- drawing
    def line(self, text: str) -> None:
        """Print a line for good (above the live block)."""
        if self.stream is None:
            return
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self._draw()

    def output(self, text: str) -> None:
        """A log record or output line of a job: above the live block, or on stderr when the view is silent."""
        if self.stream is None:
            sys.stderr.write(text + "\n")
        else:
            self.line(text)

    def tick(self, force: bool = False) -> None:
        """Redraw the live block when due."""
        if self.stream is None or not self.live:
            return
        with self._lock:
            if force or self.clock() - self._last_draw >= REDRAW_INTERVAL_S:
                self._clear()
                self._draw()

    def close(self) -> None:
        with self._lock:
            self._clear()
            self.live = False

    def footer(self) -> str:
        now = self.clock()
        done = sum(self.ended.values())
        running = sum(1 for j in self.jobs.values() if j.number is not None)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.ended.items()))
        eta = self.grid_eta(now)
        return (
            f"{done}/{self.total} done{f' ({counts})' if counts else ''}, {running} running, "
            f"{duration(now - self.began)} elapsed, ETA {duration(eta) if eta is not None else '?'}"
        )

    def grid_eta(self, now: float) -> float | None:
        """Time left for the grid: elapsed time scaled by the optimizer steps still to take."""
        per_run = self.work_per_run
        if per_run <= 0:
            return None
        finished = sum(self.ended.values())
        in_flight = sum(min(j.used, per_run) for j in self.jobs.values() if j.number is not None)
        done = finished * per_run + in_flight
        if done <= 0:
            return None
        return (now - self.began) * (self.total * per_run - done) / done

    def job_line(self, job: Job, now: float) -> str:
        parts = [job.stage]
        if job.steps:
            parts.append(f"step {job.step}/{job.steps}")
        parts.append(duration(now - job.started))
        eta = job.eta(now)
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        return f"{self._prefix(job)} {job.title}: {', '.join(parts)}"

    def _prefix(self, job: Job) -> str:
        return f"[{job.number}/{self.total}]" if job.number is not None else "[prep]"

    def _block(self) -> list[str]:
        now = self.clock()
        jobs = sorted(self.jobs.values(), key=lambda j: (j.number is not None, j.number or 0))
        return [self.job_line(j, now) for j in jobs] + [f"grid: {self.footer()}"]

    def _draw(self) -> None:
        if not self.live or self.stream is None:
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        lines = [line[:width] for line in self._block()]
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()
        self._drawn, self._last_draw = len(lines), self.clock()

    def _clear(self) -> None:
        if self._drawn and self.stream is not None:
            self.stream.write("\x1b[1A\x1b[2K" * self._drawn)  # up one line and erase it, per drawn line
            self._drawn = 0

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """While live, this process's stdout/stderr lines and log records print above the block, not through it."""
        if not self.live or self.stream is None:
            yield
            return
        stream = LineStream(self.line, sys.__stderr__.fileno())
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(stream) for h in handlers]  # type: ignore[arg-type]
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = stream  # type: ignore[assignment]
        try:
            yield
        finally:
            stream.close()
            sys.stdout, sys.stderr = saved
            for handler, old in zip(handlers, previous):
                handler.setStream(old)


# ---------------------------------------------------------------- the closing summary


def summary_rows(outcomes: list[tuple[str, str, float]]) -> list[list[Any]]:
    """(method, status, wall time) per run -> one row per method and a total: ok, failed, skipped, run time."""
    methods = sorted({m for m, _, _ in outcomes})
    rows = []
    for name in [*methods, None]:
        mine = [(s, t) for m, s, t in outcomes if name is None or m == name]
        counts = [sum(1 for s, _ in mine if s == k) for k in ("ok", "failed", "skipped")]
        rows.append([name or "total", *counts, duration(sum(t for s, t in mine if s != "skipped"))])
    return rows


SUMMARY_HEADERS = ["method", "ok", "failed", "skipped", "run time"]
# What the summary's times are, printed under it: a run's line ('ok in 19s, run 5s') also counts its worker's start.
SUMMARY_TIMES = (
    "run time: the runs' own time (loading data, fitting, scoring: each record's wall_time_s), summed; "
    "'ok in' on a run's line counts from its launch, a worker's start included"
)
