"""A finished run is freed by reference counting, without waiting for the cyclic GC.

Under load, runs whose objects (driver, root frame, coordinator and branch nodes) formed
reference cycles piled up for the cyclic collector, whose full passes held the GIL for
tens of milliseconds. These tests pin that a finished run leaves no such cycle behind.
"""

from __future__ import annotations

import gc
from typing import Any

import pykka

from tests.support import WAIT, wait_until
from treadle.runtime import activity, workflow
from treadle.runtime._driver import RunDriver
from treadle.runtime._nodes import Node


@activity(name="memory.echo")
def echo(i: int) -> int:
    return i


@workflow(name="memory.three")
def three(ctx: Any) -> Any:
    return (yield ctx.all([ctx.run(echo, 0), ctx.run(echo, 1), ctx.run(echo, 2)]))


@workflow(name="memory.race")
def race(ctx: Any) -> Any:
    return (yield ctx.race([ctx.run(echo, 0), ctx.run(echo, 1)]))


@workflow(name="memory.steps")
def steps(ctx: Any, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.run(echo, i)
    return total


def _runs_released(rt: Any) -> bool:
    """Every run ended and no actor still holds one: each idle actor handles one more message,
    so the last message its loop kept (an activity task, an ack) no longer holds a run."""
    if rt._services.entries:
        return False
    for ref in pykka.ActorRegistry.get_all():
        try:
            ref.proxy().actor_urn.get(timeout=WAIT)
        except pykka.ActorDeadError:
            pass
    hosts = rt.supervisor.proxy().idle_hosts.get(timeout=WAIT)
    return all(h.proxy().driver.get(timeout=WAIT) is None for h in hosts)


def test_finished_runs_leave_no_reference_cycle(rt: Any) -> None:
    """With the cyclic GC off, runs (all, race, sequential) finish and their actors let go of
    them; a collection then finds no driver or node of theirs among unreachable cycles."""
    gc.collect()
    gc.disable()
    try:
        assert rt.start(three).result(timeout=WAIT) == [0, 1, 2]
        assert rt.start(race).result(timeout=WAIT) in (0, 1)
        assert rt.start(steps, 5).result(timeout=WAIT) == 10
        wait_until(lambda: _runs_released(rt), message="every run ended and its actor let go of it")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, (RunDriver, Node))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == []
