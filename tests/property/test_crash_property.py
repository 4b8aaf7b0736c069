"""Random workflow trees, crashed at a random point and recovered (RELIABILITY scenario 22).

Hypothesis draws a tree of ``all`` / ``all_settled`` / ``map`` / ``race``,
generator branches (``seq``), sleeps, signal waits and activities that
succeed, fail or are slow (nesting depth <= 3, width <= 4), described as plain
JSON; ``tree_child.py`` holds one registered workflow that walks it. For each
example:

1. a reference child runs the tree uncrashed on a fresh store;
2. a second child runs it on another fresh store and is SIGKILLed, either at
   a fault point (``TREADLE_CRASH_AT=point:N``, N random; a point never reached
   lets the child finish) or after a random delay; the journal left behind is
   read back; a third child recovers the run.

Then the recovered run's result equals the reference's, and so does every
recorded outcome (step id -> kind, status, value, error type) whose step is
deterministic; what the killed process had recorded is still there and its
activities did not run again (I1, I3); every activity ran at least once and at
most once per process; the store audit passes (when ``testing.audit`` exists).

Determinism of the trees: every signal a tree waits on is sent (with a key, so
a recovering process re-sends it as a no-op) right after the start; a race has
one *winner* subtree of short steps (instant activities, sleeps <= 50 ms,
signals, nested coordinators of those) and *losers* that are far slower: an
activity that takes 5 s (or until cancelled), a 30 s sleep (a durable timer,
so still far in the future when a recovering process starts), a wait for a
signal never sent, or coordinators / generators made of those. Steps inside a
loser subtree are left out of the comparison (a loser may be abandoned,
cancelled or finish, depending on timing).

Replay: ``TREADLE_PROP_SEED=<int>`` fixes hypothesis's seed; shrinking is off
by default (each example costs three child processes) and
``TREADLE_PROP_SHRINK=1`` turns it on to minimise a failure; ``TREADLE_PROP_EXAMPLES``
sizes the ``slow`` variant (default 100).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, seed, settings
from hypothesis import strategies as st

from treadle.runtime import Settled, testing
from treadle.runtime.testing import FAULT_POINTS, Child, HarnessError, Scenario, journal_snapshot

pytestmark = pytest.mark.crash

CHILD = Path(__file__).with_name("tree_child.py")
MAX_DEPTH = 3
MAX_WIDTH = 4
CHILD_TIMEOUT = 30.0

Tree = dict[str, Any]

# -- the strategy --------------------------------------------------------------------------------

SLEEP = st.integers(0, 50).map(lambda ms: {"t": "sleep", "s": ms / 1000})
SIGNAL = st.just({"t": "signal", "send": True})


def act(*modes: str) -> st.SearchStrategy[Tree]:
    return st.sampled_from(modes).map(lambda mode: {"t": "act", "mode": mode})


# Leaves of a winner subtree finish at once (or within 50 ms); anywhere else "slow" (0.1 s) too.
FAST_LEAF = st.one_of(act("ok", "fail"), SLEEP, SIGNAL)
LEAF = st.one_of(act("ok", "fail", "slow"), SLEEP, SIGNAL)
LOSER_LEAF = st.one_of(
    act("loser"), st.just({"t": "sleep", "s": 30.0}), st.just({"t": "signal", "send": False})
)
CONCURRENCY = st.one_of(st.none(), st.integers(1, MAX_WIDTH))


def branch_node(depth: int, fast: bool) -> st.SearchStrategy[Tree]:
    """A branch of a coordinator: a leaf, a coordinator or a generator (``seq``)."""
    leaf = FAST_LEAF if fast else LEAF
    if depth <= 0:
        return leaf
    return st.one_of(leaf, coordinator(depth, fast), seq_node(depth, fast))


def step_node(depth: int, fast: bool) -> st.SearchStrategy[Tree]:
    """A step of a generator: a leaf or a coordinator (a generator inside one would share its ids)."""
    leaf = FAST_LEAF if fast else LEAF
    if depth <= 0:
        return leaf
    return st.one_of(leaf, coordinator(depth, fast))


def seq_node(depth: int, fast: bool) -> st.SearchStrategy[Tree]:
    return st.builds(
        lambda steps, catch: {"t": "seq", "steps": steps, "catch": catch},
        st.lists(st.deferred(lambda: step_node(depth - 1, fast)), min_size=1, max_size=MAX_WIDTH),
        st.booleans(),
    )


def loser_node(depth: int) -> st.SearchStrategy[Tree]:
    """Something that cannot settle before a winner: every way to finish goes through a loser leaf."""
    if depth <= 0:
        return LOSER_LEAF
    inner = st.deferred(lambda: loser_node(depth - 1))
    return st.one_of(
        LOSER_LEAF,
        st.builds(
            lambda b: {"t": "all", "b": b, "c": None}, st.lists(inner, min_size=1, max_size=MAX_WIDTH - 1)
        ),
        st.builds(  # "win": None: no branch of it is a winner (all are slow)
            lambda b: {"t": "race", "b": b, "cl": False, "win": None},
            st.lists(inner, min_size=1, max_size=MAX_WIDTH - 1),
        ),
        st.builds(
            lambda first, then: {"t": "seq", "steps": [first, then], "catch": True},
            LOSER_LEAF,
            act("ok"),
        ),
    )


@st.composite
def race_node(draw: st.DrawFn, depth: int) -> Tree:
    winner = draw(branch_node(depth - 1, fast=True))
    losers = draw(st.lists(loser_node(depth - 1), max_size=MAX_WIDTH - 1))
    position = draw(st.integers(0, len(losers)))
    branches = [*losers[:position], winner, *losers[position:]]
    return {"t": "race", "b": branches, "cl": draw(st.booleans()), "win": position}


def coordinator(depth: int, fast: bool) -> st.SearchStrategy[Tree]:
    children = st.lists(st.deferred(lambda: branch_node(depth - 1, fast)), max_size=MAX_WIDTH)
    kinds = ["all", "all_settled", "map"]
    return st.one_of(
        st.builds(lambda t, b, c: {"t": t, "b": b, "c": c}, st.sampled_from(kinds), children, CONCURRENCY),
        race_node(depth),
    )


ROOT = st.builds(
    lambda steps, catch: {"t": "seq", "steps": steps, "catch": catch},
    st.lists(step_node(MAX_DEPTH, fast=False), min_size=1, max_size=MAX_WIDTH),
    st.booleans(),
)

# A kill after a fraction of the reference run's time, or at the N-th pass over a fault point, N
# a fraction of the passes the tree makes likely (see Shape.passes); a point never reached lets
# the first child finish, and the second one then just reads the result.
CRASH = st.one_of(
    st.tuples(st.just("delay"), st.floats(0.0, 1.0)),
    st.tuples(st.just("point"), st.sampled_from(FAULT_POINTS), st.floats(0.0, 1.0)),
)


# -- what a tree means ---------------------------------------------------------------------------


class Shape:
    """A finalized tree: node ids (= step ids), the signals to send, the loser subtrees."""

    def __init__(self, root: Tree) -> None:
        self.root = root = json.loads(json.dumps(root))  # drawn trees share leaf dicts (st.just)
        self.signals: list[str] = []
        self.losers: list[str] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        for k, step in enumerate(root["steps"]):
            self._walk(step, str(k), loser=False)

    def _walk(self, node: Tree, step: str, loser: bool) -> None:
        node["id"] = step
        kind = node["t"]
        self.kinds[kind] += 1
        if kind == "signal":
            node["name"] = f"sig-{step}"
            if node.pop("send"):
                assert not loser, node
                self.signals.append(node["name"])
        elif kind == "seq":
            for k, child in enumerate(node["steps"]):
                self._walk(child, f"{step}.{k}", loser)
        elif kind in ("all", "all_settled", "map", "race"):
            for k, child in enumerate(node["b"]):
                lost = kind == "race" and node["win"] != k
                if lost and not loser:
                    self.losers.append(f"{step}.{k}")
                self._walk(child, f"{step}.{k}", loser or lost)

    def passes(self, point: str) -> int:
        """About how often an uncrashed run passes ``point`` (at least 1)."""
        kinds = self.kinds
        likely = {
            "after_branch_spawn": kinds["act"],
            "after_race_decision": kinds["race"],
            "after_signal_persist": len(self.signals),
            "in_sleep": kinds["sleep"],
        }.get(point, sum(kinds.values()))
        return max(1, likely)

    def deterministic(self, step: str) -> bool:
        return not any(step == lost or step.startswith(lost + ".") for lost in self.losers)


def plain(value: Any) -> Any:
    """A comparable view of a recorded value: ``Settled`` as ``[ok, value, error type]``."""
    if isinstance(value, Settled):
        return [value.ok, plain(value.value), None if value.error is None else value.error.type]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def outcomes(records: list[Any], shape: Shape) -> dict[str, tuple[Any, ...]]:
    """step id -> (kind, status, value, error type) for every deterministic step."""
    return {
        r.step: (r.kind, r.status, plain(r.value), None if r.error is None else r.error.type)
        for r in records
        if shape.deterministic(r.step)
    }


def audit_store(store: Path) -> None:
    """``treadle.runtime.testing.audit`` of a store no process has open, when that helper exists."""
    audit: Callable[..., Any] | None = getattr(testing, "audit", None)
    if audit is None:
        return
    report = audit(str(store))
    assert report.ok, str(report)


# -- running one example ------------------------------------------------------------------------


def spawn(sc: Scenario, spec: Path, crash_at: str | None = None) -> Child:
    return sc.spawn("run", crash_at=crash_at, extra_env={"PROP_TREE": str(spec)}, timeout=CHILD_TIMEOUT + 10)


def finish(child: Child) -> dict[str, Any]:
    if (code := child.wait(CHILD_TIMEOUT)) != 0:
        raise HarnessError(f"child exited {code}\n{child.logs()}")
    return child.report()


def check_example(workdir: Path, tree: Tree, crash: tuple[Any, ...]) -> None:
    shape = Shape(tree)
    spec = workdir / "tree.json"
    spec.write_text(json.dumps({"tree": shape.root, "signals": shape.signals}))
    note(f"tree: {json.dumps(shape.root)}")
    note(f"crash: {crash}; losers: {shape.losers}")

    with Scenario(workdir / "reference", CHILD) as ref_sc:
        ref_child = spawn(ref_sc, spec)
        reference = finish(ref_child)
        begun = ref_sc.counters.read(f"started.{ref_child.pid}")[1]
        ref_span = ref_child.report_path.stat().st_mtime - begun
        ref_outcomes = outcomes(journal_snapshot(ref_sc.store, "prop"), shape)
        audit_store(ref_sc.store)
    assert reference["status"] in ("completed", "failed"), reference

    with Scenario(workdir / "crashed", CHILD) as sc:
        if crash[0] == "point":
            count = 1 + int(crash[2] * shape.passes(crash[1]))
            note(f"crash at {crash[1]}:{count}")
            first = spawn(sc, spec, crash_at=f"{crash[1]}:{count}")
        else:
            first = spawn(sc, spec)
            first.wait_marks(sc.counters, [f"started.{first.pid}"], CHILD_TIMEOUT)
            time.sleep(crash[1] * ref_span)  # the random moment of the kill is the point here
            first.kill9()
        code = first.wait(CHILD_TIMEOUT)
        if code not in (0, -signal.SIGKILL):
            raise HarnessError(f"the crashed child exited {code}\n{first.logs()}")
        killed = code == -signal.SIGKILL
        event(f"killed={killed} ({crash[0]})")
        left = journal_snapshot(sc.store, "prop")
        if left:
            audit_store(sc.store)  # I2: what a kill leaves is a store at a commit boundary
        settled_before = {
            r.step: r for r in left if r.kind == "activity" and r.status in ("completed", "failed")
        }

        second = spawn(sc, spec)
        report = finish(second)
        final = journal_snapshot(sc.store, "prop")

        # Result (or failure) and the journal of every deterministic step, as in the uncrashed run.
        assert (report["result"], report["error"]) == (reference["result"], reference["error"])
        assert report["status"] == reference["status"]
        got = outcomes(final, shape)
        assert got == ref_outcomes
        steps = [r.step for r in final]
        assert len(steps) == len(set(steps)), f"two records for one step: {steps}"

        # I1/I3: what the killed process recorded is still there, unchanged, and never ran again.
        final_by_step = {r.step: r for r in final}
        for step, before in settled_before.items():
            after = final_by_step.get(step)
            assert after is not None, f"step {step} was recorded, then lost"
            assert (after.status, plain(after.value)) == (before.status, plain(before.value)), step
            reruns = [line for line in sc.counters.lines(f"act.{step}") if line[0] == second.pid]
            assert not reruns, f"activity {step} ran again after its outcome was recorded"
        processes = 2 if killed else 1
        for step, (kind, *_rest) in got.items():
            if kind == "activity":
                runs = sc.counters.count(f"act.{step}")
                assert 1 <= runs <= processes, (step, runs, processes)
        audit_store(sc.store)


# -- the tests ---------------------------------------------------------------------------------


def _settings(examples: int) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("TREADLE_PROP_SHRINK"):
        phases.append(Phase.shrink)
    return settings(
        max_examples=examples,
        deadline=None,
        phases=phases,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _seeded(test: Callable[..., Any]) -> Callable[..., Any]:
    fixed = os.environ.get("TREADLE_PROP_SEED")
    return seed(int(fixed))(test) if fixed else test


@_seeded
@_settings(10)
@given(tree=ROOT, crash=CRASH)
def test_random_tree_survives_a_crash(
    tmp_path_factory: pytest.TempPathFactory, tree: Tree, crash: Any
) -> None:
    check_example(tmp_path_factory.mktemp("tree"), tree, crash)


@pytest.mark.slow
@pytest.mark.timeout(30 * 60)
@_seeded
@_settings(int(os.environ.get("TREADLE_PROP_EXAMPLES", "100")))
@given(tree=ROOT, crash=CRASH)
def test_random_tree_survives_a_crash_many(
    tmp_path_factory: pytest.TempPathFactory, tree: Tree, crash: Any
) -> None:
    check_example(tmp_path_factory.mktemp("tree"), tree, crash)
