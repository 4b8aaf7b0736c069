"""Branch actors: one per running activity, reused once idle.

A branch actor runs one activity attempt and tells the run's actor the
outcome; it holds no storage handle. The runtime's executor decides where the
activity's code runs: in the actor's own thread (``threads``) or in a worker
process or Ray task that the actor's thread waits for. Starting a thread costs
far more than running a no-op activity, so an actor that finished its branch
takes the next waiting one (or waits idle for one) instead of stopping:
there is still exactly one actor per running branch. ``max_branch_actors``
caps live branch actors runtime-wide; branches beyond it queue in order.

A branch actor hands its outcome to the run through ``task.deliver``, which
may handle it right there in the branch's thread when the run's actor is idle
(see ``RunActor.deliver``). If handling it dispatches a new attempt, this
actor keeps the first one for itself (:meth:`BranchPool.submit` while its
slot is open) instead of waking another thread: a sequential workflow's next
step then runs with no thread hand-off at all.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import pykka

from ._executors import Executors, ThreadExecutor
from ._log import get_logger

if TYPE_CHECKING:
    from ._activity import ActivityTask

__all__ = ["BranchActor", "BranchPool", "simple_inbox"]

_log = get_logger("treadle.branch")


def simple_inbox() -> queue.SimpleQueue[Any]:
    """An actor inbox whose put and wake-up are C code (queue.Queue's are Python, with a
    Condition): about half the cost per message on the hottest hops (a step's result to
    its run actor, the writer's acks, requests to the writer and the supervisor)."""
    return queue.SimpleQueue()


class BranchActor(pykka.ThreadingActor):
    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        return simple_inbox()  # every step's dispatch goes through this inbox

    def __init__(self, pool: BranchPool) -> None:
        super().__init__()
        self.pool = pool

    def on_receive(self, message: Any) -> Any:
        task: ActivityTask | None = message
        pool = self.pool
        executors = pool.executors
        while task is not None:
            kept = None
            if task.wanted():
                outcome = executors.run(task)
                if outcome is not None:
                    kept = pool.deliver(task, outcome)
            task = kept if kept is not None else pool.next_task(self.actor_ref)
        return None


class BranchPool:
    """Hands activity tasks to branch actors, at most ``limit`` alive at once."""

    def __init__(self, limit: int, executors: Executors | None = None, idle_keep: int = 64) -> None:
        self.limit = limit
        self.executors = executors if executors is not None else Executors(ThreadExecutor())
        self.idle_keep = idle_keep
        self._lock = threading.Lock()
        self._idle: list[pykka.ActorRef[BranchActor]] = []
        self._pending: deque[ActivityTask] = deque()
        self._live = 0
        self._busy = 0
        self._closed = False
        self._local = threading.local()  # .slot: open while a branch actor's thread delivers
        self.started = 0
        self.kept = 0  # attempts a branch actor kept for itself while delivering

    def deliver(self, task: ActivityTask, outcome: Any) -> ActivityTask | None:
        """Hand ``outcome`` to ``task``'s run from this branch actor's thread; the attempt
        that handling dispatched and this actor kept for itself, if any."""
        local = self._local
        slot: list[ActivityTask] = []
        local.slot = slot
        try:
            task.deliver(outcome)
        except Exception as exc:  # never lose the branch actor (and its pool slot) to it
            _log.error(
                "delivering an activity outcome failed",
                run_id=task.context.run_id,
                step=task.context.step,
                error=repr(exc),
            )
        finally:
            local.slot = None
        return slot[0] if slot else None

    def submit(self, task: ActivityTask) -> None:
        slot: list[ActivityTask] | None = getattr(self._local, "slot", None)
        with self._lock:
            if self._closed:
                return
            if slot is not None and not slot and not self._pending:
                # Dispatched while a branch actor's thread delivers (see deliver): that actor
                # is about to be free and runs it next, without waking another thread. Not
                # while attempts queue for an actor: they were first.
                slot.append(task)
                self.kept += 1
                return
            if self._idle:
                ref = self._idle.pop()
                self._busy += 1
            elif self._live < self.limit:
                self._live += 1
                self._busy += 1
                ref = None
            else:
                self._pending.append(task)
                return
        if ref is None:
            ref = BranchActor.start(self)
            self.started += 1
        ref.tell(task)

    def next_task(self, ref: pykka.ActorRef[BranchActor]) -> ActivityTask | None:
        """Called by an actor that finished: its next task, or None (it idles or stops)."""
        with self._lock:
            if self._pending and not self._closed:
                return self._pending.popleft()
            self._busy -= 1
            if not self._closed and len(self._idle) < self.idle_keep:
                self._idle.append(ref)
                return None
            self._live -= 1
        ref.stop(block=False)
        return None

    def stats(self) -> tuple[int, int, int]:
        """(live actors, busy actors, queued tasks)."""
        with self._lock:
            return self._live, self._busy, len(self._pending)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._pending.clear()
            self._live -= len(idle)
        for ref in idle:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
