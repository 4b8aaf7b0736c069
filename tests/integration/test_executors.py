"""Pluggable executors: threads (default) and worker processes.

Issue 8: the parallel semantics that matter hold on every executor (input
order, no sibling abort, race losers not killed, retries after a worker
dies), only the place where an activity's code runs changes, and bad
configuration is refused with a typed error before anything is written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import executor_activities as acts
from tests.integration import executor_cases as cases
from tests.support import Box, process_alive, wait_until
from treadle.runtime import (
    ActivityError,
    Executor,
    ProcessExecutor,
    RayExecutor,
    Retry,
    Runtime,
    ThreadExecutor,
    activity,
    workflow,
)

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS: dict[str, Callable[[], Executor]] = {
    "threads": ThreadExecutor,
    "processes": lambda: ProcessExecutor(workers=2),
}


@pytest.fixture(params=list(EXECUTORS))
def any_rt(request: pytest.FixtureRequest, box: Box) -> tuple[Runtime, str]:
    kind: str = request.param
    return box.open(executor=EXECUTORS[kind]()), kind


@pytest.fixture
def proc(box: Box) -> Iterator[tuple[Runtime, ProcessExecutor]]:
    executor = ProcessExecutor(workers=2)
    yield box.open(executor=executor), executor


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


# -- the parallel semantics, on every executor ----------------------------------------


def test_results_come_back_in_input_order(any_rt: tuple[Runtime, str]) -> None:
    rt, kind = any_rt
    cases.input_order(rt, remote=kind != "threads")


def test_a_failing_branch_aborts_no_sibling(any_rt: tuple[Runtime, str], folder: Path) -> None:
    cases.no_sibling_abort(any_rt[0], folder)


def test_race_loser_is_not_killed(any_rt: tuple[Runtime, str], folder: Path) -> None:
    cases.race_loser_keeps_running(any_rt[0], folder)


def test_race_loser_sees_its_cancel_flag(any_rt: tuple[Runtime, str], folder: Path) -> None:
    cases.race_loser_sees_cancel_flag(any_rt[0], folder)


def test_retry_policy_sees_the_original_error_class(any_rt: tuple[Runtime, str]) -> None:
    cases.error_class_crosses(any_rt[0])


def test_cancel_sets_the_flag_where_the_activity_runs(any_rt: tuple[Runtime, str], folder: Path) -> None:
    cases.cancel_reaches_activity(any_rt[0], folder)


def test_an_error_that_cannot_be_pickled_is_matched_by_class_name(any_rt: tuple[Runtime, str]) -> None:
    cases.unpicklable_error_class_crosses(any_rt[0])


# -- worker processes -----------------------------------------------------------------


def test_worker_death_fails_the_attempt_and_the_retry_runs(
    proc: tuple[Runtime, ProcessExecutor], folder: Path
) -> None:
    rt, executor = proc
    cases.retry_after_worker_death(rt, folder)
    assert executor.lost == 1


def test_worker_death_without_retry_fails_only_that_step(
    proc: tuple[Runtime, ProcessExecutor], folder: Path
) -> None:
    cases.worker_death_without_retry(proc[0], folder, "processes")


def test_pool_is_whole_again_after_a_worker_death(
    proc: tuple[Runtime, ProcessExecutor], folder: Path
) -> None:
    rt, executor = proc
    cases.worker_death_without_retry(rt, folder, "processes")
    cases.input_order(rt, remote=True)
    assert executor.spawned == 3  # two, then one to replace the dead one


def test_arguments_and_results_cross_through_the_codec(proc: tuple[Runtime, ProcessExecutor]) -> None:
    rt, _ = proc
    assert rt.start(acts.one, "ex.echo", (1, "a")).result(timeout=30) == [[1, "a"], "list"]
    assert rt.start(acts.one, "ex.echo", {"k": [1.5, None]}).result(timeout=30) == [
        {"k": [1.5, None]},
        "dict",
    ]


@workflow(name="ex.bad_args")
def bad_args(ctx: Any) -> Any:
    try:
        yield ctx.run(acts.echo, {1, 2}, retry=Retry(attempts=3, initial=0.01))
    except ActivityError as exc:
        return [exc.type, exc.message]
    return None


def test_arguments_the_codec_refuses_fail_the_step_without_retry(
    proc: tuple[Runtime, ProcessExecutor],
) -> None:
    rt, _ = proc
    handle = rt.start(bad_args)
    error_type, message = handle.result(timeout=30)
    assert error_type == "treadle.runtime.SerializationError"
    assert "args[0]: set" in message, message
    assert [rec.attempt for rec in handle.history() if rec.step == "0"] == [1]


def test_the_cancel_flag_does_not_leak_to_the_next_attempt_on_a_worker(
    proc: tuple[Runtime, ProcessExecutor], folder: Path
) -> None:
    rt, _ = proc
    cases.cancel_reaches_activity(rt, folder)
    # both workers now ran something after a cancel: a fresh gate must not see a stale flag
    handles = [rt.start(acts.one, "ex.gate", str(folder), f"fresh{i}") for i in range(2)]
    for i in range(2):
        wait_until(lambda i=i: (folder / f"started.fresh{i}").exists(), 30, "the gates to start")
        acts.touch(str(folder), f"open.fresh{i}")
    assert [h.result(timeout=30) for h in handles] == ["opened", "opened"]


@workflow(name="ex.timed_out")
def timed_out(ctx: Any, folder: str) -> Any:
    try:
        yield ctx.run(acts.gate, folder, "slow", timeout=0.3)
    except ActivityError as exc:
        return exc.type
    return None


def test_timed_out_attempt_sees_its_flag_and_its_worker_is_not_killed(
    proc: tuple[Runtime, ProcessExecutor], folder: Path
) -> None:
    rt, executor = proc
    assert rt.start(timed_out, str(folder)).result(timeout=30) == "treadle.runtime.ActivityTimeoutError"
    wait_until(lambda: (folder / "cancel-seen.slow").exists(), 30, "the timed-out attempt to see its flag")
    assert executor.lost == 0


def test_workers_stop_with_the_runtime(box: Box) -> None:
    executor = ProcessExecutor(workers=2)
    rt = box.open(executor=executor)
    result = rt.start(acts.fan_out, 4).result(timeout=30)
    pids = {pid for _, pid in result}
    assert len(pids) == 2 and os.getpid() not in pids
    box.shutdown()
    for pid in pids:
        wait_until(lambda pid=pid: not process_alive(pid), 10, f"worker {pid} to exit")


# -- choosing an executor -------------------------------------------------------------


@workflow(name="ex.mixed")
def mixed(ctx: Any) -> Any:
    return (yield ctx.all([ctx.run(acts.pid_on_process), ctx.run(acts.pid_here)]))


def test_activity_override_runs_on_processes_beside_threads(rt: Runtime) -> None:
    on_process, here = rt.start(mixed).result(timeout=30)
    assert here == os.getpid()
    assert on_process != os.getpid()


def test_activity_override_uses_the_configured_executor(box: Box) -> None:
    executor = ProcessExecutor(workers=1)
    rt = box.open(executors=[executor])
    on_process, here = rt.start(mixed).result(timeout=30)
    assert here == os.getpid() and on_process != here
    assert executor.spawned == 1


def test_a_nested_function_cannot_be_a_process_activity() -> None:
    with pytest.raises(ValueError, match=r"<locals>.*module level"):

        @activity(name="ex.nested", executor="process")
        def nested() -> None: ...


@workflow(name="ex.lambda_on_processes")
def lambda_on_processes(ctx: Any) -> Any:
    try:
        yield ctx.run(lambda: 1, retry=Retry(attempts=3, initial=0.01))
    except ActivityError as exc:
        return [exc.type, exc.message]
    return None


def test_an_unimportable_activity_fails_its_step_clearly_on_processes(
    proc: tuple[Runtime, ProcessExecutor],
) -> None:
    rt, executor = proc
    handle = rt.start(lambda_on_processes)
    error_type, message = handle.result(timeout=30)
    assert error_type == "builtins.TypeError"
    assert "<lambda>" in message and "module level" in message
    assert [rec.attempt for rec in handle.history() if rec.step == "0"] == [1]  # no retry can help
    assert executor.spawned == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"executor": "gpu"}, ValueError, "executor must be one of threads, processes, ray"),
        ({"executor": 3}, TypeError, "executor must be one of"),
        ({"executors": [ThreadExecutor()]}, ValueError, "more than one 'threads' executor"),
        ({"executors": ["processes"]}, TypeError, "Executor instances"),
        ({"executors": ProcessExecutor(workers=1)}, TypeError, "list of Executor"),
    ],
)
def test_bad_executor_configuration_is_refused_before_the_store_is_made(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Runtime(str(tmp_path / "never"), **kwargs)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ProcessExecutor(workers=0), "workers must be an int >= 1"),
        (lambda: ProcessExecutor(start_method="fork"), "start_method must be one of"),
        (lambda: RayExecutor(address=5), "address must be a str"),  # type: ignore[arg-type]
        (lambda: RayExecutor(num_cpus=-1), "num_cpus must be a number"),
        (lambda: activity(executor="gpu"), "executor must be one of"),
    ],
)
def test_bad_executor_arguments_are_refused(make: Callable[[], Any], match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        make()


# -- found by review: each of these once failed ----------------------------------------


@workflow(name="ex.deep_args")
def deep_args(ctx: Any) -> Any:
    value: list[Any] = []
    for _ in range(50_000):
        value = [value]
    try:
        yield ctx.run(acts.echo, value)
    except ActivityError as exc:
        return exc.type
    return None


def test_an_argument_the_codec_chokes_on_fails_the_step_and_never_hangs_the_run(
    proc: tuple[Runtime, ProcessExecutor],
) -> None:
    """A RecursionError while packing arguments used to kill the branch actor: no outcome, ever."""
    rt, _ = proc
    assert rt.start(deep_args).result(timeout=30) == "builtins.RecursionError"
    assert rt.start(acts.one, "ex.echo", 1).result(timeout=30) == [1, "int"]  # the pool still works


def test_a_worker_that_died_while_idle_fails_no_attempt(proc: tuple[Runtime, ProcessExecutor]) -> None:
    rt, executor = proc
    pids = {pid for _, pid in rt.start(acts.fan_out, 2).result(timeout=30)}
    victim = next(iter(pids))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not process_alive(victim), 10, "the idle worker to die")
    result = rt.start(acts.fan_out, 4).result(timeout=30)  # no retry policy: any WorkerLostError fails it
    assert [i for i, _ in result] == [0, 1, 2, 3]
    assert victim not in {pid for _, pid in result}
    assert executor.lost == 1


def test_the_same_process_executor_serves_the_runtime_again_after_a_restart(box: Box) -> None:
    executor = ProcessExecutor(workers=1)
    rt = box.open(executor=executor)
    assert rt.start(acts.fan_out, 1).result(timeout=30)[0][0] == 0
    rt = box.restart(executor=executor)
    assert rt.start(acts.fan_out, 1).result(timeout=30)[0][0] == 0


@workflow(name="ex.retried_while_waiting")
def retried_while_waiting(ctx: Any, folder: str) -> Any:
    try:
        yield ctx.run(acts.numbered_gate, folder, timeout=0.2, retry=Retry(attempts=3, initial=0.01))
    except ActivityError as exc:
        return exc.type
    return None


def test_an_attempt_retried_while_it_waited_for_a_worker_never_runs(box: Box, folder: Path) -> None:
    """workers=1, held by another run: attempts 1 and 2 time out in the queue and are retried;
    once the worker frees, the superseded attempts are dropped, only the last one may run."""
    executor = ProcessExecutor(workers=1)
    rt = box.open(executor=executor)
    hog = rt.start(acts.one, "ex.gate", str(folder), "hog")
    wait_until(lambda: (folder / "started.hog").exists(), 30, "the hog to hold the only worker")
    handle = rt.start(retried_while_waiting, str(folder))
    assert handle.result(timeout=30) == "treadle.runtime.ActivityTimeoutError"
    acts.touch(str(folder), "open.hog")
    acts.touch(str(folder), "open.gate")
    assert hog.result(timeout=30) == "opened"
    wait_until(lambda: rt._pool.stats()[1] == 0, 30, "every branch actor to be done")
    assert not (folder / "attempt.1").exists() and not (folder / "attempt.2").exists()
    assert (folder / "attempt.3").exists()  # abandoned, not dropped: like a race loser


NO_GUARD = """
import sys
sys.path.insert(0, {root!r})
from tests import executor_activities as acts
from treadle.runtime import Runtime

rt = Runtime({store!r}, executor="processes")  # no __main__ guard: a worker re-runs this
print("RESULT", rt.start(acts.one, "ex.echo", 1).result(timeout=60))
"""


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "no_guard.py"
    script.write_text(NO_GUARD.format(root=str(ROOT), store=str(tmp_path / "store")))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, check=False, cwd=tmp_path
    )
    assert "a worker process could not start" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "__main__" in proc.stdout + proc.stderr
