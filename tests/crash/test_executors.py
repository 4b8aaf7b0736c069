"""SIGKILL of a runtime whose branches run in worker processes (issue 8).

The journal and the coordinator stay with the runtime that owns the store, so
a crash behaves exactly as on threads: after the restart only the branches
without a durable outcome run again. The dead runtime's workers do not
outlive it: an idle one sees its pipe close, a busy one exits after its
attempt.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import process_alive, wait_until
from treadle.runtime.testing import Scenario, crash_and_recover

pytestmark = pytest.mark.crash

BODY = """
@activity(name="crash_exec.item", executor="processes")
def item(i):
    counters.hit(f"item.{i}")
    counters.mark(f"began.{i}", os.getpid())
    if i % 2:
        hold("release")
    return [i * 10, os.getpid()]


@workflow(name="crash_exec.flow")
def flow(ctx):
    return (yield ctx.all([ctx.run(item, i) for i in range(4)]))


if __name__ == "__main__":
    child_main(flow, run_id="fanout")
"""


def test_kill_mid_fan_out_on_worker_processes(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    first_workers: list[int] = []

    def before_recover() -> None:
        first_workers.extend(int(sc.counters.read(f"began.{i}")[0]) for i in (1, 3))
        assert all(process_alive(pid) for pid in first_workers)  # held in their attempts
        sc.counters.mark("release")  # the orphaned attempts finish, then their workers exit

    rec = crash_and_recover(
        sc,
        kill_at=["step.0.0.completed", "step.0.2.completed", "began.1", "began.3"],
        watch=["0.0", "0.2"],
        before_recover=before_recover,
    )
    assert rec.report["error"] is None, rec.report["error"]
    assert [value for value, _ in rec.report["result"]] == [0, 10, 20, 30]
    # the even branches were durable before the kill: they ran once; the odd ones ran again
    for i in range(4):
        runs = sc.counters.lines(f"item.{i}")
        assert len(runs) == (2 if i % 2 else 1), (i, runs)
    assert {pid for _, pid in rec.report["result"]}.isdisjoint({rec.first.pid, rec.second.pid})
    for pid in first_workers:
        wait_until(lambda pid=pid: not process_alive(pid), 20, f"worker {pid} of the killed runtime to exit")
