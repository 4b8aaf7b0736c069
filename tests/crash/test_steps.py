"""Crash around one sequential step (RELIABILITY scenarios 1 and 2, invariants I1-I3).

Each test runs a three-step workflow in a child process that dies by SIGKILL
at a fault point, then finishes the run in a fresh child on the same store,
and checks the on-disk invocation counters and the journal.
"""

from __future__ import annotations

from typing import Any

import pytest

from treadle.runtime.testing import Scenario, crash_and_recover, journal_snapshot

pytestmark = pytest.mark.crash

BODY = """
@activity(name="crash_steps.step")
def step(i):
    counters.hit(f"step.{i}")
    if MODE == "hold" and i == 0:
        # Return only once this step's "running" record is durable, so that the
        # commits are exactly: 1 run record, 2 running record, 3 step 0's outcome.
        hold("step.0.running", 10.0)
    return i * 10


@workflow(name="crash_steps.flow")
def flow(ctx, n):
    out = []
    for i in range(n):
        out.append((yield ctx.run(step, i)))
    return out


if __name__ == "__main__":
    child_main(flow, 3, run_id="steps")
"""

EXPECTED = [0, 10, 20]


def by_step(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in history:
        grouped.setdefault(record["step"], []).append(record)
    return grouped


def assert_recorded_once(report: dict[str, Any]) -> None:
    """Steps 0, 1, 2: exactly one completed outcome each, with the right value (I3)."""
    assert report["error"] is None, report["error"]
    assert report["result"] == EXPECTED
    grouped = by_step(report["history"])
    assert sorted(grouped) == ["0", "1", "2"], report["history"]
    for index in range(3):
        records = grouped[str(index)]
        assert len(records) == 1, records
        assert records[0]["status"] == "completed"
        assert records[0]["value"] == index * 10
        assert records[0]["name"] == "crash_steps.step"


def test_kill_before_step_commit_runs_the_step_once_more(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen: dict[str, Any] = {}

    def inspect() -> None:
        seen["journal"] = journal_snapshot(sc.store, "steps")
        seen["runs"] = sc.counters.count("step.0")

    rec = crash_and_recover(sc, crash_at="after_step_before_commit", before_recover=inspect)

    # The first non-lazy batch is step 0's outcome: it never reached the store.
    assert seen["runs"] == 1
    assert all(r.status != "completed" for r in seen["journal"]), seen["journal"]
    assert_recorded_once(rec.report)
    assert sc.counters.count("step.0") == 2  # ran again after the restart ...
    assert sc.counters.count("step.1") == 1
    assert sc.counters.count("step.2") == 1
    # ... by the recovering process, and its outcome is the one recorded.
    assert [pid for pid, _, _ in sc.counters.lines("step.0")] == [rec.first.pid, rec.second.pid]


def test_kill_after_step_commit_does_not_run_it_again(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    seen: dict[str, Any] = {}

    def inspect() -> None:
        seen["journal"] = {r.step: r for r in journal_snapshot(sc.store, "steps")}

    rec = crash_and_recover(
        sc, crash_at="after_commit:3", first_mode="hold", watch=["0"], before_recover=inspect
    )

    # Killed right after the commit of step 0's outcome, before it was acknowledged.
    journal = seen["journal"]
    assert journal["0"].status == "completed" and journal["0"].value == 0, journal
    assert "1" not in journal, journal
    assert_recorded_once(rec.report)
    assert sc.counters.count("step.0") == 1  # the committed step is never run again (I1, I3)
    assert sc.counters.count("step.1") == 1
    assert sc.counters.count("step.2") == 1


@pytest.mark.parametrize("count", [1, 3])
def test_kill_inside_commit_leaves_the_store_at_a_commit_boundary(make_scenario: Any, count: int) -> None:
    sc: Scenario = make_scenario(BODY)
    seen: dict[str, Any] = {}

    def inspect() -> None:
        # Every record reads back with a valid CRC (no torn record) ...
        seen["journal"] = {r.step: r for r in journal_snapshot(sc.store, "steps")}

    rec = crash_and_recover(
        sc, crash_at=f"in_commit:{count}", first_mode="hold", watch=["0"], before_recover=inspect
    )

    journal = seen["journal"]
    if count == 1:
        assert journal == {}  # the run's creation was the torn transaction: nothing of it remains
    else:
        # ... and the batch that died (step 0's outcome) is entirely absent (I2).
        assert set(journal) == {"0"} and journal["0"].status == "running", journal
    assert_recorded_once(rec.report)
    assert sc.counters.count("step.0") == (1 if count == 1 else 2)
    assert sc.counters.count("step.1") == 1


def test_kill_after_branch_spawn_records_the_step_once(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    rec = crash_and_recover(sc, crash_at="after_branch_spawn")
    assert_recorded_once(rec.report)
    # The attempt handed to the branch actor may or may not have started before the kill.
    assert 1 <= sc.counters.count("step.0") <= 2
    assert sc.counters.count("step.1") == 1


def test_kill_at_a_random_moment_records_every_step_once(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(BODY)
    rec = crash_and_recover(sc, kill_after=(0.0, 0.3))  # the run may also finish before the kill
    assert_recorded_once(rec.report)
    for index in range(3):
        assert 1 <= sc.counters.count(f"step.{index}") <= (2 if rec.killed else 1)
