"""Where runs execute: in this process, one child process per run, or on Ray; all write the same store.

An executor receives the grid (`Grid`: the store, a run callable
`runner(spec) -> (record, arrays)` with `prepare_vlm`, `crashed`, `is_heavy`
and `needs_vlm` (see `runner.SpecRunner`), the view, the per-run wall-clock
limit and who hears of each finished run) and never imports the runner.  A
worker that dies (segfault, OOM kill, os._exit) or outlives its wall-clock
limit is recorded as a failed run; the grid goes on.
Workers report progress, log records and output lines to the parent's view
(`progress.GridView`) and die with the parent (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from multiprocessing import forkserver
from multiprocessing.connection import wait
from typing import Any, Callable

from fairfacebench.progress import Channel, GridView, reporting, run_title, stage, worker_reporting
from fairfacebench.provenance import portable
from fairfacebench.record import RunRecord
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore

log = logging.getLogger("fairfacebench")

Finished = Callable[[RunSpec, RunRecord], None]

# A derived limit catches hangs, it is no schedule: room to build an image cache, plus about ten times the
# measured cost of a training sample on one CPU thread (about 10 ms at 48 px, all stages and evaluation included).
TIMEOUT_BASE_S = 1800.0
TIMEOUT_PER_SAMPLE_S = 0.1
TIMEOUT_RESOLUTION = 48
REPEAT_S = 1.0  # a run in this process past its limit is stopped again this often until it ends
HARD_STOP_S = 120.0  # ... and given up (its record written, the grid ended) when it ignores every stop this long
TICK_S = 0.25  # how often the parent looks at deadlines and redraws while it waits
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_S = 0.2  # how often a worker checks that its grid process is alive


class RunTimeout(RuntimeError):
    """A run outlived its wall-clock limit and was stopped."""


def time_limit(spec: RunSpec, run_timeout_s: float = 0.0) -> float:
    """Wall-clock seconds a run may take: `run_timeout_s` when positive, else derived from its budget."""
    if run_timeout_s > 0:
        return float(run_timeout_s)
    samples = spec.budget.steps * spec.budget.batch_size
    return TIMEOUT_BASE_S + TIMEOUT_PER_SAMPLE_S * samples * (spec.resolution / TIMEOUT_RESOLUTION) ** 2


def seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


def timeout_error(limit: float) -> str:
    return (
        f"RunTimeout: the run did not finish within its wall-clock limit of {seconds(limit)} s and was stopped "
        "(plan key run_timeout_s / --run-timeout; 0 derives the limit from the budget)"
    )


@dataclass
class Grid:
    """One grid's shared parts, handed to an executor whole."""

    store: ResultStore
    runner: Any
    view: GridView
    finished: Finished
    run_timeout_s: float = 0.0  # 0: each run's limit is derived from its budget
    may_launch: Callable[[], bool] = lambda: True  # False: start no more runs, let the running ones finish (--until)

    def limit(self, spec: RunSpec) -> float:
        return time_limit(spec, self.run_timeout_s)

    def write(self, spec: RunSpec, record: RunRecord, arrays: dict | None = None) -> None:
        """Store a finished run and tell whoever follows the grid."""
        self.store.write(spec.run_id, record, arrays)
        self.finished(spec, record)

    def crashed(self, spec: RunSpec, error: str) -> None:
        self.write(spec, self.runner.crashed(spec, error))


# ---------------------------------------------------------------- in this process


class InProcessLimit:
    """The wall-clock limit of a run in this process's main thread, and whether the user interrupted it.

    At the limit SIGALRM raises RunTimeout inside the run, again every REPEAT_S while it goes on (a method may
    catch one); from then on a watchdog thread also raises RunTimeout in the main thread (a method may ignore
    SIGALRM); a run that outlives every stop by HARD_STOP_S is handed to `stuck` (which ends this process).
    SIGINT sets `interrupted`, so the user's Ctrl-C is told apart from a KeyboardInterrupt a method raised.
    """

    def __init__(self, seconds: float, stuck: Callable[[], None]):
        self.seconds, self.stuck = seconds, stuck
        self.expired = self.interrupted = False
        self._active = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._previous: dict[int, Any] = {}

    def arm(self) -> None:
        self._active = True
        self._previous = {
            signal.SIGALRM: signal.signal(signal.SIGALRM, self._expire),
            signal.SIGINT: signal.signal(signal.SIGINT, self._interrupt),
        }
        threading.Thread(target=self._watch, args=(threading.main_thread().ident,), daemon=True).start()
        signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT_S)

    def disarm(self) -> None:
        """Stop every timer and restore the signal handlers; call it again if a late stop cut it short."""
        with self._lock:
            self._active = False
            raise_in(threading.main_thread().ident, None)  # a stop the watchdog sent that has not landed yet
        self._done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _expire(self, signum: int, frame: Any) -> None:
        if self._active:
            self.expired = True
            raise RunTimeout(timeout_error(self.seconds).removeprefix("RunTimeout: "))

    def _interrupt(self, signum: int, frame: Any) -> None:
        previous = self._previous.get(signal.SIGINT)
        if previous == signal.SIG_IGN:
            return
        self.interrupted = True
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    def _watch(self, main: int) -> None:
        if self._done.wait(self.seconds + REPEAT_S):
            return
        give_up = time.monotonic() + HARD_STOP_S
        while True:
            with self._lock:
                if not self._active:
                    return
                self.expired = True
                if time.monotonic() > give_up:
                    self.stuck()
                    return
                raise_in(main, RunTimeout)
            if self._done.wait(REPEAT_S):
                return


def raise_in(thread: int | None, exc: type[BaseException] | None) -> None:
    """Raise `exc` in thread `thread` at its next bytecode (None: drop one pending there)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread or 0), ctypes.py_object(exc) if exc else None)


def run_here(grid: Grid, spec: RunSpec) -> tuple[RunRecord, dict | None]:
    """One run in this process under its wall-clock limit: whatever the method does (catches the stop, ignores
    SIGALRM, raises KeyboardInterrupt or another BaseException), the run ends with a record; only the user's Ctrl-C
    ends the grid."""
    limit = grid.limit(spec)
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return grid.runner(spec)
    guard = InProcessLimit(limit, lambda: give_up(grid, spec, limit))
    try:
        try:
            guard.arm()
            record, arrays = grid.runner(spec)
        finally:
            guard.disarm()
    except BaseException as exc:  # the runner records exceptions itself: this is a stop or a BaseException
        guard.disarm()  # again: a stop that landed inside the first call cut it short
        if guard.interrupted:
            raise
        record, arrays = grid.runner.crashed(spec, base_exception_error(exc)), None
        record.traceback = portable(traceback.format_exc())
    if guard.expired and record.ok:  # the method caught every stop and returned after its limit
        record, arrays = grid.runner.crashed(spec, timeout_error(limit) + " (the method caught the stop)"), None
    elif guard.expired:
        record.error = timeout_error(limit)
    return record, arrays


def base_exception_error(exc: BaseException) -> str:
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return (
        f"{type(exc).__name__}: {exc} (raised by the run, not by Ctrl-C: a method must raise an Exception; "
        "KeyboardInterrupt and other BaseExceptions are the harness's)"
    )


def give_up(grid: Grid, spec: RunSpec, limit: float) -> None:
    """A run in this process that ignored every stop: record it failed, then end the process (the watchdog thread
    cannot stop the main thread; a worker process can be killed, so such methods belong under --workers 2)."""
    error = (
        f"{timeout_error(limit)}; it ignored every stop for {seconds(HARD_STOP_S)} s more, so the grid in this process "
        "ended: run methods that may hang with --workers 2 or more, where a stuck run is killed"
    )
    grid.crashed(spec, error)
    log.error("run %s: %s", spec.label, error)
    logging.shutdown()
    os._exit(1)


def run_locally(grid: Grid, todo: list[RunSpec]) -> None:
    """One run after another in this process (a run past its limit fails with RunTimeout, raised inside it)."""
    view = grid.view
    for spec in todo:
        if not grid.may_launch():
            return
        view.start(spec.run_id, run_title(spec), work=spec.budget.steps)
        with view.capture(), reporting(view.sink(spec.run_id)):
            record, arrays = run_here(grid, spec)
        grid.write(spec, record, arrays)


# ---------------------------------------------------------------- one child process per run


# What the fork server imports once, so that every worker starts with them loaded (a spawned worker spent
# 3-6 s importing torch, torchvision and the plugins before its first step).  Only modules of this package and
# its own dependencies: a third-party plugin that fails on import must fail its run, not the fork server.
PRELOAD = ("torch", "torchvision", "fairfacebench.runner", "fairfacebench.sealed", "fairfacebench.plugins")


def worker_context() -> Any:
    """Fresh worker processes forked from a server that has imported `PRELOAD` and the built-in plugins.

    Each worker is still a new process with nothing of an earlier run in it: the server itself runs nothing.
    Where the platform has no fork server, workers are spawned.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, *builtin_plugin_modules()])
    return ctx


def builtin_plugin_modules() -> list[str]:
    return sorted({ep.module for ep in entry_points(group="fairfacebench") if ep.module.startswith("fairfacebench.")})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def die_with_parent(parent: int) -> None:
    """Make this worker die when the grid process `parent` dies (a killed grid leaves no worker writing).

    A worker's own parent is the fork server, which outlives the grid while workers hold its "alive" pipe:
    so a thread polls the grid's pid and kills the worker's process group when it is gone (the worker
    leads its own group, so the processes it started go too).  On Linux the kernel also sends SIGKILL
    when the worker's own parent dies (PR_SET_PDEATHSIG; the parent itself when workers are spawned).
    """
    os.setpgrp()
    leave_fork_server()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if not alive(parent):  # the grid died before the watch started
        os._exit(1)


def leave_fork_server() -> None:
    """In a worker forked by the grid's fork server: drop the server's handles the fork handed down.

    The worker then holds no end of the server's "alive" pipe (so the server exits with the grid, and the
    kernel's parent-death signal reaches the worker), and a process pool the run starts (the image-cache
    builder) gets a fork server of its own, inside the worker's process group, stopped with the worker.
    """
    server = forkserver._forkserver  # CPython's module-level server; its attribute names since 3.4
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        os.close(alive_fd)
    for name in ("_forkserver_alive_fd", "_forkserver_address"):
        if hasattr(server, name):
            setattr(server, name, None)


def _watch_parent(parent: int) -> None:
    while alive(parent):
        time.sleep(WATCH_S)
    os.killpg(0, signal.SIGKILL)


def adopt_environment(env: dict[str, str]) -> None:
    """The grid's environment as it is now (the fork server holds the one it had when it started)."""
    os.environ.clear()
    os.environ.update(env)


def _child(
    runner: Any, spec: RunSpec, store_root: str, threads: int, channel: Channel, parent: int, env: dict[str, str]
) -> None:
    """Run one spec in a fresh process and write its record itself (large arrays never cross a pipe)."""
    die_with_parent(parent)
    adopt_environment(env)
    with worker_reporting(channel):
        record, arrays = runner(spec)  # the runner computes inside compute_threads(spec.threads)
        ResultStore(store_root).write(spec.run_id, record, arrays)


def _prepare(runner: Any, value: str, threads: int, channel: Channel, parent: int, env: dict[str, str]) -> None:
    die_with_parent(parent)
    adopt_environment(env)
    with worker_reporting(channel):
        import torch

        torch.set_num_threads(threads)
        stage("loading")  # a VLM that is not cached reports its training steps next
        runner.prepare_vlm(value)


def wave_key(spec: RunSpec) -> tuple:
    """The wave a run belongs to: its dataset, whether it is a search trial, its seed (plan.expand's order)."""
    return (spec.dataset, spec.trial > 0, spec.seed)


def wave_of(todo: list[RunSpec]) -> dict[tuple, int]:
    """Each wave's position: the order in which its first run appears in the grid."""
    order: dict[tuple, int] = {}
    for spec in todo:
        order.setdefault(wave_key(spec), len(order))
    return order


def launch_order(todo: list[RunSpec], is_heavy: Callable[[RunSpec], bool]) -> list[RunSpec]:
    """The order worker processes start runs in: the plan's waves in turn, the heavy runs (`is_heavy`: a pool or a
    VLM) first within each, so a wave does not end on one long run while the other workers idle, and an interrupted
    grid leaves whole waves (every method at a seed) rather than every seed of a few methods."""
    waves = wave_of(todo)
    return sorted(todo, key=lambda s: (waves[wave_key(s)], not is_heavy(s)))


def in_worker_processes(executor: str, workers: int) -> bool:
    """Whether `grid.execute` runs each run in a child process of its own (the local executor with more than one
    worker); otherwise it runs them in this process, or on Ray."""
    return executor == "local" and workers > 1


def start_order(executor: str, workers: int, todo: list[RunSpec], is_heavy: Callable[[RunSpec], bool]) -> list[RunSpec]:
    """The order in which `grid.execute` starts the runs `todo`: worker processes start them in `launch_order`,
    the other executors in the plan's order."""
    return launch_order(todo, is_heavy) if in_worker_processes(executor, workers) else list(todo)


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of `workers` concurrent runs: the CPU threads shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


@dataclass
class Worker:
    """A job running in a child process, as the parent tracks it."""

    proc: Any
    kind: str  # 'prepare' or 'run'
    item: Any  # the VLM value or the RunSpec
    key: str
    conn: Any  # read end of the job's pipe (None once closed)
    deadline: float
    limit: float


def stop(proc: Any) -> None:
    """Kill a worker and every process it started (its process group), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not yet its own group leader, or already gone
        proc.kill()
    proc.join()


def drain(worker: Worker, view: GridView) -> None:
    """Hand every message waiting in a worker's pipe to the view."""
    try:
        while worker.conn is not None and worker.conn.poll():
            view.event(worker.conn.recv())
    except (EOFError, OSError):  # the worker closed its end or died in the middle of a message
        worker.conn.close()
        worker.conn = None


def run_in_processes(grid: Grid, todo: list[RunSpec], workers: int) -> None:
    """Up to `workers` child processes at a time, each with its share of the CPU threads.

    A VLM the runs need is prepared first, in a job of its own (the embedded
    mini-CLIP trains there once when it is not cached), while runs that need
    no VLM go ahead; runs that need it wait for that job.  If preparing
    fails, those runs still start and record the error themselves.
    """
    store, runner, view = grid.store, grid.runner, grid.view
    ctx = worker_context()
    threads = threads_per_worker(workers)
    level = logging.getLogger().getEffectiveLevel()
    preparing = sorted({s.vlm for s in todo if runner.needs_vlm(s)})
    heavy_first = launch_order(todo, runner.is_heavy)
    jobs: list[tuple[str, Any]] = [("prepare", value) for value in preparing] + [("run", spec) for spec in heavy_first]
    prepare_limit = max((grid.limit(s) for s in todo), default=TIMEOUT_BASE_S)
    running: dict[int, Worker] = {}

    def ready(job: tuple[str, Any]) -> bool:
        kind, item = job
        return kind == "prepare" or not runner.needs_vlm(item) or item.vlm not in preparing

    def launch(kind: str, item: Any) -> Worker:
        key = f"vlm:{item}" if kind == "prepare" else item.run_id
        receive, send = ctx.Pipe(duplex=False)
        channel = Channel(send, key, level)
        if kind == "prepare":
            target, args = _prepare, (runner, item, threads, channel, os.getpid(), dict(os.environ))
            limit = prepare_limit
            view.start(key, f"preparing VLM {item}", counted=False)
        else:
            target, args = _child, (runner, item, str(store.root), threads, channel, os.getpid(), dict(os.environ))
            limit = grid.limit(item)
            view.start(key, run_title(item), work=item.budget.steps)
        # Not daemonic: a run may start processes of its own (the image-cache builder's worker pool).
        proc = ctx.Process(target=target, args=args, daemon=False)
        proc.start()
        send.close()  # the child holds the write end now; its death closes the pipe
        return Worker(proc, kind, item, key, receive, time.monotonic() + limit, limit)

    def settle(worker: Worker, error: str | None) -> None:
        """Record the outcome of a finished or stopped worker."""
        if worker.conn is not None:
            worker.conn.close()
        if worker.kind == "prepare":
            preparing.remove(worker.item)
            view.end(worker.key, "ready" if error is None and worker.proc.exitcode == 0 else "failed", error or "")
            return
        if error is None and store.status(worker.item.run_id) is None:
            error = f"WorkerDied: worker process exited with code {worker.proc.exitcode} before writing a result"
        if error is not None:
            grid.crashed(worker.item, error)
            return
        record = store.record(worker.item.run_id)
        if record is None:  # written, then damaged before it could be read back
            grid.crashed(worker.item, "DamagedRecord: the worker's record could not be read back (see the warning)")
            return
        grid.finished(worker.item, record)

    try:
        while jobs or running:
            if jobs and not grid.may_launch():
                jobs.clear()  # past --until: nothing more starts, the running runs finish and are recorded
            while len(running) < workers and any(ready(j) for j in jobs):
                worker = launch(*jobs.pop(next(i for i, j in enumerate(jobs) if ready(j))))
                running[worker.proc.sentinel] = worker
            waitables = list(running) + [w.conn for w in running.values() if w.conn is not None]
            exited = set(wait(waitables, timeout=TICK_S)) & set(running)
            for worker in running.values():
                drain(worker, view)  # before a worker's end is shown: its last steps and log lines come first
            now = time.monotonic()
            for sentinel in list(running):
                worker = running[sentinel]
                if sentinel in exited:
                    del running[sentinel]
                    worker.proc.join()
                    settle(worker, None)
                elif now > worker.deadline:
                    del running[sentinel]
                    stop(worker.proc)
                    settle(worker, timeout_error(worker.limit))
            view.tick()
    finally:
        for worker in running.values():  # interrupted (Ctrl-C, an error here): stop the runs still going
            stop(worker.proc)


# ---------------------------------------------------------------- Ray


def run_in_ray(grid: Grid, todo: list[RunSpec], address: str | None, workers: int) -> None:
    """Each run is a Ray task (no retries), at most `workers` at a time; the driver writes the store.

    The view shows runs starting and ending; their steps stay on the Ray workers.
    """
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'fairfacebench[ray]'") from exc

    runner, view = grid.runner, grid.view
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        task = ray.remote(max_retries=0, num_cpus=1)(lambda r, spec: r(spec))
        waiting = list(todo)
        pending: dict[Any, tuple[RunSpec, float]] = {}
        while waiting or pending:
            if waiting and not grid.may_launch():
                waiting.clear()  # past --until: nothing more starts
            while waiting and len(pending) < max(workers, 1):
                spec = waiting.pop(0)
                view.start(spec.run_id, run_title(spec), work=spec.budget.steps)
                pending[task.remote(runner, spec)] = (spec, time.monotonic() + grid.limit(spec))
            done, _ = ray.wait(list(pending), num_returns=1, timeout=TICK_S)
            for ref in done:
                spec, _ = pending.pop(ref)
                try:
                    record, arrays = ray.get(ref)
                except ray.exceptions.RayError as exc:  # worker crash or task error outside the runner
                    record, arrays = runner.crashed(spec, f"{type(exc).__name__}: {exc}"), None
                grid.write(spec, record, arrays)
            now = time.monotonic()
            for ref, (spec, deadline) in list(pending.items()):
                if now > deadline:
                    ray.cancel(ref, force=True)
                    del pending[ref]
                    grid.crashed(spec, timeout_error(grid.limit(spec)))
            view.tick()
    finally:
        if started_here:
            ray.shutdown()
