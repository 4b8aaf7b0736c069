"""A branch actor hands its outcome to an idle run actor directly (RunActor.deliver).

When the run's actor has nothing queued and is not handling a message, the branch
actor's thread handles the outcome under the actor's lock, and keeps the next
attempt that handling dispatches: a sequential workflow then takes no thread
hand-off per step. Otherwise the outcome is told to the actor, behind what is
queued. Either way the run's state is handled by one thread at a time and the run
actor stays free while an activity runs.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from tests.conftest import Box
from tests.support import WAIT, assert_cancel_ended_the_run, cancel_in_thread, step_status, wait_until
from treadle.runtime import ActivityContext, Runtime, activity, workflow
from treadle.runtime._run_actor import RunActor
from treadle.runtime.testing import FakeClock

THREADS: list[int] = []
STARTED = threading.Event()
GATES: dict[str, threading.Event] = {}  # run id -> the gate its held activity waits on


@activity(name="direct.where")
def where(i: int) -> int:
    THREADS.append(threading.get_ident())
    return i * 2


@activity(name="direct.held")
def held(i: int, actx: ActivityContext) -> int:
    STARTED.set()
    assert GATES[actx.run_id].wait(WAIT), "not released"
    return i


@workflow(name="direct.sequence")
def sequence(ctx: Any, n: int) -> Any:
    total = yield ctx.run(held, 0)
    for i in range(n):
        total += yield ctx.run(where, i)
    return total


@workflow(name="direct.held_then_more")
def held_then_more(ctx: Any) -> Any:
    a = yield ctx.run(held, 1)
    b = yield ctx.run(where, 2)
    c = yield ctx.run(where, 3)
    return [a, b, c]


def _held_run_id(box: Box) -> tuple[str, threading.Event]:
    """A fresh run id and the box gate its ``held`` activity waits on."""
    run_id = f"direct-{uuid.uuid4().hex[:8]}"
    GATES[run_id] = gate = box.gate()
    return run_id, gate


def _actor(rt: Runtime, run_id: str) -> RunActor:
    actor = rt._services.entries[run_id].ref._actor_weakref()
    assert isinstance(actor, RunActor)
    return actor


def _steps(handle: Any) -> list[tuple[str, str]]:
    return [(step.step, step.status) for step in handle.history()]


def test_sequential_steps_are_kept_by_the_branch_that_delivers(box: Box) -> None:
    """Every step after the first is dispatched while the previous step's branch actor
    delivers, and that actor runs it: one thread runs them all, none is woken. (A fake
    clock: no timer message reaches the actor's inbox meanwhile.)"""
    rt = box.open(clock=FakeClock())
    THREADS.clear()
    STARTED.clear()
    run_id, release = _held_run_id(box)
    handle = rt.start(sequence, 30, run_id=run_id)
    assert STARTED.wait(WAIT)
    actor = _actor(rt, handle.run_id)
    # The run actor has finished handling the run's start: from here on it is idle.
    wait_until(lambda: actor.inbox.pending == 0, message="the run actor idle")
    kept = rt._pool.kept
    release.set()
    assert handle.result(timeout=WAIT) == sum(i * 2 for i in range(30))
    assert rt._pool.kept - kept == 30
    assert len(THREADS) == 30 and len(set(THREADS)) == 1
    assert all(status == "completed" for _, status in _steps(handle))


def test_an_outcome_is_queued_while_the_run_actor_is_busy(box: Box) -> None:
    """While the run's actor holds its lock (handling a message), the outcome is told to
    it instead, and handled once the actor is free; nothing is kept for that step."""
    rt = box.open(clock=FakeClock())
    STARTED.clear()
    run_id, release = _held_run_id(box)
    handle = rt.start(held_then_more, run_id=run_id)
    assert STARTED.wait(WAIT)
    actor = _actor(rt, handle.run_id)
    kept = rt._pool.kept
    with actor.lock:  # what the actor's thread holds while it handles a message
        release.set()
        # The branch actor could not deliver: it told the outcome and went idle.
        wait_until(lambda: rt._pool.stats()[1] == 0, message="the branch actor idle")
        assert actor.inbox.pending == 1  # the outcome, taken or not, waits for the lock
        assert step_status(handle, "0") != "completed"  # not handled behind the lock
        assert rt._pool.kept == kept  # nothing was dispatched
    assert handle.result(timeout=WAIT) == [1, 4, 6]


def test_a_cancel_is_handled_while_the_activity_runs_and_its_late_outcome_is_dropped(
    box: Box, rt: Runtime
) -> None:
    """The run actor is free during an activity: a cancel ends the run at once. The
    activity's outcome, delivered later, is dropped: no record, no next step."""
    STARTED.clear()
    THREADS.clear()
    run_id, release = _held_run_id(box)
    handle = rt.start(held_then_more, run_id=run_id)
    assert STARTED.wait(WAIT)
    canceller, outcome = cancel_in_thread(handle)
    assert_cancel_ended_the_run(canceller, outcome, handle)
    release.set()
    wait_until(lambda: rt._pool.stats()[1] == 0, message="the cancelled activity returned")
    assert THREADS == []  # step 1 was never dispatched
    assert step_status(handle, "0") != "completed"
    assert all(step == "0" for step, _ in _steps(handle))


def test_stopping_the_run_actor_waits_for_a_delivery_in_progress(box: Box) -> None:
    """on_stop takes the actor's lock: a stop does not return while a branch actor's
    thread handles an outcome, and no delivery is handled directly after it."""
    rt = box.open()
    STARTED.clear()
    run_id, release = _held_run_id(box)
    handle = rt.start(held_then_more, run_id=run_id)
    assert STARTED.wait(WAIT)
    actor = _actor(rt, handle.run_id)
    stopped = threading.Event()

    def stop() -> None:
        actor.actor_ref.stop(block=True)
        stopped.set()

    actor.lock.acquire()  # stands for a delivery in progress
    try:
        threading.Thread(target=stop, daemon=True).start()
        # pykka marks the actor stopped, then calls on_stop, which waits for the lock.
        wait_until(actor.actor_stopped.is_set, message="the stop taken by the actor")
        assert not stopped.is_set() and not actor.stopping
    finally:
        actor.lock.release()
    assert stopped.wait(WAIT)
    assert actor.stopping
    release.set()
    wait_until(lambda: rt._pool.stats()[1] == 0, message="the activity returned")
    assert step_status(handle, "0") != "completed"  # its outcome reached a stopped actor
