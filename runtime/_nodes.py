"""The nodes a run's driver builds as its workflow yields operations: the base
class, outcomes, and the leaves other than activities (``_activity``) and
generator frames (``_frames``).

Every yielded operation becomes a node at a step id (a path such as
``3.1.0``). A node either replays its recorded outcome from the journal at
once, or is dispatched and settles later from a message. A node tells its
parent when it settles; the parent is a generator frame (:class:`GenNode`)
or a coordinator (``_parallel.Coordinator``). All of this runs in the run's
actor thread only.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from treadle.storage import crash_point, encode, pack

from ._errors import ActivityError, CancelledError, SignalWaitConflictError
from ._messages import ChildDone
from ._ops import ChildOp, RecordOp, SignalOp, SleepOp, StateOp

if TYPE_CHECKING:
    from ._driver import RunDriver

__all__ = [
    "NONE_PACKED",
    "SETTLED",
    "ChildNode",
    "Node",
    "Outcome",
    "Parent",
    "RecordNode",
    "SignalNode",
    "SleepNode",
    "StateNode",
]

SETTLED = frozenset({"completed", "failed"})
NONE_PACKED = pack(None)
_SAME = object()
Reservation = list[Any]  # [signal name, sequence number]


class Outcome:
    """How a node settled: ``ok`` with ``value`` (and its packed form), or ``error``."""

    __slots__ = ("attempt", "error", "extra", "finished", "ok", "packed", "plain", "recorded", "res", "value")

    def __init__(
        self,
        ok: bool,
        value: Any = None,
        packed: bytes | None = None,
        error: BaseException | None = None,
        *,
        attempt: int = 1,
        finished: float = 0.0,
        res: list[Reservation] | None = None,
        recorded: bool = False,
        extra: dict[str, Any] | None = None,
        plain: Any = _SAME,
    ) -> None:
        self.ok = ok
        self.value = value
        # The stored form a parent coordinator builds its own from (``value``
        # is shaped for workflow code: PENDING, Settled, tuples).
        self.plain = value if plain is _SAME else plain
        self.packed = packed
        self.error = error
        self.attempt = attempt
        self.finished = finished
        self.res = res or []
        self.recorded = recorded
        self.extra = extra


class Parent(Protocol):
    def child_settled(self, node: Node, outcome: Outcome) -> None: ...


class Node:
    """One step of a run."""

    __slots__ = ("cancel_flag", "driver", "live", "order", "parent", "pos", "started", "step")
    kind = "?"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent | None, order: tuple[int, ...], pos: int
    ) -> None:
        self.driver = driver
        self.step = step
        self.parent = parent
        self.order = order
        self.pos = pos
        self.live = True
        self.started = 0.0
        self.cancel_flag = False

    @property
    def name(self) -> str | None:
        return None

    def record_extra(self) -> dict[str, Any] | None:
        """Fields kept in this step's records besides the outcome."""
        return None

    def start(self) -> None:
        raise NotImplementedError

    def recorded(self) -> dict[str, Any] | None:
        return self.driver.journal.get(self.step)

    def replay(self) -> bool:
        """Settle from the journal if this step has a recorded outcome."""
        rec = self.driver.journal.get(self.step)
        if rec is None or rec.get("st") not in SETTLED:
            return False
        self.settle(self.driver.outcome_from_record(rec, self.kind))
        return True

    def settle(self, outcome: Outcome) -> None:
        if not self.live:
            return
        self.live = False
        self.driver.leaf_done(self)
        # A settled node never reaches its parent again; dropping the link keeps a
        # parent and its children from forming a reference cycle (freed without the GC).
        parent, self.parent = self.parent, None
        if parent is not None:
            parent.child_settled(self, outcome)

    def abandon(self, cancel: bool, record: bool = True) -> None:
        """Stop waiting for this node (a race loser, a timed-out branch, a cancelled step)."""
        if not self.live:
            return
        self.live = False
        self.driver.leaf_done(self)
        self.parent = None
        self.on_abandon(cancel)
        if record:
            self.driver.writes.record_abandoned(self)

    def on_abandon(self, cancel: bool) -> None:
        return None

    def flag_cancel(self) -> None:
        """Set ``cancelled`` on the activities of this subtree, now and for steps it starts later.

        The subtree is not abandoned: activities keep running (cooperative
        cancellation). ``flagged`` is what subclasses extend.
        """
        self.cancel_flag = True
        self.flagged()

    def flagged(self) -> None:
        return


class SleepNode(Node):
    __slots__ = ("due", "op")
    kind = "sleep"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: SleepOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op
        self.due = 0.0

    def record_extra(self) -> dict[str, Any] | None:
        return {"dl": self.due}

    def start(self) -> None:
        if self.replay():
            return
        driver = self.driver
        rec = self.recorded()
        if rec is not None and "dl" in rec:
            self.due = float(rec["dl"])
            self.started = float(rec.get("t0", driver.now()))
        else:
            self.started = driver.now()
            self.due = self.op.until if self.op.until is not None else self.started + (self.op.seconds or 0.0)
            driver.writes.record_running(self, lazy=False)
            driver.writes.after_commit(lambda: crash_point("in_sleep"))
        driver.leaf_started(self, busy=False)
        driver.set_timer(self, self.due)

    def on_timer(self) -> None:
        if not self.live:
            return
        self.driver.clear_timer(self, self.due)
        self.settle(Outcome(True, None, NONE_PACKED, finished=self.driver.now()))

    def on_abandon(self, cancel: bool) -> None:
        self.driver.clear_timer(self, self.due)


class SignalNode(Node):
    __slots__ = ("due", "op")
    kind = "signal"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: SignalOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op
        self.due: float | None = None

    @property
    def name(self) -> str | None:
        return self.op.signal

    def record_extra(self) -> dict[str, Any] | None:
        return None if self.due is None else {"dl": self.due}

    def start(self) -> None:
        driver = self.driver
        rec = self.recorded()
        if rec is not None and rec.get("st") in SETTLED:
            for reservation in rec.get("res") or ():
                driver.reserved.add((reservation[0], reservation[1]))
            self.settle(driver.outcome_from_record(rec, self.kind))
            return
        self.started = float(rec["t0"]) if rec is not None and "t0" in rec else driver.now()
        if self.op.timeout is not None:
            self.due = float(rec["dl"]) if rec is not None and "dl" in rec else self.started + self.op.timeout
        name = self.op.signal
        other = driver.waiters.get(name)
        if other is not None and other.live:
            self.settle(
                Outcome(
                    False,
                    error=SignalWaitConflictError(
                        f"step {self.step}: step {other.step} of this run already waits on signal {name!r}; "
                        "one coordination tree may wait on a signal name only once"
                    ),
                    finished=driver.now(),
                )
            )
            return
        driver.leaf_started(self, busy=False)
        if self.cancel_flag:
            self.settle(
                Outcome(
                    False, error=CancelledError(f"step {self.step}: wait given up"), finished=driver.now()
                )
            )
            return
        if self.try_take():
            return
        driver.waiters[name] = self
        if rec is None:
            driver.writes.record_running(self)
        if self.due is not None:
            driver.set_timer(self, self.due)

    def try_take(self) -> bool:
        """Take the oldest buffered signal of this name that nobody reserved."""
        if not self.live:
            return False
        driver = self.driver
        found = driver.take_signal(self.op.signal)
        if found is None:
            return False
        seq, record = found
        self._stop_waiting()
        packed = record["p"]
        self.settle(
            Outcome(
                True,
                driver.decode(packed),
                packed,
                finished=driver.now(),
                res=[[self.op.signal, seq]],
            )
        )
        return True

    def on_timer(self) -> None:
        if not self.live:
            return
        self._stop_waiting()
        self.settle(
            Outcome(
                False,
                error=TimeoutError(
                    f"step {self.step}: no signal {self.op.signal!r} within {self.op.timeout}s"
                ),
                finished=self.driver.now(),
            )
        )

    def flagged(self) -> None:
        """The coordinator holding this wait failed fast, or the run is cancelled.

        A wait cannot finish on its own the way an activity does, and its
        signal would never be used: it gives up with CancelledError, so the
        name is free for a later wait and any signal stays buffered.
        """
        if self.live and self.driver.waiters.get(self.op.signal) is self:
            self._stop_waiting()
            self.settle(
                Outcome(
                    False,
                    error=CancelledError(f"step {self.step}: wait given up"),
                    finished=self.driver.now(),
                )
            )

    def _stop_waiting(self) -> None:
        driver = self.driver
        if driver.waiters.get(self.op.signal) is self:
            del driver.waiters[self.op.signal]
        if self.due is not None:
            driver.clear_timer(self, self.due)

    def on_abandon(self, cancel: bool) -> None:
        self._stop_waiting()


class ChildNode(Node):
    __slots__ = ("child_id", "op")
    kind = "child"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: ChildOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op
        self.child_id = ""

    @property
    def name(self) -> str | None:
        return self.op.definition.name

    def record_extra(self) -> dict[str, Any] | None:
        return {"child": self.child_id}

    def start(self) -> None:
        if self.replay():
            return
        driver = self.driver
        rec = self.recorded()
        self.started = float(rec["t0"]) if rec is not None and "t0" in rec else driver.now()
        self.child_id = self.op.run_id or f"{driver.run_id}/{self.step}"
        driver.leaf_started(self, busy=False)
        driver.children[self.step] = self
        if rec is None:
            driver.writes.record_running(self)
        driver.port.start_child(self.step, self.child_id, self.op.definition.name, self.op.packed_args)

    def on_child_done(self, msg: ChildDone) -> None:
        if not self.live:
            return
        self.driver.children.pop(self.step, None)
        record = msg.record
        if record.get("st") == "completed":
            packed = record.get("res") or NONE_PACKED
            self.settle(Outcome(True, self.driver.decode(packed), packed, finished=self.driver.now()))
            return
        data = record.get("err") or {"t": "builtins.Exception", "m": f"child run ended {record.get('st')}"}
        error = ActivityError(data.get("t", "builtins.Exception"), data.get("m", ""), run_id=msg.child_id)
        self.settle(Outcome(False, error=error, finished=self.driver.now()))

    def on_abandon(self, cancel: bool) -> None:
        self.driver.children.pop(self.step, None)
        if cancel:
            self.driver.port.cancel_child(self.child_id)


class RecordNode(Node):
    """now / uuid / random."""

    __slots__ = ("op",)

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: RecordOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.op.kind

    def start(self) -> None:
        if self.replay():
            return
        driver = self.driver
        self.started = driver.now()
        kind = self.op.kind
        value: Any
        if kind == "now":
            value = datetime.fromtimestamp(driver.now(), tz=UTC)
        elif kind == "uuid":
            value = str(uuid.uuid4())
        else:
            value = random.random()
        packed, back = encode(value, f"step {self.step}")
        self.settle(Outcome(True, back, packed, finished=self.started))


class StateNode(Node):
    __slots__ = ("op",)
    kind = "state"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: StateOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op

    def start(self) -> None:
        driver = self.driver
        rec = self.recorded()
        if rec is not None and rec.get("st") in SETTLED:
            driver.port.set_state(driver.decode(rec.get("val")))
            self.settle(Outcome(True, None, rec.get("val"), recorded=True))
            return
        self.started = driver.now()
        driver.port.set_state(self.op.value)
        self.settle(Outcome(True, None, self.op.packed, finished=self.started))
