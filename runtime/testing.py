"""Helpers for testing workflows: a fake clock, crash points and a crash harness.

``FakeClock`` lets a test move time forward by hand (durable sleeps,
timeouts and retries follow it). ``crash_env`` builds the environment that
makes a child process kill itself with SIGKILL at a named fault point.

The subprocess harness crash-tests your own workflows: a child script (its
activities count themselves with ``FileCounter.from_env().hit(...)``, and it
ends with ``child_main(my_workflow, *args, run_id="r1")``) is killed with
SIGKILL at a fault point, once markers appear, or at a random moment; then a
fresh child on the same store finishes the run::

    with Scenario(tmp_path, "scenario.py") as sc:
        rec = crash_and_recover(sc, crash_at="after_step_before_commit")
        assert rec.report["result"] == 42 and sc.counters.count("charge") == 2
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treadle.storage import FAULT_POINTS, LmdbStore, journal_prefix

from ._audit import AuditReport, audit
from ._errors import RunParkedError, WorkflowFailedError
from ._records import StepRecord
from ._runtime import RunHandle, Runtime, _step_record

__all__ = [
    "FAULT_POINTS",
    "AuditReport",
    "Child",
    "FakeClock",
    "FileCounter",
    "HarnessError",
    "Recovery",
    "Scenario",
    "audit",
    "child_main",
    "crash_and_recover",
    "crash_env",
    "journal_snapshot",
    "run_child",
]


class FakeClock:
    """A clock that only moves when told to (``advance``/``set``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._wall = start
        self._mono = 0.0
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def wait_hint(self, seconds: float) -> float | None:
        return None

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward; use set() for a wall-clock jump")
        with self._lock:
            self._wall += seconds
            self._mono += seconds
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def set(self, wall: float) -> None:
        """Jump the wall clock (monotonic time does not move), like an NTP step."""
        with self._lock:
            self._wall = wall
            listeners = list(self._listeners)
        for callback in listeners:
            callback()


def crash_env(point: str, count: int = 1) -> dict[str, str]:
    """Environment variables that crash a child process at ``point`` (the ``count``-th time)."""
    if point not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {point!r}; known: {FAULT_POINTS}")
    return {"TREADLE_CRASH_AT": f"{point}:{count}"}


# -- crash harness ---------------------------------------------------------------------

_COUNTERS_ENV = "TREADLE_COUNTERS"
_WATCH_ENV = "TREADLE_WATCH_STEPS"
Pathish = str | os.PathLike[str]


class HarnessError(AssertionError):
    """A child process misbehaved (died early, hung, wrote no report); the message has its log tail."""


class FileCounter:
    """Counters and markers in one folder, safe across processes and SIGKILL.

    ``hit`` appends a line ``pid wall-time note`` to ``NAME.calls`` (``O_APPEND``,
    fsynced before it returns), so what a killed process counted is still there
    for the next one; ``mark`` creates a marker file atomically.
    """

    def __init__(self, folder: Pathish) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> FileCounter:
        """In a child: the folder its :class:`Scenario` gave it (``TREADLE_COUNTERS``)."""
        return cls(os.environ[_COUNTERS_ENV])

    def _path(self, name: str, suffix: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + suffix)

    def hit(self, name: str, note: str = "") -> None:
        """Count one event ``name``, durably."""
        fd = os.open(self._path(name, ".calls"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {time.time():.6f} {note}".rstrip().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def lines(self, name: str) -> list[tuple[int, float, str]]:
        """Every hit of ``name``, in order, as ``(pid, wall time, note)``."""
        path = self._path(name, ".calls")
        rows = path.read_text().splitlines() if path.exists() else []
        return [
            (int(pid), float(stamp), note[0] if note else "")
            for pid, stamp, *note in (r.split(" ", 2) for r in rows)
        ]

    def count(self, name: str) -> int:
        """How many times ``name`` was hit, by every process."""
        return len(self.lines(name))

    def mark(self, name: str, value: Any = None) -> None:
        """Create marker ``name`` holding the JSON ``value`` (readers never see half of it)."""
        path = self._path(name, ".mark")
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as fh:
            json.dump({"value": value, "time": time.time()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def has(self, name: str) -> bool:
        return self._path(name, ".mark").exists()

    def read(self, name: str) -> tuple[Any, float]:
        """``(value, wall time of the mark)`` of marker ``name``."""
        data = json.loads(self._path(name, ".mark").read_text())
        return data["value"], float(data["time"])

    def wait_mark(self, name: str, timeout: float) -> bool:
        """Poll for marker ``name`` (every 5 ms, at most ``timeout`` s); whether it exists."""
        deadline = time.monotonic() + timeout
        while not self.has(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


class Child:
    """A child process (``python SCRIPT MODE STORE REPORT``), its output in ``TAG.log``.

    A watchdog SIGKILLs it after ``timeout`` seconds, so none outlives a test.
    """

    def __init__(
        self, script: Pathish, store: Pathish, mode: str, env: dict[str, str], timeout: float, tag: str
    ) -> None:
        folder = Path(store).parent
        self.log_path, self.report_path = folder / f"{tag}.log", folder / f"{tag}.json"
        self.report_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed when the child is reaped
        argv = [sys.executable, str(script), mode, str(store), str(self.report_path)]
        try:
            self.proc = subprocess.Popen(
                argv, env=env, cwd=folder, stdout=self._log, stderr=subprocess.STDOUT
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self.proc.pid
        self._watchdog = threading.Timer(timeout, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    @property
    def returncode(self) -> int | None:
        """The exit code (``-9`` after SIGKILL), ``None`` while alive."""
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def kill9(self) -> None:
        """SIGKILL the child if it is alive, and reap it."""
        self._kill()
        self.wait(10)

    def wait(self, timeout: float) -> int:
        """Reap the child; its exit code. HarnessError (after a SIGKILL) if it outlives ``timeout``."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.wait(timeout=10)
            raise HarnessError(f"child {self.pid} did not exit within {timeout}s\n{self.logs()}") from None
        finally:
            if self.proc.returncode is not None:
                self._watchdog.cancel()
                self._log.close()
        return code

    def logs(self, limit: int = 4000) -> str:
        """The tail of the child's output."""
        return "--- child log tail ---\n" + self.log_path.read_text(errors="replace")[-limit:]

    def wait_marks(self, counters: FileCounter, names: Iterable[str], timeout: float) -> None:
        """Wait until every marker in ``names`` exists; HarnessError if the child exits or time runs out."""
        deadline, wanted = time.monotonic() + timeout, list(names)
        while missing := [name for name in wanted if not counters.has(name)]:
            if not self.alive() or time.monotonic() >= deadline:
                why = f"exited {self.returncode}" if not self.alive() else f"waited {timeout}s"
                raise HarnessError(f"child {self.pid}: no markers {missing} ({why})\n{self.logs()}")
            time.sleep(0.005)

    def report(self) -> dict[str, Any]:
        """What :func:`child_main` wrote: ``result``, ``error``, ``status``, ``history``, ``pid``."""
        if not self.report_path.exists():
            raise HarnessError(f"child {self.pid} (exit {self.returncode}) wrote no report\n{self.logs()}")
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data


def run_child(
    script: Pathish,
    store: Pathish,
    mode: str = "run",
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    *,
    tag: str = "child",
) -> Child:
    """Start ``python SCRIPT MODE STORE TAG.json``, its output in ``TAG.log`` beside the store.

    ``env`` defaults to this process's environment without ``TREADLE_CRASH_AT``.
    The child is SIGKILLed if it still runs after ``timeout`` seconds.
    """
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "TREADLE_CRASH_AT"}
    return Child(script, store, mode, {**env, "PYTHONUNBUFFERED": "1"}, timeout, tag)


def _watch_steps(handle: RunHandle, counters: FileCounter, spec: str, stop: threading.Event) -> None:
    wanted, seen = set(spec.split(",")), set[str]()
    while not stop.wait(0.01):
        for rec in handle.history():
            name = f"step.{rec.step}.{rec.status}"
            if ("*" in wanted or rec.step in wanted) and name not in seen:
                seen.add(name)
                counters.mark(name)


def child_main(
    workflow: Callable[..., Any] | str,
    *args: Any,
    run_id: str,
    on_start: Callable[[RunHandle, str], None] | None = None,
    result_timeout: float = 60.0,
) -> None:
    """The body of a scenario's child script, run as ``python script.py MODE STORE REPORT``.

    Marks ``started.<pid>``, opens the store (which resumes unfinished runs),
    starts ``workflow`` as ``run_id`` (or attaches to the existing run), marks
    ``opened.<pid>``, calls ``on_start(handle, MODE)``, waits for the result and
    writes REPORT (JSON: result, error (a failed or parked run), status, history). With
    ``TREADLE_WATCH_STEPS`` (step ids, comma-separated, or ``*``) a thread marks
    ``step.<id>.<status>`` as such records become durable, so that a parent can
    kill the child right after a given checkpoint.
    """
    mode, store, report = sys.argv[1:4]
    counters = FileCounter.from_env() if _COUNTERS_ENV in os.environ else None
    if counters is not None:
        counters.mark(f"started.{os.getpid()}")
    rt, stop, watcher = Runtime(store), threading.Event(), None
    try:
        handle = rt.start(workflow, *args, run_id=run_id)
        if counters is not None:
            counters.mark(f"opened.{os.getpid()}")
            if os.environ.get(_WATCH_ENV):
                watch = (handle, counters, os.environ[_WATCH_ENV], stop)
                watcher = threading.Thread(target=_watch_steps, args=watch, daemon=True)
                watcher.start()
        if on_start is not None:
            on_start(handle, mode)
        result, error = None, None
        try:
            result = handle.result(timeout=result_timeout)
        except WorkflowFailedError as exc:
            error = {"type": exc.type, "message": exc.message}
        except RunParkedError as exc:
            error = {"type": "treadle.runtime.RunParkedError", "message": str(exc)}
        keys = ("step", "kind", "name", "status", "value", "attempt", "started", "finished")
        history = [{key: getattr(rec, key) for key in keys} for rec in handle.history()]
        data = {
            "pid": os.getpid(),
            "result": result,
            "error": error,
            "status": str(handle.status()),
            "history": history,
        }
        with open(report + ".tmp", "w") as fh:
            json.dump(data, fh, default=lambda v: v.timestamp() if hasattr(v, "timestamp") else repr(v))
        os.replace(report + ".tmp", report)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(5.0)  # it reads the store: let it finish before the store closes
        rt.shutdown()


def journal_snapshot(store: Pathish, run_id: str) -> list[StepRecord]:
    """The journal of ``run_id`` in a store no process has open (say, right after a kill).

    Every record is CRC-checked on the way; ``[]`` if the store has no journal yet.
    """
    data = Path(store) / "data.mdb"
    if not data.exists() or data.stat().st_size == 0:  # killed while LMDB was creating it
        return []
    try:
        reader = LmdbStore(str(store), readonly=True)
    except Exception as exc:  # lmdb.NotFoundError: killed before the databases were created
        if type(exc).__name__ == "NotFoundError":
            return []
        raise
    try:
        rows = [
            rec for _, rec in reader.scan("journal", journal_prefix(run_id)) if not rec["s"].startswith("@")
        ]
    finally:
        reader.close()
    return [_step_record(rec, run_id) for rec in sorted(rows, key=lambda rec: rec.get("o", []))]


class Scenario:
    """A crash scenario in folder ``workdir``: a child script, a store, a counter folder.

    Use it as a context manager (or call :meth:`close`): every child it started is killed on the way out.
    """

    def __init__(self, workdir: Pathish, script: Pathish, source: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.script = self.workdir / script
        if source is not None:
            self.script.write_text(source)
        self.store = self.workdir / "store"
        self.counters = FileCounter(self.workdir / "counters")
        self.children: list[Child] = []

    def spawn(
        self,
        mode: str = "run",
        *,
        crash_at: str | None = None,
        watch: Iterable[str] = (),
        extra_env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Child:
        """Start the script in ``mode``; ``crash_at`` ("point" or "point:N") arms a fault point."""
        env = {k: v for k, v in os.environ.items() if k not in ("TREADLE_CRASH_AT", _WATCH_ENV)}
        env[_COUNTERS_ENV] = str(self.counters.folder)
        if crash_at is not None:
            point, _, count = crash_at.partition(":")
            env.update(crash_env(point, int(count or 1)))
        if watch:
            env[_WATCH_ENV] = ",".join(watch)
        env.update(extra_env or {})
        child = run_child(self.script, self.store, mode, env, timeout, tag=f"child{len(self.children) + 1}")
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            child.kill9()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Recovery:
    """What :func:`crash_and_recover` saw: both children and the report of the second."""

    first: Child
    second: Child
    report: dict[str, Any]
    killed: bool  # False only when a ``kill_after`` child finished its run before the kill


def crash_and_recover(
    scenario: Scenario,
    *,
    crash_at: str | None = None,
    kill_at: Iterable[str] = (),
    kill_after: float | tuple[float, float] | None = None,
    before_recover: Callable[[], None] | None = None,
    watch: Iterable[str] = (),
    first_mode: str = "run",
    second_mode: str = "run",
    timeout: float = 30.0,
) -> Recovery:
    """Crash a run in a first child, then finish it in a second child on the same store.

    The first child is armed with ``crash_at`` and must die by SIGKILL there; or it
    is killed once every marker in ``kill_at`` exists; or ``kill_after`` seconds
    (a number, or a random ``(low, high)`` range) after it started (if it has not
    finished by then: ``Recovery.killed`` tells). Then
    ``before_recover()`` runs (release held activities, inspect the store with
    :func:`journal_snapshot`), and an unarmed second child must exit 0 with a report.

    Raises:
        HarnessError: a child exited the wrong way, hung or wrote no report.
    """
    kill_at = list(kill_at)
    if crash_at is None and not kill_at and kill_after is None:
        raise ValueError("crash_and_recover needs crash_at, kill_at or kill_after")
    first = scenario.spawn(first_mode, crash_at=crash_at, watch=watch, timeout=timeout + 10)
    markers = [*kill_at, *([f"started.{first.pid}"] if kill_after is not None else [])]
    if markers:
        first.wait_marks(scenario.counters, markers, timeout)
        if kill_after is not None:
            low, high = kill_after if isinstance(kill_after, tuple) else (kill_after, kill_after)
            time.sleep(random.uniform(low, high))  # the moment of the kill is the point here
        first.kill9()
    killed = (code := first.wait(timeout)) == -signal.SIGKILL
    if not killed and (kill_after is None or code != 0):
        raise HarnessError(
            f"child 1 should have died by SIGKILL ({crash_at=}) but exited {code}\n{first.logs()}"
        )
    if before_recover is not None:
        before_recover()
    second = scenario.spawn(second_mode, timeout=timeout + 10)
    if (code := second.wait(timeout)) != 0:
        raise HarnessError(f"the recovering child exited {code}\n{second.logs()}")
    return Recovery(first, second, second.report(), killed)
