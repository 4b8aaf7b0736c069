"""Helpers for testing workflows: a fake clock and crash-point injection.

``FakeClock`` lets a test move time forward by hand (durable sleeps,
timeouts and retries follow it). ``crash_env`` builds the environment that
makes a child process kill itself with SIGKILL at a named fault point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from treadle.storage import FAULT_POINTS

__all__ = ["FAULT_POINTS", "FakeClock", "crash_env"]


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
