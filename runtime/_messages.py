"""Messages exchanged by the runtime's actors (internal)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._nodes import Node

__all__ = [
    "ActivityDone",
    "AttemptTimedOut",
    "Cancel",
    "CancelRun",
    "ChildDone",
    "Committed",
    "CreateRun",
    "Latch",
    "Passivate",
    "Pending",
    "Replayed",
    "RequestCancel",
    "RetryDue",
    "SendSignal",
    "Shutdown",
    "Signal",
    "SignalArrived",
    "StartRun",
    "TimerFired",
    "Wake",
]


@dataclass(slots=True)
class ActivityDone:
    """A branch actor finished one attempt of an activity."""

    node: Node
    attempt: int
    ok: bool
    value: Any = None
    packed: bytes | None = None
    error: BaseException | None = None
    original: BaseException | None = None
    final: bool = False  # no retry can change it (arguments the codec refuses, say)
    lineage: tuple[str, ...] = ()  # the error's class names when ``original`` could not cross


@dataclass(slots=True)
class Committed:
    """The writer committed batch ``batch`` of ``owner`` (a driver); ``error`` if it could not."""

    batch: int
    error: BaseException | None
    owner: Any = None


@dataclass(slots=True)
class FlushLazy:
    """Write the lazy records ``writes`` (a run's ``RunWrites``) holds, now."""

    writes: Any


@dataclass(slots=True)
class TimerFired:
    step: str


@dataclass(slots=True)
class RetryDue:
    node: Node
    attempt: int


@dataclass(slots=True)
class AttemptTimedOut:
    node: Node
    attempt: int


@dataclass(slots=True)
class SignalArrived:
    name: str


@dataclass(slots=True)
class ChildDone:
    step: str
    child_id: str
    record: dict[str, Any]


@dataclass(slots=True)
class CancelRun:
    reason: str = "cancelled by request"


@dataclass(slots=True)
class Passivate:
    generation: int


@dataclass(slots=True)
class Wake:
    """A message routed by the supervisor; ``generation`` orders it against passivation."""

    message: Any
    generation: int = 0


# -- to the supervisor ----------------------------------------------------------


@dataclass(slots=True)
class StartChild:
    parent: str
    step: str
    child_id: str
    workflow: str
    packed_args: bytes


@dataclass(slots=True)
class CancelChild:
    child_id: str


@dataclass(slots=True)
class RunEnded:
    run_id: str
    status: str
    record: dict[str, Any]


@dataclass(slots=True)
class Replayed:
    """Run ``run_id``'s actor finished (or gave up) replaying it from the store: a replay slot is free."""

    run_id: str


@dataclass(slots=True)
class Resumed:
    """The replay of parked run ``run_id`` got past the step that had diverged: it is live again."""

    run_id: str


@dataclass(slots=True)
class Idle:
    run_id: str
    generation: int


@dataclass(slots=True)
class Passivated:
    run_id: str
    generation: int
    driver: Any


@dataclass(slots=True)
class PassivateRefused:
    run_id: str


@dataclass(slots=True)
class RunCrashed:
    """The actor ``host`` dropped run ``run_id`` after an unexpected error; it stays alive."""

    run_id: str
    error: str
    host: Any = None


@dataclass(slots=True)
class Route:
    """Deliver ``message`` to run ``run_id``, starting its actor if it is dormant."""

    run_id: str
    message: Any


# -- public messages --------------------------------------------------------------


@dataclass(frozen=True)
class StartRun:
    """Ask: start ``workflow`` (registered name) with ``args``; the reply is the run id, once durable."""

    workflow: str
    args: tuple[Any, ...] = ()
    run_id: str | None = None


@dataclass(frozen=True)
class Signal:
    """Ask: send a signal; the reply is ``True`` once it is durable (``False``: a duplicate ``key``)."""

    run_id: str
    name: str
    payload: Any = None
    key: str | None = None


@dataclass(frozen=True)
class Cancel:
    """Ask: cancel a run; the reply is ``True``, or ``False`` if it had already finished."""

    run_id: str


# -- internal messages ----------------------------------------------------------------


@dataclass(frozen=True)
class CreateRun:
    """Create a run. Asked, it replies ``(kind, info, args)``; told with ``reply``, the
    same triple (or the error) arrives through ``reply`` once the run is durable, so the
    caller waits once instead of for the reply and then for the commit."""

    run_id: str
    workflow: str
    packed_args: bytes
    parent: tuple[str, str] | None = None
    reply: Pending | None = None
    new_id: bool = False  # ``run_id`` is a fresh uuid4: no stored run can have it


@dataclass(frozen=True)
class SendSignal:
    run_id: str
    name: str
    packed: bytes
    key: str | None


@dataclass(frozen=True)
class RequestCancel:
    run_id: str


@dataclass(frozen=True)
class _Created:
    run_id: str
    error: BaseException | None


@dataclass(frozen=True)
class _SignalStored:
    run_id: str
    name: str


@dataclass(frozen=True)
class _Restart:
    run_id: str


@dataclass(frozen=True)
class _ReplayLeaseOver:
    """Run ``run_id``'s replay has held its slot for ``REPLAY_LEASE`` seconds."""

    run_id: str
    lease: int


@dataclass(frozen=True)
class Shutdown:
    timeout: float = 10.0


class Latch:
    """A one-shot flag other threads wait on: ``threading.Event`` without its ``Condition``.

    Every ``start()`` and ``result()`` waits on one, so under load their cost counts: an
    ``Event`` builds a Condition (several Python objects) when made, and a waiter lock and
    a deque entry at each wait. A latch is one held lock that ``set`` releases.
    ``set`` may be called more than once and from any thread.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        try:
            self._lock.release()
        except RuntimeError:  # a racing second set() released it first
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the latch is set, waiting up to ``timeout`` seconds (``None``: no limit)."""
        if self._set:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            try:
                self._lock.release()  # let the other waiters through
            except RuntimeError:  # a racing second set() released it while this waiter held it
                pass
            return True
        return self._set


class Pending:
    """A write the caller waits on: ``wait()`` returns once durable or raises its error."""

    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = Latch()
        self.error: BaseException | None = None
        self.value: Any = None

    def done(self, error: BaseException | None, value: Any = None) -> None:
        self.error = error
        self.value = value
        self.event.set()

    def wait(self, timeout: float = 30.0) -> Any:
        """The value given to ``done`` (``None`` for a plain write), or raise its error."""
        if not self.event.wait(timeout):
            raise TimeoutError(f"store commit not acknowledged within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.value
