"""Random SIGKILLs in a loop (RELIABILITY scenario 3; invariants I1-I3).

A workload runs in a child process on one store; the child is SIGKILLed at a
random moment (0 to 0.3 s after it began) again and again; a run that
completes is checked and replaced by a new one until the wanted number of
kills is reached, and the last run is then finished by an unkilled child.
Every activity counts itself (per run and step id) in the cross-process
counter. After every kill the store is read back:

* every step seen completed before is still recorded, with the same value
  (lost = 0), and its activity never ran again (duplicated = 0); no step id
  has two records; in the sequential workload the completed steps are a
  prefix 0..k-1 (no gaps);
* at the end each run's history equals the uncrashed reference run's (step
  ids, statuses, values), its result too, and each activity ran at least
  once and at most once per process that worked on the run (1 + its kills).

``TREADLE_CRASH_SEED`` replays a sequence of kill delays; ``TREADLE_SLOW_KILLS``
sizes the slow variant (default 1,000).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from treadle.runtime.testing import Child, HarnessError, Scenario, journal_snapshot

pytestmark = pytest.mark.crash

MAX_DELAY = 0.3

ACTIVITY = """
@activity(name="crash_rand.step")
def step(i, actx: ActivityContext):
    counters.hit(f"{actx.run_id}.{actx.step}")
    if i < 0:
        raise ValueError(f"step {i} fails, durably")
    return i * 7 + 3
"""

MAIN = """
if __name__ == "__main__":
    run_id = MODE  # the mode names the run ...
    if os.environ.get("GO"):
        # ... or, for a child started ahead of time (its imports overlap the
        # previous child's life), the GO marker does once it appears.
        hold(os.environ["GO"], 60.0)
        run_id = counters.read(os.environ["GO"])[0]
    child_main(flow, run_id=run_id)
"""

SEQUENTIAL = (
    ACTIVITY
    + """
@workflow(name="crash_rand.sequence")
def flow(ctx):
    out = []
    for i in range(200):
        out.append((yield ctx.run(step, i)))
    return out
"""
    + MAIN
)

FAN_OUT = (
    ACTIVITY
    + """
def pair(ctx, k):
    a = yield ctx.run(step, 2 * k)
    b = yield ctx.run(step, 2 * k + 1)
    return a + b


@workflow(name="crash_rand.fan_out")
def flow(ctx):
    out = []
    for r in range(10):
        out.append((yield ctx.all([pair(ctx, 10 * r + k) for k in range(6)])))
        out.append((yield ctx.map(list(range(8)), lambda i: ctx.run(step, 100 * r + i), concurrency=3)))
        settled = yield ctx.all_settled([ctx.run(step, -1 - r), pair(ctx, 50 + r)])
        out.append([[s.ok, s.value] for s in settled])
    return out
"""
    + MAIN
)


@dataclass
class Tally:
    kills: int = 0
    runs: int = 0
    records_checked: int = 0
    snapshots: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


class RunTracker:
    """What the parent knows about one run between kills."""

    def __init__(
        self, sc: Scenario, run_id: str, tally: Tally, reference: dict[str, Any], sequential: bool
    ) -> None:
        self.sc, self.run_id, self.tally, self.sequential = sc, run_id, tally, sequential
        self.reference = {r["step"]: r for r in reference["history"]}
        self.expected = reference["result"]
        self.processes = 0
        self.durable: dict[str, int] = {}  # activity step id -> invocations when its outcome was seen

    def count(self, step: str) -> int:
        return self.sc.counters.count(f"{self.run_id}.{step}")

    def check_durable(self, outcomes: dict[str, tuple[str, Any]]) -> None:
        """Activity outcomes seen earlier: still recorded, the same, and never run again."""
        for step, runs in self.durable.items():
            ref = self.reference[step]
            if outcomes.get(step) != (ref["status"], ref["value"]):
                self.tally.lost.append(f"{self.run_id} step {step}: {outcomes.get(step)!r}")
            if self.count(step) != runs:
                self.tally.duplicated.append(f"{self.run_id} step {step} ran again after its commit")

    def after_kill(self) -> None:
        records = journal_snapshot(self.sc.store, self.run_id)
        self.tally.snapshots += 1
        steps = [r.step for r in records]
        if len(steps) != len(set(steps)):
            self.tally.duplicated.append(f"{self.run_id}: two records for one step in {steps}")
        outcomes = {
            r.step: (r.status, r.value) for r in records if r.kind == "activity" and r.status != "running"
        }
        for step, outcome in outcomes.items():
            ref = self.reference[step]
            assert outcome == (ref["status"], ref["value"]), (self.run_id, step, outcome)
        if self.sequential:
            indexes = sorted(int(step) for step in outcomes)
            assert indexes == list(range(len(indexes))), f"gap in the completed steps: {indexes}"
        self.check_durable(outcomes)
        for step in outcomes:
            self.durable.setdefault(step, self.count(step))

    def finished(self, report: dict[str, Any]) -> None:
        assert report["error"] is None, report["error"]
        assert report["result"] == self.expected
        history = report["history"]
        steps = [r["step"] for r in history]
        if len(steps) != len(set(steps)):
            self.tally.duplicated.append(f"{self.run_id}: duplicate step records")
        assert steps == list(self.reference), steps
        for record in history:
            ref = self.reference[record["step"]]
            same = ("kind", "status", "value")
            assert [record[key] for key in same] == [ref[key] for key in same], (record, ref)
            if record["kind"] == "activity":
                runs = self.count(record["step"])
                assert 1 <= runs <= self.processes, (self.run_id, record["step"], runs, self.processes)
        self.check_durable({r["step"]: (r["status"], r["value"]) for r in history if r["kind"] == "activity"})
        self.tally.records_checked += len(history)
        self.tally.runs += 1


def finish(sc: Scenario, run_id: str) -> tuple[Child, dict[str, Any]]:
    child = sc.spawn(run_id, timeout=60)
    code = child.wait(50)
    if code != 0:
        raise HarnessError(f"child for {run_id} exited {code}\n{child.logs()}")
    return child, child.report()


def random_kill_loop(sc: Scenario, kills: int, seed: int, sequential: bool) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    _, reference = finish(sc, "reference")
    assert reference["error"] is None, reference["error"]
    serial = 0
    run = RunTracker(sc, f"run-{serial}", tally, reference, sequential)
    spawned = 0
    upcoming = sc.spawn("standby", timeout=120, extra_env={"GO": "go.0"})
    while tally.kills < kills:
        child = upcoming
        sc.counters.mark(f"go.{spawned}", run.run_id)
        run.processes += 1
        child.wait_marks(sc.counters, [f"started.{child.pid}"], 60)
        spawned += 1
        upcoming = sc.spawn("standby", timeout=120, extra_env={"GO": f"go.{spawned}"})
        time.sleep(rng.uniform(0.0, MAX_DELAY))  # the random moment of the kill is the test
        killed = child.alive()
        child.kill9()
        if killed:
            tally.kills += 1
        elif child.returncode != 0:
            raise HarnessError(f"child exited {child.returncode} by itself\n{child.logs()}")
        sc.children.remove(child)
        if child.report_path.exists():
            run.finished(child.report())
            serial += 1
            run = RunTracker(sc, f"run-{serial}", tally, reference, sequential)
        else:
            run.after_kill()
    upcoming.kill9()
    sc.children.remove(upcoming)
    if run.processes:
        run.processes += 1
        run.finished(finish(sc, run.run_id)[1])
    return tally


def check_and_report(tally: Tally, label: str, seed: int, elapsed: float, record_property: Any) -> None:
    print(
        f"\nrandom kill loop ({label}): kills={tally.kills} runs={tally.runs} "
        f"records checked={tally.records_checked} snapshots={tally.snapshots} "
        f"lost={len(tally.lost)} duplicated={len(tally.duplicated)} seed={seed} in {elapsed:.1f}s"
    )
    for key in ("kills", "runs", "records_checked", "snapshots"):
        record_property(key, getattr(tally, key))
    record_property("lost", len(tally.lost))
    record_property("duplicated", len(tally.duplicated))
    assert not tally.lost, tally.lost[:10]
    assert not tally.duplicated, tally.duplicated[:10]


def run_loop(make_scenario: Any, record_property: Any, body: str, kills: int, label: str) -> None:
    seed = int(os.environ.get("TREADLE_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    sc: Scenario = make_scenario(body)
    started = time.monotonic()
    tally = random_kill_loop(sc, kills, seed, sequential=label == "sequential")
    check_and_report(tally, label, seed, time.monotonic() - started, record_property)
    assert tally.kills == kills


@pytest.mark.parametrize(
    "kills",
    [
        pytest.param(25, id="25-kills", marks=pytest.mark.timeout(120)),
        pytest.param(
            int(os.environ.get("TREADLE_SLOW_KILLS", "1000")),
            id="slow-kills",
            marks=[pytest.mark.slow, pytest.mark.timeout(15 * 60)],
        ),
    ],
)
def test_random_sigkill_loop_sequential(make_scenario: Any, record_property: Any, kills: int) -> None:
    """200 sequential steps; every step's activity returns ``7 * index + 3``."""
    run_loop(make_scenario, record_property, SEQUENTIAL, kills, "sequential")


@pytest.mark.timeout(120)
def test_random_sigkill_loop_fan_out(make_scenario: Any, record_property: Any) -> None:
    """all of multi-step branches, map with concurrency, all_settled with a failure, in rounds."""
    run_loop(make_scenario, record_property, FAN_OUT, 10, "fan-out")
