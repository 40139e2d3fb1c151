"""Running reward calls safely: a per-call timeout, and worker processes so one slow call cannot stall
the trainer.

A reward reads text written by a policy that is searching for loopholes; one completion of deeply nested
LaTeX can keep sympy busy for minutes, and some work (big-integer arithmetic inside C) cannot be interrupted
at all from Python. So every call runs under two guards:

- a **soft timeout** inside the process running the call: ``SIGALRM`` raises :class:`RewardTimeout` at the
  next Python bytecode once ``timeout`` seconds have passed (main thread only; elsewhere this guard is off);
- in a :class:`RewardPool`, a **hard timeout** in the parent: a worker that has not answered within
  ``timeout + grace`` seconds is killed and replaced, the call it was running scores 0.0 as a timeout, and
  the rest of its chunk goes to the new worker.

Outcomes are ``ok`` (a finite number or None), ``failed`` (raised, or returned a non-number / non-finite
value) and ``timeout``; failed and timed-out calls score 0.0. Calls name their reward by its registry name
or spec string (see :func:`~vlrl.rewards.base.get_reward`), so workers resolve functions themselves and
nothing but plain data crosses the process boundary. A reward registered under a name in some module is
found in a worker because each call also carries the module that defines it, which the worker imports.
"""

from __future__ import annotations

import importlib
import logging
import math
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from vlrl.rewards.base import RewardInput, get_reward

logger = logging.getLogger(__name__)

OK, FAILED, TIMEOUT = "ok", "failed", "timeout"
# Seconds a call may overrun the soft timeout before its worker is killed: time for SIGALRM to land.
HARD_GRACE_S = 1.0


class RewardTimeout(BaseException):
    """Raised inside a reward call when its soft timeout expires. A BaseException, so that a reward's own
    ``except Exception`` cannot swallow it and keep working."""


@dataclass(frozen=True)
class RewardCall:
    """One reward applied to one completion: plain data, so it pickles to a worker."""

    name: str  # registry name, "pkg.module:function" or "path/file.py:function"
    inp: RewardInput
    params: Mapping[str, Any] = field(default_factory=dict)
    module: str | None = None  # module defining a registered reward, imported by workers that lack it
    fn: Callable | None = field(default=None, compare=False)  # in-process only: skips the name lookup


@dataclass(frozen=True)
class Outcome:
    value: float | None  # 0.0 for failed and timeout
    status: str  # OK, FAILED or TIMEOUT
    seconds: float = 0.0  # wall time of the call


_ARMED: list[float] = []  # the running call's limit while a soft timeout is armed in this process


def _on_alarm(signum, frame):
    if _ARMED:
        raise RewardTimeout(f"reward call exceeded {_ARMED[-1]:g} s")


@contextmanager
def soft_timeout(seconds: float | None):
    """Raise :class:`RewardTimeout` in the block after ``seconds`` (SIGALRM; main thread of a Unix process
    only — elsewhere, or with ``seconds`` None/0, the block runs unguarded).

    The handler is installed on first use and stays while SIGALRM had no other handler, so a call costs two
    ``setitimer`` system calls; a foreign SIGALRM handler is put back after every call."""
    usable = bool(seconds) and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    previous = signal.getsignal(signal.SIGALRM)
    if previous is not _on_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
    _ARMED.append(seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _ARMED.pop()  # first: an alarm landing from here on finds nothing armed and does nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        if previous not in (_on_alarm, signal.SIG_DFL, None):
            signal.signal(signal.SIGALRM, previous)


def run_call(call: RewardCall, timeout: float | None, progress=None) -> Outcome:
    """Resolve and run one call under the soft timeout; never raises (except KeyboardInterrupt).

    Resolving (which may import the reward's module the first time) is not timed; ``progress``, a
    worker's shared ``[index, start]`` array, is stamped with the start once the reward itself runs."""
    try:
        fn = _resolve(call)
    except Exception:
        logger.debug("reward %r could not be resolved", call.name, exc_info=True)
        return Outcome(0.0, FAILED)
    start = time.perf_counter()
    if progress is not None:
        progress[1] = time.monotonic()
    try:
        with soft_timeout(timeout):
            value = fn(call.inp, **call.params)
    except RewardTimeout:
        return Outcome(0.0, TIMEOUT, time.perf_counter() - start)
    except Exception:  # a reward must never take the training step down with it
        logger.debug("reward %r raised", call.name, exc_info=True)
        return Outcome(0.0, FAILED, time.perf_counter() - start)
    return _outcome(value, time.perf_counter() - start)


def _resolve(call: RewardCall):
    if call.fn is not None:
        return call.fn
    try:
        return get_reward(call.name)
    except ValueError:
        if call.module is None or ":" in call.name:
            raise
    importlib.import_module(call.module)  # registers the name as a side effect
    return get_reward(call.name)


def run_batch(fn: Callable, inputs: Sequence[RewardInput], params: Mapping[str, Any],
              timeout: float | None) -> list[Outcome]:
    """One call of a batched reward over ``inputs`` in this process (see :mod:`vlrl.rewards.batched`), under a
    soft timeout of ``timeout`` per input. A raise, or a result of the wrong length, fails every input; an
    entry that is not a finite number (nor None) fails that input."""
    n = len(inputs)
    start = time.perf_counter()
    try:
        with soft_timeout(timeout * n if timeout else None):
            values = list(fn(list(inputs), **params))
    except RewardTimeout:
        return [Outcome(0.0, TIMEOUT, time.perf_counter() - start)] * n
    except Exception:
        logger.warning("batched reward %r raised on %d completions; they score 0 and count as failed",
                       getattr(fn, "__qualname__", fn), n, exc_info=logger.isEnabledFor(logging.DEBUG))
        return [Outcome(0.0, FAILED, time.perf_counter() - start)] * n
    seconds = (time.perf_counter() - start) / max(n, 1)
    if len(values) != n:
        logger.warning("batched reward %r returned %d scores for %d completions; they count as failed",
                       getattr(fn, "__qualname__", fn), len(values), n)
        return [Outcome(0.0, FAILED, seconds)] * n
    return [_outcome(v, seconds) for v in values]


def _outcome(value: Any, seconds: float) -> Outcome:
    if value is None:
        return Outcome(None, OK, seconds)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return Outcome(0.0, FAILED, seconds)
    if not math.isfinite(value):
        return Outcome(0.0, FAILED, seconds)
    return Outcome(value, OK, seconds)


def run_inline(calls: Sequence[RewardCall], timeout: float | None) -> list[Outcome]:
    """Run ``calls`` in this process, in order, each under the soft timeout only."""
    return [run_call(c, timeout) for c in calls]


def _worker_main(conn: Connection, progress, timeout: float | None) -> None:
    """Worker loop: receive a chunk ``[(index, call), ...]``, run it, answer ``[(index, outcome), ...]``.

    Before each call the worker writes the call's index and start time into ``progress`` (shared memory),
    which is how the parent tells which call is stuck, without a message per call. Exits when the pipe
    closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        answers = []
        for index, call in chunk:
            progress[0] = index
            answers.append((index, run_call(call, timeout, progress)))
            progress[1] = 0.0
        conn.send(answers)


class _Worker:
    def __init__(self, ctx, timeout: float | None):
        self.conn, child = ctx.Pipe()
        # [index of the running call, its start on the monotonic clock (shared by all processes on Linux
        # and macOS); 0 when idle]. No lock: one writer, and a torn read only delays a kill by a poll.
        self.progress = ctx.Array("d", 2, lock=False)
        self.process = ctx.Process(target=_worker_main, args=(child, self.progress, timeout), daemon=True,
                                   name="vlrl-reward-worker")
        self.process.start()
        child.close()
        self.chunk: list[tuple[int, RewardCall]] = []

    def send(self, chunk: list[tuple[int, RewardCall]]) -> None:
        self.chunk = chunk
        self.conn.send(chunk)

    def running(self) -> tuple[int, float] | None:
        """(index, seconds running) of the call in flight, None when idle."""
        started = self.progress[1]
        return None if started == 0.0 else (int(self.progress[0]), time.monotonic() - started)

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class RewardPool:
    """Runs reward calls on ``workers`` processes with soft and hard per-call timeouts.

    Processes start lazily on the first :meth:`run` (through a fork server where the platform has one, so
    a replacement for a killed worker starts quickly without copying the trainer's memory) and live until
    :meth:`close`. Calls go out in chunks (about four per worker, for balance) and come back one message per
    chunk; results are returned in call order.
    """

    POLL_S = 0.05  # how often busy workers are checked against the hard limit

    def __init__(self, workers: int, timeout: float | None, grace: float = HARD_GRACE_S):
        if workers < 1:
            raise ValueError(f"RewardPool needs at least one worker, got {workers}")
        self.workers, self.timeout, self.grace = workers, timeout, grace
        self._ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(["vlrl.rewards"])
        self._pool: list[_Worker] = []
        self.killed = 0  # workers killed for overrunning the hard limit, or found dead

    def run(self, calls: Sequence[RewardCall]) -> list[Outcome]:
        """Outcomes of ``calls``, in order."""
        if not calls:
            return []
        self._ensure_started()
        results: list[Outcome | None] = [None] * len(calls)
        indexed = list(enumerate(calls))
        size = max(1, math.ceil(len(calls) / (4 * self.workers)))
        queue = [indexed[s:s + size] for s in range(0, len(calls), size)][::-1]  # pop() hands out in order
        busy: dict[Connection, _Worker] = {}
        for worker in self._pool:
            self._next(worker, queue, busy)
        limit = None if not self.timeout else self.timeout + self.grace
        while busy:
            for conn in wait(list(busy), timeout=self.POLL_S if limit else None):
                worker = busy.pop(conn)
                try:
                    answers = conn.recv()
                except (EOFError, OSError):  # the worker died (a crash in C, os._exit, the OOM killer)
                    self._replace(worker, results, queue, busy, FAILED)
                    continue
                for index, outcome in answers:
                    results[index] = outcome
                self._next(worker, queue, busy)
            if limit:
                for conn, worker in list(busy.items()):
                    running = worker.running()
                    if running is not None and running[1] > limit:
                        del busy[conn]
                        self._replace(worker, results, queue, busy, TIMEOUT)
        return [r if r is not None else Outcome(0.0, FAILED) for r in results]

    def close(self) -> None:
        for worker in self._pool:
            worker.conn.close()  # the worker sees EOF and exits
        for worker in self._pool:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
        self._pool = []

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _ensure_started(self) -> None:
        self._pool = [w for w in self._pool if w.process.is_alive()]
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self.timeout))

    @staticmethod
    def _next(worker: _Worker, queue: list, busy: dict) -> None:
        if queue:
            try:
                worker.send(queue.pop())
            except OSError:  # died since its last answer: wait() reports the closed pipe, _replace resends
                pass
            busy[worker.conn] = worker

    def _replace(self, worker: _Worker, results: list, queue: list, busy: dict, status: str) -> None:
        """Kill ``worker`` and start a fresh one. The call it was running scores 0.0 with ``status``; the
        rest of its chunk (answers are per chunk, so also the calls it had finished) is queued again."""
        running = worker.running()
        self.killed += 1
        worker.kill()
        self._pool.remove(worker)
        indices = {i for i, _ in worker.chunk}
        last = int(worker.progress[0])  # the call started last, if it belongs to this chunk
        stuck = last if last in indices else (worker.chunk[0][0] if worker.chunk else None)
        for index, call in worker.chunk:
            if index == stuck:
                seconds = running[1] if running is not None else 0.0
                results[index] = Outcome(0.0, status, seconds)
                logger.warning("reward %r on a row of task %r (source %r): worker %s after %.1f s; replaced",
                               call.name, call.inp.task, call.inp.data_source,
                               "killed" if status == TIMEOUT else "died", seconds)
        rest = [(i, c) for i, c in worker.chunk if i != stuck]
        if rest:
            queue.append(rest)
        fresh = _Worker(self._ctx, self.timeout)
        self._pool.append(fresh)
        self._next(fresh, queue, busy)
