"""Signals: buffering, FIFO, timeouts, keys, errors, restarts, deadlines, the supervisor.

Every test quotes the part of DESIGN.md (or RELIABILITY.md) it pins.
"""

from __future__ import annotations

import threading
import uuid as uuid_mod
from typing import Any

import pytest

from tests.support import WAIT, step_status, wait_until
from treadle.runtime import (
    ActivityContext,
    Cancel,
    PayloadTooLargeError,
    RunFinishedError,
    RunHandle,
    RunNotFoundError,
    RunStatus,
    SerializationError,
    Signal,
    StartRun,
    WorkflowFailedError,
    activity,
    workflow,
)
from treadle.runtime.testing import FakeClock

GATES: dict[str, threading.Event] = {}
CALLS: dict[str, list[Any]] = {}


def _run_id(prefix: str) -> str:
    return f"{prefix}-{uuid_mod.uuid4().hex[:8]}"


def _signal_count(rt: Any) -> int:
    return sum(1 for _ in rt.store.scan("signals"))


@activity(name="sig.gated")
def gated(actx: ActivityContext) -> str:
    CALLS.setdefault(actx.run_id, []).append("gated")
    gate = GATES.get(actx.run_id)
    if gate is not None:
        assert gate.wait(WAIT), "gate not opened"
    return "ok"


@workflow(name="sig.after_gate")
def after_gate(ctx: Any, count: int) -> Any:
    yield ctx.run(gated)
    items = []
    for _ in range(count):
        items.append((yield ctx.wait_for_signal("sig.item")))
    return items


@workflow(name="sig.wait")
def wait(ctx: Any, name: str) -> Any:
    return (yield ctx.wait_for_signal(name))


@workflow(name="sig.two_waits")
def two_waits(ctx: Any) -> Any:
    first = yield ctx.wait_for_signal("sig.k")
    second = yield ctx.wait_for_signal("sig.k")
    return [first, second]


@workflow(name="sig.timeout_then_wait")
def timeout_then_wait(ctx: Any) -> Any:
    try:
        yield ctx.wait_for_signal("sig.t", timeout=0.05)
        timed_out = False
    except TimeoutError:
        timed_out = True
    payload = yield ctx.wait_for_signal("sig.t")
    return [timed_out, payload]


@workflow(name="sig.deadline")
def deadline(ctx: Any, seconds: float) -> Any:
    decision = yield ctx.race([ctx.wait_for_signal("approved"), ctx.sleep(seconds)])
    yield ctx.wait_for_signal("sig.proceed")
    later = yield ctx.wait_for_signal("approved")
    return [decision, later]


@workflow(name="sig.buffered_race")
def buffered_race(ctx: Any) -> Any:
    yield ctx.run(gated)
    return (yield ctx.race([ctx.wait_for_signal("approved"), ctx.sleep(0)]))


@workflow(name="sig.registered")
def registered(ctx: Any, x: int) -> Any:
    payload = yield ctx.wait_for_signal("sig.go")
    return [x, payload]


# --------------------------------------------------------------------------
# buffering and order
# --------------------------------------------------------------------------


def test_signal_sent_before_the_wait_is_not_lost(box: Any, rt: Any) -> None:
    """DESIGN.md: "signals are buffered durably; a signal sent before the wait is not lost"."""
    run_id = _run_id("sig-before")
    gate = box.gate()
    GATES[run_id] = gate
    handle = rt.start(after_gate, 1, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id), message="the activity before the wait")
    assert handle.signal("sig.item", {"n": 1}) is True
    gate.set()
    assert handle.result(timeout=WAIT) == [{"n": 1}]


def test_signals_are_fifo_per_name(box: Any, rt: Any) -> None:
    """RELIABILITY.md 18: "the signal is consumed exactly once, FIFO per name"."""
    run_id = _run_id("sig-fifo")
    gate = box.gate()
    GATES[run_id] = gate
    handle = rt.start(after_gate, 3, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id), message="the activity before the waits")
    handle.signal("sig.item", "one")
    handle.signal("sig.other", "not this one")
    handle.signal("sig.item", "two")
    handle.signal("sig.item", "three")
    gate.set()
    assert handle.result(timeout=WAIT) == ["one", "two", "three"]
    signals = [s for s in handle.history() if s.kind == "signal"]
    assert [(s.step, s.name, s.value) for s in signals] == [
        ("1", "sig.item", "one"),
        ("2", "sig.item", "two"),
        ("3", "sig.item", "three"),
    ]


def test_wait_timeout_raises_timeout_error_and_a_later_wait_works(rt: Any) -> None:
    """DESIGN.md: "Timeouts of waits (... `wait_for_signal(timeout=)` ...) raise the
    built-in `TimeoutError`"."""
    handle = rt.start(timeout_then_wait)
    wait_until(
        lambda: step_status(handle, "0") == "failed",
        message="the first wait to time out",
    )
    [first] = [s for s in handle.history() if s.step == "0"]
    assert first.kind == "signal" and first.name == "sig.t"
    handle.signal("sig.t", "late")
    assert handle.result(timeout=WAIT) == [True, "late"]


def test_signal_with_key_is_stored_and_consumed_once(rt: Any) -> None:
    """DESIGN.md: "`key` makes a re-sent signal a no-op"; RELIABILITY.md 19: "Same signal
    sent twice with one `key`: stored once, consumed once"."""
    handle = rt.start(two_waits)
    assert handle.signal("sig.k", "first", key="k1") is True
    assert handle.signal("sig.k", "duplicate", key="k1") is False
    wait_until(
        lambda: step_status(handle, "0") == "completed",
        message="the first wait to take its signal",
    )
    assert handle.signal("sig.k", "duplicate again", key="k1") is False
    assert handle.signal("sig.k", "second") is True
    assert handle.result(timeout=WAIT) == ["first", "second"]


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_signal_to_unknown_run_raises_run_not_found(rt: Any) -> None:
    """DESIGN.md: "`RunNotFoundError`, `RunFinishedError` | unknown run; signal to a finished
    run"; RELIABILITY.md 12: "never a silent drop"."""
    with pytest.raises(RunNotFoundError):
        RunHandle(rt, "sig-no-such-run").signal("sig.x", 1)
    with pytest.raises(RunNotFoundError):
        rt.supervisor.ask(Signal("sig-no-such-run", "sig.x", 1), timeout=5)
    assert _signal_count(rt) == 0


def test_signal_to_finished_run_raises_run_finished(rt: Any) -> None:
    """DESIGN.md: "`RunFinishedError` | ... signal to a finished run"."""
    handle = rt.start(wait, "sig.done")
    handle.signal("sig.done", 1)
    assert handle.result(timeout=WAIT) == 1
    count = _signal_count(rt)
    with pytest.raises(RunFinishedError):
        handle.signal("sig.done", 2)
    with pytest.raises(RunFinishedError):
        handle.signal("sig.done", 2, key="k")
    assert _signal_count(rt) == count


def test_unencodable_payload_is_refused_before_anything_is_written(rt: Any) -> None:
    """DESIGN.md: "Run arguments and signal payloads are refused at the call
    (`SerializationError`, nothing written)"; RELIABILITY.md 9: "naming ... the path
    inside the value"."""
    handle = rt.start(wait, "sig.bad")
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    with pytest.raises(SerializationError) as info:
        handle.signal("sig.bad", {"items": [1, {2}]})
    assert "payload['items'][1]: set" in str(info.value)
    with pytest.raises(SerializationError):
        handle.signal("sig.bad", {1: "int key"})
    assert _signal_count(rt) == 0
    assert handle.status() == RunStatus.SUSPENDED
    handle.signal("sig.bad", "good")
    assert handle.result(timeout=WAIT) == "good"


def test_oversized_payload_raises_payload_too_large(box: Any) -> None:
    """DESIGN.md: "`SerializationError`, `PayloadTooLargeError` | a value cannot be stored";
    RELIABILITY.md 13: "Oversized payloads (default cap 1 MiB, configurable) ...: a typed
    error before commit"."""
    rt = box.open(max_payload=1000)
    handle = rt.start(wait, "sig.big")
    with pytest.raises(PayloadTooLargeError):
        handle.signal("sig.big", "x" * 2000)
    assert _signal_count(rt) == 0
    handle.signal("sig.big", "x" * 100)
    assert handle.result(timeout=WAIT) == "x" * 100


# --------------------------------------------------------------------------
# restarts and deadlines
# --------------------------------------------------------------------------


def test_waiting_run_resumes_when_its_signal_arrives_after_a_restart(box: Any, rt: Any) -> None:
    """DESIGN.md: "A run that is only sleeping or waiting holds no thread: its actor stops
    and the TimerService or an incoming signal starts it again"."""
    run_id = _run_id("sig-restart")
    handle = rt.start(wait, "sig.after_restart", run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    rt = box.restart()
    handle = rt.get(run_id)
    assert handle.status() == RunStatus.SUSPENDED
    assert handle.signal("sig.after_restart", [1, 2]) is True
    assert handle.result(timeout=WAIT) == [1, 2]


def _second_waiter(ctx: Any) -> Any:
    try:
        got = yield ctx.wait_for_signal("sig.dup")
    except ValueError as exc:  # DESIGN.md's class; the runtime's own subclass, on replay too
        got = type(exc).__name__
    done = yield ctx.run(gated)
    return [got, done]


@workflow(name="sig.dup_in_generator")
def dup_in_generator(ctx: Any) -> Any:
    return (yield ctx.all([ctx.wait_for_signal("sig.dup"), _second_waiter(ctx)]))


def test_a_second_wait_in_a_generator_branch_raises_value_error_and_replays_as_one(box: Any, rt: Any) -> None:
    """DESIGN.md: "Two branches of one coordination tree waiting on the same signal name are
    rejected with `ValueError`"; RELIABILITY.md I4: "Replay makes the same decisions". A
    generator branch can only be checked when its wait starts; the workflow catches the
    `ValueError`; the branch is still running at a restart, so the replay runs its code again
    and raises the same class there: the workflow takes the same path (before, the replay
    raised an `ActivityError`, which the `except` missed, and the run failed)."""
    run_id = _run_id("sig-dup")
    GATES[run_id] = box.gate()
    handle = rt.start(dup_in_generator, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id) == ["gated"], message="the branch got past its rejected wait")
    rt = box.restart()  # the branch's activity is in flight: the branch replays from its steps
    handle = rt.get(run_id)
    wait_until(lambda: CALLS.get(run_id) == ["gated", "gated"], message="the unsettled activity again")
    GATES[run_id].set()
    assert handle.signal("sig.dup", "payload") is True
    assert handle.result(timeout=WAIT) == ["payload", ["SignalWaitConflictError", "ok"]]


def test_deadline_idiom_signal_first(rt: Any) -> None:
    """DESIGN.md: "approval (wait_for_signal with deadline)"; race: "the first branch to
    settle ... decides the result"; "a losing sleep clears its timer"."""
    handle = rt.start(deadline, 30.0)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED in the race")
    handle.signal("approved", {"by": "alice"})
    wait_until(
        lambda: step_status(handle, "0") == "completed",
        message="the race to be decided",
    )
    handle.signal("approved", {"by": "bob"})
    handle.signal("sig.proceed")
    assert handle.result(timeout=WAIT) == [{"by": "alice"}, {"by": "bob"}]
    steps = {s.step: s for s in handle.history()}
    assert (steps["0.0"].kind, steps["0.0"].status) == ("signal", "completed")
    assert (steps["0.1"].kind, steps["0.1"].status) == ("sleep", "abandoned")


def test_deadline_idiom_sleep_first_keeps_the_late_signal(box: Any) -> None:
    """DESIGN.md: race losers: "a losing signal wait releases its waiter and does not
    consume the signal (it stays buffered for a later wait)"."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(deadline, 60.0)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED in the race")
    clock.advance(60)
    wait_until(
        lambda: step_status(handle, "0") == "completed",
        message="the sleep to win the race",
    )
    handle.signal("approved", "late approval")
    handle.signal("sig.proceed")
    assert handle.result(timeout=WAIT) == [None, "late approval"]
    steps = {s.step: s for s in handle.history()}
    assert (steps["0.0"].kind, steps["0.0"].status) == ("signal", "abandoned")
    assert (steps["0.1"].kind, steps["0.1"].status) == ("sleep", "completed")


def test_deadline_idiom_buffered_signal_beats_sleep_zero(box: Any, rt: Any) -> None:
    """DESIGN.md: "A signal already buffered is ready at dispatch: it beats `sleep(0)`"."""
    run_id = _run_id("sig-buffered-race")
    gate = box.gate()
    GATES[run_id] = gate
    handle = rt.start(buffered_race, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id), message="the activity before the race")
    handle.signal("approved", "already here")
    gate.set()
    assert handle.result(timeout=WAIT) == "already here"


def test_signal_key_is_remembered_across_a_restart(box: Any, rt: Any) -> None:
    """DESIGN.md: "`key` makes a re-sent signal a no-op"; RELIABILITY.md 19."""
    run_id = _run_id("sig-key-restart")
    handle = rt.start(two_waits, run_id=run_id)
    assert handle.signal("sig.k", "first", key="k1") is True
    rt = box.restart()
    handle = rt.get(run_id)
    assert handle.signal("sig.k", "resent", key="k1") is False
    assert handle.signal("sig.k", "second", key="k2") is True
    assert handle.result(timeout=WAIT) == ["first", "second"]


# --------------------------------------------------------------------------
# the supervisor as a pykka actor
# --------------------------------------------------------------------------


def test_supervisor_messages_start_signal_cancel(rt: Any) -> None:
    """DESIGN.md: "rt.supervisor # the pykka ActorRef: services that already use pykka ask
    it StartRun / Signal / Cancel messages"."""
    run_id = _run_id("sig-sup")
    assert rt.supervisor.ask(StartRun("sig.registered", (5,), run_id), timeout=5) == run_id
    assert rt.supervisor.ask(StartRun("sig.registered", (6,), run_id), timeout=5) == run_id
    handle = rt.get(run_id)
    assert rt.supervisor.ask(Signal(run_id, "sig.go", "payload", key="s1"), timeout=5) is True
    assert rt.supervisor.ask(Signal(run_id, "sig.go", "again", key="s1"), timeout=5) is False
    assert handle.result(timeout=WAIT) == [5, "payload"]
    assert [s.run_id for s in rt.runs()] == [run_id]

    other = _run_id("sig-sup-cancel")
    assert rt.supervisor.ask(StartRun("sig.registered", (1,), other), timeout=5) == other
    assert rt.supervisor.ask(Cancel(other), timeout=5) is True
    with pytest.raises(WorkflowFailedError) as info:
        rt.get(other).result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.CancelledError"
    assert rt.get(other).status() == RunStatus.CANCELLED
    assert rt.supervisor.ask(Cancel(other), timeout=5) is False
