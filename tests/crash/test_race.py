"""Crash around a race decision (RELIABILITY scenario 5, invariant I4).

A race between a fast branch and one that blocks on 'release' (never given
here, so the fast branch always wins, in both children). Killed before the
decision's commit, the race runs again and records exactly one decision;
killed after it, the recorded winner comes back and no branch runs again.
"""

from __future__ import annotations

from typing import Any

import pytest

from treadle.runtime.testing import Scenario, crash_and_recover, journal_snapshot

pytestmark = pytest.mark.crash

BODY = """
@activity(name="crash_race.fast")
def fast(tag):
    counters.hit("fast")
    if MODE == "hold":
        # Settle only once the race's "running" records are durable, so that the
        # commits are exactly: 1 run record, 2 running records, 3 the decision.
        hold("step.0.running", 10.0)
    return f"fast-{tag}"


@activity(name="crash_race.slow")
def slow(tag):
    counters.hit("slow")
    hold("release", 20.0)
    return f"slow-{tag}"


@activity(name="crash_race.after")
def after(winner):
    counters.hit("after")
    return winner


@workflow(name="crash_race.flow")
def flow(ctx):
    winner = yield ctx.race([ctx.run(fast, "a"), ctx.run(slow, "b")])
    yield ctx.run(after, winner)
    return winner


if __name__ == "__main__":
    child_main(flow, run_id="racer")
"""


def assert_one_decision(report: dict[str, Any]) -> None:
    assert report["error"] is None, report["error"]
    assert report["result"] == "fast-a"
    races = [r for r in report["history"] if r["step"] == "0"]
    assert len(races) == 1, races
    assert races[0]["kind"] == "race" and races[0]["status"] == "completed" and races[0]["value"] == "fast-a"
    statuses = {r["step"]: r["status"] for r in report["history"]}
    assert statuses["0.0"] == "completed"
    assert statuses["0.1"] == "abandoned"  # the loser: logged, not recorded as an outcome
    assert statuses["1"] == "completed"
    assert len(report["history"]) == len(statuses)  # one record per step id


def test_kill_before_the_decision_commit_runs_the_race_again(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen: dict[str, Any] = {}
    rec = crash_and_recover(
        sc,
        crash_at="after_race_decision",
        before_recover=lambda: seen.update(journal={r.step: r for r in journal_snapshot(sc.store, "racer")}),
    )
    race = seen["journal"].get("0")
    assert race is None or race.status == "running", seen["journal"]  # the decision was not recorded
    assert_one_decision(rec.report)
    assert sc.counters.count("fast") == 2  # the unrecorded race ran again ...
    assert sc.counters.lines("fast")[1][0] == rec.second.pid
    assert 1 <= sc.counters.count("slow") <= 2  # (the loser may not have started in child 1)
    assert sc.counters.count("after") == 1


def test_kill_after_the_decision_commit_returns_the_same_winner(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen: dict[str, Any] = {}
    rec = crash_and_recover(
        sc,
        crash_at="after_commit:3",
        first_mode="hold",
        watch=["0"],
        before_recover=lambda: seen.update(journal={r.step: r for r in journal_snapshot(sc.store, "racer")}),
    )
    journal = seen["journal"]
    assert journal["0"].status == "completed" and journal["0"].value == "fast-a", journal
    assert "1" not in journal, journal  # killed right after the decision's commit
    assert_one_decision(rec.report)
    # No branch runs again: every invocation of either branch happened in child 1.
    assert sc.counters.count("fast") == 1
    assert {pid for pid, _, _ in sc.counters.lines("slow")} <= {rec.first.pid}
    assert sc.counters.count("after") == 1
