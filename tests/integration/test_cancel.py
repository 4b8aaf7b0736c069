"""Cancellation: CancelledError into the workflow, cleanup, activities, children.

Every test quotes the part of DESIGN.md it pins.
"""

from __future__ import annotations

import threading
import uuid as uuid_mod
from typing import Any

import pytest

from tests.support import WAIT, wait_until
from treadle.runtime import (
    ActivityContext,
    CancelledError,
    RunStatus,
    WorkflowFailedError,
    activity,
    workflow,
)

CALLS: dict[str, list[Any]] = {}
LOCK = threading.Lock()


def _note(run_id: str, item: Any) -> None:
    with LOCK:
        CALLS.setdefault(run_id, []).append(item)


def _calls(run_id: str) -> list[Any]:
    with LOCK:
        return list(CALLS.get(run_id, []))


def _run_id(prefix: str) -> str:
    return f"{prefix}-{uuid_mod.uuid4().hex[:8]}"


@activity(name="cancel.blocker")
def blocker(index: int, actx: ActivityContext) -> int:
    _note(actx.run_id, ("started", index))
    seen = actx.cancelled.wait(WAIT)
    _note(actx.run_id, ("cancelled", index, seen))
    return index


@activity(name="cancel.cleanup")
def cleanup(actx: ActivityContext) -> str:
    _note(actx.run_id, "cleanup")
    return "cleaned"


@activity(name="cancel.quick")
def quick(x: int) -> int:
    return x + 1


@workflow(name="cancel.fanout")
def fanout(ctx: Any, n: int) -> Any:
    try:
        return (yield ctx.all([ctx.run(blocker, i) for i in range(n)]))
    except CancelledError:
        yield ctx.run(cleanup)
        raise


@workflow(name="cancel.swallow")
def swallow(ctx: Any) -> Any:
    try:
        yield ctx.wait_for_signal("cancel.never")
    except Exception:
        CALLS.setdefault(ctx.run_id, []).append("swallowed")
        return "swallowed"
    return "signalled"


@workflow(name="cancel.sleeper")
def sleeper(ctx: Any) -> Any:
    yield ctx.run(quick, 1)
    yield ctx.sleep("1h")
    return "woke"


@workflow(name="cancel.done")
def done(ctx: Any) -> Any:
    return (yield ctx.run(quick, 41))


@workflow(name="cancel.child")
def child(ctx: Any) -> Any:
    try:
        return (yield ctx.run(blocker, 0))
    except CancelledError:
        yield ctx.run(cleanup)
        raise


@workflow(name="cancel.parent")
def parent(ctx: Any) -> Any:
    return (yield ctx.child(child, run_id=f"{ctx.run_id}-child"))


def _assert_cancelled(handle: Any) -> None:
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.CancelledError"
    assert info.value.run_id == handle.run_id
    assert handle.status() == RunStatus.CANCELLED


def test_cancel_during_fan_out_flags_activities_and_lets_the_workflow_clean_up(rt: Any) -> None:
    """DESIGN.md: "handle.cancel() # raises CancelledError (treadle's own) into the workflow
    at its current yield (it may clean up) and sets ActivityContext.cancelled on its
    activities"; "while handling it the workflow may yield more operations"; "`result()`
    of a cancelled run raises `WorkflowFailedError` with `.type ==
    "treadle.runtime.CancelledError"`"."""
    run_id = _run_id("cancel-fanout")
    handle = rt.start(fanout, 3, run_id=run_id)
    wait_until(lambda: len([c for c in _calls(run_id) if c[0] == "started"]) == 3, message="three activities")
    assert handle.status() == RunStatus.RUNNING
    assert handle.cancel() is True
    _assert_cancelled(handle)
    wait_until(
        lambda: len([c for c in _calls(run_id) if c[0] == "cancelled"]) == 3, message="activities to return"
    )
    assert sorted(c for c in _calls(run_id) if c[0] == "cancelled") == [
        ("cancelled", 0, True),
        ("cancelled", 1, True),
        ("cancelled", 2, True),
    ]
    assert _calls(run_id).count("cleanup") == 1
    steps = {s.step: s for s in handle.history()}
    assert (steps["1"].kind, steps["1"].name, steps["1"].status) == (
        "activity",
        "cancel.cleanup",
        "completed",
    )


def test_cancelled_error_is_not_caught_by_except_exception(rt: Any) -> None:
    """DESIGN.md: "`CancelledError` derives from `BaseException` (like
    `asyncio.CancelledError`), so a workflow's `except Exception` does not swallow it"."""
    assert issubclass(CancelledError, BaseException)
    assert not issubclass(CancelledError, Exception)
    run_id = _run_id("cancel-swallow")
    handle = rt.start(swallow, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    assert handle.cancel() is True
    _assert_cancelled(handle)
    assert "swallowed" not in CALLS.get(run_id, [])


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after-restart"])
def test_cancel_a_sleeping_run(box: Any, rt: Any, restart: bool) -> None:
    """DESIGN.md: "SUSPENDED (sleeping or waiting, no thread held)"; "handle.cancel() #
    raises CancelledError ... into the workflow at its current yield"."""
    run_id = _run_id("cancel-sleep")
    handle = rt.start(sleeper, run_id=run_id)
    wait_until(lambda: handle.status() == RunStatus.SUSPENDED, message="SUSPENDED")
    if restart:
        rt = box.restart()
        handle = rt.get(run_id)
        assert handle.status() == RunStatus.SUSPENDED
    assert handle.cancel() is True
    _assert_cancelled(handle)
    steps = {s.step: s for s in handle.history()}
    assert (steps["1"].kind, steps["1"].status) == ("sleep", "failed")
    assert rt.runs(status=RunStatus.CANCELLED)[0].run_id == run_id


def test_cancel_a_finished_run_returns_false_and_changes_nothing(rt: Any) -> None:
    """DESIGN.md (RunHandle.cancel): returns `False` (and does nothing) if the run has
    already finished."""
    handle = rt.start(done)
    assert handle.result(timeout=WAIT) == 42
    history = handle.history()
    assert handle.cancel() is False
    assert handle.status() == RunStatus.COMPLETED
    assert handle.result(timeout=WAIT) == 42
    assert handle.history() == history


def test_cancel_propagates_to_a_child_workflow(rt: Any) -> None:
    """DESIGN.md: "`ctx.child(workflow, *args, run_id=None)` | child's result | a child run:
    its own actor and journal"; cancel "sets ActivityContext.cancelled on its
    activities"."""
    parent_id = _run_id("cancel-parent")
    handle = rt.start(parent, run_id=parent_id)
    child_id = f"{parent_id}-child"
    wait_until(lambda: ("started", 0) in _calls(child_id), message="the child's activity")
    assert handle.cancel() is True
    _assert_cancelled(handle)
    child_handle = rt.get(child_id)
    wait_until(lambda: child_handle.status() == RunStatus.CANCELLED, message="the child to be cancelled")
    _assert_cancelled(child_handle)
    wait_until(
        lambda: ("cancelled", 0, True) in _calls(child_id), message="the child's activity to see cancelled"
    )
    assert _calls(child_id).count("cleanup") == 1
