"""Parallel semantics, part 1: all, fail_fast, all_settled, all with timeout, concurrency, empty input.

Each test quotes the rule of DESIGN.md "Parallel semantics" (or "Details that
tests pin") it pins. Finishing order is controlled with gates (events) and
by polling history(), never with sleeps; the only sleep is a short grace
period before a negative check ("a late result is not recorded").
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
    describe,
    held,
    qualname,
    steps,
    tracked,
    wait_started,
    wait_step,
)
from tests.support import wait_until
from treadle.runtime import PENDING, ActivityError, RunStatus, Settled, workflow
from treadle.runtime.testing import FakeClock

P = "par.all."
# --------------------------------------------------------------------------
# all
# --------------------------------------------------------------------------


@workflow(name=P + "order")
def wf_order(ctx):
    return (yield ctx.all([ctx.run(held, "o0", "v0"), ctx.run(act, "o1", "v1"), ctx.run(held, "o2", "v2")]))


def test_all_results_in_input_order_whatever_the_finishing_order(rt):
    """all: "results in input order whatever the finishing order" (branch 0 finishes after branch 2)."""
    handle = rt.start(wf_order, run_id="all-order")
    wait_step(handle, "0.1", "completed")
    B.open("o2")
    wait_step(handle, "0.2", "completed")
    assert steps(handle)["0.0"].status == "running"
    B.open("o0")
    assert handle.result(timeout=RESULT) == ["v0", "v1", "v2"]
    history = steps(handle)
    assert history["0.2"].finished <= history["0.0"].finished
    assert (history["0"].kind, history["0"].status, history["0"].value) == (
        "all",
        "completed",
        ["v0", "v1", "v2"],
    )


@workflow(name=P + "no_abort")
def wf_no_abort(ctx):
    try:
        yield ctx.all([ctx.run(held, "slow"), ctx.run(boom, "bad")])
    except ActivityError as e:
        return describe(e)
    return "no error"


def test_all_failure_does_not_abort_siblings_they_finish_and_are_checkpointed_first(rt):
    """all: "If a branch fails, siblings are *not* aborted: they run to completion and are
    checkpointed, then the failure of the lowest-positioned failed branch is raised"."""
    handle = rt.start(wf_no_abort, run_id="all-no-abort")
    wait_step(handle, "0.1", "failed")
    wait_started("slow")
    assert not B.has("slow.done")
    history = steps(handle)
    assert history["0"].status == "running"  # the all has not raised yet
    assert history["0.0"].status == "running"
    B.open("slow")
    info = handle.result(timeout=RESULT)
    assert info["cls"] == "ActivityError" and info["branch"] == 1 and info["type"] == qualname(Broken)
    history = steps(handle)
    assert (history["0.0"].status, history["0.0"].value) == ("completed", "slow")
    assert history["0"].status == "failed"
    assert history["0.0"].finished <= history["0"].finished
    assert B.get("slow.cancelled") is False
    assert B.calls["slow"] == 1 and B.calls["bad"] == 1


@workflow(name=P + "lowest")
def wf_lowest(ctx):
    try:
        yield ctx.all([ctx.run(act, "l0"), ctx.run(held, "late", None, True), ctx.run(boom, "early")])
    except ActivityError as e:
        info = describe(e)
        info["cause"] = type(e.__cause__).__name__
        info["failure_classes"] = [isinstance(f, ActivityError) for f in e.failures.values()]
        return info
    return "no error"


def test_all_raises_lowest_positioned_failure_with_failures_in_branch_order(rt):
    """all: "the failure of the lowest-positioned failed branch is raised ... carrying .branch and
    .failures (all failed branches)"; Details: ".failures ... a dict from branch key ... in branch
    order"; ".type is the original class's module.QualName"; the original as __cause__ (live path)."""
    handle = rt.start(wf_lowest, run_id="all-lowest")
    wait_step(handle, "0.2", "failed")  # branch 2 fails first in time
    assert steps(handle)["0.1"].status == "running"
    B.open("late")  # branch 1 fails later
    info = handle.result(timeout=RESULT)
    assert info["cls"] == "ActivityError"
    assert info["branch"] == 1
    assert info["type"] == qualname(Broken)
    assert info["message"] == "late failed"
    assert info["failures"] == [
        [1, "ActivityError", qualname(Broken), "late failed"],
        [2, "ActivityError", qualname(Broken), "early failed"],
    ]
    assert info["failure_classes"] == [True, True]
    assert info["cause"] == "Broken"


@workflow(name=P + "failed_replay")
def wf_failed_replay(ctx):
    try:
        yield ctx.all([ctx.run(act, "r0"), ctx.run(boom, "r1"), ctx.run(boom, "r2")])
    except ActivityError as e:
        info = describe(e)
    B.append("seen", info)  # test-only side effect: what each attempt of the workflow saw
    yield ctx.wait_for_signal(GO)
    return info


def test_replay_of_a_failed_all_raises_the_same_error_without_rerunning(box, rt):
    """all: "The failed all is recorded like any step: replay raises the same error again rather
    than re-running its branches"."""
    handle = rt.start(wf_failed_replay, run_id="all-failed-replay")
    wait_step(handle, "1")  # caught the error, waits on the signal
    assert len(B.list("seen")) == 1
    rt2 = box.restart()
    handle = rt2.get("all-failed-replay")
    handle.signal(GO)
    info = handle.result(timeout=RESULT)
    seen = B.list("seen")
    assert len(seen) == 2 and seen[0] == seen[1] == info
    assert info["branch"] == 1 and [row[0] for row in info["failures"]] == [1, 2]
    assert (B.calls["r0"], B.calls["r1"], B.calls["r2"]) == (1, 1, 1)
    assert steps(handle)["0"].status == "failed"


@workflow(name=P + "checkpoint")
def wf_checkpoint(ctx):
    return (yield ctx.all([ctx.run(act, "c0"), ctx.run(act, "c1"), ctx.run(held, "c2")]))


def test_every_branch_is_checkpointed_when_it_settles_restart_reruns_only_unfinished(box, rt):
    """ "Every branch is checkpointed when it settles. A crash in the middle of an all re-runs only
    the branches that had not finished; a branch that finished before the crash is never run again"
    (in-process restart)."""
    handle = rt.start(wf_checkpoint, run_id="all-checkpoint")
    wait_step(handle, "0.0", "completed")
    wait_step(handle, "0.1", "completed")
    assert steps(handle)["0.2"].status == "running"
    rt2 = box.restart()
    handle = rt2.get("all-checkpoint")
    wait_until(lambda: B.calls["c2"] == 2, message="the unfinished branch dispatched again")
    B.open("c2")
    assert handle.result(timeout=RESULT) == ["c0", "c1", "c2"]
    assert (B.calls["c0"], B.calls["c1"], B.calls["c2"]) == (1, 1, 2)


def raises_key_error(ctx):
    yield ctx.run(act, "sb-before")
    raise KeyError("missing")


@workflow(name=P + "sub_errors")
def wf_sub_errors(ctx):
    seen = []
    try:
        yield ctx.all([ctx.run(act, "sb-0"), raises_key_error(ctx)])
    except ActivityError as e:
        seen.append(describe(e))
    try:
        yield ctx.all([ctx.all([ctx.run(act, "sb-1"), ctx.run(boom, "sb-inner")]), ctx.run(act, "sb-2")])
    except ActivityError as e:
        seen.append(describe(e))
    return seen


def test_all_raises_a_sub_branch_error_as_activity_error_with_branch(rt):
    """all: "The raised error is an ActivityError (or the child workflow's / sub-branch's error)
    carrying .branch": a generator branch raising KeyError, and a nested all failing."""
    by_generator, by_nested = rt.start(wf_sub_errors, run_id="all-sub-errors").result(timeout=RESULT)
    assert by_generator["cls"] == "ActivityError" and by_generator["branch"] == 1
    assert by_generator["type"] == "builtins.KeyError"
    assert [row[:3] for row in by_generator["failures"]] == [[1, "ActivityError", "builtins.KeyError"]]
    assert by_nested["cls"] == "ActivityError" and by_nested["branch"] == 0
    assert (by_nested["type"], by_nested["message"]) == (qualname(Broken), "sb-inner failed")
    assert [row[0] for row in by_nested["failures"]] == [0]


def two_steps_held(ctx):
    first = yield ctx.run(act, "gc-first")
    second = yield ctx.run(held, "gc-second")
    return [first, second]


@workflow(name=P + "gen_checkpoint")
def wf_gen_checkpoint(ctx):
    return (yield ctx.all([two_steps_held(ctx), ctx.run(act, "gc-other")]))


def test_steps_of_a_generator_branch_are_checkpointed_on_their_own(box, rt):
    """ "every branch is durable on its own" / "There is no 'durable only at the next yield' window": a
    restart in the middle of a multi-step branch re-runs neither its finished first step nor a finished
    sibling."""
    handle = rt.start(wf_gen_checkpoint, run_id="all-gen-checkpoint")
    wait_step(handle, "0.0.0", "completed")
    wait_step(handle, "0.1", "completed")
    wait_step(handle, "0.0.1", "running")
    handle = box.restart().get("all-gen-checkpoint")
    wait_until(lambda: B.calls["gc-second"] == 2, message="the unfinished step dispatched again")
    B.open("gc-second")
    assert handle.result(timeout=RESULT) == [["gc-first", "gc-second"], "gc-other"]
    assert (B.calls["gc-first"], B.calls["gc-other"]) == (1, 1)


# --------------------------------------------------------------------------
# fail_fast
# --------------------------------------------------------------------------


@workflow(name=P + "fail_fast")
def wf_fail_fast(ctx):
    try:
        yield ctx.all([ctx.run(held, "ff0"), ctx.run(boom, "ff1"), ctx.run(held, "ff2")], fail_fast=True)
    except ActivityError as e:
        info = describe(e)
    yield ctx.set_state("caught")
    yield ctx.wait_for_signal(GO)
    return info


def test_fail_fast_raises_at_first_failure_siblings_run_on_with_cancelled_and_are_checkpointed(rt):
    """fail_fast=True: "raise at the first failure in time; siblings keep running to completion and
    stay checkpointed, and their activities get ActivityContext.cancelled set"; Details: "at a
    fail_fast raise it [.failures] holds the failures known so far"."""
    handle = rt.start(wf_fail_fast, run_id="all-fail-fast")
    wait_until(lambda: handle.state() == "caught", message="the workflow caught the fail_fast error")
    # raised while both siblings are still blocked
    wait_started("ff0", "ff2")
    assert not B.has("ff0.done") and not B.has("ff2.done")
    history = steps(handle)
    assert history["0"].status == "failed"
    assert history["0.0"].status == "running" and history["0.2"].status == "running"
    B.open("ff0")
    B.open("ff2")
    wait_step(handle, "0.0", "completed")
    wait_step(handle, "0.2", "completed")
    assert B.get("ff0.cancelled") is True and B.get("ff2.cancelled") is True
    handle.signal(GO)
    info = handle.result(timeout=RESULT)
    assert info["branch"] == 1 and info["type"] == qualname(Broken)
    assert info["failures"] == [[1, "ActivityError", qualname(Broken), "ff1 failed"]]
    history = steps(handle)
    assert (history["0.0"].value, history["0.2"].value) == ("ff0", "ff2")
    assert (B.calls["ff0"], B.calls["ff1"], B.calls["ff2"]) == (1, 1, 1)


@workflow(name=P + "fail_fast_queued")
def wf_fail_fast_queued(ctx):
    try:
        yield ctx.all(
            [ctx.run(boom, "fq-bad"), ctx.run(held, "fq1"), ctx.run(held, "fq2")],
            concurrency=1,
            fail_fast=True,
        )
    except ActivityError:
        pass
    yield ctx.set_state("caught")
    yield ctx.wait_for_signal(GO)
    return "done"


def test_fail_fast_siblings_queued_by_concurrency_also_get_cancelled(rt):
    """fail_fast=True: "siblings keep running to completion and stay checkpointed, and their activities
    get ActivityContext.cancelled set", siblings still queued under concurrency=1 at the raise too."""
    handle = rt.start(wf_fail_fast_queued, run_id="all-fail-fast-queued")
    wait_until(lambda: handle.state() == "caught", message="the workflow caught the fail_fast error")
    B.open("fq1")
    B.open("fq2")
    wait_step(handle, "0.1", "completed")
    wait_step(handle, "0.2", "completed")
    assert (B.get("fq1.cancelled"), B.get("fq2.cancelled")) == (True, True)
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == "done"


def sibling_steps(ctx):
    first = yield ctx.run(held, "fs1")
    second = yield ctx.run(held, "fs2")
    return [first, second]


@workflow(name=P + "fail_fast_generator")
def wf_fail_fast_generator(ctx):
    try:
        yield ctx.all([sibling_steps(ctx), ctx.run(held, "fs-bad", None, True)], fail_fast=True)
    except ActivityError:
        pass
    yield ctx.set_state("caught")
    yield ctx.wait_for_signal(GO)
    return "done"


def test_fail_fast_generator_sibling_gets_cancelled_on_its_later_steps(rt):
    """fail_fast=True: "their activities get ActivityContext.cancelled set": a multi-step sibling runs
    to completion, and the activity of its step started after the raise sees cancelled too."""
    handle = rt.start(wf_fail_fast_generator, run_id="all-fail-fast-generator")
    wait_started("fs1", "fs-bad")
    B.open("fs-bad")
    wait_until(lambda: handle.state() == "caught", message="the workflow caught the fail_fast error")
    B.open("fs1")
    wait_started("fs2")
    B.open("fs2")
    wait_step(handle, "0.0.1", "completed")
    assert B.get("fs1.cancelled") is True  # live at the raise
    assert B.get("fs2.cancelled") is True  # started after it
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == "done"


# --------------------------------------------------------------------------
# all_settled
# --------------------------------------------------------------------------


@workflow(name=P + "settled")
def wf_settled(ctx):
    mixed = yield ctx.all_settled([ctx.run(act, "s0", 10), ctx.run(boom, "s1"), ctx.run(act, "s2", "x")])
    failed = yield ctx.all_settled([ctx.run(boom, "s3"), ctx.run(boom, "s4")])

    def shape(rows):
        return [
            [
                type(row).__name__,
                isinstance(row, Settled),
                row.ok,
                row.value,
                isinstance(row.error, ActivityError),
                row.error.type if row.error is not None else None,
                row.error.message if row.error is not None else None,
            ]
            for row in rows
        ]

    seen = [shape(mixed), shape(failed)]
    B.append("seen", seen)  # test-only: what each attempt of the workflow saw
    yield ctx.wait_for_signal(GO)
    return seen


def test_all_settled_returns_settled_rows_and_never_raises(box, rt):
    """all_settled: "list of Settled(ok, value, error)"; "never raises for branch failures"; the
    error is an ActivityError (errors are data: "the same ActivityError is rebuilt on replay")."""
    handle = rt.start(wf_settled, run_id="all-settled")
    wait_step(handle, "2")
    handle = box.restart().get("all-settled")
    handle.signal(GO)
    mixed, failed = handle.result(timeout=RESULT)
    assert B.list("seen") == [[mixed, failed], [mixed, failed]]
    assert sum(B.calls.values()) == 5
    broken = qualname(Broken)
    assert mixed == [
        ["Settled", True, True, 10, False, None, None],
        ["Settled", True, False, None, True, broken, "s1 failed"],
        ["Settled", True, True, "x", False, None, None],
    ]
    assert failed == [
        ["Settled", True, False, None, True, broken, "s3 failed"],
        ["Settled", True, False, None, True, broken, "s4 failed"],
    ]
    history = steps(handle)
    assert (history["0"].kind, history["0"].status) == ("all_settled", "completed")
    assert (history["1"].status, history["1.0"].status) == ("completed", "failed")


# --------------------------------------------------------------------------
# all with timeout
# --------------------------------------------------------------------------


@workflow(name=P + "timeout")
def wf_timeout(ctx):
    try:
        value = yield ctx.all([ctx.run(act, "tq"), ctx.run(held, "tl")], timeout=5)
    except TimeoutError as e:
        value = {"cls": type(e).__name__, "activity_error": isinstance(e, ActivityError)}
    B.append("seen", value)  # test-only: what each attempt of the workflow saw
    yield ctx.wait_for_signal(GO)
    return value


def test_all_timeout_raises_timeout_error_and_leaves_running_branches_as_losers(box):
    """all with timeout: "timeout= raises TimeoutError when not all branches settled in time";
    "The branches still running are treated as race losers"; Details: "An all(timeout=...) that gives
    up does not set cancelled on the branches still running"; the branch shows abandoned; replay
    raises the same TimeoutError (a FakeClock moves the deadline)."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(wf_timeout, run_id="all-timeout")
    wait_step(handle, "0.0", "completed")
    wait_started("tl")
    clock.advance(10)
    wait_step(handle, "1")
    assert not B.has("tl.done")
    assert steps(handle)["0"].status == "failed"
    wait_step(handle, "0.1", "abandoned")
    B.open("tl")
    wait_until(lambda: B.has("tl.done"), message="the left-behind branch finished")
    assert B.get("tl.cancelled") is False
    time.sleep(0.1)  # grace: a late result that were (wrongly) recorded would land now
    record = steps(handle)["0.1"]
    assert (record.status, record.value) == ("abandoned", None)
    handle = box.restart(clock=clock).get("all-timeout")
    handle.signal(GO)
    expected = {"cls": "TimeoutError", "activity_error": False}
    assert handle.result(timeout=RESULT) == expected
    assert B.list("seen") == [expected, expected]
    assert (B.calls["tq"], B.calls["tl"]) == (1, 1)


@workflow(name=P + "partial")
def wf_partial(ctx):
    values = yield ctx.all(
        [ctx.run(act, "pa"), ctx.run(held, "pb"), ctx.run(act, "pc")], timeout=5, partial=True
    )
    yield ctx.wait_for_signal(GO)
    return [values[0], values[1] is PENDING, values[2], repr(values[1])]


def test_all_timeout_partial_returns_pending_in_unsettled_slots(box):
    """all with timeout: "with partial=True it returns the list with the unsettled slots set to the
    sentinel PENDING"; the branch left behind runs on without cancelled and its late result is not
    recorded; replay returns PENDING in the same slot."""
    clock = FakeClock()
    rt = box.open(clock=clock)
    handle = rt.start(wf_partial, run_id="all-partial")
    wait_step(handle, "0.0", "completed")
    wait_step(handle, "0.2", "completed")
    wait_started("pb")
    clock.advance(10)
    wait_step(handle, "1")
    assert steps(handle)["0"].status == "completed"
    wait_step(handle, "0.1", "abandoned")
    B.open("pb")
    wait_until(lambda: B.has("pb.done"), message="the left-behind branch finished")
    assert B.get("pb.cancelled") is False
    time.sleep(0.1)  # grace for a (wrongly) recorded late result
    assert steps(handle)["0.1"].status == "abandoned"
    handle = box.restart(clock=clock).get("all-partial")
    handle.signal(GO)
    assert handle.result(timeout=RESULT) == ["pa", True, "pc", "PENDING"]
    assert B.calls["pb"] == 1


@workflow(name=P + "in_time")
def wf_in_time(ctx):
    return (yield ctx.all([ctx.run(act, "it0"), ctx.run(act, "it1")], timeout="1h"))


def test_all_that_settles_in_time_clears_its_deadline_timer(rt):
    """all with timeout: an all that settles before its deadline returns its values and leaves no timer
    behind (the run completes at once although the deadline was 1h)."""
    handle = rt.start(wf_in_time, run_id="all-in-time")
    assert handle.result(timeout=RESULT) == ["it0", "it1"]
    assert handle.status() == RunStatus.COMPLETED
    assert [rec for _, rec in rt.store.scan("timers") if rec.get("run") == "all-in-time"] == []


# --------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------


@workflow(name=P + "rolling")
def wf_rolling(ctx):
    tags = ["long", "s1", "s2", "s3", "s4"]
    return (yield ctx.all([ctx.run(tracked, tag) for tag in tags], concurrency=2))


def test_concurrency_is_a_rolling_pool_not_batches(rt):
    """concurrency=N: "at most N branches are running at any moment; the rest start in input order as
    slots free up (a rolling pool, not batches)": with N=2 and one long branch, every short branch
    starts and finishes while the long one still runs."""
    handle = rt.start(wf_rolling, run_id="conc-rolling")
    for k in range(1, 5):
        wait_step(handle, f"0.{k}", "completed")
    assert steps(handle)["0.0"].status == "running"
    # With the long branch holding one of the two slots, the short ones ran one after the other,
    # each starting only after the previous one ended (and not waiting for the long one).
    shorts = [event for event in B.list("events") if event[1] != "long"]
    assert shorts == [(edge, f"s{k}") for k in range(1, 5) for edge in ("start", "end")]
    wait_until(lambda: ("start", "long") in B.list("events"), message="the long branch started")
    assert B.in_flight == 1  # only the long branch
    B.open("long")
    assert handle.result(timeout=RESULT) == ["long", "s1", "s2", "s3", "s4"]
    assert B.max_in_flight <= 2


@workflow(name=P + "capped")
def wf_capped(ctx, kind, n):
    tags = [f"c{i}" for i in range(6)]
    if kind == "all":
        return (yield ctx.all([ctx.run(tracked, t, 0.02) for t in tags], concurrency=n))
    if kind == "all_settled":
        rows = yield ctx.all_settled([ctx.run(tracked, t, 0.02) for t in tags], concurrency=n)
        return [row.value for row in rows]
    if kind == "run_all":
        named = yield ctx.run_all({t: ctx.run(tracked, t, 0.02) for t in tags}, concurrency=n)
        return [named[t] for t in tags]
    return (yield ctx.map(tags, lambda t: ctx.run(tracked, t, 0.02), concurrency=n))


@pytest.mark.parametrize("kind", ["all", "all_settled", "run_all", "map"])
def test_concurrency_caps_branches_in_flight(rt, kind):
    """concurrency=N: "at most N branches are running at any moment" (all, all_settled, run_all, map)."""
    handle = rt.start(wf_capped, kind, 2, run_id=f"conc-cap-{kind}")
    assert handle.result(timeout=RESULT) == [f"c{i}" for i in range(6)]
    assert 1 <= B.max_in_flight <= 2
    assert sum(B.calls.values()) == 6


@workflow(name=P + "bad_concurrency")
def wf_bad_concurrency(ctx):
    seen = []
    for value in (0, -1, 1.5, True):
        for kind in ("all", "all_settled", "run_all", "map"):
            try:
                if kind == "all":
                    ctx.all([ctx.run(act, "never")], concurrency=value)
                elif kind == "all_settled":
                    ctx.all_settled([ctx.run(act, "never")], concurrency=value)
                elif kind == "run_all":
                    ctx.run_all({"a": ctx.run(act, "never")}, concurrency=value)
                else:
                    ctx.map([1], lambda i: ctx.run(act, "never"), concurrency=value)
            except Exception as e:
                seen.append([repr(value), kind, type(e).__name__])
            else:
                seen.append([repr(value), kind, None])
    yield ctx.run(act, "done")
    return seen


def test_concurrency_must_be_an_int_of_at_least_one(rt):
    """Details: "concurrency must be an int >= 1 (bool or float -> TypeError, 0/negative -> ValueError)"."""
    seen = rt.start(wf_bad_concurrency, run_id="conc-bad").result(timeout=RESULT)
    expected = {"0": "ValueError", "-1": "ValueError", "1.5": "TypeError", "True": "TypeError"}
    assert len(seen) == 16
    for value, kind, cls in seen:
        assert cls == expected[value], (value, kind, cls)
    assert B.calls["never"] == 0


# --------------------------------------------------------------------------
# empty input
# --------------------------------------------------------------------------


@workflow(name=P + "empty")
def wf_empty(ctx):
    a = yield ctx.all([])
    b = yield ctx.all_settled([])
    c = yield ctx.map([], lambda item: ctx.run(act, "never"))
    d = yield ctx.run_all({})
    return [[type(v).__name__, v] for v in (a, b, c, d)]


def test_empty_inputs_return_empty(rt):
    """Details: "all([]), all_settled([]), map([]), run_all({}) return empty"."""
    handle = rt.start(wf_empty, run_id="empty")
    assert handle.result(timeout=RESULT) == [["list", []], ["list", []], ["list", []], ["dict", {}]]
    history = steps(handle)
    assert [(history[s].kind, history[s].status) for s in "0123"] == [
        ("all", "completed"),
        ("all_settled", "completed"),
        ("map", "completed"),
        ("run_all", "completed"),
    ]
    assert B.calls["never"] == 0
