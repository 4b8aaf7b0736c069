"""The pool of idle run actors: bounded, reused, and trimmed back after a burst of runs.

DESIGN.md: "A run that is only sleeping or waiting holds no thread"; run actors are
reused once their run ends (CHANGELOG), up to a fixed bound.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.support import WAIT, Box, supervisor_handled, wait_until
from treadle.runtime import activity, workflow
from treadle.runtime._driver import RunDriver
from treadle.runtime._messages import _Created
from treadle.runtime._run_actor import RunActor
from treadle.runtime._supervisor import HOST_BURST, IDLE_HOSTS, IDLE_HOSTS_BURST
from treadle.runtime.testing import FakeClock

GATES: dict[str, threading.Event] = {}  # gate name -> what hosts.wait activities wait on


@activity(name="hosts.wait")
def wait_for_release(gate: str, i: int) -> int:
    assert GATES[gate].wait(WAIT)
    return i


@workflow(name="hosts.one")
def one(ctx: Any, gate: str, i: int) -> Any:
    return (yield ctx.run(wait_for_release, gate, i))


def _idle_hosts(rt: Any) -> int:
    return len(rt.supervisor.proxy().idle_hosts.get(timeout=WAIT))


def test_idle_run_actors_beyond_the_bound_are_kept_during_a_burst_then_trimmed(box: Box) -> None:
    """More runs at once than IDLE_HOSTS: their actors are all kept for reuse while hosts are
    being started (no stop-and-restart churn), and trimmed back to IDLE_HOSTS once the burst
    is over."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    GATES["burst"] = release = box.gate()
    runs = IDLE_HOSTS + 16
    handles = [rt.start(one, "burst", i) for i in range(runs)]
    release.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(runs))
    # The fake clock has not moved: still within HOST_BURST of the last host started.
    wait_until(lambda: _idle_hosts(rt) == runs, message="every finished run's actor kept")
    assert runs <= IDLE_HOSTS_BURST
    clock.advance(HOST_BURST + 1)
    assert rt.start(one, "burst", -1).result(timeout=WAIT) == -1  # reuses a kept actor, then trims
    wait_until(lambda: _idle_hosts(rt) == IDLE_HOSTS, message="the pool trimmed to its bound")


@activity(name="hosts.quick")
def quick(i: int) -> int:
    return i


@workflow(name="hosts.quick_one")
def quick_one(ctx: Any, i: int) -> Any:
    return (yield ctx.run(quick, i))


def test_an_actor_that_errs_after_its_run_ended_still_serves_the_run_it_was_handed(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run actor is taken back for reuse as soon as its run's end is told to the supervisor.
    If an unexpected error follows in the same message (here: releasing the ended run's
    objects), the supervisor may already have handed the actor the next run. The actor
    must not stop then: it used to, and that next run waited forever for a dead actor."""
    rt = box.open()
    assert rt.start(quick_one, 0).result(timeout=WAIT) == 0  # an idle actor to reuse
    in_dispose, next_hosted = threading.Event(), box.gate()
    hosted_by: dict[str, RunActor | None] = {}  # run id -> the actor that drove it to its end
    dispose = RunDriver.dispose
    first = rt.start(quick_one, 1, run_id="hosts-errs")

    def failing_dispose(driver: RunDriver) -> None:
        hosted_by[driver.port.run_id] = driver.port.actor
        if driver.port.run_id != "hosts-errs":
            dispose(driver)
            return
        in_dispose.set()
        assert next_hosted.wait(WAIT), "the next run was not created"
        raise RuntimeError("error after the run ended")

    monkeypatch.setattr(RunDriver, "dispose", failing_dispose)
    assert first.result(timeout=WAIT) == 1
    assert in_dispose.wait(WAIT)
    created = supervisor_handled(monkeypatch, _Created, "hosts-next")
    second = rt.start(quick_one, 2, run_id="hosts-next")  # hosted by the erring actor (LIFO pool)
    assert created.wait(WAIT)
    next_hosted.set()
    assert second.result(timeout=WAIT) == 2
    # The next run landed on the actor that erred (not on a fresh one started in its place).
    wait_until(lambda: "hosts-next" in hosted_by, message="the next run's driver disposed")
    erring = hosted_by["hosts-errs"]
    assert erring is not None and hosted_by["hosts-next"] is erring
    assert rt.start(quick_one, 3).result(timeout=WAIT) == 3
