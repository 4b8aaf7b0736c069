"""The ``processes`` executor: CPU-bound activities in a pool of worker processes.

Each worker is a process with its own pipe and a shared cancel byte. A branch
actor's thread checks out an idle worker (starting one if the pool is below
its size), sends it one call, and waits for the reply; the branch actor thus
still represents its running branch. A worker that dies fails only the
attempt it was running (``WorkerLostError``; the retry policy applies) and is
replaced on demand, so one crash never fails a sibling branch, which a
``concurrent.futures`` pool (``BrokenProcessPool``) would do.

Workers start with ``forkserver`` on Linux: never ``fork`` from a process
whose other threads may hold locks (LMDB, logging, pykka). A new worker says
it is ready before it is used, so a worker that cannot start (a script
without an ``if __name__ == "__main__":`` guard, say) fails the attempt with
a message that says so.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ._errors import ExecutorUnavailableError
from ._executors import Executor
from ._remote import PolledFlag, Refused, execute, lost, outcome, prepare, watch_cancel

if TYPE_CHECKING:
    from ._activity import ActivityTask
    from ._messages import ActivityDone

__all__ = ["ProcessExecutor"]

START_TIMEOUT = 60.0  # seconds a new worker may take to import what it needs and say it is ready
_READY = b"ready"


class _SharedFlag(PolledFlag):
    """``ActivityContext.cancelled`` inside a worker: reads the byte the parent sets."""

    def __init__(self, byte: Any) -> None:
        super().__init__()
        self._byte = byte

    def is_set(self) -> bool:
        return bool(self._byte.value)

    def set(self) -> None:
        self._byte.value = 1

    def clear(self) -> None:
        self._byte.value = 0


def worker_main(conn: Connection, byte: Any) -> None:
    """A worker process: answer calls until the parent closes the pipe or dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    flag = _SharedFlag(byte)
    try:
        conn.send_bytes(_READY)
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        reply = execute(pickle.loads(data), flag)
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            return


class _StartFailed(Exception):
    pass


class _Worker:
    __slots__ = ("byte", "conn", "process")

    def __init__(self, process: Any, conn: Connection, byte: Any) -> None:
        self.process = process
        self.conn = conn
        self.byte = byte

    def flag(self) -> None:
        self.byte.value = 1


class ProcessExecutor(Executor):
    """Runs activities in ``workers`` worker processes (default: one per CPU).

    Args:
        workers: pool size; attempts beyond it wait (in their branch actors) for a free worker.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.

    An activity must be importable by module and qualified name (defined at
    module level; a script's functions need an ``if __name__ == "__main__":``
    guard). Arguments and results cross as the store's msgpack codec packs
    them. ``ActivityContext.cancelled`` is carried to the worker. A timed-out
    attempt or a race loser is abandoned, not killed: its worker finishes it
    and only then takes the next attempt.

    Example:
        ``Runtime(path, executor=ProcessExecutor(workers=4))``
    """

    kind = "processes"

    def __init__(self, workers: int | None = None, *, start_method: str | None = None) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"ProcessExecutor: workers must be an int >= 1, got {workers!r}")
        methods = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in methods or start_method == "fork":
            allowed = [m for m in methods if m != "fork"]
            raise ValueError(f"ProcessExecutor: start_method must be one of {allowed}, got {start_method!r}")
        self.workers = workers
        self.start_method = start_method
        self._context = multiprocessing.get_context(start_method)
        self._cond = threading.Condition()
        self._idle: deque[_Worker] = deque()
        self._all: set[_Worker] = set()
        self._closed = False
        self.spawned = 0
        self.lost = 0

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, start_method={self.start_method!r})"

    def start(self) -> None:
        with self._cond:
            self._closed = False  # the same instance may serve the runtime again after a restart

    def run(self, task: ActivityTask) -> ActivityDone | None:
        try:
            call = prepare(task, by_name=True)
        except Refused as refusal:
            return refusal.done
        try:
            worker = self._checkout()
        except _StartFailed as exc:
            return task.failed(ExecutorUnavailableError(self.kind, str(exc)))
        except Exception as exc:
            return lost(task, self.kind, f"could not start a worker process: {type(exc).__name__}: {exc}")
        if worker is None:
            return lost(task, self.kind, "the runtime is shutting down")
        if not task.wanted():  # it timed out and was retried while it waited for a worker
            self._checkin(worker)
            return None
        worker.byte.value = 0
        stop_watching = watch_cancel(task, worker.flag)
        try:
            worker.conn.send_bytes(pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL))
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return lost(task, self.kind, self._bury(worker))
        finally:
            stop_watching()  # the worker's byte is not this attempt's any more
        self._checkin(worker)
        return outcome(task, pickle.loads(data))

    def _checkout(self) -> _Worker | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                while self._idle:
                    worker = self._idle.popleft()
                    if worker.process.is_alive():
                        return worker
                    self._all.discard(worker)  # it died while idle: replace it, fail nobody
                    self.lost += 1
                    worker.conn.close()
                if len(self._all) < self.workers:
                    break
                self._cond.wait()
            placeholder = _Worker(None, None, None)  # type: ignore[arg-type]
            self._all.add(placeholder)  # reserve the slot while the process starts
        try:
            worker = self._spawn()
        except BaseException:
            with self._cond:
                self._all.discard(placeholder)
                self._cond.notify()
            raise
        with self._cond:
            self._all.discard(placeholder)
            if self._closed:
                self._stop(worker)
                return None
            self._all.add(worker)
        return worker

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        byte = self._context.RawValue("b", 0)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, byte), daemon=True, name="treadle-worker"
        )
        process.start()
        child.close()
        with self._cond:
            self.spawned += 1
        try:
            ready = parent.poll(START_TIMEOUT) and parent.recv_bytes() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)
            parent.close()
            raise _StartFailed(
                f"a worker process could not start (exit code {process.exitcode}; its error is on the "
                "runtime's stderr). A worker imports the main script: it needs an "
                '`if __name__ == "__main__":` guard, and the activity\'s module must import cleanly'
            )
        return _Worker(process, parent, byte)

    def _checkin(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                self._all.discard(worker)
                self._stop(worker)
                return
            self._idle.append(worker)
            self._cond.notify()

    def _bury(self, worker: _Worker) -> str:
        """Forget a dead worker; a new one starts when needed. Returns what happened to it."""
        with self._cond:
            self._all.discard(worker)
            closing = self._closed
            self.lost += not closing
            self._cond.notify()
        process = worker.process
        process.join(timeout=5)
        worker.conn.close()
        if closing:
            return "the runtime is shutting down"
        code = process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {-code} ({signal.Signals(-code).name})"
        else:
            how = f"exit code {code}"
        return f"worker process {process.pid} died while running the attempt ({how})"

    @staticmethod
    def _stop(worker: _Worker) -> None:
        worker.conn.close()  # an idle worker sees EOF and exits
        worker.process.join(timeout=1)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            busy = [w for w in self._all if w.process is not None and w not in idle]
            self._all.clear()
            self._cond.notify_all()
        for worker in idle:
            self._stop(worker)
        for worker in busy:  # abandoned attempts: not checkpointed, so they run again after a restart
            worker.process.kill()
