"""Replay slots: after a restart, unfinished runs are replayed from the store a few at a time.

Replay is Python under the GIL, so a hundred runs replayed side by side all finish late
(PERFORMANCE.md `recover`: the first re-dispatch waited for every replay). The supervisor
gives at most ``REPLAY_SLOTS`` runs an actor that replays; the others wait in line, with
their messages held, and a replay that parks or crashes frees its slot like one that
finishes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import Box
from tests.support import WAIT, assert_cancel_ended_the_run, cancel_in_thread, wait_until
from treadle.runtime import _supervisor, activity, workflow
from treadle.runtime._driver import RunDriver

HOLDS: dict[str, threading.Event] = {}  # run id -> what its replay waits on, past its first step
REACHED: dict[str, threading.Event] = {}  # run id -> set when its replay reaches the hold
GATES: dict[str, threading.Event] = {}  # run id -> what its second activity waits on
IN_GATE: set[str] = set()
LOCK = threading.Lock()


@activity(name="slots.first")
def first(run_id: str) -> str:
    return f"a-{run_id[-1]}"


@activity(name="slots.gated")
def gated(run_id: str) -> str:
    with LOCK:
        IN_GATE.add(run_id)
    assert GATES[run_id].wait(WAIT), "gate not opened"
    return f"b-{run_id[-1]}"


@workflow(name="slots.held")
def held(ctx: Any) -> Any:
    a = yield ctx.run(first, ctx.run_id)
    hold = HOLDS.get(ctx.run_id)
    if hold is not None:
        REACHED[ctx.run_id].set()
        assert hold.wait(WAIT), "hold not released"
    b = yield ctx.run(gated, ctx.run_id)
    return [a, b]


def _unfinished_runs(box: Box, count: int, prefix: str) -> tuple[list[str], threading.Event]:
    """``count`` runs left running (their second activity in flight) by a runtime shut down,
    and the box gate their second activity waits on (in that runtime and the next)."""
    IN_GATE.clear()
    gate = box.gate()
    rt = box.open()
    ids = [f"{prefix}-{i}" for i in range(count)]
    for run_id in ids:
        GATES[run_id] = gate
        rt.start(held, run_id=run_id)
    wait_until(lambda: set(ids) <= IN_GATE, message="every run in its second activity")
    box.shutdown()
    IN_GATE.clear()
    return ids, gate


def _queued(rt: Any) -> list[str]:
    return [entry.run_id for entry in rt.supervisor.proxy().replay_queue.get(timeout=WAIT)]


def test_runs_beyond_the_replay_slots_wait_in_line_with_their_messages_held(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, three unfinished runs: while the first replay is held the other two wait
    in line (not replaying); a cancel sent to one of them meanwhile is durable at once and
    reaches it when its turn comes; the others resume and finish."""
    monkeypatch.setattr(_supervisor, "REPLAY_SLOTS", 1)
    monkeypatch.setattr(_supervisor, "REPLAY_LEASE", WAIT)  # the held replay keeps its slot
    ids, gate = _unfinished_runs(box, 3, "slots-line")
    for run_id in ids:
        HOLDS[run_id] = box.gate()
        REACHED[run_id] = threading.Event()
    rt = box.open()
    try:
        wait_until(lambda: any(REACHED[r].is_set() for r in ids), message="one replay reached its hold")
        replaying = [r for r in ids if REACHED[r].is_set()]
        waiting = [r for r in ids if r not in replaying]
        assert len(replaying) == 1
        assert sorted(_queued(rt)) == sorted(waiting), "the other runs wait for the slot"

        handle = rt.get(waiting[0])
        canceller, outcome = cancel_in_thread(handle)
        canceller.join(WAIT)
        assert outcome == {"cancelled": True}, "the cancel of a waiting run is durable at once"
        assert not REACHED[waiting[0]].is_set(), "the cancelled run has not replayed yet"

        gate.set()
        for run_id in ids:
            HOLDS[run_id].set()
        assert_cancel_ended_the_run(canceller, outcome, handle)
        for run_id in (replaying[0], waiting[1]):
            assert rt.get(run_id).result(timeout=WAIT) == [f"a-{run_id[-1]}", f"b-{run_id[-1]}"]
        assert _queued(rt) == []
    finally:
        for run_id in ids:
            HOLDS.pop(run_id, None)
            REACHED.pop(run_id, None)


def test_a_replay_that_does_not_return_gives_up_its_slot_after_its_lease(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, and the first replay blocks in workflow code until the test ends: after
    REPLAY_LEASE the next run in line is replayed anyway and finishes (before the lease,
    a replay that never returned held the slot, and with it every other run, for good)."""
    monkeypatch.setattr(_supervisor, "REPLAY_SLOTS", 1)
    monkeypatch.setattr(_supervisor, "REPLAY_LEASE", 0.2)
    ids, gate = _unfinished_runs(box, 2, "slots-lease")
    for run_id in ids:
        HOLDS[run_id] = box.gate()
        REACHED[run_id] = threading.Event()
    gate.set()
    rt = box.open()
    try:
        wait_until(lambda: any(REACHED[r].is_set() for r in ids), message="one replay reached its hold")
        stuck = next(r for r in ids if REACHED[r].is_set())
        other = next(r for r in ids if r != stuck)
        HOLDS[other].set()  # the other one's replay may pass its hold; the stuck one never does
        assert rt.get(other).result(timeout=WAIT) == [f"a-{other[-1]}", f"b-{other[-1]}"]
        assert not HOLDS[stuck].is_set()
        HOLDS[stuck].set()
        assert rt.get(stuck).result(timeout=WAIT) == [f"a-{stuck[-1]}", f"b-{stuck[-1]}"]
    finally:
        for run_id in ids:
            HOLDS.pop(run_id, None)
            REACHED.pop(run_id, None)


def test_a_replay_that_crashes_frees_its_slot(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """One slot, two unfinished runs, and the first replay crashes: the slot must come back,
    or the run waiting in line, and the crashed run's own restart, would never replay."""
    monkeypatch.setattr(_supervisor, "REPLAY_SLOTS", 1)
    ids, gate = _unfinished_runs(box, 2, "slots-crash")
    begin = RunDriver.begin
    crashed: list[str] = []

    def crash_once(driver: RunDriver) -> None:
        if not crashed:
            crashed.append(driver.port.run_id)
            raise RuntimeError("replay crashed")
        begin(driver)

    monkeypatch.setattr(RunDriver, "begin", crash_once)
    gate.set()
    rt = box.open()
    for run_id in ids:
        assert rt.get(run_id).result(timeout=WAIT) == [f"a-{run_id[-1]}", f"b-{run_id[-1]}"]
    assert len(crashed) == 1
