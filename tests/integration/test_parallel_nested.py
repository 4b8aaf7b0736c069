"""Parallel semantics, part 4: nesting and step ids, generator branches, map, child workflows,
retries and timeouts in branches, signals in coordinators.

Each test quotes the rule of DESIGN.md "Parallel semantics" (or "Details that
tests pin") it pins.
"""

from __future__ import annotations

import pytest

from tests.integration.test_parallel_support import (  # noqa: F401 - board is an autouse fixture
    RESULT,
    B,
    Broken,
    act,
    board,
    boom,
    describe,
    flaky,
    held,
    qualname,
    steps,
    stuck,
    wait_step,
)
from tests.support import wait_until
from treadle.runtime import (
    ActivityError,
    ActivityTimeoutError,
    Retry,
    RunStatus,
    WorkflowFailedError,
    workflow,
)

P = "par.nest."


# --------------------------------------------------------------------------
# nesting and step ids
# --------------------------------------------------------------------------


@workflow(name=P + "nested")
def wf_nested(ctx):
    first = yield ctx.race([ctx.all([ctx.run(act, "n-a"), ctx.run(act, "n-b")]), ctx.run(held, "n-slow")])
    second = yield ctx.all([ctx.race([ctx.run(act, "n-c"), ctx.run(held, "n-d")]), ctx.run(act, "n-e")])
    return [first, second]


def test_nested_all_in_race_and_race_in_all_have_path_step_ids(rt):
    """ "Nesting works at every level: all inside race and vice versa"; step ids: "a coordinator used as
    a branch sits at S.k and its branches at S.k.j"; "history() lists every step, branches included,
    in step order"."""
    handle = rt.start(wf_nested, run_id="nested")
    assert handle.result(timeout=RESULT) == [["n-a", "n-b"], ["n-c", "n-e"]]
    wait_step(handle, "0.1", "abandoned")
    wait_step(handle, "1.0.1", "abandoned")
    assert [(r.step, r.kind, r.status) for r in handle.history()] == [
        ("0", "race", "completed"),
        ("0.0", "all", "completed"),
        ("0.0.0", "activity", "completed"),
        ("0.0.1", "activity", "completed"),
        ("0.1", "activity", "abandoned"),
        ("1", "all", "completed"),
        ("1.0", "race", "completed"),
        ("1.0.0", "activity", "completed"),
        ("1.0.1", "activity", "abandoned"),
        ("1.1", "activity", "completed"),
    ]
    history = steps(handle)
    assert (history["0"].value, history["0.0"].value, history["1.0"].value) == (
        ["n-a", "n-b"],
        ["n-a", "n-b"],
        "n-c",
    )


def two_steps(ctx, x):
    a = yield ctx.run(act, f"g{x}a", x)
    b = yield ctx.run(act, f"g{x}b", x * 10)
    return a + b


def deep(ctx):
    yield ctx.sleep(0)
    pair = yield ctx.all([ctx.run(act, "deep-0"), ctx.run(act, "deep-1")])
    return "+".join(pair)


@workflow(name=P + "generators")
def wf_generators(ctx):
    first = yield ctx.run(act, "g-first")
    values = yield ctx.all([two_steps(ctx, 1), two_steps(ctx, 2), deep(ctx)])
    return [first, values]


def test_generator_branches_take_several_steps_with_ids_s_k_0_s_k_1(rt):
    """A branch may be "a generator (a sub-workflow ...), so one branch can take several steps";
    "a generator branch's own steps are S.k.0, S.k.1, ..."; a coordinator inside it sits at S.k.j
    with its branches at S.k.j.i."""
    handle = rt.start(wf_generators, run_id="generators")
    assert handle.result(timeout=RESULT) == ["g-first", [11, 22, "deep-0+deep-1"]]
    # Whether a generator branch has a record of its own at S.k is not pinned: ignore 1.0, 1.1, 1.2.
    records = [r for r in handle.history() if r.step not in ("1.0", "1.1", "1.2")]
    assert [(r.step, r.kind, r.value) for r in records] == [
        ("0", "activity", "g-first"),
        ("1", "all", [11, 22, "deep-0+deep-1"]),
        ("1.0.0", "activity", 1),
        ("1.0.1", "activity", 10),
        ("1.1.0", "activity", 2),
        ("1.1.1", "activity", 20),
        ("1.2.0", "sleep", None),
        ("1.2.1", "all", ["deep-0", "deep-1"]),
        ("1.2.1.0", "activity", "deep-0"),
        ("1.2.1.1", "activity", "deep-1"),
    ]
    assert all(r.status == "completed" for r in records)


def process(ctx, item):
    try:
        return {
            "item": item,
            "ok": True,
            "result": (yield ctx.run(boom if item.startswith("bad") else act, item)),
        }
    except ActivityError as e:
        return {"item": item, "ok": False, "type": e.type, "error": e.message}


@workflow(name=P + "map")
def wf_map(ctx):
    return (yield ctx.map(["m1", "bad-m2", "m3", "bad-m4"], lambda f: process(ctx, f), concurrency=2))


def test_map_with_generator_fn_and_per_item_error_handling(rt):
    """map: "fn(item) returns a branch; sugar over all"; the per-item error handling pattern of
    "Writing workflows" (a generator branch catching ActivityError returns a dict)."""
    handle = rt.start(wf_map, run_id="map-items")
    broken = qualname(Broken)
    assert handle.result(timeout=RESULT) == [
        {"item": "m1", "ok": True, "result": "m1"},
        {"item": "bad-m2", "ok": False, "type": broken, "error": "bad-m2 failed"},
        {"item": "m3", "ok": True, "result": "m3"},
        {"item": "bad-m4", "ok": False, "type": broken, "error": "bad-m4 failed"},
    ]
    history = steps(handle)
    assert (history["0"].kind, history["0"].status) == ("map", "completed")
    assert [history[f"0.{k}.0"].status for k in range(4)] == ["completed", "failed", "completed", "failed"]


# --------------------------------------------------------------------------
# child workflows
# --------------------------------------------------------------------------


@workflow(name=P + "kid")
def wf_kid(ctx, i):
    value = yield ctx.run(act, f"kid{i}", i * 10)
    return value + 1


@workflow(name=P + "bad_kid")
def wf_bad_kid(ctx, i):
    yield ctx.run(act, f"badkid{i}")
    raise Broken(f"child {i} gave up")


@workflow(name=P + "parent")
def wf_parent(ctx):
    values = yield ctx.all([ctx.child(wf_kid, i) for i in range(3)])
    try:
        yield ctx.all([ctx.child(wf_kid, 7), ctx.child(wf_bad_kid, 8)])
    except ActivityError as e:
        return [values, describe(e)]
    return [values, None]


def test_child_workflows_in_parallel_and_a_failing_child_reaches_the_parent_as_activity_error(rt):
    """ctx.child in all: "a child run: its own actor and journal"; Details: "A failed child workflow
    reaches its parent as an ActivityError whose .type/.message are the child's and whose .run_id is
    the child's"."""
    handle = rt.start(wf_parent, run_id="parent")
    values, info = handle.result(timeout=RESULT)
    assert values == [1, 11, 21]
    assert info is not None
    assert info["cls"] == "ActivityError" and info["branch"] == 1
    assert info["type"] == qualname(Broken) and info["message"] == "child 8 gave up"
    bad = [s for s in rt.runs() if s.workflow == P + "bad_kid"]
    assert len(bad) == 1 and bad[0].status == RunStatus.FAILED
    assert info["run_id"] == bad[0].run_id
    with pytest.raises(WorkflowFailedError) as failed:
        rt.get(bad[0].run_id).result(timeout=RESULT)
    assert failed.value.type == qualname(Broken)
    kids = sorted(s.run_id for s in rt.runs() if s.workflow == P + "kid")
    assert len(kids) == 4 and "parent" not in kids
    history = steps(handle)
    assert [(history[f"0.{i}"].kind, history[f"0.{i}"].name, history[f"0.{i}"].value) for i in range(3)] == [
        ("child", P + "kid", 1),
        ("child", P + "kid", 11),
        ("child", P + "kid", 21),
    ]
    assert (history["1.0"].status, history["1.1"].status) == ("completed", "failed")


# --------------------------------------------------------------------------
# activities in branches: retries and timeouts
# --------------------------------------------------------------------------


@workflow(name=P + "retry")
def wf_retry(ctx):
    return (yield ctx.all([ctx.run(act, "r-ok"), ctx.run(flaky, "r-flaky")]))


def test_activity_in_a_branch_keeps_its_retry_policy(rt):
    """ "activities in branches keep their retry policy": Retry(attempts=3, initial=0.01) inside an all
    succeeds on attempt 3 (history attempt == 3)."""
    handle = rt.start(wf_retry, run_id="branch-retry")
    assert handle.result(timeout=RESULT) == ["r-ok", "r-flaky@3"]
    record = steps(handle)["0.1"]
    assert (record.status, record.attempt, record.value) == ("completed", 3, "r-flaky@3")
    assert B.list("r-flaky.attempts") == [1, 2, 3]


@workflow(name=P + "timeout")
def wf_timeout(ctx):
    try:
        yield ctx.all(
            [
                ctx.run(act, "to-ok"),
                ctx.run(stuck, "to-stuck", timeout=0.2, retry=Retry(attempts=2, initial=0.01)),
            ]
        )
    except ActivityError as e:
        info = describe(e)
        info["is_timeout"] = isinstance(e, ActivityTimeoutError)
        info["failure_is_timeout"] = [isinstance(f, ActivityTimeoutError) for f in e.failures.values()]
        return info
    return "no error"


def test_activity_timeout_in_a_branch_fails_with_activity_timeout_error_after_retries(rt):
    """ "activities in branches keep their retry policy and timeout; a timed out attempt sets
    ActivityContext.cancelled and fails with ActivityTimeoutError"; Details: "A branch that timed out
    fails with ActivityTimeoutError, and that is what all raises for it"."""
    handle = rt.start(wf_timeout, run_id="branch-timeout")
    info = handle.result(timeout=RESULT)
    assert info["is_timeout"] is True and info["branch"] == 1
    assert info["failure_is_timeout"] == [True]
    record = steps(handle)["0.1"]
    assert (record.status, record.attempt) == ("failed", 2)
    assert isinstance(record.error, ActivityTimeoutError)
    wait_until(lambda: len(B.list("to-stuck.cancelled")) == 2, message="both attempts saw cancelled")
    assert B.list("to-stuck.attempts") == [1, 2]
    assert B.list("to-stuck.cancelled") == [True, True]


# --------------------------------------------------------------------------
# signals in coordinators
# --------------------------------------------------------------------------

S = P + "sig"
START = P + "start"


@workflow(name=P + "dup_signal")
def wf_dup_signal(ctx):
    makers = {
        "all": lambda: ctx.all([ctx.run(act, "dup-never"), ctx.wait_for_signal(S), ctx.wait_for_signal(S)]),
        "race": lambda: ctx.race([ctx.wait_for_signal(S), ctx.run(act, "dup-never"), ctx.wait_for_signal(S)]),
        "run_all": lambda: ctx.run_all({"a": ctx.wait_for_signal(S), "b": ctx.wait_for_signal(S)}),
        "nested": lambda: ctx.all(
            [ctx.race([ctx.wait_for_signal(S), ctx.run(act, "dup-never")]), ctx.wait_for_signal(S)]
        ),
    }
    seen = []
    for name, make in makers.items():
        try:
            yield make()
        except ValueError:
            seen.append([name, "ValueError"])
        else:
            seen.append([name, None])
    yield ctx.run(act, "dup-after")
    return seen


def test_two_branches_waiting_on_one_signal_name_are_rejected_before_dispatch(rt):
    """signals in coordinators: "Two branches of one coordination tree waiting on the same signal name
    are rejected with ValueError before anything is dispatched" (flat, run_all, nested)."""
    handle = rt.start(wf_dup_signal, run_id="dup-signal")
    seen = handle.result(timeout=RESULT)
    assert seen == [
        ["all", "ValueError"],
        ["race", "ValueError"],
        ["run_all", "ValueError"],
        ["nested", "ValueError"],
    ]
    assert B.calls["dup-never"] == 0
    assert [(r.step, r.kind) for r in handle.history()] == [("0", "activity")]  # nothing else was recorded


SA = P + "sa"
SB = P + "sb"


@workflow(name=P + "race_signal")
def wf_race_signal(ctx):
    first = yield ctx.race([ctx.run(act, "rs-fast"), ctx.wait_for_signal(SA)])  # 0: nothing buffered yet
    yield ctx.wait_for_signal(START)  # 1: the test buffers SA and SB before START
    second = yield ctx.race(  # 2: the inner all reserves SB at dispatch, then loses
        [ctx.all([ctx.wait_for_signal(SB), ctx.run(held, "rs-hold")]), ctx.run(act, "rs-win")]
    )
    a = yield ctx.wait_for_signal(SA, timeout=5)  # 3
    b = yield ctx.wait_for_signal(SB, timeout=5)  # 4
    return [first, second, a, b]


def test_a_losing_signal_wait_leaves_the_signal_buffered_for_a_later_wait(rt):
    """race losers: "a losing signal wait releases its waiter and does not consume the signal (it stays
    buffered for a later wait)"; "a failed or lost coordinator releases them [reserved signals]"."""
    handle = rt.start(wf_race_signal, run_id="race-signal")
    wait_step(handle, "1")
    handle.signal(SA, "a-payload")
    handle.signal(SB, "b-payload")
    handle.signal(START)
    assert handle.result(timeout=RESULT) == ["rs-fast", "rs-win", "a-payload", "b-payload"]
    history = steps(handle)
    assert (history["3"].value, history["4"].value) == ("a-payload", "b-payload")


S1 = P + "s1"
S2 = P + "s2"


@workflow(name=P + "all_signal")
def wf_all_signal(ctx):
    yield ctx.wait_for_signal(START)  # 0
    try:
        yield ctx.all([ctx.wait_for_signal(S1), ctx.run(boom, "as-boom")])  # 1: fails
        failed = False
    except ActivityError:
        failed = True
    again = yield ctx.wait_for_signal(S1, timeout=5)  # 2: the failed all released the signal
    both = yield ctx.all([ctx.wait_for_signal(S2), ctx.run(act, "as-ok")])  # 3: succeeds, consumes it
    after = yield ctx.wait_for_signal(S2, timeout=5)  # 4: gets the next one, not the consumed one
    return [failed, again, both, after]


def test_signal_in_all_is_consumed_only_when_the_all_succeeds(rt):
    """signals in coordinators: "only the outermost coordinator consumes it, in the same LMDB transaction
    that checkpoints the coordinator's result"; Details: "Reserved signals are consumed only when the
    coordinator that holds them succeeds ... (every branch of a successful all); a failed or lost
    coordinator releases them, so they stay buffered"."""
    handle = rt.start(wf_all_signal, run_id="all-signal")
    handle.signal(S1, "one")
    handle.signal(S2, "two-a")
    handle.signal(S2, "two-b")
    handle.signal(START)
    assert handle.result(timeout=RESULT) == [True, "one", ["two-a", "as-ok"], "two-b"]


S3 = P + "s3"


def wait_then_act(ctx):
    got = yield ctx.wait_for_signal(S2)
    yield ctx.run(act, "gb-after")
    return got


@workflow(name=P + "outermost")
def wf_outermost(ctx):
    yield ctx.wait_for_signal(START)  # 0
    outcomes = []
    try:  # 1: the inner all succeeds, the outer one fails: nothing is consumed
        yield ctx.all(
            [ctx.all([ctx.wait_for_signal(S1), ctx.run(act, "om-a")]), ctx.run(held, "om-fail", None, True)]
        )
    except ActivityError:
        outcomes.append("1 failed")
    try:  # 2: a generator branch took the signal, then its all failed
        yield ctx.all([wait_then_act(ctx), ctx.run(held, "gb-fail", None, True)])
    except ActivityError:
        outcomes.append("2 failed")
    won = yield ctx.race(
        [ctx.all([ctx.wait_for_signal(S3), ctx.run(act, "rw-a")]), ctx.run(held, "rw-lose")]
    )  # 3
    again1 = yield ctx.wait_for_signal(S1, timeout=5)  # 4
    again2 = yield ctx.wait_for_signal(S2, timeout=5)  # 5
    next3 = yield ctx.wait_for_signal(S3, timeout=5)  # 6: the race winner consumed the first S3
    return [outcomes, won, again1, again2, next3]


def test_only_the_outermost_coordinator_consumes_and_only_when_it_succeeds(rt):
    """signals in coordinators: "a signal wait inside all/race reserves the signal; only the outermost
    coordinator consumes it"; Details: consumed "only for branches whose value it used (the race
    winner; every branch of a successful all); a failed or lost coordinator releases them" (a nested
    all that succeeded inside a failed all, a generator branch, a race winner)."""
    handle = rt.start(wf_outermost, run_id="outermost")
    handle.signal(S1, "one")
    handle.signal(S2, "two")
    handle.signal(S3, "three-a")
    handle.signal(S3, "three-b")
    handle.signal(START)
    wait_step(handle, "1.0", "completed")  # the inner all succeeded first
    B.open("om-fail")
    wait_step(handle, "2.0.1", "completed")  # the generator branch took S2 and finished
    B.open("gb-fail")
    assert handle.result(timeout=RESULT) == [
        ["1 failed", "2 failed"],
        ["three-a", "rw-a"],
        "one",
        "two",
        "three-b",
    ]


@workflow(name=P + "fail_fast_signal")
def wf_fail_fast_signal(ctx):
    try:  # 0: fails fast while its signal branch still waits
        yield ctx.all([ctx.wait_for_signal(S1), ctx.run(boom, "ffs-bad")], fail_fast=True)
    except ActivityError:
        pass
    return (yield ctx.wait_for_signal(S1, timeout=5))  # 1: a later top-level wait


def test_a_failed_fail_fast_all_leaves_the_signal_for_a_later_top_level_wait(rt):
    """Details: "a failed or lost coordinator releases them, so they stay buffered"; "only the
    outermost coordinator consumes it": after a fail_fast all failed, a top-level wait on the signal
    its branch was waiting for is a new wait (not a second waiter of the same tree) and receives it."""
    handle = rt.start(wf_fail_fast_signal, run_id="fail-fast-signal")
    record = wait_step(handle, "1")
    assert (record.kind, record.status) == ("signal", "running")
    handle.signal(S1, "later")
    assert handle.result(timeout=RESULT) == "later"


@workflow(name=P + "reserve_replay")
def wf_reserve_replay(ctx):
    yield ctx.wait_for_signal(START)  # 0
    both = yield ctx.all([ctx.wait_for_signal(S1), ctx.run(held, "rr-hold")])  # 1
    following = yield ctx.wait_for_signal(S1, timeout=5)  # 2
    return [both, following]


def test_a_reserved_signal_survives_a_restart_in_the_middle_of_its_all(box, rt):
    """signals in coordinators: a signal reserved by a branch that settled before a restart is replayed
    from that branch's checkpoint and consumed when the all succeeds: a later wait gets the next one."""
    handle = rt.start(wf_reserve_replay, run_id="reserve-replay")
    handle.signal(S1, "first")
    handle.signal(S1, "second")
    handle.signal(START)
    wait_step(handle, "1.0", "completed")
    wait_step(handle, "1.1", "running")
    handle = box.restart().get("reserve-replay")
    wait_until(lambda: B.calls["rr-hold"] == 2, message="the unfinished branch dispatched again")
    B.open("rr-hold")
    assert handle.result(timeout=RESULT) == [["first", "rr-hold"], "second"]


@workflow(name=P + "signal_vs_sleep")
def wf_signal_vs_sleep(ctx):
    yield ctx.wait_for_signal(START)  # 0: the test buffers S before START
    first = yield ctx.race({"nap": ctx.sleep(0), "sig": ctx.wait_for_signal(S)})  # 1
    second = yield ctx.race({"nap": ctx.sleep(0), "sig": ctx.wait_for_signal(SA)})  # 2: nothing buffered
    return [list(first), list(second)]


def test_a_buffered_signal_beats_sleep_zero_in_a_race(rt):
    """Details: "A signal already buffered is ready at dispatch: it beats sleep(0)" (the sleep comes
    first in input order); with nothing buffered, sleep(0) wins."""
    handle = rt.start(wf_signal_vs_sleep, run_id="signal-vs-sleep")
    handle.signal(S, "ready")
    handle.signal(START)
    assert handle.result(timeout=RESULT) == [["sig", "ready"], ["nap", None]]
    wait_step(handle, "1.nap", "abandoned")
