"""Crash during a durable sleep (RELIABILITY scenario 20, fault point ``in_sleep``).

The deadline is stored as absolute wall time: a restart before it sleeps
only the remainder; a restart after it fires the timer at once, and once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from treadle.runtime.testing import Scenario, crash_and_recover, journal_snapshot

pytestmark = pytest.mark.crash

SLEEP = 1.5

BODY = f"""
@activity(name="crash_sleep.mark")
def mark(tag):
    counters.hit(f"mark.{{tag}}")
    return tag


@workflow(name="crash_sleep.flow")
def flow(ctx, seconds):
    yield ctx.run(mark, "before")
    yield ctx.sleep(seconds)
    yield ctx.run(mark, "after")
    return "woke"


if __name__ == "__main__":
    child_main(flow, {SLEEP}, run_id="sleeper")
"""


def run_sleep_scenario(sc: Scenario, restart_at: float) -> dict[str, Any]:
    """Kill at ``in_sleep``; start child 2 ``restart_at`` seconds after the sleep began."""
    seen: dict[str, Any] = {}

    def wait_then_restart() -> None:
        journal = {r.step: r for r in journal_snapshot(sc.store, "sleeper")}
        sleep = journal["1"]
        assert sleep.kind == "sleep" and sleep.status == "running", journal
        assert sleep.started is not None
        seen["sleep_started"] = sleep.started.timestamp()
        assert time.time() < seen["sleep_started"] + SLEEP, "child 1 died later than the deadline"
        # Waiting for wall time to pass is the scenario itself, not a synchronisation.
        time.sleep(max(0.0, seen["sleep_started"] + restart_at - time.time()))
        seen["spawned"] = time.time()

    spawned_first = time.time()
    rec = crash_and_recover(sc, crash_at="in_sleep", before_recover=wait_then_restart)
    report = rec.report
    assert report["error"] is None and report["result"] == "woke"
    sleeps = [r for r in report["history"] if r["step"] == "1"]
    assert len(sleeps) == 1 and sleeps[0]["kind"] == "sleep" and sleeps[0]["status"] == "completed", sleeps
    # The sleep kept its first start time (its deadline was not reset by the restart).
    assert abs(sleeps[0]["started"] - seen["sleep_started"]) < 1e-3
    assert sc.counters.count("mark.before") == 1
    assert sc.counters.count("mark.after") == 1  # fired once
    woke = sc.counters.lines("mark.after")[0][1]
    assert woke - spawned_first >= SLEEP
    assert woke - seen["sleep_started"] >= SLEEP - 1e-3  # never early
    # A full sleep after the restart would end at spawned + SLEEP or later.
    assert woke < seen["spawned"] + SLEEP, (
        woke - seen["sleep_started"],
        seen["spawned"] - seen["sleep_started"],
    )
    return seen | {"woke": woke}


def test_restart_before_the_deadline_sleeps_only_the_remainder(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen = run_sleep_scenario(sc, restart_at=0.6)
    print(
        f"sleep {SLEEP}s: restarted after {seen['spawned'] - seen['sleep_started']:.2f}s, "
        f"woke after {seen['woke'] - seen['sleep_started']:.2f}s"
    )


def test_restart_after_the_deadline_fires_at_once_and_once(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen = run_sleep_scenario(sc, restart_at=SLEEP + 0.2)
    print(
        f"sleep {SLEEP}s: restarted after {seen['spawned'] - seen['sleep_started']:.2f}s, "
        f"woke {seen['woke'] - seen['spawned']:.2f}s after the restart"
    )
