"""RunDriver: a run's replay state and the decisions made on it.

The driver lives inside the run's actor and is only ever touched by that
actor's thread. It turns yielded operations into nodes (``_nodes``,
``_parallel``), looks each step id up in the journal, feeds recorded outcomes
back without dispatching, and dispatches only what is new.

What it records goes through its ``RunWrites`` (``_writes``): one batch per
message, and what waits on a record runs once that record is durable.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from treadle.storage import (
    Op,
    PayloadTooLargeError,
    SerializationError,
    StorageFullError,
    decode,
    encode,
    journal_prefix,
    signal_key,
    signal_prefix,
)

from ._activity import ActivityNode, ActivityTask
from ._errors import (
    ActivityError,
    CancelledError,
    NonDeterminismError,
    error_from_data,
    error_to_data,
    type_name,
)
from ._frames import GenNode
from ._messages import (
    ActivityDone,
    AttemptTimedOut,
    CancelRun,
    ChildDone,
    Committed,
    FlushLazy,
    RetryDue,
    SignalArrived,
    TimerFired,
    Wake,
)
from ._nodes import ChildNode, Node, Outcome, RecordNode, SignalNode, SleepNode, StateNode
from ._ops import (
    ActivityOp,
    Branch,
    ChildOp,
    Context,
    CoordOp,
    RecordOp,
    SignalOp,
    SleepOp,
    StateOp,
)
from ._parallel import Coordinator
from ._records import CANCEL_STEP, COORDINATOR_KINDS, shape_value
from ._topology import replay_mismatch
from ._writes import RunWrites

if TYPE_CHECKING:
    from ._run_actor import RunPort

__all__ = ["RunDriver"]


class RunDriver:
    """Replay state and decisions of one run."""

    def __init__(self, port: RunPort, record: dict[str, Any]) -> None:
        self.port = port
        port.owner = self
        self.run_id: str = record["id"]
        self.writes = RunWrites(port, self.run_id, record)
        self.workflow = port.registry.workflow(record["wf"])
        self.log = port.log.bind(run_id=self.run_id, workflow=self.workflow.name)
        self.journal: dict[str, dict[str, Any]] = {}
        self.leaves: set[Node] = set()
        self.busy_nodes: set[Node] = set()
        self.waiters: dict[str, SignalNode] = {}
        self.children: dict[str, ChildNode] = {}
        self.timers: dict[str, Node] = {}
        self.reserved: set[tuple[str, int]] = set()
        self.released: set[str] = set()
        self.finished = False
        self.store_full = False
        self.final_status: str | None = None
        self.cancel_pending = False
        self.cancel_delivered = False
        self.generation = 0
        self.begun = False
        self.fresh = False  # just created: nothing in the journal yet
        self.root: GenNode | None = None
        # While begin() replays: the attempts its steps dispatch, sent once it is done.
        self.held: list[ActivityTask] | None = None

    # -- life cycle -------------------------------------------------------------

    def begin(self) -> None:
        """Load the journal and run the workflow up to its first unsettled step."""
        self.begun = True
        if not self.fresh:
            self.journal = {
                rec["s"]: rec for rec in self.port.store.values("journal", journal_prefix(self.run_id))
            }
        cancel_requested = CANCEL_STEP in self.journal
        args = decode(self.writes.record.get("args")) or []
        ctx = Context(self.run_id, self.workflow.name, self.port.registry, self.port.max_payload)
        try:
            gen = self.workflow.fn(ctx, *args)
        except BaseException as exc:  # a workflow that fails before its first yield
            self.finish_run(False, None, exc)
            return
        self.root = GenNode(self, "", None, (), 0, gen, is_root=True)
        was_parked = self.writes.persisted_status == "parked"
        if was_parked:
            # Live again while it replays; finish_run un-marks it if it parks again.
            self.port.set_resumed(True)
        # Dispatches wait until the replay has gone as far as the journal takes it: a change
        # found anywhere in it (a later branch, a generator sibling's recorded steps) parks
        # the run before any activity runs again. The parked run abandons every node.
        self.held = None if self.fresh else []
        try:
            self.root.advance(None, None)
        finally:
            held, self.held = self.held, None
        for task in held or ():
            if task.node.live:
                self.port.dispatch(task)
        if was_parked and not self.finished:
            # The code matches the journal again: the run is live, not parked.
            self.writes.persisted_status = "running"
            self.writes.update_run({"st": "running", "err": None})
        if cancel_requested and not self.cancel_delivered and not self.finished:
            self.cancel()

    def dispatch(self, task: ActivityTask) -> None:
        """Hand an attempt to a branch actor (held back while begin() replays)."""
        if self.held is not None:
            self.held.append(task)
        else:
            self.port.dispatch(task)

    def handle(self, message: Any) -> None:
        if isinstance(message, Wake):
            self.generation = max(self.generation, message.generation)
            message = message.message
        if isinstance(message, ActivityDone):
            if message.node.driver is self and isinstance(message.node, ActivityNode):
                message.node.on_done(message)
        elif isinstance(message, Committed):
            if message.owner is self:
                self.committed(message.batch, message.error)
        elif isinstance(message, TimerFired):
            node = self.timers.get(message.step)
            if node is not None:
                node.on_timer()  # type: ignore[attr-defined]
        elif isinstance(message, RetryDue):
            if message.node.driver is self and isinstance(message.node, ActivityNode):
                message.node.on_retry(message)
        elif isinstance(message, AttemptTimedOut):
            if message.node.driver is self and isinstance(message.node, ActivityNode):
                message.node.on_timeout(message)
        elif isinstance(message, SignalArrived):
            waiter = self.waiters.get(message.name)
            if waiter is not None:
                waiter.try_take()
        elif isinstance(message, ChildDone):
            child = self.children.get(message.step)
            if child is not None:
                child.on_child_done(message)
        elif isinstance(message, FlushLazy):
            if message.writes is self.writes:
                self.writes.flush_lazy()
        elif isinstance(message, CancelRun):
            self.cancel()
        else:
            self.log.warning("unexpected message", message=repr(message))
        if self.released:
            self._offer_released()

    @property
    def idle(self) -> bool:
        """Nothing to do until a timer, a signal or a child wakes the run."""
        return not self.finished and not self.busy_nodes and self.writes.settled

    @property
    def waits(self) -> list[str]:
        return sorted(self.waiters)

    # -- nodes ------------------------------------------------------------------

    def make_node(self, branch: Branch, step: str, parent: Any, order: tuple[int, ...], pos: int) -> Node:
        if isinstance(branch, types.GeneratorType):
            return GenNode(self, step, parent, order, pos, branch)
        if isinstance(branch, ActivityOp):
            return ActivityNode(self, step, parent, order, pos, branch)
        if isinstance(branch, CoordOp):
            return Coordinator(self, step, parent, order, pos, branch)
        if isinstance(branch, SleepOp):
            return SleepNode(self, step, parent, order, pos, branch)
        if isinstance(branch, SignalOp):
            return SignalNode(self, step, parent, order, pos, branch)
        if isinstance(branch, ChildOp):
            return ChildNode(self, step, parent, order, pos, branch)
        if isinstance(branch, RecordOp):
            return RecordNode(self, step, parent, order, pos, branch)
        if isinstance(branch, StateOp):
            return StateNode(self, step, parent, order, pos, branch)
        raise TypeError(f"step {step}: cannot run {type(branch).__name__}")

    def check_replay(self, branch: Branch, step: str) -> NonDeterminismError | None:
        """The error to raise if the journal at ``step`` disagrees with the code, else None."""
        rec = self.journal.get(step)
        return None if rec is None else replay_mismatch(self.run_id, step, rec, branch)

    def leaf_started(self, node: Node, busy: bool) -> None:
        self.leaves.add(node)
        if busy:
            self.busy_nodes.add(node)

    def leaf_done(self, node: Node) -> None:
        self.leaves.discard(node)
        self.busy_nodes.discard(node)

    def outcome_from_record(self, rec: dict[str, Any], kind: str) -> Outcome:
        """The outcome of a settled step, as the workflow saw it the first time."""
        packed = rec.get("val")
        if rec.get("st") == "completed":
            for reservation in rec.get("res") or ():
                self.reserved.add((reservation[0], reservation[1]))
            plain = decode(packed)
            if kind == "state":
                value = None
            elif kind in COORDINATOR_KINDS:
                value = shape_value(kind, plain, rec.get("lay"), run_id=self.run_id)
            else:
                value = plain
            return Outcome(
                True,
                value,
                packed,
                attempt=int(rec.get("a", 1)),
                res=rec.get("res"),
                recorded=True,
                plain=plain,
            )
        error = error_from_data(rec.get("err") or {}, self.run_id)
        return Outcome(False, error=error, attempt=int(rec.get("a", 1)), recorded=True)

    # -- records ------------------------------------------------------------------

    def now(self) -> float:
        return self.port.clock.time()

    def decode(self, packed: bytes | None) -> Any:
        return decode(packed)

    def committed(self, batch: int, error: BaseException | None) -> None:
        """Batch ``batch`` of this run was committed (``error`` if it failed): run what
        waited on it. Called for a ``Committed`` message, or directly for a batch this
        run's thread committed inline."""
        callbacks = self.writes.committed(batch)
        if error is not None:
            if isinstance(error, StorageFullError) and not error.transient and not self.store_full:
                self._fail_store_full(error)
                return
            raise StoreStalled(error)  # disk full or I/O: retried with backoff, resumes later
        for callback in callbacks:
            callback()
        if self.released:
            self._offer_released()

    def _fail_store_full(self, error: StorageFullError) -> None:
        """The map is at its configured cap: the run's records will not fit however
        often it retries, so it fails, clearly and typed.

        What the run did after the failed batch (it may even have finished,
        since generators resume before their commit) is discarded: only the
        failure is recorded.
        """
        self.log.error("run failed: the store is full", error=str(error))
        self.store_full = True
        self.finished = True
        self.final_status = "failed"
        for leaf in list(self.leaves):
            leaf.abandon(cancel=False, record=False)
        self.timers.clear()
        self.waiters.clear()
        self.writes.discard()
        data = error_to_data(error)
        data["t"] = type_name(StorageFullError)
        self.writes.update_run({"st": "failed", "err": data, "res": None, "waits": []})
        record = self.writes.record
        self.writes.after_commit(lambda: self.port.run_finished("failed", record))

    def dispose(self) -> None:
        """The run has ended and its last batch is durable: drop what ties the run's objects
        into reference cycles (driver and root frame, driver and port), so a finished run
        is freed by reference counting instead of piling up for the cyclic GC."""
        self.root = None
        self.port.owner = None
        self.writes.drop_lazy()
        self.journal = {}
        self.leaves.clear()
        self.busy_nodes.clear()
        self.waiters.clear()
        self.children.clear()
        self.timers.clear()

    def suspend(self) -> None:
        """Persist SUSPENDED with the signal names the run waits for (no ack awaited)."""
        self.writes.suspend(self.waits)

    # -- timers -------------------------------------------------------------------

    def set_timer(self, node: Node, due: float) -> None:
        self.timers[node.step] = node
        self.port.add_timer(node.step, due)

    def clear_timer(self, node: Node, due: float) -> None:
        if self.timers.get(node.step) is not node:
            return
        del self.timers[node.step]
        self.port.remove_timer(node.step)
        self.writes.delete_timer(due, node.step)

    # -- signals -------------------------------------------------------------------

    def take_signal(self, name: str) -> tuple[int, dict[str, Any]] | None:
        for key, rec in self.port.store.scan("signals", signal_prefix(self.run_id, name)):
            if rec.get("consumed"):
                continue
            seq = int.from_bytes(key[-8:], "big")
            if (name, seq) in self.reserved:
                continue
            self.reserved.add((name, seq))
            return seq, rec
        return None

    def consume(self, res: list[Any], step: str) -> None:
        """Mark reserved signals consumed, in the batch that records ``step``."""
        for name, seq in res:
            key = signal_key(self.run_id, name, seq)
            rec = self.port.store.get("signals", key)
            if rec is not None:
                self.writes.put(Op("signals", key, {**rec, "consumed": True, "by": step}), urgent=False)

    def release(self, res: list[Any]) -> None:
        for name, seq in res:
            self.reserved.discard((name, seq))
            self.released.add(name)

    def _offer_released(self) -> None:
        """A released signal may be what a live wait is waiting for."""
        while self.released:
            waiter = self.waiters.get(self.released.pop())
            if waiter is not None:
                waiter.try_take()

    # -- cancellation --------------------------------------------------------------

    def cancel(self) -> None:
        """Raise CancelledError into the workflow at its current yield."""
        if self.finished or self.root is None:
            return
        current = self.root.current
        if current is not None and current.live:
            self.deliver_cancel(current)
        else:
            self.cancel_pending = True
        for leaf in list(self.leaves):  # detached branches (fail_fast siblings, losers)
            leaf.flag_cancel()

    def deliver_cancel(self, node: Node) -> None:
        assert self.root is not None
        self.cancel_delivered = True
        node.abandon(cancel=True, record=False)
        self.root.current = None
        outcome = Outcome(False, error=CancelledError(), finished=self.now())
        self.writes.record_outcome(node, outcome)
        root = self.root
        self.writes.after_commit(lambda: root.resume(outcome))

    # -- the end ---------------------------------------------------------------------

    def finish_run(self, ok: bool, value: Any, error: BaseException | None) -> None:
        if self.finished:
            return
        packed: bytes | None = None
        if ok:
            try:
                packed, _ = encode(value, "workflow result", root="result", limit=self.port.max_payload)
            except (SerializationError, PayloadTooLargeError) as exc:
                ok, error = False, exc
        changes: dict[str, Any] = {"waits": []}
        if ok:
            status = "completed"
            changes["res"] = packed
        else:
            assert error is not None
            if isinstance(error, NonDeterminismError):
                status = "parked"
            elif isinstance(error, CancelledError):
                status = "cancelled"
            else:
                status = "failed"
            data = error_to_data(error)
            if isinstance(error, ActivityError):
                data["t"] = error.type
            elif not isinstance(error, (CancelledError, NonDeterminismError)):
                data["t"] = type_name(type(error))
            changes["err"] = data
            if status == "failed":
                self.log.info("run failed", error=data.get("t"), message=data.get("m"))
            elif status == "parked":
                self.log.warning("run parked: workflow code does not match its journal", reason=str(error))
        changes["st"] = status
        self.finished = True
        self.final_status = status
        for leaf in list(self.leaves):
            leaf.abandon(cancel=False, record=status != "parked")
        self.timers.clear()
        self.waiters.clear()
        writes = self.writes
        writes.update_run(changes)
        writes.stop_lazy_timer()  # the lazy records go with this batch: no wake-up later
        writes.persisted_status = status
        record = writes.record
        writes.after_commit(lambda: self.port.run_finished(status, record))


class StoreStalled(Exception):
    """A commit of this run failed (disk full, map cap): the run stops and is retried later."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
