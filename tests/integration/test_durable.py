"""Durability: timers across restarts, fake clocks, parking on changed code, unregistered runs.

Every test quotes the part of DESIGN.md (or RELIABILITY.md) it pins.
"""

from __future__ import annotations

import threading
import uuid as uuid_mod
from datetime import datetime, timedelta, timezone
from typing import Any

import pykka
import pytest

from tests.support import WAIT, assert_cancel_ended_the_run, cancel_in_thread, supervisor_handled, wait_until
from treadle.runtime import (
    ActivityContext,
    NonDeterminismError,
    Registry,
    RunParkedError,
    RunStatus,
    WorkflowFailedError,
    activity,
    workflow,
)
from treadle.runtime._messages import RequestCancel
from treadle.runtime._run_actor import RunActor
from treadle.runtime.testing import FakeClock

GATES: dict[str, threading.Event] = {}
CALLS: dict[str, list[Any]] = {}
MODE: dict[str, str] = {}
CAUGHT: dict[str, dict[str, Any]] = {}
HOLDS: dict[str, threading.Event] = {}
REACHED: dict[str, threading.Event] = {}


def _note(run_id: str, item: Any) -> None:
    CALLS.setdefault(run_id, []).append(item)


def _run_id(prefix: str) -> str:
    return f"{prefix}-{uuid_mod.uuid4().hex[:8]}"


@activity(name="dur.step")
def step(label: str, actx: ActivityContext) -> str:
    _note(actx.run_id, label)
    gate = GATES.get(f"{actx.run_id}:{label}")
    if gate is not None:
        assert gate.wait(WAIT), "gate not opened"
    return label


@activity(name="dur.b")
def step_b(actx: ActivityContext) -> str:
    _note(actx.run_id, "b")
    return "b"


@activity(name="dur.c")
def step_c(actx: ActivityContext) -> str:
    _note(actx.run_id, "c")
    return "c"


@workflow(name="dur.sleeper")
def sleeper(ctx: Any, seconds: Any) -> Any:
    first = yield ctx.run(step, "before")
    yield ctx.sleep(seconds)
    second = yield ctx.run(step, "after")
    return [first, second]


@workflow(name="dur.until")
def until(ctx: Any, when_iso: str) -> Any:
    yield ctx.sleep_until(datetime.fromisoformat(when_iso))
    return "woke"


@workflow(name="dur.changing")
def changing(ctx: Any) -> Any:
    a = yield ctx.run(step, "a")
    if MODE["changing"] == "old":
        b = yield ctx.run(step_b)
    else:
        b = yield ctx.run(step_c)
    payload = yield ctx.wait_for_signal("dur.go")
    return [a, b, payload]


@workflow(name="dur.catching")
def catching(ctx: Any) -> Any:
    a = yield ctx.run(step, "a")
    if MODE["catching"] == "old":
        b = yield ctx.run(step_b)
    else:
        try:
            b = yield ctx.run(step_c)
        except NonDeterminismError as e:
            CAUGHT[ctx.run_id] = {"run_id": e.run_id, "step": e.step, "recorded": e.recorded, "got": e.got}
            b = "caught"
    payload = yield ctx.wait_for_signal("dur.go")
    return [a, b, payload]


@workflow(name="dur.held")
def held(ctx: Any) -> Any:
    a = yield ctx.run(step, "a")
    if MODE["held"] == "old":
        b = yield ctx.run(step_b)
    else:
        b = yield ctx.run(step_c)
    hold = HOLDS.get(ctx.run_id)
    if hold is not None:
        # Past the step that diverged: the replay now matches the journal.
        REACHED[ctx.run_id].set()
        assert hold.wait(WAIT), "hold not released"
    payload = yield ctx.wait_for_signal("dur.go")
    return [a, b, payload]


@workflow(name="dur.held_early")
def held_early(ctx: Any) -> Any:
    a = yield ctx.run(step, "a")
    hold = HOLDS.get(ctx.run_id)
    if hold is not None:
        # Before the step that diverges: the replay has not met the changed code yet.
        REACHED[ctx.run_id].set()
        assert hold.wait(WAIT), "hold not released"
    if MODE["held_early"] == "old":
        b = yield ctx.run(step_b)
    else:
        b = yield ctx.run(step_c)
    payload = yield ctx.wait_for_signal("dur.go")
    more = yield ctx.wait_for_signal("dur.more")
    return [a, b, payload, more]


@workflow(name="dur.parent_of_held_early")
def parent_of_held_early(ctx: Any) -> Any:
    return (yield ctx.child(held_early, run_id=f"{ctx.run_id}-child"))


@workflow(name="dur.waiter")
def waiter(ctx: Any) -> Any:
    a = yield ctx.run(step, "w")
    payload = yield ctx.wait_for_signal("dur.go")
    return [a, payload]


def _run_actors() -> list[Any]:
    """Run actors currently driving a run (idle pooled ones hold no run)."""
    busy = []
    for ref in pykka.ActorRegistry.get_by_class(RunActor):
        try:
            if ref.proxy().driver.get(timeout=2) is not None:
                busy.append(ref)
        except pykka.ActorDeadError:
            pass
    return busy


# --------------------------------------------------------------------------
# durable sleep
# --------------------------------------------------------------------------


def test_durable_sleep_survives_a_restart(box: Any, rt: Any) -> None:
    """DESIGN.md: "`ctx.sleep(duration)` | `None` | durable timer; ... survives restarts";
    "A run that is only sleeping or waiting holds no thread: its actor stops and the
    TimerService or an incoming signal starts it again"."""
    run_id = _run_id("dur-sleep")
    handle = rt.start(sleeper, 0.5, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED while sleeping")
    wait_until(lambda: not _run_actors(), message="no RunActor while sleeping")

    rt = box.restart()
    handle = rt.get(run_id)
    assert handle.result(timeout=WAIT) == ["before", "after"]
    assert CALLS[run_id] == ["before", "after"], "the step before the sleep is not run again"
    history = handle.history()
    assert [(s.step, s.kind, s.status) for s in history] == [
        ("0", "activity", "completed"),
        ("1", "sleep", "completed"),
        ("2", "activity", "completed"),
    ]


def test_sleep_with_a_fake_clock(box: Any) -> None:
    """DESIGN.md: "`clock=None`" parameter of Runtime; testing.FakeClock: "durable
    sleeps, timeouts and retries follow it"; durations accept `"1h"`."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(sleeper, "1h")
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED while sleeping")
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    clock.advance(1800)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    clock.advance(1800)
    assert handle.result(timeout=WAIT) == ["before", "after"]
    sleep_step = handle.history()[1]
    assert sleep_step.kind == "sleep"
    assert (sleep_step.finished - sleep_step.started) >= timedelta(hours=1)


def test_wall_clock_jump_forward_past_the_deadline_fires_the_sleep_once(box: Any) -> None:
    """RELIABILITY 20: "deadlines stored as absolute wall time". An NTP step forward
    (wall time moves, monotonic time does not) past the deadline wakes a live sleep."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(sleeper, "1h")
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED while sleeping")
    clock.set(clock.time() + 1800)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    clock.set(clock.time() + 3600)
    assert handle.result(timeout=WAIT) == ["before", "after"]
    assert [rec.kind for rec in handle.history()].count("sleep") == 1


def test_wall_clock_jump_backward_lengthens_the_sleep_to_its_wall_deadline(box: Any) -> None:
    """RELIABILITY 20: the deadline is a wall time, so a step back of the wall clock
    delays the wake-up until the wall clock reaches the deadline again."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(sleeper, "1h")
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED while sleeping")
    clock.set(clock.time() - 3600)
    clock.advance(3600)  # an hour has passed on the monotonic clock, none on the wall
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    assert handle.status() == RunStatus.SUSPENDED
    clock.advance(3600)
    assert handle.result(timeout=WAIT) == ["before", "after"]


def test_sleep_until_an_aware_datetime(box: Any) -> None:
    """DESIGN.md: "`ctx.sleep_until(datetime)` | `None`"; "`sleep_until` needs a
    timezone-aware datetime"."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    plus_two = timezone(timedelta(hours=2))
    when = datetime.fromtimestamp(clock.time() + 100, tz=plus_two)
    handle = rt.start(until, when.isoformat())
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    clock.advance(50)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    clock.advance(50)
    assert handle.result(timeout=WAIT) == "woke"
    [record] = handle.history()
    assert (record.kind, record.status) == ("sleep", "completed")


# --------------------------------------------------------------------------
# parking on changed code (scenario 17)
# --------------------------------------------------------------------------


def test_changed_code_parks_the_run_and_reverting_resumes_it(box: Any, rt: Any) -> None:
    """DESIGN.md: "An uncaught `NonDeterminismError` (workflow code changed incompatibly)
    **parks** the run: status PARKED, journal untouched, so deploying the fixed code and
    restarting resumes it"; "`handle.result()` of a PARKED run raises `RunParkedError` at
    once (with the `NonDeterminismError`'s message)"; "PARKED runs are replayed at every
    start-up and resume if the code now matches". RELIABILITY.md 17."""
    MODE["changing"] = "old"
    run_id = _run_id("dur-park")
    handle = rt.start(changing, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="waiting on the signal")
    # The wait's own "running" record is written lazily: wait until it is in the store.
    wait_until(lambda: len(handle.history()) == 3, message="the signal wait's record")
    before = handle.history()
    assert [(s.step, s.name) for s in before] == [("0", "dur.step"), ("1", "dur.b"), ("2", "dur.go")]

    MODE["changing"] = "new"
    rt = box.restart()
    handle = rt.get(run_id)
    handle.signal("dur.go", "payload")  # wakes the run: its replay meets the changed step 1
    wait_until(lambda: handle.status() == RunStatus.PARKED, message="PARKED")
    with pytest.raises(RunParkedError) as info:
        handle.result(timeout=WAIT)
    assert "step 1" in str(info.value)
    assert "dur.b" in str(info.value) and "dur.c" in str(info.value)
    assert handle.history() == before, "the journal is untouched"
    assert [s.run_id for s in rt.runs(status=RunStatus.PARKED)] == [run_id]
    assert "c" not in CALLS[run_id], "the changed step was not dispatched"

    MODE["changing"] = "old"
    rt = box.restart()
    handle = rt.get(run_id)
    wait_until(lambda: handle.status() == RunStatus.COMPLETED, message="the reverted run to complete")
    assert handle.result(timeout=WAIT) == ["a", "b", "payload"]
    assert handle.status() == RunStatus.COMPLETED
    assert CALLS[run_id] == ["a", "b"], "no step ran twice"


def _branchy_tail(ctx: Any) -> Any:
    first = yield (ctx.run(step, "b") if MODE["branchy"] == "old" else ctx.run(step_c))
    second = yield ctx.run(step, "b2")
    return [first, second]


@workflow(name="dur.branchy")
def branchy(ctx: Any) -> Any:
    return (yield ctx.all([ctx.run(step, "a"), _branchy_tail(ctx)]))


def test_a_change_inside_a_branch_parks_the_run_before_a_sibling_is_dispatched_again(
    box: Any, rt: Any
) -> None:
    """RELIABILITY.md I4: "Divergence raises `NonDeterminismError` and parks the run with its
    journal untouched". The change is in branch 1's first (recorded) step, which the replay
    only meets after it has started branch 0 (unsettled, unchanged): no activity is
    dispatched until the replay has gone as far as the journal takes it, so branch 0 does
    not run a second time for a run that parks."""
    MODE["branchy"] = "old"
    run_id = _run_id("dur-branchy")
    GATES[f"{run_id}:a"] = box.gate()
    GATES[f"{run_id}:b2"] = box.gate()
    handle = rt.start(branchy, run_id=run_id)

    def in_flight() -> bool:
        status = {s.step: s.status for s in handle.history()}
        return (status.get("0.0"), status.get("0.1.0"), status.get("0.1.1")) == (
            "running",
            "completed",
            "running",
        )

    wait_until(in_flight, message="branch 0 and branch 1's second step recorded running")
    try:
        MODE["branchy"] = "new"
        rt = box.restart()
        handle = rt.get(run_id)
        wait_until(lambda: handle.status() == RunStatus.PARKED, message="PARKED")
        # A dispatch would have come before the park, while the same message was handled.
        assert rt._services.pool.stats()[1] == 0, "no activity was dispatched by the replay"
        assert sorted(CALLS[run_id]) == ["a", "b", "b2"]
        with pytest.raises(RunParkedError, match=r"step 0\.1\.0"):
            handle.result(timeout=WAIT)
    finally:
        MODE["branchy"] = "old"


def test_resumed_parked_run_is_not_reported_parked(box: Any, rt: Any) -> None:
    """DESIGN.md: "PARKED runs are replayed at every start-up and resume if the code now
    matches"; "`handle.result()` ... the return value"; "handle.status() # a RunStatus:
    RUNNING ..."."""
    MODE["held"] = "old"
    run_id = _run_id("dur-held")
    handle = rt.start(held, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="waiting on the signal")
    wait_until(lambda: len(handle.history()) == 3, message="the signal wait's record")
    try:
        MODE["held"] = "new"
        rt = box.restart()
        handle = rt.get(run_id)
        handle.signal("dur.go", "payload")
        wait_until(lambda: handle.status() == RunStatus.PARKED, message="PARKED")

        MODE["held"] = "old"
        HOLDS[run_id] = box.gate()
        REACHED[run_id] = threading.Event()
        rt = box.restart()
        handle = rt.get(run_id)
        assert REACHED[run_id].wait(WAIT), "the replay passed the step that had diverged"
        status = handle.status()
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.05)  # waits: the run is live again, not parked
        assert status == RunStatus.RUNNING
    finally:
        MODE["held"] = "old"
        if run_id in HOLDS:
            HOLDS[run_id].set()
    assert handle.result(timeout=WAIT) == ["a", "b", "payload"]


def _park(box: Any, rt: Any, workflow: Any, mode: str) -> tuple[Any, str]:
    """Start ``workflow`` with the old code, then wake it under the new code so that it parks."""
    MODE[mode] = "old"
    run_id = _run_id(f"dur-{mode}")
    handle = rt.start(workflow, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="waiting on the signal")
    wait_until(lambda: len(handle.history()) == 3, message="the signal wait's record")
    MODE[mode] = "new"
    rt = box.restart()
    rt.get(run_id).signal("dur.go", "payload")
    wait_until(lambda: rt.get(run_id).status() == RunStatus.PARKED, message="PARKED")
    return rt, run_id


def test_a_cancel_taken_while_a_parked_run_replays_ends_it_cancelled_when_it_parks_again(
    box: Any, rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md: a parked run "ends cancelled at once" when cancelled. A parked run replayed at
    start-up is parked again by its replay if the code still differs: a cancel the supervisor
    took during that replay must end it cancelled, and once cancel() has returned True,
    result() must not say parked."""
    rt, run_id = _park(box, rt, held_early, "held_early")
    HOLDS[run_id] = box.gate()
    REACHED[run_id] = threading.Event()
    took_cancel = supervisor_handled(monkeypatch, RequestCancel, run_id)
    rt = box.restart()  # still the new code: the replay will park the run again
    assert REACHED[run_id].wait(WAIT), "the replay reached the hold"
    handle = rt.get(run_id)
    canceller, outcome = cancel_in_thread(handle)
    assert took_cancel.wait(WAIT), "the supervisor did not take the cancel"
    HOLDS[run_id].set()  # the replay goes on and meets the changed step
    assert_cancel_ended_the_run(canceller, outcome, handle)
    assert "c" not in CALLS[run_id], "the changed step was not dispatched"


def test_a_cancel_taken_while_a_parked_run_replays_reaches_it_when_it_resumes(
    box: Any, rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md: "PARKED runs are replayed at every start-up and resume if the code now
    matches"; `handle.cancel()` "raises CancelledError into the workflow at its current yield".
    A cancel taken while the replay of a parked run is under way is held until the supervisor
    knows whether the run parks again; here it resumes, so the cancel reaches its code."""
    rt, run_id = _park(box, rt, held_early, "held_early")
    MODE["held_early"] = "old"
    HOLDS[run_id] = box.gate()
    REACHED[run_id] = threading.Event()
    took_cancel = supervisor_handled(monkeypatch, RequestCancel, run_id)
    rt = box.restart()  # the reverted code: the replay will get past the step that had diverged
    assert REACHED[run_id].wait(WAIT), "the replay reached the hold"
    handle = rt.get(run_id)
    canceller, outcome = cancel_in_thread(handle)
    assert took_cancel.wait(WAIT), "the supervisor did not take the cancel"
    HOLDS[run_id].set()
    assert_cancel_ended_the_run(canceller, outcome, handle)
    assert [(s.step, s.status) for s in handle.history()][-2:] == [("2", "completed"), ("3", "failed")]


def test_cancelling_a_parked_child_ends_its_parents_wait(box: Any, rt: Any) -> None:
    """DESIGN.md: a parked run "ends cancelled at once" when cancelled; `ctx.child` returns
    "child's result". The child's end reaches its parent, as any child's end does, so the
    parent does not wait for ever on a child that will run no more code."""
    MODE["held_early"] = "old"
    parent_id = _run_id("dur-parent")
    child_id = f"{parent_id}-child"
    rt.start(parent_of_held_early, run_id=parent_id)
    wait_until(lambda: len(CALLS.get(child_id, [])) == 2, message="the child's steps")
    wait_until(lambda: len(rt.get(child_id).history()) == 3, message="the child's signal wait record")
    MODE["held_early"] = "new"
    rt = box.restart()
    child_handle = rt.get(child_id)
    child_handle.signal("dur.go", "payload")
    wait_until(lambda: child_handle.status() == RunStatus.PARKED, message="the child PARKED")
    assert child_handle.cancel() is True
    with pytest.raises(WorkflowFailedError) as info:
        rt.get(parent_id).result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.CancelledError"
    assert child_handle.status() == RunStatus.CANCELLED


def test_non_determinism_error_carries_fields_and_can_be_caught(box: Any, rt: Any) -> None:
    """DESIGN.md: "`NonDeterminismError` has `.run_id`, `.step`, `.recorded` (what the
    journal holds) and `.got` (what the code did)"; "it can be caught by the workflow";
    "A run is FAILED only by its own errors"."""
    MODE["catching"] = "old"
    run_id = _run_id("dur-catch")
    handle = rt.start(catching, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="waiting on the signal")

    MODE["catching"] = "new"
    try:
        rt = box.restart()
        handle = rt.get(run_id)
        handle.signal("dur.go", 7)
        assert handle.result(timeout=WAIT) == ["a", "caught", 7]
    finally:
        MODE["catching"] = "old"
    caught = CAUGHT[run_id]
    assert caught["run_id"] == run_id
    assert caught["step"] == "1"
    assert "dur.b" in caught["recorded"]
    assert "dur.c" in caught["got"]
    assert CALLS[run_id] == ["a", "b"]


def test_run_of_unregistered_workflow_is_left_untouched(box: Any, rt: Any) -> None:
    """DESIGN.md: "A run whose workflow is not registered is left untouched at start-up
    and logged, never failed"; "A run whose workflow is not registered keeps its status
    and is listed by `rt.runs()`"."""
    waiting_id = _run_id("dur-unreg-wait")
    waiting = rt.start(waiter, run_id=waiting_id)
    busy_id = _run_id("dur-unreg-busy")
    gate = box.gate()
    GATES[f"{busy_id}:before"] = gate
    busy = rt.start(sleeper, 0, run_id=busy_id)
    wait_until(lambda: waiting.status() == RunStatus.SUSPENDED, message="the waiting run to suspend")
    wait_until(lambda: CALLS.get(busy_id) == ["before"], message="the busy run's activity")
    # "running" records are written lazily: wait until both are in the store.
    wait_until(lambda: len(waiting.history()) == 2 and len(busy.history()) == 1, message="running records")
    histories = {waiting_id: waiting.history(), busy_id: busy.history()}
    assert [(s.step, s.kind, s.status) for s in histories[waiting_id]] == [
        ("0", "activity", "completed"),
        ("1", "signal", "running"),
    ]
    assert [(s.step, s.kind, s.status) for s in histories[busy_id]] == [("0", "activity", "running")]

    box.shutdown()
    rt = box.open(registry=Registry())
    runs = {s.run_id: s for s in rt.runs()}
    assert set(runs) == {waiting_id, busy_id}
    assert runs[waiting_id].status == RunStatus.SUSPENDED
    assert runs[waiting_id].workflow == "dur.waiter"
    assert runs[busy_id].status == RunStatus.RUNNING
    assert runs[busy_id].workflow == "dur.sleeper"
    assert not _run_actors(), "no run was started"
    assert {rid: rt.get(rid).history() for rid in histories} == histories

    gate.set()
    rt = box.restart()
    rt.get(waiting_id).signal("dur.go", "late")
    assert rt.get(waiting_id).result(timeout=WAIT) == ["w", "late"]
    assert rt.get(busy_id).result(timeout=WAIT) == ["before", "after"]
