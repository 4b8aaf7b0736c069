"""Parallel semantics, part 2: run_all (keyed by name) and topology (a changed branch layout).

Each test quotes the rule of DESIGN.md "Parallel semantics" (or "Details that
tests pin") it pins. Attempts are in-process restarts (``box.restart()``)
with the workflow code switched through ``CONFIG`` in between.
"""

from __future__ import annotations

import pytest

from tests.integration.test_parallel_support import (  # noqa: F401 - board is an autouse fixture
    GO,
    RESULT,
    B,
    Broken,
    act,
    board,
    boom,
    describe,
    held,
    other,
    qualname,
    steps,
    wait_status,
    wait_step,
)
from tests.support import wait_until
from treadle.runtime import (
    ActivityError,
    BranchTopologyChangedError,
    NonDeterminismError,
    RunParkedError,
    RunStatus,
    workflow,
)

P = "par.named."
CONFIG: dict = {}


@pytest.fixture(autouse=True)
def _config():
    CONFIG.clear()
    yield


# --------------------------------------------------------------------------
# run_all
# --------------------------------------------------------------------------


@workflow(name=P + "named")
def wf_named(ctx):
    values = yield ctx.run_all({"payment": ctx.run(act, "pay", 1), "email": ctx.run(act, "mail", 2)})
    try:
        yield ctx.run_all({"ok": ctx.run(act, "fine"), "bad": ctx.run(boom, "nope")})
    except ActivityError as e:
        return [isinstance(values, dict), values, describe(e)]
    return "no error"


def test_run_all_returns_a_dict_keyed_by_name_and_names_the_failed_branch(rt):
    """run_all: "like all, keyed by name"; ".branch (index or name)"; "run_all branches use their
    names: S.payment"."""
    handle = rt.start(wf_named, run_id="runall-named")
    is_dict, values, info = handle.result(timeout=RESULT)
    assert is_dict and values == {"payment": 1, "email": 2}
    assert info["branch"] == "bad"
    assert info["failures"] == [["bad", "ActivityError", qualname(Broken), "nope failed"]]
    history = steps(handle)
    assert (history["0.payment"].value, history["0.email"].value) == (1, 2)
    assert history["0"].kind == "run_all"
    assert history["1.bad"].status == "failed"


def _named_ops(ctx, names):
    makers = {
        "a": lambda: ctx.run(act, "ra", "A"),
        "b": lambda: ctx.run(held, "rb", "B"),
        "c": lambda: ctx.run(act, "rc", "C"),
        "x": lambda: ctx.run(act, "rx", "X"),
    }
    return {name: makers[name]() for name in names}


@workflow(name=P + "reorder")
def wf_reorder(ctx):
    values = yield ctx.run_all(_named_ops(ctx, CONFIG["names"]))
    yield ctx.wait_for_signal(GO)
    return values


def test_run_all_reordering_the_dict_between_attempts_is_safe(box, rt):
    """run_all: "keyed by name, so reordering the dict between attempts is safe" (restarted once in
    flight and once after it settled: same result, finished branches never re-run)."""
    CONFIG["names"] = ["a", "b", "c"]
    handle = rt.start(wf_reorder, run_id="runall-reorder")
    wait_step(handle, "0.a", "completed")
    wait_step(handle, "0.c", "completed")
    assert steps(handle)["0.b"].status == "running"

    CONFIG["names"] = ["c", "b", "a"]
    rt2 = box.restart()
    wait_until(lambda: B.calls["rb"] == 2, message="the unfinished branch b dispatched again")
    B.open("rb")
    handle = rt2.get("runall-reorder")
    wait_step(handle, "1")

    CONFIG["names"] = ["b", "a", "c"]
    rt3 = box.restart()
    handle = rt3.get("runall-reorder")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == {"a": "A", "b": "B", "c": "C"}
    assert (B.calls["ra"], B.calls["rb"], B.calls["rc"]) == (1, 2, 1)
    assert B.calls["rx"] == 0


def test_run_all_with_different_names_parks_before_dispatch_and_resumes_after_revert(box, rt):
    """run_all: "a different set of names than the recorded one raises BranchTopologyChangedError
    before anything is dispatched"; uncaught it parks the run (PARKED, result() raises
    RunParkedError); "deploying the fixed code and restarting resumes it"."""
    CONFIG["names"] = ["a", "b"]
    handle = rt.start(wf_reorder, run_id="runall-names")
    wait_step(handle, "0.a", "completed")
    assert steps(handle)["0.b"].status == "running"

    CONFIG["names"] = ["a", "x"]  # b renamed to x while b is still in flight
    rt2 = box.restart()
    handle = rt2.get("runall-names")
    wait_status(handle, RunStatus.PARKED)
    with pytest.raises(RunParkedError):
        handle.result(timeout=RESULT)
    assert B.calls["rx"] == 0  # nothing of the new layout ran
    assert B.calls["rb"] == 1  # and the recorded branch b was not dispatched again either
    assert B.calls["ra"] == 1

    CONFIG["names"] = ["a", "b"]
    rt3 = box.restart()
    handle = rt3.get("runall-names")
    wait_until(lambda: B.calls["rb"] == 2, message="the resumed run dispatched b again")
    B.open("rb")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == {"a": "A", "b": "B"}
    assert B.calls["ra"] == 1 and B.calls["rx"] == 0


def test_a_parked_run_resumed_after_revert_is_no_longer_parked(box, rt):
    """Registration: "PARKED runs are replayed at every start-up and resume if the code now matches";
    a resumed run is RUNNING (not PARKED) and result() waits for it."""
    CONFIG["names"] = ["a", "b"]
    handle = rt.start(wf_reorder, run_id="runall-unpark")
    wait_step(handle, "0.a", "completed")
    CONFIG["names"] = ["a", "x"]
    handle = box.restart().get("runall-unpark")
    wait_status(handle, RunStatus.PARKED)
    CONFIG["names"] = ["a", "b"]
    handle = box.restart().get("runall-unpark")
    wait_until(lambda: B.calls["rb"] == 2, message="the resumed run dispatched b again")
    assert handle.status() == RunStatus.RUNNING  # b is in flight
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)  # still running: result() waits, it does not raise RunParkedError
    B.open("rb")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == {"a": "A", "b": "B"}


@workflow(name=P + "catch_names")
def wf_catch_names(ctx):
    try:
        values = yield ctx.run_all(_named_ops(ctx, CONFIG["names"]))
    except BranchTopologyChangedError as e:
        return {"cls": type(e).__name__, "step": e.step, "nondet": isinstance(e, NonDeterminismError)}
    yield ctx.wait_for_signal(GO)
    return values


def test_run_all_topology_error_can_be_caught_by_the_workflow(box, rt):
    """run_all / topology: BranchTopologyChangedError "can be caught by the workflow"; nothing of the
    new layout is dispatched."""
    CONFIG["names"] = ["a", "c"]
    handle = rt.start(wf_catch_names, run_id="runall-catch")
    wait_step(handle, "1")
    CONFIG["names"] = ["a", "c", "x"]
    rt2 = box.restart()
    handle = rt2.get("runall-catch")
    handle.signal(GO)  # a suspended run is replayed when something wakes it
    assert handle.result(timeout=RESULT) == {"cls": "BranchTopologyChangedError", "step": "0", "nondet": True}
    assert handle.status() == RunStatus.COMPLETED
    assert (B.calls["ra"], B.calls["rc"], B.calls["rx"]) == (1, 1, 0)


BRANCH_NAMES = ["ok_Name-1", "x" * 64, "x" * 65, "", "has space", "dot.ted", "caf\u00e9", 7]


@workflow(name=P + "branch_names")
def wf_branch_names(ctx):
    seen = []
    for name in BRANCH_NAMES:
        for kind in ("run_all", "race"):
            try:
                if kind == "run_all":
                    ctx.run_all({name: ctx.run(act, "bn-never")})
                else:
                    ctx.race({name: ctx.run(act, "bn-never")})
            except ValueError:
                seen.append("ValueError")
            else:
                seen.append(None)
    yield ctx.run(act, "bn-after")
    return seen


def test_branch_names_must_match_the_pattern(rt):
    """Details: "Branch names (run_all, dict race) match [A-Za-z0-9_-]{1,64}, else ValueError"."""
    seen = rt.start(wf_branch_names, run_id="branch-names").result(timeout=RESULT)
    assert seen == [None, None, None, None] + ["ValueError"] * (2 * len(BRANCH_NAMES) - 4)
    assert B.calls["bn-never"] == 0


# --------------------------------------------------------------------------
# topology
# --------------------------------------------------------------------------

TOPOLOGY_VARIANTS = {
    "count": "a changed branch count",
    "name": "a branch whose activity name differs",
    "kind": "a different coordinator kind at a step",
}


@workflow(name=P + "topology")
def wf_topology(ctx):
    variant = CONFIG["variant"]
    try:
        if variant == "base":
            value = yield ctx.all([ctx.run(act, "t0"), ctx.run(act, "t1")])
        elif variant == "count":
            value = yield ctx.all([ctx.run(act, "t0"), ctx.run(act, "t1"), ctx.run(act, "t2")])
        elif variant == "name":
            value = yield ctx.all([ctx.run(act, "t0"), ctx.run(other, "t1")])
        else:
            value = yield ctx.race([ctx.run(act, "t0"), ctx.run(act, "t1")])
    except NonDeterminismError as e:
        return {
            "cls": type(e).__name__,
            "topology": isinstance(e, BranchTopologyChangedError),
            "step": e.step,
            "message": str(e),
        }
    yield ctx.wait_for_signal(GO)
    return value


@pytest.mark.parametrize("variant", list(TOPOLOGY_VARIANTS), ids=list(TOPOLOGY_VARIANTS))
def test_topology_change_raises_branch_topology_changed_error_naming_the_step(box, rt, variant):
    """topology: "A changed branch count, a different coordinator kind at a step, or a recorded branch
    whose operation (kind and activity/workflow name) differs from the new one raises
    BranchTopologyChangedError (a subclass of NonDeterminismError) naming the step"; "A wrong value
    is never returned"."""
    CONFIG["variant"] = "base"
    handle = rt.start(wf_topology, run_id=f"topo-{variant}")
    wait_step(handle, "1")
    CONFIG["variant"] = variant
    rt2 = box.restart()
    handle = rt2.get(f"topo-{variant}")
    handle.signal(GO)  # a suspended run is replayed when something wakes it
    info = handle.result(timeout=RESULT)
    assert isinstance(info, dict), f"{TOPOLOGY_VARIANTS[variant]} returned a value: {info!r}"
    assert info["cls"] == "BranchTopologyChangedError" and info["topology"] is True
    assert info["step"] == "0"
    assert "step 0" in info["message"]
    assert issubclass(BranchTopologyChangedError, NonDeterminismError)
    assert (B.calls["t0"], B.calls["t1"], B.calls["t2"]) == (1, 1, 0)


def _inner(ctx):
    values = yield ctx.all([ctx.run(act, f"n{i}") for i in range(CONFIG["inner"])])  # 0.1.0
    yield ctx.run(held, "inner-hold")  # 0.1.1: keeps the branch unsettled across the restart
    return values


@workflow(name=P + "nested_topology")
def wf_nested_topology(ctx):
    try:
        return (yield ctx.all([ctx.run(act, "outer"), _inner(ctx)]))
    except NonDeterminismError as e:
        return {"cls": type(e).__name__, "step": e.step, "message": str(e)}


def test_topology_change_inside_a_branch_names_the_nested_step(box, rt):
    """topology / step ids: the error names the step of the changed coordinator, here the all at
    0.1.0 inside a generator branch (replay is keyed on step ids)."""
    CONFIG["inner"] = 2
    handle = rt.start(wf_nested_topology, run_id="topo-nested")
    wait_step(handle, "0.1.0", "completed")
    wait_step(handle, "0.1.1", "running")
    CONFIG["inner"] = 3
    rt2 = box.restart()
    info = rt2.get("topo-nested").result(timeout=RESULT)
    assert info["cls"] == "BranchTopologyChangedError"
    assert info["step"] == "0.1.0" and "0.1.0" in info["message"]
    assert B.calls["n2"] == 0 and (B.calls["n0"], B.calls["n1"]) == (1, 1)
    assert B.calls["inner-hold"] == 1  # the step after the changed one was not dispatched again
