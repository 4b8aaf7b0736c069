"""Shared helpers of the test_parallel_* modules (no tests here).

Activities look up gates, counters and marks on the module-level board ``B``
(the default registry is process-global, so activities must be module-level);
the autouse fixture ``board`` resets it per test and opens every gate before
the runtime shuts down. Import names explicitly (never ``*``): a test
function imported into another module would be collected twice.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest

from tests.support import WAIT, wait_until
from treadle.runtime import ActivityContext, Retry, RunStatus, activity

P = "par."
RESULT = 10.0
GO = P + "go"  # the signal a workflow parks on so that the test can look at it (or restart) first


class Broken(Exception):
    pass


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Board:
    """Calls, gates and marks shared by activities (module-level: the registry is global)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls: collections.Counter[str] = collections.Counter()
            self.gates: dict[str, threading.Event] = {}
            self.marks: dict[str, Any] = {}
            self.lists: dict[str, list[Any]] = collections.defaultdict(list)
            self.in_flight = 0
            self.max_in_flight = 0

    def hit(self, tag: str) -> int:
        with self.lock:
            self.calls[tag] += 1
            return self.calls[tag]

    def gate(self, tag: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(tag, threading.Event())

    def open(self, tag: str) -> None:
        self.gate(tag).set()

    def open_all(self) -> None:
        with self.lock:
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()

    def mark(self, key: str, value: Any = True) -> None:
        with self.lock:
            self.marks[key] = value

    def has(self, key: str) -> bool:
        with self.lock:
            return key in self.marks

    def get(self, key: str) -> Any:
        with self.lock:
            return self.marks.get(key)

    def append(self, key: str, value: Any) -> None:
        with self.lock:
            self.lists[key].append(value)

    def list(self, key: str) -> list[Any]:
        with self.lock:
            return list(self.lists[key])

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


B = Board()


@pytest.fixture(autouse=True)
def board(box):
    """Fresh board per test; every gate is opened before the runtime shuts down."""
    B.reset()
    yield B
    B.open_all()


# --------------------------------------------------------------------------
# activities
# --------------------------------------------------------------------------


@activity(name=P + "act")
def act(tag: str, value: Any = None) -> Any:
    B.hit(tag)
    return tag if value is None else value


@activity(name=P + "other")
def other(tag: str, value: Any = None) -> Any:
    B.hit(tag)
    return tag if value is None else value


@activity(name=P + "boom")
def boom(tag: str) -> Any:
    B.hit(tag)
    raise Broken(f"{tag} failed")


@activity(name=P + "held")
def held(tag: str, value: Any = None, fail: bool = False, actx: ActivityContext = None) -> Any:  # type: ignore[assignment]
    """Blocks on gate ``tag``; records whether ``cancelled`` was set when it went on."""
    B.hit(tag)
    B.mark(tag + ".started")
    B.gate(tag).wait(WAIT)
    B.mark(tag + ".cancelled", actx.cancelled.is_set())
    B.mark(tag + ".done")
    if fail:
        raise Broken(f"{tag} failed")
    return tag if value is None else value


@activity(name=P + "coop")
def coop(tag: str, actx: ActivityContext = None) -> str:  # type: ignore[assignment]
    """Cooperative: waits (bounded) for ``cancelled`` and records whether it came."""
    B.hit(tag)
    B.mark(tag + ".started")
    B.mark(tag + ".cancelled", actx.cancelled.wait(WAIT))
    B.mark(tag + ".done")
    return tag


@activity(name=P + "flaky", retry=Retry(attempts=3, initial=0.01))
def flaky(tag: str, actx: ActivityContext = None) -> str:  # type: ignore[assignment]
    """Fails twice with ConnectionError, then succeeds."""
    calls = B.hit(tag)
    B.append(tag + ".attempts", actx.attempt)
    if calls < 3:
        raise ConnectionError(f"{tag} attempt {calls}")
    return f"{tag}@{actx.attempt}"


@activity(name=P + "stuck")
def stuck(tag: str, actx: ActivityContext = None) -> str:  # type: ignore[assignment]
    """Runs until its attempt is cancelled (its timeout sets ``cancelled``); records each attempt."""
    B.hit(tag)
    B.append(tag + ".attempts", actx.attempt)
    B.append(tag + ".cancelled", actx.cancelled.wait(WAIT))
    return tag


@activity(name=P + "tracked")
def tracked(tag: str, pause: float = 0.0) -> str:
    """Counts how many tracked bodies run at once; ``long`` blocks on its gate."""
    B.hit(tag)
    B.enter()
    B.append("events", ("start", tag))
    try:
        if tag.endswith("long"):
            B.gate(tag).wait(WAIT)
        elif pause:
            time.sleep(pause)  # simulated work, so that short branches overlap
    finally:
        B.leave()
    B.append("events", ("end", tag))
    return tag


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def steps(handle) -> dict[str, Any]:
    return {r.step: r for r in handle.history()}


def wait_step(handle, step: str, status: str | None = None):
    def found():
        record = steps(handle).get(step)
        if record is not None and (status is None or record.status == status):
            return record
        return None

    return wait_until(found, message=f"step {step} {status or 'recorded'}")


def wait_status(handle, status: RunStatus) -> None:
    wait_until(lambda: handle.status() == status, message=f"status {status}")


def describe(e: BaseException) -> dict[str, Any]:
    """A plain (storable) picture of an error, built inside a workflow."""
    failures = getattr(e, "failures", None)
    return {
        "cls": type(e).__name__,
        "type": getattr(e, "type", None),
        "message": getattr(e, "message", None),
        "branch": getattr(e, "branch", None),
        "failures": None
        if failures is None
        else [[key, type(f).__name__, f.type, f.message] for key, f in failures.items()],
        "run_id": getattr(e, "run_id", None),
    }


def wait_started(*tags: str) -> None:
    """Wait until the ``held``/``coop`` activities ``tags`` are running."""
    wait_until(lambda: all(B.has(tag + ".started") for tag in tags), message=f"{tags} started")
