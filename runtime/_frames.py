"""Generator frames: the node that drives a workflow (the root) or a multi-step branch."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from treadle.storage import PayloadTooLargeError, SerializationError, decode, encode

from ._errors import ActivityError, CancelledError, NonDeterminismError, NotAnOperationError
from ._nodes import SETTLED, Node, Outcome, Parent, Reservation
from ._ops import Operation

if TYPE_CHECKING:
    from ._driver import RunDriver

__all__ = ["GenNode"]

# Leaf kinds whose recorded outcome is all replay needs (no reservations, no state to publish).
_REPLAY_FAST = frozenset({"activity", "sleep", "now", "uuid", "random", "child"})


class GenNode(Node):
    """Drives one generator: the workflow itself (the root) or a multi-step branch."""

    __slots__ = ("counter", "current", "gen", "is_root", "prefix", "res", "starting", "sync")
    kind = "branch"

    def __init__(
        self,
        driver: RunDriver,
        step: str,
        parent: Parent | None,
        order: tuple[int, ...],
        pos: int,
        gen: types.GeneratorType[Any, Any, Any],
        is_root: bool = False,
    ) -> None:
        super().__init__(driver, step, parent, order, pos)
        self.gen = gen
        self.is_root = is_root
        self.prefix = f"{step}." if step else ""
        self.counter = 0
        self.current: Node | None = None
        self.sync: Outcome | None = None
        self.starting = False
        self.res: list[Reservation] = []

    def start(self) -> None:
        rec = self.recorded()
        if rec is not None and rec.get("st") in SETTLED:
            for reservation in rec.get("res") or ():
                self.driver.reserved.add((reservation[0], reservation[1]))
            self.gen.close()
            self.settle(self.driver.outcome_from_record(rec, self.kind))
            return
        self.started = self.driver.now()
        self.advance(None, None)

    def advance(self, value: Any, error: BaseException | None) -> None:
        """Run the generator until it waits on a step that has not settled yet."""
        driver = self.driver
        journal = driver.journal
        gen = self.gen
        while True:
            try:
                op = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                self._complete(True, stop.value, None)
                return
            except BaseException as exc:  # the workflow's own error ends this frame
                self._complete(False, None, exc)
                return
            value, error = None, None
            index = self.counter
            self.counter += 1
            step = self.prefix + str(index)
            if not isinstance(op, Operation):
                error = NotAnOperationError(
                    f"step {step}: a workflow must yield operations (ctx.run, ctx.all, ...), "
                    f"got {type(op).__name__}"
                )
                continue
            rec = journal.get(step)
            if rec is not None and op.kind in _REPLAY_FAST and rec["k"] == op.kind and rec["n"] == op.name:
                status = rec["st"]
                if status == "completed":
                    # A recorded leaf: feed its value back without building a node.
                    value = decode(rec.get("val"))
                    continue
                if status == "failed":
                    value, error = self._feed(driver.outcome_from_record(rec, op.kind))
                    continue
            mismatch = driver.check_replay(op, step) if rec is not None else None
            if mismatch is not None:
                error = mismatch
                continue
            node = driver.make_node(op, step, self, (*self.order, index), index)
            self.current = node
            if self.is_root and driver.cancel_pending:
                driver.cancel_pending = False
                driver.deliver_cancel(node)
                return
            if self.cancel_flag:
                node.cancel_flag = True
            if driver.writes.must_defer():
                # The generator already runs on an outcome that is not durable
                # yet; the step it asks for is dispatched once that outcome is.
                driver.writes.after_commit(lambda node=node: self._start_deferred(node))  # type: ignore[misc]
                return
            outcome = self._start(node)
            if outcome is None:
                return
            value, error = self._feed(outcome)

    def _start(self, node: Node) -> Outcome | None:
        """Start ``node``; its outcome if it settled at once (replayed or immediate)."""
        self.starting = True
        self.sync = None
        try:
            node.start()
        finally:
            self.starting = False
        outcome, self.sync = self.sync, None
        if outcome is not None:
            self.current = None
        return outcome

    def _start_deferred(self, node: Node) -> None:
        if not self.live or self.current is not node or self.driver.finished:
            return
        outcome = self._start(node)
        if outcome is not None:
            self.advance(*self._feed(outcome))

    def _feed(self, outcome: Outcome) -> tuple[Any, BaseException | None]:
        if outcome.ok:
            return outcome.value, None
        if self.is_root and isinstance(outcome.error, CancelledError):
            self.driver.cancel_delivered = True
        return None, outcome.error

    def child_settled(self, node: Node, outcome: Outcome) -> None:
        if self.current is node:
            self.current = None
        if not self.live and not self.is_root:
            return
        if outcome.ok and outcome.res and not self.is_root:
            self.res.extend(outcome.res)
        if outcome.recorded or isinstance(outcome.error, NonDeterminismError):
            if self.starting:
                self.sync = outcome
            else:
                self.resume(outcome)
            return
        driver = self.driver
        driver.writes.record_outcome(node, outcome)
        if self.is_root:
            if outcome.ok:
                driver.consume(outcome.res, node.step)
            else:
                driver.release(outcome.res)
        # Resume at once: workflow code has no effects outside operations, and
        # the next operation is only dispatched once this record is durable
        # (see advance). A workflow that returns now shares this commit.
        if self.starting:
            self.sync = outcome
        else:
            self.resume(outcome)

    def resume(self, outcome: Outcome) -> None:
        if not self.live or self.driver.finished:
            return
        self.advance(*self._feed(outcome))

    def _complete(self, ok: bool, value: Any, error: BaseException | None) -> None:
        driver = self.driver
        if self.is_root:
            self.live = False
            driver.finish_run(ok, value, error)
            return
        if ok:
            try:
                packed, back = encode(
                    value, f"step {self.step}", root="result", limit=driver.port.max_payload
                )
            except (SerializationError, PayloadTooLargeError) as exc:
                ok, error = False, exc
            else:
                self.settle(Outcome(True, back, packed, finished=driver.now(), res=list(self.res)))
                return
        assert error is not None
        driver.release(self.res)
        self.res = []
        if not isinstance(error, NonDeterminismError):
            error = ActivityError.from_exception(error)
        self.settle(Outcome(False, error=error, finished=driver.now()))

    def on_abandon(self, cancel: bool) -> None:
        if self.current is not None:
            self.current.abandon(cancel)
            self.current = None
        self.driver.release(self.res)
        self.res = []
        try:
            self.gen.close()
        except BaseException:  # a finally block that yields; the branch is gone either way
            self.driver.log.warning("losing branch generator did not close cleanly", step=self.step)

    def flagged(self) -> None:
        if self.current is not None:
            self.current.flag_cancel()
