"""In-process timers (one thread) and the TimerService actor for durable timers.

The :class:`Scheduler` runs short callbacks at monotonic deadlines: retry
back-offs, activity timeouts, and the TimerService's own wake-ups. Callbacks
only send messages, so one thread serves the whole runtime.

The :class:`TimerService` keeps the durable timers (sleeps, signal and
``all`` deadlines) of every run by absolute wall time, and wakes the run
through the supervisor when one is due, also for runs whose actor is stopped.
It waits on the monotonic clock but compares deadlines with the wall clock,
so it re-checks at least every ``RECHECK`` seconds (and at once when a fake
clock jumps): a wall-clock step forward past a deadline wakes the sleeper
within that bound, a step back delays it until the wall clock gets there.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from ._clock import Clock
from ._log import get_logger

__all__ = ["AddTimer", "RemoveTimer", "Scheduler", "TimerHandle", "TimerService"]

_log = get_logger("treadle.timers")

RECHECK = 60.0  # seconds: the longest a wall-clock jump goes unnoticed by the TimerService


def _nothing() -> None:
    return None


class TimerHandle:
    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _nothing  # a cancelled timer waits in the heap until due: hold nothing


class Scheduler:
    """Runs callbacks at monotonic deadlines on one daemon thread."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="treadle-scheduler", daemon=True)
        clock.subscribe(self._kick)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(self.clock.monotonic() + max(0.0, delay), callback)
        with self._cond:
            heapq.heappush(self._heap, (handle.due, next(self._counter), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def _kick(self) -> None:
        with self._cond:
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, handle = self._heap[0]
                    if handle.cancelled:
                        heapq.heappop(self._heap)
                        continue
                    wait = due - self.clock.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    hint = self.clock.wait_hint(wait)
                    self._cond.wait(None if hint is None else min(hint, 3600.0))
            try:
                handle.callback()
            except Exception:
                _log.exception("timer callback failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class AddTimer:
    run_id: str
    step: str
    due: float


@dataclass(frozen=True, slots=True)
class RemoveTimer:
    run_id: str
    step: str


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


class TimerService(pykka.ThreadingActor):
    """Durable timers by wall-clock deadline; ``fire(run_id, step)`` when due."""

    use_daemon_thread = True

    def __init__(self, clock: Clock, scheduler: Scheduler, fire: Callable[[str, str], None]) -> None:
        super().__init__()
        self.clock = clock
        self.scheduler = scheduler
        self.fire = fire
        self._due: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._wakeup: TimerHandle | None = None

    def on_start(self) -> None:
        ref = self.actor_ref
        self.clock.subscribe(lambda: _safe_tell(ref, _Tick()))  # a fake clock's jump: re-check now

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, AddTimer):
            self._due[(message.run_id, message.step)] = message.due
            heapq.heappush(self._heap, (message.due, message.run_id, message.step))
            self._check()
        elif isinstance(message, RemoveTimer):
            self._due.pop((message.run_id, message.step), None)
        elif isinstance(message, _Tick):
            self._check()
        else:
            return super().on_receive(message)
        return None

    def _check(self) -> None:
        now = self.clock.time()
        while self._heap:
            due, run_id, step = self._heap[0]
            current = self._due.get((run_id, step))
            if current is None or current != due:
                heapq.heappop(self._heap)
                continue
            if due > now:
                break
            heapq.heappop(self._heap)
            del self._due[(run_id, step)]
            self.fire(run_id, step)
        self._arm()

    def _arm(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self._heap:
            delay = min(self._heap[0][0] - self.clock.time(), RECHECK)  # a wall-clock jump is seen
            ref = self.actor_ref
            self._wakeup = self.scheduler.call_later(delay, lambda: _safe_tell(ref, _Tick()))

    def pending(self) -> int:
        return len(self._due)


def _safe_tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
