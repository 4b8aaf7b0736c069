"""Coordinators: all, all_settled, run_all, map, race, any, quorum.

The rules (DESIGN.md "Parallel semantics"), in the words the code keeps:

* every branch is checkpointed when it settles (all-like kinds), so a crash
  re-runs only unfinished branches;
* a failed branch never aborts its siblings; ``all`` raises the
  lowest-positioned failure once every branch settled (``fail_fast``: at the
  first failure, siblings keep running with ``cancelled`` set);
* race-like kinds decide once, and the decision is written in the same
  transaction as the deciding branch; losers are abandoned, not killed;
* ``concurrency`` is a rolling pool in input order.

A coordinator's outcome is decided here, in the run's actor, and nowhere else.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from treadle.storage import crash_point, pack

from ._errors import ActivityError, AllBranchesFailedError, NonDeterminismError, error_to_data
from ._nodes import SETTLED, Node, Outcome, Parent, Reservation
from ._ops import RACE_KINDS, CoordOp, branch_kind
from ._records import shape_value

if TYPE_CHECKING:
    from ._driver import RunDriver

__all__ = ["Coordinator"]

ALL_LIKE = frozenset({"all", "all_settled", "run_all", "map"})


def as_branch_error(error: BaseException | None) -> ActivityError:
    assert error is not None
    return ActivityError.from_exception(error)


class Coordinator(Node):
    __slots__ = (
        "children",
        "decided",
        "due",
        "filling",
        "fin",
        "op",
        "outcomes",
        "running",
        "stopped",
        "to_start",
        "wins",
    )

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: CoordOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op
        self.children: list[Node | None] = []
        self.outcomes: dict[int, Outcome] = {}
        self.to_start: deque[int] = deque()
        self.running = 0
        self.filling = False
        self.decided = False
        self.stopped = False
        self.fin = 0
        self.wins: list[int] = []
        self.due: float | None = None

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.op.kind

    def record_extra(self) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"lay": self.op.layout()}
        if self.due is not None:
            extra["dl"] = self.due
        return extra

    def child_step(self, index: int) -> str:
        return f"{self.step}.{self.op.keys[index]}"

    # -- start and replay -----------------------------------------------------

    def start(self) -> None:
        if self.replay():
            return
        driver = self.driver
        op = self.op
        rec = self.recorded()
        self.started = float(rec["t0"]) if rec is not None and "t0" in rec else driver.now()
        count = len(op.branches)
        if count == 0:
            value: dict[str, Any] | list[Any] = {} if op.kind == "run_all" else []
            self.settle(Outcome(True, value, pack(value), finished=driver.now()))
            return
        if op.timeout is not None:
            self.due = float(rec["dl"]) if rec is not None and "dl" in rec else self.started + op.timeout
        if rec is None:
            driver.writes.record_running(self)
        self.children = [None] * count
        replayed: list[tuple[int, int, dict[str, Any]]] = []
        pending: list[int] = []
        for index in range(count):
            brec = driver.journal.get(self.child_step(index))
            if brec is not None and brec.get("st") in SETTLED:
                replayed.append((int(brec.get("f", 0)), index, brec))
            else:
                pending.append(index)
        replayed.sort()
        self.to_start = deque(pending)
        if self.due is not None:
            driver.set_timer(self, self.due)
        for _, index, brec in replayed:
            if self.stopped:
                break
            branch = op.branches[index]
            mismatch = driver.check_replay(branch, self.child_step(index))
            if mismatch is not None:
                self._accept(index, Outcome(False, error=mismatch), None)
                continue
            outcome = driver.outcome_from_record(brec, branch_kind(branch))
            self.fin = max(self.fin, int(brec.get("f", 0)))
            self._accept(index, outcome, None)
        self.fill()

    def fill(self) -> None:
        """Start branches in input order while the concurrency limit allows (a rolling pool)."""
        if self.filling or self.driver.finished:
            return
        self.filling = True
        driver = self.driver
        limit = self.op.concurrency
        try:
            while self.to_start and not self.stopped:
                if limit is not None and self.running >= limit:
                    break
                index = self.to_start.popleft()
                branch = self.op.branches[index]
                step = self.child_step(index)
                mismatch = driver.check_replay(branch, step)
                if mismatch is not None:
                    self._accept(index, Outcome(False, error=mismatch), None)
                    continue
                node = driver.make_node(branch, step, self, (*self.order, index), index)
                node.cancel_flag = self.cancel_flag
                self.children[index] = node
                self.running += 1
                node.start()
        finally:
            self.filling = False

    # -- outcomes ---------------------------------------------------------------

    def child_settled(self, node: Node, outcome: Outcome) -> None:
        if self.stopped:
            self.running -= 1
            return
        self._accept(node.pos, outcome, node)
        if self.op.concurrency is None or outcome.recorded:
            self.running -= 1
            self.fill()
        else:
            # The slot frees once the branch's record is durable: a crash then
            # re-runs at most `concurrency` branches, never settled ones.
            self.driver.writes.after_commit(self._free_slot)

    def _free_slot(self) -> None:
        self.running -= 1
        self.fill()

    def _accept(self, index: int, outcome: Outcome, node: Node | None) -> None:
        if isinstance(outcome.error, NonDeterminismError):
            # Replay met changed code inside this tree: nothing here is recorded
            # (the journal stays untouched for the fixed code to resume from).
            self.driver.writes.quiet = True
            try:
                self._stop_all(cancel=False)
            finally:
                self.driver.writes.quiet = False
            if self.live:
                self.settle(outcome)
            return
        self.fin += 1
        if node is not None and not outcome.recorded:
            if self.op.kind in RACE_KINDS:
                outcome.extra = {**(outcome.extra or {}), "f": self.fin}
            self.driver.writes.record_outcome(node, outcome)
        self.outcomes[index] = outcome
        kind = self.op.kind
        if kind in ALL_LIKE:
            self._accept_all(index, outcome)
        elif kind == "race":
            self._decide_race(index, outcome)
        elif kind == "any":
            self._accept_any(index, outcome)
        else:
            self._accept_quorum(index, outcome)

    def _accept_all(self, index: int, outcome: Outcome) -> None:
        op = self.op
        if not outcome.ok and op.fail_fast and not self.decided:
            # Raise now; siblings keep running (and stay checkpointed) with `cancelled` set.
            self.decided = True
            self.flag_cancel()
            self._settle_failed(self._failures())
            return
        if self.decided:
            # A sibling settling after a fail_fast raise: the coordinator failed, so
            # whatever signal it holds goes back to the buffer.
            self.driver.release(outcome.res)
            return
        if len(self.outcomes) < len(op.branches):
            return
        self.decided = True
        failures = self._failures()
        if op.kind == "all_settled":
            plain = [
                [o.ok, o.plain if o.ok else None, None if o.ok else error_to_data(as_branch_error(o.error))]
                for o in (self.outcomes[i] for i in range(len(op.branches)))
            ]
            self._settle_ok(plain, self._reservations(range(len(op.branches))))
        elif failures:
            self._settle_failed(failures)
        elif op.kind == "run_all":
            plain_map = {op.keys[i]: self.outcomes[i].plain for i in range(len(op.branches))}
            self._settle_ok(plain_map, self._reservations(range(len(op.branches))))
        else:
            values = [self.outcomes[i].plain for i in range(len(op.branches))]
            self._settle_ok(values, self._reservations(range(len(op.branches))))

    def _decide_race(self, index: int, outcome: Outcome) -> None:
        if self.decided:
            return
        self.decided = True
        self._stop_all(cancel=self.op.cancel_losers)
        crash_point("after_race_decision")
        key = self.op.keys[index]
        if outcome.ok:
            self._settle_ok([key, outcome.plain], list(outcome.res))
        else:
            error = as_branch_error(outcome.error)
            self._settle_failed({key: error}, lowest=key)

    def _accept_any(self, index: int, outcome: Outcome) -> None:
        if self.decided:
            return
        if outcome.ok:
            self.decided = True
            self._stop_all(cancel=False)
            self._settle_ok([self.op.keys[index], outcome.plain], list(outcome.res))
        elif len(self.outcomes) == len(self.op.branches):
            self.decided = True
            self._settle_all_failed()

    def _accept_quorum(self, index: int, outcome: Outcome) -> None:
        if self.decided:
            return
        op = self.op
        if outcome.ok:
            self.wins.append(index)
            if len(self.wins) == op.n:
                self.decided = True
                self._stop_all(cancel=False)
                plain = [[op.keys[i], self.outcomes[i].plain] for i in self.wins]
                self._settle_ok(plain, self._reservations(self.wins))
            return
        unsettled = len(op.branches) - len(self.outcomes)
        if op.n - len(self.wins) > unsettled:
            self.decided = True
            self._stop_all(cancel=False)
            self._settle_all_failed()

    def on_timer(self) -> None:
        """``all(timeout=...)``: give up on unsettled branches (they are treated as race losers)."""
        if not self.live or self.decided:
            return
        self.decided = True
        driver = self.driver
        driver.clear_timer(self, self.due or 0.0)
        self._stop_all(cancel=False)
        count = len(self.op.branches)
        settled = len(self.outcomes)
        if self.op.partial:
            pend = [i for i in range(count) if i not in self.outcomes]
            failures = self._failures()
            if failures:
                self._settle_failed(failures)
                return
            values = [self.outcomes[i].plain if i in self.outcomes else None for i in range(count)]
            self._settle_ok({"values": values, "pending": pend}, self._reservations(self.outcomes))
            return
        self._release_all()
        error = TimeoutError(
            f"step {self.step}: {settled} of {count} branches settled within {self.op.timeout}s"
        )
        self.settle(Outcome(False, error=error, finished=driver.now()))

    # -- settling -----------------------------------------------------------

    def _failures(self) -> dict[Any, ActivityError]:
        return {
            self.op.keys[i]: as_branch_error(self.outcomes[i].error)
            for i in sorted(self.outcomes)
            if not self.outcomes[i].ok
        }

    def _reservations(self, indexes: Any) -> list[Reservation]:
        res: list[Reservation] = []
        for i in indexes:
            outcome = self.outcomes.get(i)
            if outcome is not None and outcome.ok:
                res.extend(outcome.res)
        return res

    def _release_all(self) -> None:
        for outcome in self.outcomes.values():
            self.driver.release(outcome.res)

    def _settle_ok(self, plain: Any, res: list[Reservation]) -> None:
        driver = self.driver
        if self.due is not None and not self.stopped:
            driver.clear_timer(self, self.due)
        value = shape_value(self.op.kind, plain, self.op.layout(), named=self.op.named, run_id=driver.run_id)
        self.settle(Outcome(True, value, pack(plain), finished=driver.now(), res=res, plain=plain))

    def _settle_failed(self, failures: dict[Any, ActivityError], lowest: Any = None) -> None:
        driver = self.driver
        if self.due is not None and not self.stopped:
            driver.clear_timer(self, self.due)
        self._release_all()
        key = lowest if lowest is not None else next(iter(failures))
        error = failures[key].with_branch(key, failures)
        self.settle(Outcome(False, error=error, finished=driver.now()))

    def _settle_all_failed(self) -> None:
        failures = self._failures()
        self._release_all()
        error = AllBranchesFailedError(
            f"step {self.step}: {len(failures)} of {len(self.op.branches)} branches failed "
            f"({self.op.kind} needed {self.op.n or 1} to succeed)",
            failures,
        )
        self.settle(Outcome(False, error=error, finished=self.driver.now()))

    def _stop_all(self, cancel: bool) -> None:
        """Abandon every branch still running and start no more."""
        self.stopped = True
        self.to_start.clear()
        if self.due is not None:
            self.driver.clear_timer(self, self.due)
        for child in self.children:
            if child is not None and child.live:
                child.abandon(cancel)

    def on_abandon(self, cancel: bool) -> None:
        self._stop_all(cancel)
        self._release_all()

    def flagged(self) -> None:
        for child in self.children:
            if child is not None and child.live:
                child.flag_cancel()
