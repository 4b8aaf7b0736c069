"""The pool of idle run actors: bounded, reused, and trimmed back after a burst of runs.

DESIGN.md: "A run that is only sleeping or waiting holds no thread"; run actors are
reused once their run ends (CHANGELOG), up to a fixed bound.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.support import WAIT, Box, wait_until
from treadle.runtime import activity, workflow
from treadle.runtime._supervisor import HOST_BURST, IDLE_HOSTS, IDLE_HOSTS_BURST
from treadle.runtime.testing import FakeClock

RELEASE = threading.Event()


@activity(name="hosts.wait")
def wait_for_release(i: int) -> int:
    assert RELEASE.wait(WAIT)
    return i


@workflow(name="hosts.one")
def one(ctx: Any, i: int) -> Any:
    return (yield ctx.run(wait_for_release, i))


def _idle_hosts(rt: Any) -> int:
    return len(rt.supervisor.proxy().idle_hosts.get(timeout=WAIT))


def test_idle_run_actors_beyond_the_bound_are_kept_during_a_burst_then_trimmed(tmp_path: Path) -> None:
    """More runs at once than IDLE_HOSTS: their actors are all kept for reuse while hosts are
    being started (no stop-and-restart churn), and trimmed back to IDLE_HOSTS once the burst
    is over."""
    clock = FakeClock()
    box = Box(tmp_path / "store")
    rt = box.open(clock=clock)
    try:
        RELEASE.clear()
        runs = IDLE_HOSTS + 16
        handles = [rt.start(one, i) for i in range(runs)]
        RELEASE.set()
        assert [h.result(timeout=WAIT) for h in handles] == list(range(runs))
        # The fake clock has not moved: still within HOST_BURST of the last host started.
        wait_until(lambda: _idle_hosts(rt) == runs, message="every finished run's actor kept")
        assert runs <= IDLE_HOSTS_BURST
        clock.advance(HOST_BURST + 1)
        assert rt.start(one, -1).result(timeout=WAIT) == -1  # reuses a kept actor, then trims
        wait_until(lambda: _idle_hosts(rt) == IDLE_HOSTS, message="the pool trimmed to its bound")
    finally:
        RELEASE.set()
        box.shutdown()
