"""Crash in the middle of a fan-out (RELIABILITY scenario 4).

Six branches: three finish at once, three block on the cross-process marker
'release'. Child 1 is killed once the three finished branches are durable
(their 'step.0.K.<status>' markers, written by the child's step watcher) and
the blocked ones have started; child 2 must run exactly the unfinished
branches again and return every result in input order.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import in_flight_max
from treadle.runtime.testing import Scenario, crash_and_recover

pytestmark = pytest.mark.crash

BODY = """
KIND = {kind!r}
FAST = {fast!r}


@activity(name="crash_par.item")
def item(i, fast):
    counters.hit(f"item.{{i}}")
    counters.hit("inflight", f"start {{i}}")
    try:
        counters.mark(f"began.{{i}}")
        if i not in fast:
            hold("release")
        if KIND == "all_settled" and i == 1:
            raise ValueError(f"item {{i}} is broken")
        return i * 10
    finally:
        counters.hit("inflight", f"finish {{i}}")


@workflow(name="crash_par.flow")
def flow(ctx, kind, fast):
    if kind == "all":
        return (yield ctx.all([ctx.run(item, i, fast) for i in range(6)]))
    if kind == "map":
        return (yield ctx.map(list(range(6)), lambda i: ctx.run(item, i, fast), concurrency=2))
    settled = yield ctx.all_settled([ctx.run(item, i, fast) for i in range(6)])
    return [[s.ok, s.value, None if s.error is None else s.error.type] for s in settled]


if __name__ == "__main__":
    child_main(flow, KIND, FAST, run_id="fanout")
"""


# kind, branches that finish at once, branches started (and blocked) in child 1, expected result
CASES = {
    "all": ([1, 3, 5], [0, 2, 4], [i * 10 for i in range(6)]),
    # concurrency=2 in input order: 0, 1, 2 finish; 3 and 4 hold both slots; 5 never starts in child 1.
    "map": ([0, 1, 2], [3, 4], [i * 10 for i in range(6)]),
    "all_settled": (
        [1, 3, 5],
        [0, 2, 4],
        [
            [True, 0, None],
            [False, None, "builtins.ValueError"],
            [True, 20, None],
            [True, 30, None],
            [True, 40, None],
            [True, 50, None],
        ],
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_kill_mid_fan_out_reruns_only_unfinished_branches(make_scenario: Any, kind: str) -> None:
    fast, blocked, expected = CASES[kind]
    sc: Scenario = make_scenario(BODY.format(kind=kind, fast=fast))
    status = {i: "failed" if (kind == "all_settled" and i == 1) else "completed" for i in range(6)}
    durable = [f"step.0.{i}.{status[i]}" for i in fast]
    started = [f"began.{i}" for i in blocked]

    rec = crash_and_recover(
        sc,
        kill_at=durable + started,
        watch=[f"0.{i}" for i in range(6)],
        before_recover=lambda: sc.counters.mark("release"),
    )

    report = rec.report
    assert report["error"] is None, report["error"]
    assert report["result"] == expected  # input order, whatever the finishing order
    unfinished = sorted(set(range(6)) - set(fast))
    for i in range(6):
        runs = sc.counters.lines(f"item.{i}")
        assert len(runs) == (2 if i in blocked else 1), (i, runs)
    ran_again = sorted(
        {
            int(note.split()[1])
            for pid, _, note in sc.counters.lines("inflight")
            if pid == rec.second.pid and note.startswith("start")
        }
    )
    assert ran_again == unfinished  # exactly the branches that had not finished
    # Every branch has exactly one recorded outcome.
    branches = [r for r in report["history"] if r["step"].startswith("0.")]
    assert sorted(r["step"] for r in branches) == [f"0.{i}" for i in range(6)], branches
    assert {r["step"]: r["status"] for r in branches} == {f"0.{i}": status[i] for i in range(6)}
    if kind == "map":
        lines = sc.counters.lines("inflight")
        assert in_flight_max(lines, rec.first.pid) <= 2
        assert in_flight_max(lines, rec.second.pid) <= 2  # the limit holds during recovery too
