"""RunWrites: what a run's driver records, and how it reaches the store's writer.

Records made while the run's actor handles one message form one batch.
Generators resume at once, but anything that waits on what was recorded (the
next dispatch, the run's end) is an ``after_commit`` callback, run when the
batch's ack says it is durable.

*Lazy* records ("running", "abandoned") wait for the next urgent batch to
ride with, or go on their own after ``LAZY_DELAY``. An activity's "running"
record is not even built until then: a step's result usually supersedes it
first (``defer_running``).

Like the driver that owns it, this is touched only by the run actor's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from treadle.storage import Op, crash_point, run_key, step_key, timer_key

from ._errors import error_to_data
from ._messages import FlushLazy

if TYPE_CHECKING:
    from ._nodes import Node, Outcome
    from ._run_actor import RunPort

__all__ = ["LAZY_DELAY", "RunWrites"]

LAZY_DELAY = 0.05  # seconds a "running" record may wait for a batch to ride with


class RunWrites:
    """The records of one run not yet durable, batched per message."""

    def __init__(self, port: RunPort, run_id: str, record: dict[str, Any]) -> None:
        self.port = port
        self.run_id = run_id
        self.key = run_key(run_id)  # the run record's key, and its journal's prefix
        self.record = record  # the run record as last written (or about to be)
        self.persisted_status: str = record.get("st", "running")
        self.quiet = False  # set while abandoning a tree that met changed code: record nothing
        self.ops: list[Op] = []
        self.after: list[Callable[[], None]] = []
        self.lazy_only = True
        self.lazy_ops: list[Op] = []
        # Activities whose lazy "running" record is not built yet: it is built when the lazy
        # records leave, and only if the activity is still running.
        self.lazy_running: list[tuple[Node, int]] = []
        self.lazy_timer: Any = None
        self.lazy_since = 0.0
        self.batches: dict[int, list[Callable[[], None]]] = {}
        self.next_batch = 0

    @property
    def settled(self) -> bool:
        """Everything recorded so far is durable."""
        return not self.batches and not self.ops and not self.after

    # -- records ------------------------------------------------------------------

    def put(self, op: Op, urgent: bool = True) -> None:
        """Write ``op`` with this message's batch (``urgent``: the batch is not lazy)."""
        self.ops.append(op)
        if urgent:
            self.lazy_only = False

    def update_run(self, changes: dict[str, Any]) -> None:
        """Write the run record with ``changes``, urgently."""
        self.put(self.run_op(changes))

    def run_op(self, changes: dict[str, Any]) -> Op:
        self.record = {**self.record, **changes, "up": self.port.clock.time()}
        return Op("runs", self.key, self.record)

    def _base(self, node: Node, status: str) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "v": 1,
            "s": node.step,
            "k": node.kind,
            "n": node.name,
            "st": status,
            "t0": node.started or self.port.clock.time(),
            "o": list(node.order),
        }
        extra = node.record_extra()
        if extra:
            rec.update(extra)
        return rec

    def _journal_op(self, step: str, rec: dict[str, Any]) -> Op:
        return Op("journal", step_key(self.key, step), rec)

    def _running(self, node: Node, attempt: int) -> dict[str, Any]:
        rec = self._base(node, "running")
        rec["a"] = attempt
        return rec

    def record_running(self, node: Node, lazy: bool = True) -> None:
        rec = self._running(node, getattr(node, "attempt", 1) or 1)
        self.put(self._journal_op(node.step, rec), urgent=not lazy)
        due = rec.get("dl")
        if due is not None:
            self.ops.append(
                Op(
                    "timers",
                    timer_key(float(due), self.run_id, node.step),
                    {"run": self.run_id, "step": node.step, "due": due},
                )
            )

    def defer_running(self, node: Node, attempt: int) -> None:
        """``record_running(node)`` (lazy, no deadline), built only if it is still needed
        when the lazy records are written."""
        self.lazy_running.append((node, attempt))
        self._hold_lazy()

    def record_outcome(self, node: Node, outcome: Outcome) -> None:
        rec = self._base(node, "completed" if outcome.ok else "failed")
        rec["a"] = outcome.attempt
        rec["t1"] = outcome.finished or self.port.clock.time()
        if outcome.ok:
            rec["val"] = outcome.packed
        else:
            assert outcome.error is not None
            rec["err"] = error_to_data(outcome.error)
        if outcome.res:
            rec["res"] = outcome.res
        if outcome.extra:
            rec.update(outcome.extra)
        self.put(self._journal_op(node.step, rec))

    def record_abandoned(self, node: Node) -> None:
        if self.quiet:
            return
        rec = self._base(node, "abandoned")
        rec["a"] = getattr(node, "attempt", 1) or 1
        rec["t1"] = self.port.clock.time()
        self.put(self._journal_op(node.step, rec), urgent=False)

    def delete_timer(self, due: float, step: str) -> None:
        self.ops.append(Op("timers", timer_key(due, self.run_id, step), None))

    # -- batches ------------------------------------------------------------------

    def must_defer(self) -> bool:
        """Whether something recorded is not durable yet (a new step must wait for it)."""
        return not self.lazy_only or bool(self.batches)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what was recorded so far is durable."""
        self.after.append(callback)

    def flush(self) -> None:
        """Send what this message recorded to the writer, as one batch."""
        if not self.ops and not self.after:
            return
        ops, callbacks = self.ops, self.after
        lazy = self.lazy_only and not callbacks  # someone waits on it: commit it promptly
        self.ops, self.after, self.lazy_only = [], [], True
        if lazy:
            # Nothing waits on these ("running" records): they ride with the
            # next urgent batch, or go on their own after LAZY_DELAY.
            self._hold_lazy()
            self.lazy_ops.extend(ops)
            return
        if self.lazy_ops or self.lazy_running:
            lazy_ops = self._lazy_records()  # empty when the only running record was superseded
            if lazy_ops:
                ops = _last_per_key(lazy_ops + ops)
            self.drop_lazy()
        if self.persisted_status == "suspended":
            self.persisted_status = "running"
            ops.append(self.run_op({"st": "running", "waits": []}))
        batch = self.next_batch
        self.next_batch += 1
        self.batches[batch] = callbacks
        crash_point("after_step_before_commit")
        self.port.submit(ops, batch, False)

    def committed(self, batch: int) -> list[Callable[[], None]]:
        """Batch ``batch`` was acknowledged: the callbacks that waited on it."""
        return self.batches.pop(batch, [])

    def discard(self) -> None:
        """Forget what is recorded and not yet sent (the run failed at a commit)."""
        self.ops, self.after = [], []
        self.drop_lazy()

    # -- lazy records --------------------------------------------------------------

    def _lazy_records(self) -> list[Op]:
        """The held lazy records, deferred "running" records of live activities included."""
        if not self.lazy_running:
            return self.lazy_ops
        ops = []
        for node, attempt in self.lazy_running:
            if node.live:
                ops.append(self._journal_op(node.step, self._running(node, attempt)))
        ops.extend(self.lazy_ops)  # after them: an "abandoned" record supersedes "running"
        return ops

    def _hold_lazy(self) -> None:
        """Lazy records are about to be held: note since when, and arm the timer."""
        if not self.lazy_ops and not self.lazy_running:
            self.lazy_since = self.port.clock.monotonic()
        if self.lazy_timer is None:
            self.lazy_timer = self.port.call_later(LAZY_DELAY, FlushLazy(self))

    def drop_lazy(self) -> None:
        # The timer stays armed (re-arming it for every step would wake the
        # scheduler thread each time); when it fires it finds nothing or re-arms.
        # suspend() disarms it, since its message would go to the old actor.
        self.lazy_ops = []
        self.lazy_running = []

    def stop_lazy_timer(self) -> None:
        if self.lazy_timer is not None:
            self.lazy_timer.cancel()
            self.lazy_timer = None

    def flush_lazy(self) -> None:
        """The lazy timer fired: write records held for LAZY_DELAY, or wait for the rest."""
        self.lazy_timer = None
        if not self.lazy_ops and not self.lazy_running:
            return
        waited = self.port.clock.monotonic() - self.lazy_since
        if waited < LAZY_DELAY:
            self.lazy_timer = self.port.call_later(LAZY_DELAY - waited, FlushLazy(self))
            return
        ops = _last_per_key(self._lazy_records())
        self.drop_lazy()
        if ops:
            self.port.submit(ops, None, False)

    def suspend(self, waits: list[str]) -> None:
        """Persist SUSPENDED with the signal names the run waits for (no ack awaited)."""
        self.persisted_status = "suspended"
        ops = [*_last_per_key(self._lazy_records()), self.run_op({"st": "suspended", "waits": waits})]
        self.drop_lazy()
        self.stop_lazy_timer()  # its message would reach the actor this run is leaving
        self.port.submit(ops, None, True)


def _last_per_key(ops: list[Op]) -> list[Op]:
    """Keep the last write of each key (a "running" record superseded by its outcome)."""
    last = {(op.db, op.key): index for index, op in enumerate(ops)}
    return [op for index, op in enumerate(ops) if last[(op.db, op.key)] == index]
