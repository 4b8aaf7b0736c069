"""The Ray executor against a local one-node Ray (issue 8).

Marked ``ray``; ``make test`` runs them (it installs the ``ray`` extra). They
skip, saying why, only if Ray cannot be imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests import executor_activities as acts
from tests.integration import executor_cases as cases
from tests.support import Box, wait_until
from treadle.runtime import (
    ActivityContext,
    ActivityError,
    RayExecutor,
    RunStatus,
    Runtime,
    default_registry,
    workflow,
)
from treadle.runtime._activity import ActivityTask

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'treadle[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    here = str(ROOT)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": here}},  # workers import tests.executor_activities
    )
    yield
    ray.shutdown()


@pytest.fixture
def ray_rt(box: Box) -> Runtime:
    return box.open(executor=RayExecutor())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


def test_results_come_back_in_input_order(ray_rt: Runtime) -> None:
    cases.input_order(ray_rt, remote=True)


def test_a_failing_branch_aborts_no_sibling(ray_rt: Runtime, folder: Path) -> None:
    cases.no_sibling_abort(ray_rt, folder)


def test_race_loser_is_not_killed(ray_rt: Runtime, folder: Path) -> None:
    cases.race_loser_keeps_running(ray_rt, folder)


def test_race_loser_sees_its_cancel_flag(ray_rt: Runtime, folder: Path) -> None:
    cases.race_loser_sees_cancel_flag(ray_rt, folder)


def test_retry_policy_sees_the_original_error_class(ray_rt: Runtime) -> None:
    cases.error_class_crosses(ray_rt)


def test_cancel_sets_the_flag_where_the_activity_runs(ray_rt: Runtime, folder: Path) -> None:
    cases.cancel_reaches_activity(ray_rt, folder)


def test_lost_worker_fails_the_attempt_and_the_retry_runs(ray_rt: Runtime, folder: Path) -> None:
    cases.retry_after_worker_death(ray_rt, folder)


def test_lost_worker_without_retry_fails_only_that_step(ray_rt: Runtime, folder: Path) -> None:
    cases.worker_death_without_retry(ray_rt, folder, "ray")


def test_ray_cancel_only_when_opted_in(box: Box, folder: Path) -> None:
    """cancel_tasks=True: a cancelled run's Ray task is interrupted even if it ignores its flag."""
    rt = box.open(executor=RayExecutor(cancel_tasks=True))
    handle = rt.start(acts.one, "ex.stubborn", str(folder), "stubborn")
    wait_until(lambda: (folder / "started.stubborn").exists(), 60, "the task to start")
    assert handle.cancel()
    wait_until(lambda: (folder / "interrupted.stubborn").exists(), 60, "ray.cancel to interrupt the task")
    wait_until(lambda: handle.status() == RunStatus.CANCELLED, 60, "the run to end cancelled")


def test_without_opt_in_a_cancelled_task_is_left_running(ray_rt: Runtime, folder: Path) -> None:
    handle = ray_rt.start(acts.one, "ex.stubborn", str(folder), "left")
    wait_until(lambda: (folder / "started.left").exists(), 60, "the task to start")
    assert handle.cancel()
    wait_until(lambda: handle.status() == RunStatus.CANCELLED, 60, "the run to end cancelled")
    acts.touch(str(folder), "open.left")
    wait_until(lambda: (folder / "done.left").exists(), 60, "the abandoned task to finish")
    assert not (folder / "interrupted.left").exists()


def test_a_nested_function_ships_by_value(ray_rt: Runtime) -> None:
    """Ray serialises functions itself, so a function defined in a test body runs too."""

    def double(x: int) -> list[Any]:
        return [x * 2, os.getpid()]

    @workflow(name="ex.ray_nested")
    def flow(ctx: Any) -> Any:
        return (yield ctx.run(double, 21))

    value, pid = ray_rt.start(flow).result(timeout=60)
    assert value == 42 and pid != os.getpid()


def test_cancel_tasks_interrupts_a_running_task_and_records_a_cancellation(folder: Path) -> None:
    """The executor on its own: ray.cancel interrupts the running task (KeyboardInterrupt inside
    it), and the attempt's error is a CancelledError, not a bare KeyboardInterrupt."""
    executor = RayExecutor(cancel_tasks=True)
    executor.start()
    try:
        node = SimpleNamespace(
            op=SimpleNamespace(
                definition=default_registry.activity(acts.stubborn), args=(str(folder), "direct")
            ),
            attempt=1,
        )
        task = ActivityTask(node, 1, ActivityContext(run_id="r", step="0"), 1 << 20)  # type: ignore[arg-type]
        box: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: box.setdefault("done", executor.run(task)), daemon=True)
        runner.start()
        wait_until(lambda: (folder / "started.direct").exists(), 60, "the task to start")
        task.context.cancelled.set()
        runner.join(60)
        done = box["done"]
        assert not done.ok and done.error.type == "treadle.runtime.CancelledError", done.error
        assert (folder / "interrupted.direct").exists()
    finally:
        executor.shutdown()


def test_an_attempt_after_shutdown_fails_and_starts_nothing(folder: Path) -> None:
    """An attempt that reaches a RayExecutor after its runtime shut it down (a branch actor
    still on its way) fails with ExecutorUnavailableError; it must not start the executor
    again (nor Ray, had the executor started it), and the activity must not run."""
    executor = RayExecutor()
    executor.start()
    executor.shutdown()
    node = SimpleNamespace(
        op=SimpleNamespace(definition=default_registry.activity(acts.gate), args=(str(folder), "late")),
        attempt=1,
    )
    task = ActivityTask(node, 1, ActivityContext(run_id="r", step="0"), 1 << 20)  # type: ignore[arg-type]
    done = executor.run(task)
    assert done is not None and not done.ok
    assert done.error.type == "treadle.runtime.ExecutorUnavailableError", done.error
    assert executor._flags is None, "the executor started again"
    assert not (folder / "started.late").exists()


def test_a_module_the_workers_cannot_import_fails_with_its_own_error(ray_rt: Runtime, tmp_path: Path) -> None:
    """Ray raises RayTaskError around the real cause; the step records the cause, not a lost worker."""
    (tmp_path / "only_here.py").write_text("import os\n\ndef where():\n    return os.getpid()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import only_here  # type: ignore[import-not-found]

        @workflow(name="ex.ray_unimportable")
        def flow(ctx: Any) -> Any:
            try:
                yield ctx.run(only_here.where)
            except ActivityError as exc:
                return [exc.type, exc.message]
            return None

        error_type, message = ray_rt.start(flow).result(timeout=60)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_here", None)
    assert error_type != "treadle.runtime.WorkerLostError"
    assert "only_here" in message and "\x1b[" not in message, message


OWNERSHIP = """
import os, sys
sys.path.insert(0, {root!r})
import ray
from tests import executor_activities as acts
from treadle.runtime import RayExecutor, Runtime

a = Runtime({store!r} + "/a", executor=RayExecutor(init={{"num_cpus": 1}}))
b = Runtime({store!r} + "/b", executor="ray")
print("A", a.start(acts.fan_out, 2).result(timeout=120)[0][0])
print("B", b.start(acts.fan_out, 2).result(timeout=120)[0][0])
a.shutdown()
print("after A", ray.is_initialized())
print("B again", b.start(acts.fan_out, 2).result(timeout=120)[0][0])
b.shutdown()
print("after B", ray.is_initialized())
"""


def test_ray_started_by_treadle_outlives_every_runtime_but_the_last(tmp_path: Path) -> None:
    """A RayExecutor that had to start Ray (with init=) owns it: two runtimes share it, and it
    shuts down when the last of them closes, never under the other's feet."""
    script = tmp_path / "owners.py"
    script.write_text(OWNERSHIP.format(root=str(ROOT), store=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=110, check=False, env=env
    )
    lines = [line for line in proc.stdout.splitlines() if line.split(" ")[0] in ("A", "B", "after")]
    assert lines == ["A 0", "B 0", "after A True", "B again 0", "after B False"], proc.stdout + proc.stderr
