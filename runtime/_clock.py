"""The one clock: wall time for persisted deadlines, monotonic time for waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """What the runtime asks of a clock; ``treadle.runtime.testing.FakeClock`` is the test one."""

    def time(self) -> float:
        """Wall time, seconds since the epoch (persisted deadlines)."""

    def monotonic(self) -> float:
        """Monotonic seconds (in-process waits)."""

    def wait_hint(self, seconds: float) -> float | None:
        """How long to block for ``seconds`` of clock time; ``None``: until woken."""

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the clock jumps (fake clocks only)."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait_hint(self, seconds: float) -> float | None:
        return seconds

    def subscribe(self, callback: Callable[[], None]) -> None:
        return None
