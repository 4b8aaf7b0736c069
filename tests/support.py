"""Helpers shared by the test tiers (fixtures live in conftest.py).

Tests never sleep to wait: they use events, barriers and ``wait_until``
(bounded polling); every test has a timeout (pytest-timeout, see pyproject).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treadle.runtime import Runtime, _supervisor

SHUTDOWN_TIMEOUT = 15.0
WAIT = 5.0


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, message: str = "condition") -> Any:
    """Poll ``predicate`` (every 5 ms) until truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.005)


def step_status(handle: Any, step: str) -> str | None:
    """The status of step ``step`` in ``handle.history()`` ("running", "completed", ...),
    None while the step has no record. A step id with more than one record fails the
    test (one record per step id, I3), so no check made through this helper is weaker
    than one over every record."""
    statuses = [rec.status for rec in handle.history() if rec.step == step]
    assert len(statuses) <= 1, f"step {step} has {len(statuses)} records: {statuses}"
    return statuses[0] if statuses else None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not reaped yet, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before open, or between open and read
        return False


def in_flight_max(lines: list[tuple[int, float, str]], pid: int) -> int:
    """Most activity bodies of process ``pid`` running at once, from 'start i'/'finish i' lines."""
    current = peak = 0
    for line_pid, _, note in lines:
        if line_pid == pid:
            current += 1 if note.startswith("start") else -1
            peak = max(peak, current)
    return peak


def supervisor_handled(monkeypatch: Any, message_type: type, run_id: str) -> threading.Event:
    """An event set once the supervisor has handled a ``message_type`` for run ``run_id``
    (a test's way to order a client's request against what the run's actor tells the
    supervisor, without waiting for the request's reply)."""
    handled = threading.Event()
    handler = _supervisor._HANDLERS[message_type]

    def observed(supervisor: Any, message: Any) -> Any:
        try:
            return handler(supervisor, message)
        finally:
            if getattr(message, "run_id", None) == run_id:
                handled.set()

    monkeypatch.setitem(_supervisor._HANDLERS, message_type, observed)
    return handled


def cancel_in_thread(handle: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Call ``handle.cancel()`` in a thread (it may be held): the thread and its outcome,
    ``{"cancelled": bool}`` or ``{"error": exc}``."""
    outcome: dict[str, Any] = {}

    def cancel() -> None:
        try:
            outcome["cancelled"] = handle.cancel()
        except BaseException as exc:  # reported by the test, not lost in the thread
            outcome["error"] = exc

    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    return thread, outcome


def assert_cancel_ended_the_run(canceller: threading.Thread, outcome: dict[str, Any], handle: Any) -> None:
    """``cancel_in_thread``'s cancel returned True and the run ended CANCELLED: its result
    raises the CancelledError (never RunParkedError)."""
    from treadle.runtime import RunStatus, WorkflowFailedError

    canceller.join(WAIT)
    assert not canceller.is_alive(), "cancel() did not return"
    assert outcome == {"cancelled": True}
    try:
        handle.result(timeout=WAIT)
    except WorkflowFailedError as exc:
        assert exc.type == "treadle.runtime.CancelledError"
    else:
        raise AssertionError("result() returned: the run was not cancelled")
    assert handle.status() == RunStatus.CANCELLED


class Counter:
    """Thread-safe call counter by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def hit(self, name: str) -> int:
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


class Box:
    """Owns the live Runtime of a test; restart() reopens the same store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: Runtime | None = None
        self.gates: list[threading.Event] = []

    def open(self, **kwargs: Any) -> Runtime:
        assert self.current is None
        self.current = Runtime(str(self.path), **kwargs)
        return self.current

    def shutdown(self) -> None:
        if self.current is None:
            return
        rt, self.current = self.current, None
        done = threading.Event()

        def stop() -> None:
            rt.shutdown()
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        assert done.wait(SHUTDOWN_TIMEOUT), "Runtime.shutdown() did not return in time"

    def restart(self, **kwargs: Any) -> Runtime:
        self.shutdown()
        return self.open(**kwargs)

    def gate(self) -> threading.Event:
        """An event activities block on; every gate is opened at teardown."""
        event = threading.Event()
        self.gates.append(event)
        return event

    def close(self) -> None:
        for gate in self.gates:
            gate.set()
        self.shutdown()
