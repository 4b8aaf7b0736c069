"""The parallel semantics every executor must keep, as cases run on each executor.

``test_executors.py`` runs them on threads and worker processes,
``test_executor_ray.py`` on a local Ray. ``remote`` says whether the code runs
outside the test's process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests import executor_activities as acts
from tests.support import wait_until
from treadle.runtime import ActivityError, Retry, RunStatus, Runtime, workflow

RESULT = 30.0


@workflow(name="ex.retry_after_death")
def retry_after_death(ctx: Any, folder: str) -> Any:
    """A branch whose first attempt kills its worker, beside a sibling that must not notice."""
    return (
        yield ctx.all_settled(
            [
                ctx.run(acts.die_first, folder, 7, retry=Retry(attempts=2, initial=0.01)),
                ctx.run(acts.where, 1, 0.2),
            ]
        )
    )


@workflow(name="ex.death_no_retry")
def death_no_retry(ctx: Any, folder: str) -> Any:
    settled = yield ctx.all_settled([ctx.run(acts.die_first, folder, 7), ctx.run(acts.where, 1, 0.2)])
    return [[s.ok, s.value, None if s.error is None else [s.error.type, s.error.message]] for s in settled]


@workflow(name="ex.non_retryable")
def non_retryable(ctx: Any) -> Any:
    try:
        yield ctx.run(
            acts.fail, "none left", retry=Retry(attempts=3, initial=0.01, non_retryable=(acts.OutOfStock,))
        )
    except ActivityError as exc:
        return [exc.type, exc.message]
    return None


@workflow(name="ex.coded_non_retryable")
def coded_non_retryable(ctx: Any) -> Any:
    try:
        yield ctx.run(acts.fail_coded, retry=Retry(attempts=3, initial=0.01, non_retryable=(acts.CodeError,)))
    except ActivityError as exc:
        return [exc.type, exc.message]
    return None


def input_order(rt: Runtime, remote: bool) -> None:
    """Results come back in input order whatever order the branches finish in."""
    result = rt.start(acts.fan_out, 6).result(timeout=RESULT)
    assert [item[0] for item in result] == list(range(6))
    pids = {item[1] for item in result}
    assert (os.getpid() not in pids) == remote, pids


def no_sibling_abort(rt: Runtime, folder: Path) -> None:
    """A failing branch fails only itself; the error keeps the user's class name."""
    handle = rt.start(acts.settle, str(folder))
    result = handle.result(timeout=RESULT)
    assert [row[0] for row in result] == [True, False, True]
    assert result[1][2] == "tests.executor_activities.OutOfStock"
    assert result[0][1][0] == 0 and result[2][1][0] == 2
    statuses = {rec.step: rec.status for rec in handle.history() if rec.step.startswith("0.")}
    assert statuses == {"0.0": "completed", "0.1": "failed", "0.2": "completed"}


def race_loser_keeps_running(rt: Runtime, folder: Path) -> None:
    """The race is decided by the first branch; the loser is not killed and finishes later."""
    handle = rt.start(acts.race, str(folder), False)
    winner = handle.result(timeout=RESULT)
    assert winner[0] == 0
    wait_until(lambda: (folder / "started.loser").exists(), RESULT, "the loser to start")
    acts.touch(str(folder), "open.loser")
    wait_until(lambda: (folder / "finished.loser").exists(), RESULT, "the loser to finish on its own")
    assert not (folder / "cancel-seen.loser").exists()


def race_loser_sees_cancel_flag(rt: Runtime, folder: Path) -> None:
    """With cancel_losers=True the loser's ActivityContext.cancelled is set where it runs."""
    winner = rt.start(acts.race, str(folder), True).result(timeout=RESULT)
    assert winner[0] == 0
    wait_until(lambda: (folder / "cancel-seen.loser").exists(), RESULT, "the loser to see its cancel flag")


def retry_after_worker_death(rt: Runtime, folder: Path) -> None:
    """The attempt whose worker died fails with WorkerLostError; the retry policy runs attempt 2."""
    handle = rt.start(retry_after_death, str(folder))
    first, sibling = handle.result(timeout=RESULT)
    assert first.ok and first.value == [7, 2], first
    assert sibling.ok and sibling.value[0] == 1
    records = {rec.step: rec for rec in handle.history()}
    assert records["0.0"].attempt == 2
    pid1 = int((folder / "attempt.1").read_text())
    pid2 = int((folder / "attempt.2").read_text())
    assert pid1 != pid2 and os.getpid() not in (pid1, pid2)


def worker_death_without_retry(rt: Runtime, folder: Path, executor: str) -> None:
    """No retry policy: the step fails with WorkerLostError, and only that step."""
    result = rt.start(death_no_retry, str(folder)).result(timeout=RESULT)
    (ok0, _, error0), (ok1, value1, _) = result
    assert not ok0 and ok1 and value1[0] == 1
    assert error0[0] == "treadle.runtime.WorkerLostError"
    assert f"the {executor} executor lost the attempt" in error0[1], error0


def error_class_crosses(rt: Runtime) -> None:
    """Retry(non_retryable=...) sees the original class, so the step fails after one attempt."""
    handle = rt.start(non_retryable)
    assert handle.result(timeout=RESULT) == ["tests.executor_activities.OutOfStock", "none left"]
    assert [rec.attempt for rec in handle.history() if rec.step == "0"] == [1]


def cancel_reaches_activity(rt: Runtime, folder: Path) -> None:
    """handle.cancel() sets the running activity's cancel flag where it runs."""
    handle = rt.start(acts.one, "ex.gate", str(folder), "cancelme")
    wait_until(lambda: (folder / "started.cancelme").exists(), RESULT, "the activity to start")
    assert handle.cancel()
    wait_until(lambda: (folder / "cancel-seen.cancelme").exists(), RESULT, "the flag to reach the activity")
    wait_until(lambda: handle.status() == RunStatus.CANCELLED, RESULT, "the run to end cancelled")


def unpicklable_error_class_crosses(rt: Runtime) -> None:
    """An error that cannot be pickled back still matches Retry(non_retryable=) by its class name."""
    handle = rt.start(coded_non_retryable)
    assert handle.result(timeout=RESULT) == ["tests.executor_activities.CodeError", "409: conflict"]
    assert [rec.attempt for rec in handle.history() if rec.step == "0"] == [1]
