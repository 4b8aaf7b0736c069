"""Bad input to every public API: typed errors naming the parameter, nothing written.

RELIABILITY.md scenario 10: "Wrong types to every public API (non-callable, None,
negative/NaN durations, concurrency 0/-1/float, non-str names): `TypeError`/`ValueError`
naming the parameter; no actor left behind." Scenario 13: "Oversized payloads ... and
long ids: a typed error before commit". Invariant I5: "Bad input fails with a typed error
that names the argument, branch or step, before anything is dispatched or written."
"""

from __future__ import annotations

import threading
import uuid as uuid_mod
from datetime import datetime
from typing import Any

import pykka
import pytest

from tests.support import WAIT
from treadle.runtime import (
    ActivityContext,
    PayloadTooLargeError,
    Retry,
    RunStatus,
    Runtime,
    SerializationError,
    WorkflowFailedError,
    activity,
    workflow,
)

CALLS: dict[str, list[Any]] = {}


def _actors() -> int:
    return len(pykka.ActorRegistry.get_all())


@activity(name="inp.canary")
def canary(actx: ActivityContext) -> str:
    CALLS.setdefault(actx.run_id, []).append("canary")
    return "ran"


@workflow(name="inp.good")
def good(ctx: Any, x: Any = None) -> Any:
    payload = yield ctx.wait_for_signal("inp.go")
    return [x, payload]


def _plain_generator(ctx: Any) -> Any:
    yield ctx.sleep(0)


NAIVE = datetime(2030, 1, 1, 12, 0, 0)

# case -> (builds the bad operation inside the workflow, expected .type, message fragment)
CASES: dict[str, tuple[Any, str, str]] = {
    "sleep(-1)": (lambda ctx: ctx.sleep(-1), "builtins.ValueError", "ctx.sleep: duration"),
    "sleep(nan)": (lambda ctx: ctx.sleep(float("nan")), "builtins.ValueError", "ctx.sleep: duration"),
    "sleep('5x')": (lambda ctx: ctx.sleep("5x"), "builtins.ValueError", "ctx.sleep: duration"),
    "sleep(None)": (lambda ctx: ctx.sleep(None), "builtins.ValueError", "ctx.sleep: duration"),
    "sleep_until(naive)": (
        lambda ctx: ctx.sleep_until(NAIVE),
        "builtins.ValueError",
        "ctx.sleep_until: when",
    ),
    "run(5)": (lambda ctx: ctx.run(5), "builtins.TypeError", "ctx.run: fn"),
    "run(None)": (lambda ctx: ctx.run(None), "builtins.TypeError", "ctx.run: fn"),
    "run(timeout=-1)": (lambda ctx: ctx.run(canary, timeout=-1), "builtins.ValueError", "ctx.run: timeout"),
    "wait_for_signal(5)": (
        lambda ctx: ctx.wait_for_signal(5),
        "builtins.TypeError",
        "ctx.wait_for_signal: name",
    ),
    "all(5)": (lambda ctx: ctx.all(5), "builtins.TypeError", "ctx.all: branches"),
    "all([op, 5])": (lambda ctx: ctx.all([ctx.run(canary), 5]), "builtins.TypeError", "ctx.all: branch [1]"),
    "all(concurrency=0)": (
        lambda ctx: ctx.all([ctx.run(canary)], concurrency=0),
        "builtins.ValueError",
        "ctx.all: concurrency",
    ),
    "all(concurrency=-1)": (
        lambda ctx: ctx.all([ctx.run(canary)], concurrency=-1),
        "builtins.ValueError",
        "ctx.all: concurrency",
    ),
    "all(concurrency=1.5)": (
        lambda ctx: ctx.all([ctx.run(canary)], concurrency=1.5),
        "builtins.TypeError",
        "ctx.all: concurrency",
    ),
    "all(concurrency=True)": (
        lambda ctx: ctx.all([ctx.run(canary)], concurrency=True),
        "builtins.TypeError",
        "ctx.all: concurrency",
    ),
    "all(same signal twice)": (
        lambda ctx: ctx.all([ctx.wait_for_signal("s"), ctx.wait_for_signal("s")]),
        "treadle.runtime.SignalWaitConflictError",  # a ValueError
        "ctx.all",
    ),
    "race([])": (lambda ctx: ctx.race([]), "builtins.ValueError", "ctx.race"),
    "any([])": (lambda ctx: ctx.any([]), "builtins.ValueError", "ctx.any"),
    "quorum(b, 0)": (lambda ctx: ctx.quorum([ctx.run(canary)], 0), "builtins.ValueError", "ctx.quorum: n"),
    "run_all(bad name)": (
        lambda ctx: ctx.run_all({"bad name!": ctx.run(canary)}),
        "builtins.ValueError",
        "'bad name!'",
    ),
}


@workflow(name="inp.bad")
def bad(ctx: Any, case: str) -> Any:
    build = CASES[case][0]
    return (yield build(ctx))


# --------------------------------------------------------------------------
# Runtime(...)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"max_branch_actors": 0}, ValueError, "max_branch_actors"),
        ({"max_branch_actors": "x"}, TypeError, "max_branch_actors"),
        ({"max_branch_actors": True}, TypeError, "max_branch_actors"),
        ({"durability": "x"}, ValueError, "durability"),
        ({"executor": "x"}, ValueError, "executor"),
        ({"max_payload": 0}, ValueError, "max_payload"),
        pytest.param(
            {"clock": 5},
            TypeError,
            "clock",
        ),
        pytest.param(
            {"registry": 5},
            TypeError,
            "registry",
        ),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_runtime_rejects_bad_arguments(box: Any, kwargs: dict[str, Any], error: type, param: str) -> None:
    """DESIGN.md: `Runtime(path, *, max_branch_actors=256, durability="sync", clock=None,
    executor="threads")`; RELIABILITY.md 10: "`TypeError`/`ValueError` naming the
    parameter; no actor left behind"."""
    before = _actors()
    try:
        runtime = Runtime(str(box.path), **kwargs)
    except (TypeError, ValueError) as exc:
        assert isinstance(exc, error)
        assert param in str(exc)
    else:
        runtime.shutdown()
        pytest.fail(f"Runtime(**{kwargs!r}) was accepted")
    assert _actors() == before
    box.open().shutdown()  # the store was not left locked


def test_runtime_rejects_a_bad_path() -> None:
    """DESIGN.md: "rt = Runtime(path, ...) # opens (creates) the LMDB store in `path`"."""
    before = _actors()
    with pytest.raises(TypeError, match="path"):
        Runtime(None)  # type: ignore[arg-type]
    assert _actors() == before


# --------------------------------------------------------------------------
# rt.start(...) and rt.get(...)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "fragment"),
    [
        ((5,), {}, TypeError, "workflow"),
        ((None,), {}, TypeError, "workflow"),
        ((_plain_generator,), {}, TypeError, "workflow"),
        ((canary,), {}, TypeError, "workflow"),
        (("inp.no_such_workflow",), {}, ValueError, "workflow"),
        ((good,), {"run_id": 5}, TypeError, "run_id"),
        ((good,), {"run_id": ""}, ValueError, "run_id"),
        ((good,), {"run_id": "x" * 2000}, ValueError, "run_id"),
        ((good, {1, 2}), {}, SerializationError, "args[0]: set"),
        ((good, {"k": [1, {2}]}), {}, SerializationError, "args[0]['k'][1]: set"),
        ((good, "x" * (2 * 1024 * 1024)), {}, PayloadTooLargeError, "exceeds the limit"),
    ],
    ids=[
        "non-callable",
        "None",
        "undecorated",
        "an-activity",
        "unregistered-name",
        "run_id=5",
        "run_id=''",
        "run_id-too-long",
        "set-argument",
        "nested-set-argument",
        "too-large-argument",
    ],
)
def test_start_rejects_bad_arguments(
    rt: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, fragment: str
) -> None:
    """DESIGN.md: "rt.start(workflow, *args, run_id=None) # workflow: the decorated function
    or its registered name"; "Run arguments ... are refused at the call
    (`SerializationError`, nothing written)"; RELIABILITY.md 10 and 13."""
    before = _actors()
    with pytest.raises(error) as info:
        rt.start(*args, **kwargs)
    assert fragment in str(info.value)
    assert rt.runs() == []
    assert _actors() == before


def test_get_rejects_bad_run_ids(rt: Any) -> None:
    """DESIGN.md: "handle = rt.get(run_id)"; RELIABILITY.md 10."""
    with pytest.raises(TypeError, match="run_id"):
        rt.get(5)
    with pytest.raises(ValueError, match="run_id"):
        rt.get("")


def test_runs_rejects_an_unknown_status(rt: Any) -> None:
    """DESIGN.md: "rt.runs(status=None) # run summaries"."""
    with pytest.raises(ValueError, match=r"(?i)status"):
        rt.runs(status="bogus")


# --------------------------------------------------------------------------
# errors raised inside a workflow: the run fails with them
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_bad_operation_arguments_fail_the_run(rt: Any, case: str) -> None:
    """DESIGN.md: "Negative, NaN or unparsable values are a `ValueError` at the call";
    "`race([])`, `any([])` raise `ValueError`; `quorum(b, n)` needs `1 <= n <= len(b)`.
    `concurrency` must be an `int >= 1` (`bool` or `float` → `TypeError`, `0`/negative →
    `ValueError`)"; "Branch names ... match `[A-Za-z0-9_-]{1,64}`, else `ValueError`";
    "`sleep_until` needs a timezone-aware datetime (naive → `ValueError`)"; "Two branches
    of one coordination tree waiting on the same signal name are rejected with
    `ValueError` before anything is dispatched"."""
    _, expected_type, fragment = CASES[case]
    run_id = f"inp-{uuid_mod.uuid4().hex[:8]}"
    handle = rt.start(bad, case, run_id=run_id)
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == expected_type
    assert fragment in info.value.message
    assert handle.status() == RunStatus.FAILED
    assert handle.history() == [], "nothing was dispatched or recorded"
    assert run_id not in CALLS


# --------------------------------------------------------------------------
# RunHandle methods
# --------------------------------------------------------------------------


def test_signal_rejects_bad_names_and_keys(rt: Any) -> None:
    """DESIGN.md: "handle.signal(name, payload, key=None)"; RELIABILITY.md 10: "non-str
    names"."""
    handle = rt.start(good, 1)
    with pytest.raises(TypeError, match="name"):
        handle.signal(5, "payload")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        handle.signal(None, "payload")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        handle.signal("", "payload")
    with pytest.raises(TypeError, match="key"):
        handle.signal("inp.go", "payload", key=5)  # type: ignore[arg-type]
    assert sum(1 for _ in rt.store.scan("signals")) == 0
    handle.signal("inp.go", "ok")
    assert handle.result(timeout=WAIT) == [1, "ok"]


def test_result_rejects_a_non_number_timeout(rt: Any) -> None:
    """RELIABILITY.md 10: "Wrong types to every public API ...: `TypeError`/`ValueError`
    naming the parameter"."""
    handle = rt.start(good, 1)
    try:
        with pytest.raises((TypeError, ValueError), match="timeout"):
            handle.result(timeout="x")  # type: ignore[arg-type]
    finally:
        handle.signal("inp.go", None)


def test_result_rejects_a_nan_timeout(rt: Any) -> None:
    """DESIGN.md: "Negative, NaN or unparsable values are a `ValueError` at the call";
    RELIABILITY.md I6: "Nothing waits for ever: every wait completes, times out or
    raises"."""
    handle = rt.start(good, 1)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = handle.result(timeout=float("nan"))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    try:
        thread.join(0.5)
        returned = not thread.is_alive()
    finally:
        handle.signal("inp.go", None)  # ends the run, which also ends a spinning result()
        thread.join(WAIT)
    assert returned, "result(timeout=nan) neither returned nor raised"
    assert isinstance(outcome.get("error"), ValueError)
    assert "timeout" in str(outcome["error"])


# --------------------------------------------------------------------------
# decorators and Retry
# --------------------------------------------------------------------------


def test_retry_and_activity_reject_bad_arguments() -> None:
    """DESIGN.md: "`@activity(retry=Retry(attempts=3, initial=1.0, backoff=2.0,
    max_interval=30, non_retryable=(ValueError,)), timeout=10)`"; "Durations everywhere
    (sleep, timeouts, `Retry` intervals) ... anything else is a `ValueError` at the call"."""
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(TypeError, match="attempts"):
        Retry(attempts="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial"):
        Retry(initial=-1)
    with pytest.raises(ValueError, match="max_interval"):
        Retry(max_interval=float("nan"))
    with pytest.raises(ValueError, match="backoff"):
        Retry(backoff=0.5)
    with pytest.raises(TypeError, match="non_retryable"):
        Retry(non_retryable=(ValueError, "nope"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        activity(name="inp.never", timeout=-1)
    with pytest.raises(TypeError, match="retry"):
        activity(name="inp.never", retry=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        workflow(name="inp.never")(lambda ctx: None)


def test_retry_non_retryable_must_be_a_tuple_named_in_the_error() -> None:
    """RELIABILITY.md 10: "`TypeError`/`ValueError` naming the parameter"."""
    with pytest.raises(TypeError, match="non_retryable"):
        Retry(non_retryable=ValueError)  # type: ignore[arg-type]
