"""The Ray executor against a local one-node Ray (issue 8).

Marked ``ray``; ``make test`` runs them (it installs the ``ray`` extra). They
skip, saying why, only if Ray cannot be imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import executor_activities as acts
from tests.integration import executor_cases as cases
from tests.support import Box, wait_until
from treadle.runtime import RayExecutor, RunStatus, Runtime

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'treadle[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    from treadle.runtime import workflow

    def double(x: int) -> list[Any]:
        return [x * 2, os.getpid()]

    @workflow(name="ex.ray_nested")
    def flow(ctx: Any) -> Any:
        return (yield ctx.run(double, 21))

    value, pid = ray_rt.start(flow).result(timeout=60)
    assert value == 42 and pid != os.getpid()
