"""Crash between a signal's delivery and the wait (RELIABILITY scenario 18).

Signals are buffered durably; a signal sent before the wait and persisted
just before a SIGKILL is consumed exactly once after the restart, FIFO per
name; a run waiting on a signal resumes in a fresh process when it arrives.
"""

from __future__ import annotations

from typing import Any

import pytest

from treadle.runtime.testing import Scenario, crash_and_recover

pytestmark = pytest.mark.crash

TWICE = """
@activity(name="crash_sig.gate")
def gate():
    counters.hit("gate")
    hold("go")
    return "open"


@activity(name="crash_sig.note")
def note(payload):
    counters.hit("note", str(payload))
    return payload


@workflow(name="crash_sig.twice")
def twice(ctx):
    yield ctx.run(gate)  # holds the run before its waits, so the signals come first
    first = yield ctx.wait_for_signal("s", timeout=30)
    yield ctx.run(note, first)
    second = yield ctx.wait_for_signal("s", timeout=30)
    return [first, second]


def on_start(handle, mode):
    if mode.startswith("send-") and mode != "send-later":
        wait_for(lambda: counters.count("gate") >= 1, what="the gate")  # the run is held before its waits
    if mode == "send-one":
        handle.signal("s", "first")
    elif mode == "send-two":
        handle.signal("s", "first")
        handle.signal("s", "second")
    elif mode == "send-later":
        # Only once the second wait has begun: had the first payload stayed
        # buffered (not consumed), that wait would already have taken it.
        wait_for(lambda: any(r.step == "3" for r in handle.history()), what="the second wait")
        handle.signal("s", "second")


if __name__ == "__main__":
    child_main(twice, run_id="twice", on_start=on_start)
"""

APPROVAL = """
@activity(name="crash_sig.note")
def note(payload):
    counters.hit("note", str(payload))
    return payload


@workflow(name="crash_sig.approval")
def approval(ctx):
    decision = yield ctx.wait_for_signal("approve", timeout=60)
    yield ctx.run(note, decision)
    return decision


def on_start(handle, mode):
    if mode == "approve":
        wait_for(lambda: handle.status() == RunStatus.SUSPENDED, what="the run to wait again")
        handle.signal("approve", {"ok": True})


if __name__ == "__main__":
    child_main(approval, run_id="approval", on_start=on_start)
"""


def signal_steps(report: dict[str, Any]) -> dict[str, list[Any]]:
    steps: dict[str, list[Any]] = {}
    for record in report["history"]:
        if record["kind"] == "signal":
            assert record["name"] in ("s", "approve")
            steps.setdefault(record["step"], []).append((record["status"], record["value"]))
    return steps


@pytest.mark.parametrize(
    ("first_mode", "crash_at", "second_mode"),
    [
        ("send-one", "after_signal_persist", "send-later"),
        ("send-two", "after_signal_persist:2", "run"),
    ],
    ids=["one-buffered-then-one-later", "two-buffered-fifo"],
)
def test_signal_persisted_before_the_wait_is_consumed_once(
    make_scenario: Any, first_mode: str, crash_at: str, second_mode: str
) -> None:
    sc: Scenario = make_scenario(TWICE)
    rec = crash_and_recover(
        sc,
        crash_at=crash_at,
        first_mode=first_mode,
        second_mode=second_mode,
        before_recover=lambda: sc.counters.mark("go"),
    )
    report = rec.report
    assert report["error"] is None, report["error"]
    assert report["result"] == ["first", "second"]  # FIFO, and the first payload is taken once
    assert signal_steps(report) == {"1": [("completed", "first")], "3": [("completed", "second")]}
    assert [note for _, _, note in sc.counters.lines("note")] == ["first"]
    assert sc.counters.count("gate") == 2  # held in child 1, run again in child 2


def test_run_waiting_on_a_signal_resumes_after_a_restart(make_scenario: Any) -> None:
    sc: Scenario = make_scenario(APPROVAL)
    # Kill child 1 once the wait is durable (the signal step's "running" record).
    rec = crash_and_recover(sc, kill_at=["step.0.running"], watch=["0"], second_mode="approve")
    report = rec.report
    assert report["error"] is None, report["error"]
    assert report["result"] == {"ok": True}
    assert signal_steps(report) == {"0": [("completed", {"ok": True})]}
    assert [note for _, _, note in sc.counters.lines("note")] == [str({"ok": True})]
