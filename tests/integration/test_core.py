"""Core behaviour of treadle: sequential workflows, retries, timeouts, handles.

Every test quotes the part of DESIGN.md (or RELIABILITY.md) it pins.
"""

from __future__ import annotations

import threading
import uuid as uuid_mod
from datetime import datetime
from typing import Any

import pytest

from tests.support import WAIT, wait_until
from treadle.runtime import (
    ActivityContext,
    ActivityError,
    ActivityTimeoutError,
    Retry,
    RunNotFoundError,
    RunStatus,
    RunSummary,
    StepRecord,
    WorkflowFailedError,
    activity,
    workflow,
)

# Per-test hooks: activities look up what to do by run_id (the default registry is
# process-global, so the functions themselves must stay module-level).
GATES: dict[str, threading.Event] = {}
CALLS: dict[str, list[Any]] = {}
SEEN: dict[str, list[Any]] = {}


def _note(run_id: str, item: Any) -> None:
    CALLS.setdefault(run_id, []).append(item)


class OutOfStock(Exception):
    pass


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------
# activities
# --------------------------------------------------------------------------


@activity(name="core.add")
def add(a: int, b: int) -> int:
    return a + b


@activity(name="core.pair")
def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


@activity(name="core.double")
def double(x: int) -> int:
    return 2 * x


@activity(name="core.flaky", retry=Retry(attempts=3, initial=0.01, backoff=2.0))
def flaky(fail_times: int, actx: ActivityContext) -> int:
    _note(actx.run_id, actx.attempt)
    if actx.attempt <= fail_times:
        raise OSError(f"attempt {actx.attempt} failed")
    return actx.attempt


@activity(
    name="core.non_retryable", retry=Retry(attempts=3, initial=0.01, backoff=2.0, non_retryable=(ValueError,))
)
def non_retryable(actx: ActivityContext) -> None:
    _note(actx.run_id, actx.attempt)
    raise ValueError("bad input, do not retry")


@activity(name="core.once")
def once(actx: ActivityContext) -> None:
    _note(actx.run_id, actx.attempt)
    raise OSError("no retry policy")


@activity(name="core.slow", timeout=0.05)
def slow(actx: ActivityContext) -> bool:
    # Blocks until its attempt is cancelled (by the timeout) or the test gives up.
    seen = actx.cancelled.wait(WAIT)
    _note(actx.run_id, ("cancelled", seen))
    return seen


@activity(name="core.gated")
def gated(value: Any, actx: ActivityContext) -> Any:
    _note(actx.run_id, "gated")
    gate = GATES.get(actx.run_id)
    if gate is not None:
        assert gate.wait(WAIT), "gate not opened"
    return value


@activity(name="core.fail")
def fail_activity(message: str) -> None:
    raise OutOfStock(message)


@activity(name="core.raise_base")
def raise_base(kind: str) -> None:
    if kind == "SystemExit":
        raise SystemExit(3)
    raise KeyboardInterrupt("interrupted")


def _self_referencing() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


UNSTORABLE: dict[str, Any] = {
    "set": lambda: [1, 2, 3, {4}],
    "object": lambda: object(),
    "big-int": lambda: 2**64,
    "int-key": lambda: [0, {1: "a"}],
    "self-reference": _self_referencing,
}


@activity(name="core.returns_unstorable")
def returns_unstorable(case: str) -> dict[str, Any]:
    return {"x": UNSTORABLE[case]()}


# --------------------------------------------------------------------------
# workflows
# --------------------------------------------------------------------------


@workflow(name="core.sequential")
def sequential(ctx: Any, x: int) -> Any:
    a = yield ctx.run(add, x, 1)
    b = yield ctx.run(double, a)
    p = yield ctx.run(pair, a, b)
    return {"a": a, "b": b, "pair": p, "pair_type": type(p).__name__}


@workflow(name="core.retrying")
def retrying(ctx: Any, fail_times: int) -> Any:
    return (yield ctx.run(flaky, fail_times))


@workflow(name="core.catch")
def catch(ctx: Any, which: str) -> Any:
    fn = {"non_retryable": non_retryable, "once": once, "slow": slow}[which]
    try:
        yield ctx.run(fn)
    except ActivityTimeoutError as e:
        return {"class": "ActivityTimeoutError", "type": e.type, "message": e.message}
    except ActivityError as e:
        return {"class": "ActivityError", "type": e.type, "message": e.message}
    return "no error"


@workflow(name="core.counted")
def counted(ctx: Any, value: Any) -> Any:
    _note(ctx.run_id, "workflow body")
    return (yield ctx.run(gated, value))


@workflow(name="core.other")
def other(ctx: Any) -> Any:
    return (yield ctx.run(add, 1, 1))


@workflow(name="core.failing")
def failing(ctx: Any, message: str) -> Any:
    yield ctx.run(fail_activity, message)


@workflow(name="core.yields_a_value")
def yields_a_value(ctx: Any, catch: bool) -> Any:
    try:
        yield 42
    except TypeError as exc:
        if not catch:
            raise
        caught = [type(exc).__name__, str(exc)]
    return [*caught, (yield ctx.run(add, 1, 2))]


@workflow(name="core.lifecycle")
def lifecycle(ctx: Any, mode: str) -> Any:
    yield ctx.run(gated, 1)
    if mode == "sleep":
        yield ctx.sleep(30)
    else:
        yield ctx.wait_for_signal("core.go")
    if mode == "fail":
        yield ctx.run(fail_activity, "late failure")
    return "done"


@workflow(name="core.recorded")
def recorded(ctx: Any) -> Any:
    now = yield ctx.now()
    uid = yield ctx.uuid()
    rnd = yield ctx.random()
    SEEN.setdefault(ctx.run_id, []).append((now, uid, rnd))
    payload = yield ctx.wait_for_signal("core.go")
    return {"now": now.isoformat(), "uuid": uid, "random": rnd, "payload": payload}


@workflow(name="core.stateful")
def stateful(ctx: Any) -> Any:
    yield ctx.run(gated, 0)
    yield ctx.set_state({"phase": 1})
    yield ctx.wait_for_signal("core.go")
    yield ctx.set_state({"phase": 2})
    yield ctx.wait_for_signal("core.go2")
    return "done"


@workflow(name="core.by_name_activity")
def by_name_activity(ctx: Any, x: int) -> Any:
    return (yield ctx.run("core.double", x))


@workflow(name="core.registered")
def registered(ctx: Any, x: int) -> Any:
    return (yield ctx.run(add, x, 10))


@workflow(name="core.base_exc")
def base_exc(ctx: Any, kind: str) -> Any:
    try:
        yield ctx.run(raise_base, kind)
    except ActivityError as e:
        return {"type": e.type, "message": e.message}
    return "no error"


@workflow(name="core.base_exc_uncaught")
def base_exc_uncaught(ctx: Any, kind: str) -> Any:
    yield ctx.run(raise_base, kind)


@workflow(name="core.bad_result")
def bad_result(ctx: Any, case: str) -> Any:
    try:
        yield ctx.run(returns_unstorable, case)
    except ActivityError as e:
        return {"type": e.type, "message": e.message}
    return "no error"


@workflow(name="core.returns_unserializable")
def returns_unserializable(ctx: Any) -> Any:
    yield ctx.run(add, 1, 2)
    return {"ok": {1, 2}}


def _gate(box: Any, run_id: str) -> threading.Event:
    gate = box.gate()
    GATES[run_id] = gate
    return gate


def _run_id(prefix: str) -> str:
    return f"{prefix}-{uuid_mod.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# sequential workflows
# --------------------------------------------------------------------------


def test_sequential_values_flow_and_tuples_become_lists(rt: Any) -> None:
    """DESIGN.md: "it `yield`s operations and receives their results";
    RELIABILITY.md: "msgpack turns tuples into lists ... hand user code the
    packed-then-unpacked value even on the first run"."""
    handle = rt.start(sequential, 4)
    result = handle.result(timeout=WAIT)
    assert result == {"a": 5, "b": 10, "pair": [5, 10], "pair_type": "list"}


# --------------------------------------------------------------------------
# retries and timeouts
# --------------------------------------------------------------------------


def test_retry_attempts_are_numbered_from_one(rt: Any) -> None:
    """DESIGN.md: `Retry(attempts=3, initial=1.0, backoff=2.0, ...)`;
    "ActivityContext ... `attempt` from 1"."""
    run_id = _run_id("core-retry")
    handle = rt.start(retrying, 2, run_id=run_id)
    assert handle.result(timeout=WAIT) == 3
    assert CALLS[run_id] == [1, 2, 3]
    [step] = handle.history()
    assert (step.step, step.status, step.attempt, step.value) == ("0", "completed", 3, 3)


def test_retry_gives_up_after_the_last_attempt(rt: Any) -> None:
    """DESIGN.md: `attempts`: total attempts; the step fails once they are used up."""
    run_id = _run_id("core-retry-out")
    handle = rt.start(retrying, 5, run_id=run_id)
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == "builtins.OSError"
    assert info.value.message == "attempt 3 failed"
    assert CALLS[run_id] == [1, 2, 3]


def test_non_retryable_error_fails_at_once(rt: Any) -> None:
    """DESIGN.md: `non_retryable=(ValueError,)` in a Retry policy."""
    run_id = _run_id("core-nonretry")
    result = rt.start(catch, "non_retryable", run_id=run_id).result(timeout=WAIT)
    assert result == {
        "class": "ActivityError",
        "type": "builtins.ValueError",
        "message": "bad input, do not retry",
    }
    assert CALLS[run_id] == [1]


def test_without_retry_policy_an_activity_is_tried_once(rt: Any) -> None:
    """DESIGN.md: "without `retry` an activity is tried once"."""
    run_id = _run_id("core-once")
    result = rt.start(catch, "once", run_id=run_id).result(timeout=WAIT)
    assert result == {"class": "ActivityError", "type": "builtins.OSError", "message": "no retry policy"}
    assert CALLS[run_id] == [1]


def test_attempt_timeout_raises_activity_timeout_and_sets_cancelled(rt: Any) -> None:
    """DESIGN.md: "a timed out attempt sets `ActivityContext.cancelled` and fails
    with `ActivityTimeoutError`"."""
    run_id = _run_id("core-timeout")
    result = rt.start(catch, "slow", run_id=run_id).result(timeout=WAIT)
    assert result["class"] == "ActivityTimeoutError"
    assert result["type"] == "treadle.runtime.ActivityTimeoutError"
    # The attempt itself saw `cancelled` set (it was blocked on it).
    wait_until(lambda: CALLS.get(run_id), message="the timed-out attempt to return")
    assert CALLS[run_id] == [("cancelled", True)]


# --------------------------------------------------------------------------
# starting and results
# --------------------------------------------------------------------------


def test_start_with_same_run_id_returns_the_same_run(box: Any, rt: Any) -> None:
    """DESIGN.md: "the same run_id again returns the existing run (never starts it twice)";
    "different arguments are ignored and logged"."""
    run_id = _run_id("core-idem")
    gate = _gate(box, run_id)
    first = rt.start(counted, "first", run_id=run_id)
    second = rt.start(counted, "second", run_id=run_id)
    assert first.run_id == second.run_id == run_id
    gate.set()
    assert second.result(timeout=WAIT) == "first"
    third = rt.start(counted, "third", run_id=run_id)
    assert third.result(timeout=WAIT) == "first"
    assert CALLS[run_id] == ["workflow body", "gated"]
    assert [s.run_id for s in rt.runs()] == [run_id]


def test_start_same_run_id_with_other_workflow_is_value_error(rt: Any) -> None:
    """DESIGN.md: "a different workflow name under the same id is a `ValueError`"."""
    run_id = _run_id("core-idem-other")
    rt.start(registered, 1, run_id=run_id).result(timeout=WAIT)
    with pytest.raises(ValueError, match=r"core\.registered"):
        rt.start(other, run_id=run_id)


def test_failed_run_result_raises_workflow_failed_error(rt: Any) -> None:
    """DESIGN.md: "handle.result() ... WorkflowFailedError (.type, .message, .run_id) if it failed";
    "`WorkflowFailedError.type` is the `.type` of the error that ended the run (for an
    `ActivityError`, the original class)"."""
    run_id = _run_id("core-fail")
    handle = rt.start(failing, "no more widgets", run_id=run_id)
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == _qualname(OutOfStock)
    assert info.value.message == "no more widgets"
    assert info.value.run_id == run_id
    assert handle.status() == RunStatus.FAILED


@pytest.mark.parametrize("catch", [True, False])
def test_yielding_a_value_that_is_not_an_operation(rt: Any, catch: bool) -> None:
    """A workflow that yields something other than an operation gets NotAnOperationError (a
    `TypeError`) back at that `yield`, naming the step; the yield takes a step number, and the
    workflow may catch it and go on. Uncaught, it ends the run like any error of the workflow."""
    handle = rt.start(yields_a_value, catch)
    if catch:
        assert handle.result(timeout=WAIT) == [
            "NotAnOperationError",
            "[TRD-NOT-OPERATION] step 0: a workflow must yield operations (ctx.run, ctx.all, ...), got int",
            3,
        ]
        assert [(rec.step, rec.status) for rec in handle.history()] == [("1", "completed")]
        return
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.NotAnOperationError"
    assert info.value.message.startswith("step 0: a workflow must yield operations")


def test_result_timeout_raises_builtin_timeout_error(box: Any, rt: Any) -> None:
    """DESIGN.md: "`handle.result(timeout=)` ... raise the built-in `TimeoutError`"."""
    run_id = _run_id("core-result-timeout")
    gate = _gate(box, run_id)
    handle = rt.start(counted, 1, run_id=run_id)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    gate.set()
    assert handle.result(timeout=WAIT) == 1


# --------------------------------------------------------------------------
# status, history
# --------------------------------------------------------------------------


def test_status_running_while_an_activity_runs(box: Any, rt: Any) -> None:
    """DESIGN.md: "handle.status() # a RunStatus: RUNNING, SUSPENDED ..., COMPLETED, FAILED"."""
    run_id = _run_id("core-status-run")
    gate = _gate(box, run_id)
    handle = rt.start(counted, 7, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id) == ["workflow body", "gated"], message="the activity to start")
    assert handle.status() == RunStatus.RUNNING
    gate.set()
    assert handle.result(timeout=WAIT) == 7
    assert handle.status() == RunStatus.COMPLETED


@pytest.mark.parametrize("mode", ["sleep", "signal"])
def test_status_suspended_while_sleeping_or_waiting(box: Any, rt: Any, mode: str) -> None:
    """DESIGN.md: "SUSPENDED (sleeping or waiting, no thread held)"."""
    run_id = _run_id(f"core-status-{mode}")
    gate = _gate(box, run_id)
    handle = rt.start(lifecycle, mode, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id), message="the activity to start")
    assert handle.status() == RunStatus.RUNNING
    gate.set()
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    if mode == "signal":
        handle.signal("core.go")
        assert handle.result(timeout=WAIT) == "done"
        assert handle.status() == RunStatus.COMPLETED
    else:
        assert handle.cancel() is True


def test_status_failed_after_a_failure(box: Any, rt: Any) -> None:
    """DESIGN.md: "a RunStatus: ... FAILED"; "A run is FAILED only by its own errors"."""
    run_id = _run_id("core-status-fail")
    _gate(box, run_id).set()
    handle = rt.start(lifecycle, "fail", run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    handle.signal("core.go")
    with pytest.raises(WorkflowFailedError):
        handle.result(timeout=WAIT)
    assert handle.status() == RunStatus.FAILED


def test_history_of_a_sequential_run(rt: Any) -> None:
    """DESIGN.md: "`history()` lists every step, branches included, in step order";
    "StepRecord ... `attempt: int` (from 1), `started`/`finished` (aware UTC datetimes)"."""
    handle = rt.start(sequential, 1)
    handle.result(timeout=WAIT)
    history = handle.history()
    assert all(isinstance(s, StepRecord) for s in history)
    assert [(s.step, s.kind, s.name, s.status, s.value, s.error, s.attempt) for s in history] == [
        ("0", "activity", "core.add", "completed", 2, None, 1),
        ("1", "activity", "core.double", "completed", 4, None, 1),
        ("2", "activity", "core.pair", "completed", [2, 4], None, 1),
    ]
    for step in history:
        assert isinstance(step.started, datetime) and step.started.utcoffset() is not None
        assert isinstance(step.finished, datetime) and step.finished.utcoffset() is not None
        assert step.started <= step.finished


def test_history_records_a_failed_step_as_data(rt: Any) -> None:
    """DESIGN.md: "`error: ActivityError | None`"; "errors seen by workflows are data"."""
    handle = rt.start(failing, "gone")
    with pytest.raises(WorkflowFailedError):
        handle.result(timeout=WAIT)
    [step] = handle.history()
    assert (step.step, step.kind, step.name, step.status) == ("0", "activity", "core.fail", "failed")
    assert isinstance(step.error, ActivityError)
    assert step.error.type == _qualname(OutOfStock)
    assert step.error.message == "gone"


# --------------------------------------------------------------------------
# recorded values and state
# --------------------------------------------------------------------------


def test_now_uuid_random_are_recorded_and_replayed_after_restart(box: Any, rt: Any) -> None:
    """DESIGN.md: "`ctx.now()`, `ctx.uuid()`, `ctx.random()` | recorded value |
    deterministic on replay"; "`ctx.now()` is an aware UTC datetime, `ctx.random()` a
    float in [0, 1), `ctx.uuid()` a `str`"."""
    run_id = _run_id("core-recorded")
    handle = rt.start(recorded, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="the run to wait on its signal")
    [(now, uid, rnd)] = SEEN[run_id]
    assert isinstance(now, datetime) and now.utcoffset() is not None
    assert now.utcoffset().total_seconds() == 0
    assert isinstance(uid, str) and uuid_mod.UUID(uid)
    assert isinstance(rnd, float) and 0.0 <= rnd < 1.0

    rt = box.restart()
    handle = rt.get(run_id)
    handle.signal("core.go", "payload")
    result = handle.result(timeout=WAIT)
    assert len(SEEN[run_id]) == 2, "the restart replays the workflow from the journal"
    assert SEEN[run_id][1] == SEEN[run_id][0]
    assert result == {"now": now.isoformat(), "uuid": uid, "random": rnd, "payload": "payload"}
    kinds = [(s.step, s.kind) for s in handle.history()]
    assert kinds == [("0", "now"), ("1", "uuid"), ("2", "random"), ("3", "signal")]


def test_set_state_and_handle_state(box: Any, rt: Any) -> None:
    """DESIGN.md: "`ctx.set_state(value)` ... a small serializable value that
    `handle.state()` reads"; "`ctx.set_state` is a journaled step; `state()` is `None`
    before the first call"."""
    run_id = _run_id("core-state")
    gate = _gate(box, run_id)
    handle = rt.start(stateful, run_id=run_id)
    wait_until(lambda: CALLS.get(run_id), message="the first activity")
    assert handle.state() is None
    gate.set()
    wait_until(lambda: handle.state() == {"phase": 1}, message="state phase 1 (live)")
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")

    rt = box.restart()
    handle = rt.get(run_id)
    assert handle.state() == {"phase": 1}, "state() reads the journal after a restart"
    handle.signal("core.go")
    wait_until(lambda: handle.state() == {"phase": 2}, message="state phase 2")
    handle.signal("core.go2")
    assert handle.result(timeout=WAIT) == "done"
    assert handle.state() == {"phase": 2}
    assert [s.kind for s in handle.history()].count("state") == 2


# --------------------------------------------------------------------------
# runs, get, names
# --------------------------------------------------------------------------


def test_runs_lists_every_run_and_filters_by_status(box: Any, rt: Any) -> None:
    """DESIGN.md: "rt.runs(status=None) # run summaries"; "`rt.runs()` yields
    `RunSummary(run_id, workflow, status, created, updated)`"."""
    ok = rt.start(registered, 1, run_id=_run_id("core-runs-ok"))
    bad = rt.start(failing, "x", run_id=_run_id("core-runs-bad"))
    waiting_id = _run_id("core-runs-wait")
    _gate(box, waiting_id).set()
    waiting = rt.start(lifecycle, "signal", run_id=waiting_id)
    ok.result(timeout=WAIT)
    with pytest.raises(WorkflowFailedError):
        bad.result(timeout=WAIT)
    wait_until(lambda: waiting.status() == RunStatus.SUSPENDED, message="SUSPENDED")

    runs = {s.run_id: s for s in rt.runs()}
    assert set(runs) == {ok.run_id, bad.run_id, waiting.run_id}
    assert all(isinstance(s, RunSummary) for s in runs.values())
    assert runs[ok.run_id].workflow == "core.registered"
    assert runs[ok.run_id].status == RunStatus.COMPLETED
    assert runs[bad.run_id].status == RunStatus.FAILED
    assert runs[waiting.run_id].status == RunStatus.SUSPENDED
    for s in runs.values():
        assert s.created.tzinfo is not None and s.updated.tzinfo is not None
        assert s.created <= s.updated
    assert [s.run_id for s in rt.runs(status=RunStatus.COMPLETED)] == [ok.run_id]
    assert [s.run_id for s in rt.runs(status="failed")] == [bad.run_id]
    assert [s.run_id for s in rt.runs(status=RunStatus.SUSPENDED)] == [waiting.run_id]
    assert rt.runs(status=RunStatus.CANCELLED) == []


def test_get_unknown_run_raises_run_not_found(rt: Any) -> None:
    """DESIGN.md: "handle = rt.get(run_id) # RunNotFoundError if unknown"."""
    with pytest.raises(RunNotFoundError):
        rt.get("core-no-such-run")
    handle = rt.start(registered, 2)
    assert rt.get(handle.run_id).run_id == handle.run_id
    assert rt.get(handle.run_id).result(timeout=WAIT) == 12


def test_ctx_run_accepts_a_registered_name(rt: Any) -> None:
    """DESIGN.md: "`ctx.run` and `ctx.child` accept a registered name as well as the function"."""
    handle = rt.start(by_name_activity, 21)
    assert handle.result(timeout=WAIT) == 42
    [step] = handle.history()
    assert step.name == "core.double"


def test_start_a_workflow_by_registered_name(rt: Any) -> None:
    """DESIGN.md: "workflow: the decorated function or its registered name"."""
    handle = rt.start("core.registered", 5)
    assert handle.result(timeout=WAIT) == 15
    assert rt.runs()[0].workflow == "core.registered"


# --------------------------------------------------------------------------
# BaseException and unencodable values
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_base_exception_in_activity_fails_only_that_step(box: Any, rt: Any, kind: str) -> None:
    """RELIABILITY.md 21: "`SystemExit` / `KeyboardInterrupt` raised by an activity: that
    step fails clearly; the runtime and other runs keep going"."""
    bystander_id = _run_id("core-bystander")
    gate = _gate(box, bystander_id)
    bystander = rt.start(counted, "still here", run_id=bystander_id)
    wait_until(
        lambda: CALLS.get(bystander_id) == ["workflow body", "gated"], message="the bystander's activity"
    )

    result = rt.start(base_exc, kind).result(timeout=WAIT)
    assert result["type"] == f"builtins.{kind}"

    uncaught = rt.start(base_exc_uncaught, kind)
    with pytest.raises(WorkflowFailedError) as info:
        uncaught.result(timeout=WAIT)
    assert info.value.type == f"builtins.{kind}"

    gate.set()
    assert bystander.result(timeout=WAIT) == "still here"
    assert rt.start(registered, 1).result(timeout=WAIT) == 11


@pytest.mark.parametrize(
    ("case", "path"),
    [
        ("set", "result['x'][3]: set"),
        ("object", "result['x']: object"),
        ("big-int", "result['x']: int out of range"),
        ("int-key", "result['x'][1][1]: dict key of type int"),
        ("self-reference", "result['x'][0]: list refers to itself"),
    ],
)
def test_activity_returning_an_unstorable_value_fails_the_step_with_the_path(
    rt: Any, case: str, path: str
) -> None:
    """DESIGN.md: "An activity result that cannot be stored fails that step; the workflow
    sees an `ActivityError` with `.type == "treadle.runtime.SerializationError"` and the
    path in its message (`result['x'][3]: set`)"; RELIABILITY.md 9: "(set, object, int ≥
    2**64, int dict keys, self-referencing list): `SerializationError` naming the step and
    the path inside the value"."""
    handle = rt.start(bad_result, case)
    result = handle.result(timeout=WAIT)
    assert result["type"] == "treadle.runtime.SerializationError"
    assert path in result["message"]
    assert "step 0" in result["message"]
    [step] = handle.history()
    assert step.status == "failed"
    assert step.error is not None and step.error.type == "treadle.runtime.SerializationError"


def test_workflow_returning_an_unserializable_value_fails_the_run(rt: Any) -> None:
    """DESIGN.md (Storage): "Values that msgpack cannot encode fail the step with a clear
    `SerializationError` naming the step and the type"."""
    handle = rt.start(returns_unserializable)
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.SerializationError"
    assert "result['ok']: set" in info.value.message
    assert handle.status() == RunStatus.FAILED
