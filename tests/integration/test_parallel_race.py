"""Parallel semantics, part 3: race, any, quorum.

Each test quotes the rule of DESIGN.md "Parallel semantics" (or "Details that
tests pin") it pins. Which branch settles first is decided by gates, never
by timing.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_parallel_support import (  # noqa: F401 - board is an autouse fixture
    GO,
    RESULT,
    B,
    Broken,
    act,
    board,
    boom,
    coop,
    describe,
    held,
    qualname,
    steps,
    wait_started,
    wait_status,
    wait_step,
)
from tests.support import wait_until
from treadle.runtime import ActivityError, AllBranchesFailedError, RunStatus, workflow

P = "par.race."
CONFIG: dict = {}


@pytest.fixture(autouse=True)
def _config():
    CONFIG.clear()
    yield


# --------------------------------------------------------------------------
# race
# --------------------------------------------------------------------------


@workflow(name=P + "winner")
def wf_winner(ctx):
    return (yield ctx.race([ctx.run(held, "slow"), ctx.run(held, "fast", "F"), ctx.run(held, "slower")]))


def test_race_returns_the_first_branch_to_settle(rt):
    """race: "the first branch to settle (fulfil or fail) decides the result"."""
    handle = rt.start(wf_winner, run_id="race-winner")
    wait_started("slow", "fast", "slower")
    B.open("fast")
    assert handle.result(timeout=RESULT) == "F"
    history = steps(handle)
    assert (history["0"].kind, history["0"].status, history["0"].value) == ("race", "completed", "F")
    assert (history["0.1"].status, history["0.1"].value) == ("completed", "F")
    assert not B.has("slow.done") and not B.has("slower.done")


@workflow(name=P + "first_fails")
def wf_first_fails(ctx):
    try:
        yield ctx.race([ctx.run(held, "ok-later"), ctx.run(boom, "fails-first")])
    except ActivityError as e:
        return describe(e)
    return "no error"


def test_race_whose_first_branch_fails_raises_that_error(rt):
    """race: "the first branch to settle (fulfil or fail) decides": a failure that comes first is raised
    (an ActivityError with the original's type, naming the branch)."""
    info = rt.start(wf_first_fails, run_id="race-fails").result(timeout=RESULT)
    assert info["cls"] == "ActivityError"
    assert info["type"] == qualname(Broken) and info["message"] == "fails-first failed"
    assert info["branch"] == 1


@workflow(name=P + "replay")
def wf_replay(ctx):
    won = yield ctx.race([ctx.run(held, "rl"), ctx.run(held, "rw", "W")])
    try:
        yield ctx.race([ctx.run(held, "rl2"), ctx.run(held, "rb", None, True)])
        lost = None
    except ActivityError as e:
        lost = describe(e)
    B.append("seen", [won, lost])  # test-only: what each attempt of the workflow saw
    yield ctx.wait_for_signal(GO)
    return [won, lost]


def test_decided_race_replays_its_winner_or_error_without_rerunning_anything(box, rt):
    """race: "that decision is checkpointed: on replay the same winner (or error) is returned without
    re-running anything" (restart)."""
    handle = rt.start(wf_replay, run_id="race-replay")
    wait_started("rl", "rw")
    B.open("rw")
    wait_started("rl2", "rb")
    B.open("rb")
    wait_step(handle, "2")
    rt2 = box.restart()
    handle = rt2.get("race-replay")
    handle.signal(GO)
    won, lost = handle.result(timeout=RESULT)
    assert won == "W"
    assert lost["branch"] == 1 and lost["type"] == qualname(Broken) and lost["message"] == "rb failed"
    seen = B.list("seen")
    assert len(seen) == 2 and seen[0] == seen[1]
    assert (B.calls["rl"], B.calls["rw"], B.calls["rl2"], B.calls["rb"]) == (1, 1, 1, 1)


@workflow(name=P + "losers")
def wf_losers(ctx):
    won = yield ctx.race([ctx.run(held, "loser", "late"), ctx.run(held, "win", "W")])
    yield ctx.wait_for_signal(GO)
    return won


def test_race_losers_run_to_completion_and_their_late_results_change_nothing(rt):
    """race: "a losing activity is *not* cancelled: it runs to completion in its own thread and its
    result is discarded"; Details: "A loser's late result is logged, not recorded; its step shows
    abandoned"; "While only losers run and the workflow waits on a timer or signal, the run's status
    is SUSPENDED"."""
    handle = rt.start(wf_losers, run_id="race-losers")
    wait_started("loser", "win")
    B.open("win")
    wait_step(handle, "1")
    wait_step(handle, "0.0", "abandoned")
    wait_status(handle, RunStatus.SUSPENDED)
    assert B.has("loser.started") and not B.has("loser.done")
    B.open("loser")
    wait_until(lambda: B.has("loser.done"), message="the loser ran to completion")
    assert B.get("loser.cancelled") is False
    time.sleep(0.1)  # grace: a late result that were (wrongly) recorded would land now
    history = steps(handle)
    assert (history["0.0"].status, history["0.0"].value, history["0.0"].error) == ("abandoned", None, None)
    assert (history["0"].value, history["0.1"].status) == ("W", "completed")
    assert handle.status() == RunStatus.SUSPENDED
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == "W"
    assert steps(handle)["0.0"].status == "abandoned"
    assert B.calls["loser"] == 1


@workflow(name=P + "hog")
def wf_hog(ctx):
    return (yield ctx.run(held, "hog"))


@workflow(name=P + "queued_loser")
def wf_queued_loser(ctx):
    yield ctx.wait_for_signal(P + "start")
    won = yield ctx.race([ctx.run(held, "queued", "late"), ctx.wait_for_signal(P + "now")])
    yield ctx.wait_for_signal(GO)
    return won


def test_a_losing_activity_not_yet_begun_when_the_race_is_decided_still_runs(box):
    """race: "a losing activity is *not* cancelled: it runs to completion in its own thread and its
    result is discarded", even when its branch actor had not begun it when the race was decided
    (made deterministic with max_branch_actors=1 and the only branch actor busy)."""
    rt = box.open(max_branch_actors=1)
    hog = rt.start(wf_hog, run_id="race-hog")
    wait_started("hog")  # the only branch actor is busy: the loser's attempt will queue
    handle = rt.start(wf_queued_loser, run_id="race-queued-loser")
    handle.signal(P + "now", "signal-first")  # buffered: ready at dispatch, it decides the race
    handle.signal(P + "start")
    wait_step(handle, "2")
    assert steps(handle)["1"].value == "signal-first"
    assert not B.has("queued.started")
    B.open("hog")
    B.open("queued")
    assert hog.result(timeout=RESULT) == "hog"
    wait_until(lambda: B.has("queued.done"), message="the queued loser ran to completion")
    time.sleep(0.1)  # grace: a late result that were (wrongly) recorded would land now
    assert (steps(handle)["1.0"].status, steps(handle)["1.0"].value) == ("abandoned", None)
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == "signal-first"
    assert B.calls["queued"] == 1


@workflow(name=P + "cancel_losers")
def wf_cancel_losers(ctx):
    won = yield ctx.race(
        [ctx.run(coop, "polite"), ctx.run(held, "deaf"), ctx.run(held, "first")], cancel_losers=True
    )
    yield ctx.wait_for_signal(GO)
    return won


def test_cancel_losers_sets_the_losers_cancelled_cooperatively(rt):
    """race: "With cancel_losers=True the losers' ActivityContext.cancelled is set (cooperative: an
    activity that ignores it still runs to the end)"."""
    handle = rt.start(wf_cancel_losers, run_id="race-cancel-losers")
    wait_started("polite", "deaf", "first")
    B.open("first")
    wait_until(lambda: B.has("polite.done"), message="the cooperative loser saw cancelled")
    assert B.get("polite.cancelled") is True
    assert B.has("deaf.started") and not B.has("deaf.done")  # ignores it: still running
    B.open("deaf")
    wait_until(lambda: B.has("deaf.done"), message="the deaf loser ran to its end")
    assert B.get("deaf.cancelled") is True
    wait_step(handle, "0.0", "abandoned")
    wait_step(handle, "0.1", "abandoned")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == "first"
    assert B.get("first.cancelled") is False  # the winner is not a loser


@workflow(name=P + "no_branches")
def wf_no_branches(ctx):
    seen = []
    for name in ("race", "race_dict", "any"):
        try:
            if name == "race":
                ctx.race([])
            elif name == "race_dict":
                ctx.race({})
            else:
                ctx.any([])
        except ValueError:
            seen.append([name, "ValueError"])
        else:
            seen.append([name, None])
    yield ctx.run(act, "after")
    return seen


def test_race_and_any_of_no_branches_raise_value_error(rt):
    """race: "race([]) raises ValueError"; Details: "race([]), any([]) raise ValueError"."""
    seen = rt.start(wf_no_branches, run_id="race-empty").result(timeout=RESULT)
    assert seen == [["race", "ValueError"], ["race_dict", "ValueError"], ["any", "ValueError"]]


@workflow(name=P + "dict")
def wf_dict(ctx):
    makers = {"slow": lambda: ctx.run(held, "ds"), "fast": lambda: ctx.run(held, "df", "F")}
    won = yield ctx.race({key: makers[key]() for key in CONFIG["keys"]})
    yield ctx.wait_for_signal(GO)
    return [isinstance(won, tuple), list(won)]


def test_dict_race_returns_key_and_value_and_is_matched_by_key_on_replay(box, rt):
    """race: "with a dict of branches, (key, value)"; Details: "dict races are matched by key on
    replay" (restart with the dict reordered); branch steps are S.key."""
    CONFIG["keys"] = ["slow", "fast"]
    handle = rt.start(wf_dict, run_id="race-dict")
    wait_started("ds", "df")
    B.open("df")
    wait_step(handle, "1")
    history = steps(handle)
    assert (history["0.fast"].status, history["0.fast"].value) == ("completed", "F")
    CONFIG["keys"] = ["fast", "slow"]
    rt2 = box.restart()
    handle = rt2.get("race-dict")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == [True, ["fast", "F"]]
    assert (B.calls["ds"], B.calls["df"]) == (1, 1)
    wait_step(handle, "0.slow", "abandoned")


@workflow(name=P + "sleep_loses")
def wf_sleep_loses(ctx):
    return (yield ctx.race([ctx.run(act, "quick"), ctx.sleep("1h")]))


def test_losing_sleep_clears_its_timer(rt):
    """race losers: "a losing sleep clears its timer": the run completes at once although the sleep was
    1h, and no timer of the run remains in the store."""
    handle = rt.start(wf_sleep_loses, run_id="race-sleep")
    assert handle.result(timeout=RESULT) == "quick"
    assert handle.status() == RunStatus.COMPLETED
    wait_step(handle, "0.1", "abandoned")
    assert steps(handle)["0.1"].kind == "sleep"
    timers = [rec for _, rec in rt.store.scan("timers") if rec.get("run") == "race-sleep"]
    assert timers == []


# --------------------------------------------------------------------------
# any
# --------------------------------------------------------------------------


@workflow(name=P + "any")
def wf_any(ctx):
    return (yield ctx.any([ctx.run(boom, "a0"), ctx.run(held, "a1", "V1"), ctx.run(held, "a2", "V2")]))


def test_any_first_success_wins_and_failures_before_it_do_not_matter(rt):
    """any: "the first branch to *succeed*" (a failure that came first does not decide it)."""
    handle = rt.start(wf_any, run_id="any-first")
    wait_step(handle, "0.0", "failed")
    assert steps(handle)["0"].status == "running"
    B.open("a1")
    assert handle.result(timeout=RESULT) == "V1"
    history = steps(handle)
    assert (history["0"].kind, history["0"].status, history["0"].value) == ("any", "completed", "V1")
    wait_step(handle, "0.2", "abandoned")


@workflow(name=P + "any_fails")
def wf_any_fails(ctx):
    try:
        yield ctx.any([ctx.run(boom, "f0"), ctx.run(boom, "f1"), ctx.run(boom, "f2")])
    except AllBranchesFailedError as e:
        return describe(e)
    return "no error"


def test_any_with_every_branch_failing_raises_all_branches_failed_error(rt):
    """any: "raises AllBranchesFailedError (with every failure) when none succeeds"; Details: .failures
    is a dict from branch key to that branch's ActivityError, in branch order."""
    info = rt.start(wf_any_fails, run_id="any-fails").result(timeout=RESULT)
    assert info["cls"] == "AllBranchesFailedError"
    broken = qualname(Broken)
    assert info["failures"] == [[i, "ActivityError", broken, f"f{i} failed"] for i in range(3)]


# --------------------------------------------------------------------------
# quorum
# --------------------------------------------------------------------------


@workflow(name=P + "quorum")
def wf_quorum(ctx):
    tags = ["q0", "q1", "bad", "q3"]
    branches = [ctx.run(boom, tag) if tag == "bad" else ctx.run(held, tag) for tag in tags]
    pairs = yield ctx.quorum(branches, 2)
    seen = [[isinstance(pair, tuple), list(pair)] for pair in pairs]
    B.append("seen", seen)  # test-only: what each attempt of the workflow saw
    yield ctx.wait_for_signal(GO)
    return seen


def test_quorum_returns_first_n_successes_as_index_value_in_finishing_order(box, rt):
    """quorum: "list of (index, value) of the first n to succeed, in finishing order"; "the rest are
    losers as in race" (a failure does not count); replay returns the same pairs in the same order."""
    handle = rt.start(wf_quorum, run_id="quorum-order")
    wait_started("q0", "q1", "q3")
    wait_step(handle, "0.2", "failed")
    B.open("q3")
    wait_step(handle, "0.3", "completed")
    assert steps(handle)["0"].status == "running"
    B.open("q1")
    wait_step(handle, "1")
    assert steps(handle)["0"].kind == "quorum"
    wait_step(handle, "0.0", "abandoned")
    assert not B.has("q0.done")  # a loser left running, not waited for
    handle = box.restart().get("quorum-order")
    handle.signal(GO)
    expected = [[True, [3, "q3"]], [True, [1, "q1"]]]
    assert handle.result(timeout=RESULT) == expected
    assert B.list("seen") == [expected, expected]
    assert (B.calls["q0"], B.calls["q1"], B.calls["bad"], B.calls["q3"]) == (1, 1, 1, 1)


@workflow(name=P + "quorum_restart")
def wf_quorum_restart(ctx):
    pairs = yield ctx.quorum([ctx.run(held, "qr0"), ctx.run(held, "qr1"), ctx.run(held, "qr2")], 2)
    return [list(pair) for pair in pairs]


def test_quorum_keeps_finishing_order_across_a_restart_in_flight(box, rt):
    """quorum: "in finishing order", with a restart between the first and the second success: the
    success checkpointed before the restart stays first ("every branch is durable on its own")."""
    handle = rt.start(wf_quorum_restart, run_id="quorum-restart")
    wait_started("qr0", "qr1", "qr2")
    B.open("qr2")
    wait_step(handle, "0.2", "completed")
    handle = box.restart().get("quorum-restart")
    wait_until(
        lambda: B.calls["qr0"] == 2 and B.calls["qr1"] == 2, message="unfinished branches dispatched again"
    )
    B.open("qr0")
    assert handle.result(timeout=RESULT) == [[2, "qr2"], [0, "qr0"]]
    assert B.calls["qr2"] == 1


@workflow(name=P + "quorum_short")
def wf_quorum_short(ctx):
    try:
        yield ctx.quorum([ctx.run(boom, "e0"), ctx.run(boom, "e1"), ctx.run(act, "e2")], 2)
    except AllBranchesFailedError as e:
        return describe(e)
    return "no error"


def test_quorum_without_enough_successes_raises_all_branches_failed_error(rt):
    """quorum / errors: AllBranchesFailedError when "any/quorum could not get enough successes"."""
    info = rt.start(wf_quorum_short, run_id="quorum-short").result(timeout=RESULT)
    assert info["cls"] == "AllBranchesFailedError"
    broken = qualname(Broken)
    assert info["failures"] == [
        [0, "ActivityError", broken, "e0 failed"],
        [1, "ActivityError", broken, "e1 failed"],
    ]


@workflow(name=P + "quorum_range")
def wf_quorum_range(ctx):
    seen = []
    for n in (0, -1, 4):
        try:
            ctx.quorum([ctx.run(act, "never") for _ in range(3)], n)
        except ValueError:
            seen.append([n, "ValueError"])
        else:
            seen.append([n, None])
    pairs = yield ctx.quorum([ctx.run(act, "r0"), ctx.run(act, "r1"), ctx.run(act, "r2")], 3)
    seen.append(sorted(index for index, _ in pairs))
    return seen


def test_quorum_n_out_of_range_raises_value_error(rt):
    """Details: "quorum(b, n) needs 1 <= n <= len(b)" (n == len(b) is allowed)."""
    seen = rt.start(wf_quorum_range, run_id="quorum-range").result(timeout=RESULT)
    assert seen == [[0, "ValueError"], [-1, "ValueError"], [4, "ValueError"], [0, 1, 2]]
    assert B.calls["never"] == 0
