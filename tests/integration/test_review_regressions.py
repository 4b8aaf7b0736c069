"""Regressions found by a code review of the core (each once reproduced against the code).

Every test states the rule it pins and fails on the code before its fix.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import Box
from tests.support import WAIT, step_status, wait_until
from treadle.runtime import ActivityError, RunStatus, activity, workflow

P = "review."
GATES: dict[str, threading.Event] = {}
CALLS: list[str] = []


@activity(name=P + "quick")
def quick() -> int:
    return 1


@activity(name=P + "held")
def held(run_id: str) -> int:
    assert GATES[run_id].wait(WAIT), "gate never opened"
    return 2


@workflow(name=P + "wait_then_long")
def wait_then_long(ctx: Any) -> Any:
    yield ctx.run(quick)
    yield ctx.wait_for_signal("go")
    return (yield ctx.run(held, ctx.run_id))


def _wait_running(handle: Any, step: str, message: str) -> None:
    wait_until(lambda: step_status(handle, step) == "running", message=message)


def test_a_running_step_is_recorded_after_the_run_was_passivated_and_woken(rt: Any) -> None:
    """A "running" record held back for batching is still written within its delay after the
    run passivated and was woken again (the delay timer must not stay aimed at the old actor)."""
    run_id = P + "lazy"
    GATES[run_id] = threading.Event()
    try:
        handle = rt.start(wait_then_long, run_id=run_id)
        wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="passivated on its wait")
        handle.signal("go", 1)
        _wait_running(handle, "2", "step 2 recorded as running while its activity is held")
    finally:
        GATES[run_id].set()
    assert handle.result(timeout=WAIT) == 2


@activity(name=P + "boom")
def boom() -> None:
    raise ValueError("boom")


@activity(name=P + "held_after_boom")
def held_after_boom(run_id: str) -> int:
    assert GATES[run_id].wait(WAIT), "gate never opened"
    return 2


def _takes_then_works(ctx: Any) -> Any:
    value = yield ctx.wait_for_signal("s")
    yield ctx.run(held_after_boom, ctx.run_id)
    return value


@workflow(name=P + "fail_fast_release")
def fail_fast_release(ctx: Any) -> Any:
    yield ctx.wait_for_signal("go")
    try:
        yield ctx.all([_takes_then_works(ctx), ctx.run(boom)], fail_fast=True)
    except ActivityError:
        pass
    return (yield ctx.wait_for_signal("s", timeout=WAIT))


def test_a_sibling_settling_after_a_fail_fast_raise_releases_its_signal(rt: Any) -> None:
    """DESIGN: "a failed or lost coordinator releases them, so they stay buffered": a branch that
    took signal s and settles after its all failed fast gives s back to a later wait."""
    run_id = P + "release"
    GATES[run_id] = threading.Event()
    handle = rt.start(fail_fast_release, run_id=run_id)
    handle.signal("s", "first")
    handle.signal("go", None)
    wait_until(lambda: "1" in {r.step for r in handle.history()}, message="the all recorded")
    wait_until(lambda: step_status(handle, "1") == "failed", message="fail fast")
    GATES[run_id].set()
    assert handle.result(timeout=WAIT) == "first"


def _first_wait(ctx: Any) -> Any:
    return (yield ctx.wait_for_signal("a"))


def _late_wait(ctx: Any) -> Any:
    yield ctx.wait_for_signal("later")
    return (yield ctx.wait_for_signal("a"))


@workflow(name=P + "two_waits")
def two_waits(ctx: Any) -> Any:
    return (yield ctx.all([_first_wait(ctx), _late_wait(ctx)]))


def test_replayed_branches_keep_their_reserved_signals(box: Box) -> None:
    """Replay makes the same decisions (I4): after a restart, a branch's recorded reservation of
    a#1 is re-established, so the other branch takes a#2, exactly as without the restart."""
    rt = box.open()
    handle = rt.start(two_waits, run_id=P + "reserve")
    handle.signal("a", 1)
    handle.signal("a", 2)
    wait_until(
        lambda: step_status(handle, "0.0") == "completed",
        message="branch 0 took a#1 and was checkpointed",
    )
    rt = box.restart()
    handle = rt.get(P + "reserve")
    handle.signal("later", None)
    assert handle.result(timeout=WAIT) == [1, 2]


@activity(name=P + "x")
def x() -> str:
    return "x"


@activity(name=P + "y")
def y() -> str:
    return "y"


@activity(name=P + "sibling")
def sibling(run_id: str) -> int:
    CALLS.append(run_id)
    assert GATES[run_id].wait(WAIT), "gate never opened"
    return 1


MODE = {"new": False}


def _changing_branch(ctx: Any) -> Any:
    yield ctx.run(y if MODE["new"] else x)
    yield ctx.wait_for_signal("never")


@workflow(name=P + "changing")
def changing(ctx: Any) -> Any:
    return (yield ctx.all([ctx.run(sibling, ctx.run_id), _changing_branch(ctx)]))


def test_parking_on_changed_code_inside_a_coordinator_leaves_the_journal_untouched(box: Box) -> None:
    """DESIGN: a NonDeterminismError "parks the run: status PARKED, journal untouched" — also when
    it is met inside a coordinator whose other branches are live (no abandoned records)."""
    run_id = P + "park"
    GATES[run_id] = threading.Event()
    MODE["new"] = False
    try:
        rt = box.open()
        handle = rt.start(changing, run_id=run_id)
        wait_until(
            lambda: (
                {("0.1.0", "completed"), ("0.1.1", "running")}
                <= {(r.step, r.status) for r in handle.history()}
            ),
            message="the generator branch waits",
        )
        before = [(r.step, r.status) for r in handle.history()]
        MODE["new"] = True
        rt = box.restart()
        handle = rt.get(run_id)
        wait_until(lambda: handle.status() == RunStatus.PARKED, message="PARKED")
        assert [(r.step, r.status) for r in handle.history()] == before
    finally:
        MODE["new"] = False
        GATES[run_id].set()


@activity(name=P + "tracked")
def tracked(i: int, run_id: str) -> int:
    CALLS.append(f"{run_id}:{i}")
    if i == 0:
        raise ValueError("first item fails")
    if i == 1:
        assert GATES[run_id].wait(WAIT), "gate never opened"
    return i


@workflow(name=P + "fail_fast_then_return")
def fail_fast_then_return(ctx: Any) -> Any:
    try:
        yield ctx.all([ctx.run(tracked, i, ctx.run_id) for i in range(6)], concurrency=2, fail_fast=True)
    except ActivityError:
        return "gave up"
    return "finished"


def test_a_fail_fast_coordinator_starts_no_queued_branch_after_its_run_finished(box: Box) -> None:
    """DESIGN: fail_fast raises at the first failure; the run then returns. Branches still queued
    in the rolling pool (2..5) must never start once the run has finished, even when the
    running sibling (1) settles afterwards and frees a concurrency slot."""
    run_id = P + "ff-finished"
    GATES[run_id] = threading.Event()
    rt = box.open()
    try:
        handle = rt.start(fail_fast_then_return, run_id=run_id)
        assert handle.result(timeout=WAIT) == "gave up"
    finally:
        GATES[run_id].set()  # item 1 settles now, after the run finished
    wait_until(lambda: f"{run_id}:1" in CALLS, message="item 1 to have run")
    box.shutdown()  # every actor has stopped: nothing can start any more
    started = sorted(int(call.split(":")[-1]) for call in CALLS if call.startswith(run_id + ":"))
    assert started == [0, 1], started


@workflow(name=P + "hold_one")
def hold_one(ctx: Any) -> Any:
    return (yield ctx.run(held, ctx.run_id))


def test_a_running_step_is_recorded_after_the_run_woke_on_another_actor(rt: Any) -> None:
    """As above, with the run's old actor taken by another run while it slept, so that it
    wakes on a different actor: a delay timer still aimed at the old actor never flushes."""
    run_id, other = P + "lazy-moved", P + "lazy-squatter"
    GATES[run_id], GATES[other] = threading.Event(), threading.Event()
    try:
        handle = rt.start(wait_then_long, run_id=run_id)
        wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="passivated on its wait")
        squatter = rt.start(hold_one, run_id=other)  # takes the idle actor the sleeper left
        _wait_running(squatter, "0", "the other run to hold its actor")
        handle.signal("go", 1)
        _wait_running(handle, "2", "step 2 recorded as running while its activity is held")
    finally:
        GATES[run_id].set()
        GATES[other].set()
    assert handle.result(timeout=WAIT) == 2
    assert squatter.result(timeout=WAIT) == 2
