"""The TimerService's wall-clock deadlines under clock jumps (RELIABILITY 20)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from treadle.runtime._scheduler import RECHECK, AddTimer, Scheduler, TimerService
from treadle.runtime.testing import FakeClock

WAIT = 5.0


class SilentWallClock(FakeClock):
    """Tells only its first subscriber (the Scheduler) that it moved: like the real
    clock, whose wall-time steps nobody is told about."""

    def subscribe(self, callback: Callable[[], None]) -> None:
        if not self._listeners:
            super().subscribe(callback)


@pytest.fixture
def timers() -> Iterator[tuple[SilentWallClock, TimerService, threading.Event]]:
    clock = SilentWallClock()
    scheduler = Scheduler(clock)
    fired = threading.Event()
    ref = TimerService.start(clock, scheduler, lambda run_id, step: fired.set())
    yield clock, ref, fired
    ref.stop(block=True, timeout=WAIT)
    scheduler.stop()


def test_an_unannounced_wall_jump_past_a_deadline_is_seen_within_the_recheck_interval(
    timers: tuple[SilentWallClock, TimerService, threading.Event],
) -> None:
    clock, ref, fired = timers
    ref.ask(AddTimer("run", "1", clock.time() + 3600), timeout=WAIT)
    clock.set(clock.time() + 7200)  # the deadline is now in the past, and nobody was told
    assert not fired.wait(0.05)
    assert RECHECK <= 60.0
    clock.advance(60.0)  # a minute of monotonic time: the service has re-checked by then
    assert fired.wait(WAIT), "a wall-clock jump went unnoticed for a minute"


def test_a_deadline_in_the_future_does_not_fire_at_a_recheck(
    timers: tuple[SilentWallClock, TimerService, threading.Event],
) -> None:
    clock, ref, fired = timers
    ref.ask(AddTimer("run", "1", clock.time() + 3 * RECHECK), timeout=WAIT)
    clock.advance(RECHECK)
    clock.advance(RECHECK)
    assert not fired.wait(0.05)
    clock.advance(RECHECK)
    assert fired.wait(WAIT)
