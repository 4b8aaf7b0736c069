"""Activity steps: the node that owns an activity's attempts, and the task a branch actor runs.

Retries and per-attempt timeouts are decided here, in the run's actor; the
branch actor only executes one attempt and reports its outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from treadle.storage import PayloadTooLargeError, SerializationError, crash_point, encode

from ._errors import ActivityError, ActivityTimeoutError, type_name
from ._messages import ActivityDone, AttemptTimedOut, RetryDue
from ._nodes import Node, Outcome, Parent
from ._ops import ActivityOp
from ._registry import ActivityContext

if TYPE_CHECKING:
    from ._driver import RunDriver

__all__ = ["ActivityNode", "ActivityTask"]


class ActivityTask:
    """One attempt of an activity, executed by a branch actor."""

    __slots__ = ("args", "attempt", "context", "definition", "deliver", "limit", "node")

    def __init__(self, node: ActivityNode, attempt: int, context: ActivityContext, limit: int) -> None:
        self.node = node
        self.attempt = attempt
        self.definition = node.op.definition
        self.args = node.op.args
        self.context = context
        self.limit = limit
        self.deliver: Any = None

    def wanted(self) -> bool:
        """False only for an attempt that was superseded (it timed out and was retried).

        A race loser or a branch left behind by a timeout is abandoned, not
        killed: its attempt still runs to completion, even if it had not
        started yet when the race was decided; its result is dropped.
        """
        return self.node.attempt == self.attempt

    def execute(self) -> ActivityDone:
        """Run the activity (in a branch actor's thread); never raises."""
        definition = self.definition
        kwargs: dict[str, Any] = {}
        if definition.context_param is not None:
            kwargs[definition.context_param] = self.context
        try:
            result = definition.fn(*self.args, **kwargs)
        except BaseException as exc:  # SystemExit too: pykka would stop every actor
            return self.failed(exc)
        try:
            packed, value = encode(result, f"step {self.context.step}", root="result", limit=self.limit)
        except (SerializationError, PayloadTooLargeError) as exc:
            return self.failed(exc)
        return ActivityDone(self.node, self.attempt, True, value=value, packed=packed)

    def failed(self, error: BaseException, *, final: bool = False) -> ActivityDone:
        """This attempt failed with ``error``; ``final``: no retry can change that."""
        return ActivityDone(
            self.node,
            self.attempt,
            False,
            error=ActivityError.from_exception(error),
            original=error,
            final=final,
        )


class ActivityNode(Node):
    __slots__ = ("attempt", "context", "op", "retry_handle", "timeout_handle")
    kind = "activity"

    def __init__(
        self, driver: RunDriver, step: str, parent: Parent, order: tuple[int, ...], pos: int, op: ActivityOp
    ):
        super().__init__(driver, step, parent, order, pos)
        self.op = op
        self.attempt = 0
        self.context: ActivityContext | None = None
        self.retry_handle: Any = None
        self.timeout_handle: Any = None

    @property
    def name(self) -> str | None:
        return self.op.definition.name

    def start(self) -> None:
        if self.replay():
            return
        driver = self.driver
        self.started = driver.now()
        self.attempt = 1
        driver.leaf_started(self, busy=True)
        # Dispatch first: the branch actor's thread wakes while this one finishes the message.
        self._dispatch()
        driver.writes.defer_running(self, 1)

    def _dispatch(self) -> None:
        driver = self.driver
        context = ActivityContext(run_id=driver.run_id, step=self.step, attempt=self.attempt, key=self.op.key)
        if self.cancel_flag:
            context.cancelled.set()
        self.context = context
        driver.dispatch(ActivityTask(self, self.attempt, context, driver.port.max_payload))
        crash_point("after_branch_spawn")
        if self.op.timeout is not None:
            self.timeout_handle = driver.port.call_later(self.op.timeout, AttemptTimedOut(self, self.attempt))

    def on_done(self, msg: ActivityDone) -> None:
        if not self.live or msg.attempt != self.attempt or self.retry_handle is not None:
            self.driver.log.debug("late activity result dropped", step=self.step, attempt=msg.attempt)
            return
        self._cancel_timeout()
        if msg.ok:
            self.settle(
                Outcome(True, msg.value, msg.packed, attempt=self.attempt, finished=self.driver.now())
            )
        else:
            assert msg.error is not None
            self._attempt_failed(msg.error, msg.original, final=msg.final, lineage=msg.lineage)

    def _attempt_failed(
        self,
        error: BaseException,
        original: BaseException | None,
        *,
        final: bool = False,
        lineage: tuple[str, ...] = (),
    ) -> None:
        policy = None if final else self.op.retry
        cause = original if original is not None else error
        cancelled = (
            self.context is not None
            and self.context.cancelled.is_set()
            and not isinstance(error, ActivityTimeoutError)
        )
        if policy is None or cancelled:
            retry = False
        elif lineage:  # raised in another process, and only its class names came back
            retry = "builtins.Exception" in lineage and policy.retries_named(lineage, self.attempt)
        else:
            retry = isinstance(cause, Exception) and policy.retries(cause, self.attempt)
        if policy is not None and retry:
            delay = policy.delay(self.attempt)
            self.driver.log.info(
                "activity attempt failed; retrying", step=self.step, attempt=self.attempt, delay=delay
            )
            self.retry_handle = self.driver.port.call_later(delay, RetryDue(self, self.attempt + 1))
            return
        self.settle(Outcome(False, error=error, attempt=self.attempt, finished=self.driver.now()))

    def on_retry(self, msg: RetryDue) -> None:
        if not self.live or msg.attempt != self.attempt + 1:
            return
        self.retry_handle = None
        self.attempt = msg.attempt
        self._dispatch()

    def on_timeout(self, msg: AttemptTimedOut) -> None:
        if not self.live or msg.attempt != self.attempt or self.retry_handle is not None:
            return
        self.timeout_handle = None
        if self.context is not None:
            self.context.cancelled.set()
        error = ActivityTimeoutError(
            type_name(ActivityTimeoutError),
            f"step {self.step} attempt {self.attempt} ran past its timeout of {self.op.timeout}s",
        )
        self._attempt_failed(error, error)

    def _cancel_timeout(self) -> None:
        if self.timeout_handle is not None:
            self.timeout_handle.cancel()
            self.timeout_handle = None

    def on_abandon(self, cancel: bool) -> None:
        self._cancel_timeout()
        if self.retry_handle is not None:
            self.retry_handle.cancel()
            self.retry_handle = None
        if cancel:
            self.flag_cancel()

    def flagged(self) -> None:
        if self.context is not None:
            self.context.cancelled.set()
