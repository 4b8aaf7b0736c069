"""The workflows behind the golden journals (``data/``), shared by the generator and the test.

Changing any of them changes what their journals mean: never edit one in
place. Add a new workflow (and regenerate, see ``make_golden.py``) instead.

Each run ends waiting for the signal ``golden.done``: the journals are
exported at that point, so loading one gives a run that must *replay* every
recorded step (a finished run would only be read back, not replayed). Where
it can, the wait sits inside an unfinished coordinator or generator branch,
so that replay looks up the nested step ids (``S.k``, ``S.k.j``) too: a
settled coordinator is replayed from its own record alone.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from treadle.runtime import PENDING, ActivityError, Retry, Settled, activity, workflow

DONE = "golden.done"
HOLD = 30.0

CALLS: Counter[str] = Counter()
_CALLS_LOCK = threading.Lock()
# Race losers block on this until the generator releases them: the winner is always the same.
RELEASE = threading.Event()


def _note(name: str) -> None:
    with _CALLS_LOCK:
        CALLS[name] += 1


def calls() -> int:
    """How many activity calls were made since the last reset."""
    with _CALLS_LOCK:
        return sum(CALLS.values())


def reset_calls() -> None:
    with _CALLS_LOCK:
        CALLS.clear()


@activity(name="golden.add")
def add(a: int, b: int) -> int:
    _note("add")
    return a + b


@activity(name="golden.echo")
def echo(value: Any) -> Any:
    _note("echo")
    return value


@activity(name="golden.fail")
def fail(message: str) -> None:
    _note("fail")
    raise ValueError(message)


@activity(name="golden.slow")
def slow(value: Any) -> Any:
    _note("slow")
    RELEASE.wait(HOLD)
    return value


ONCE = Retry(attempts=1)


@workflow(name="golden.sequential")
def sequential(ctx: Any) -> Any:
    a = yield ctx.run(add, 1, 2)
    b = yield ctx.run(add, a, 10)
    c = yield ctx.run(echo, {"a": a, "b": b, "t": (1, "two"), "n": None})
    stamp = yield ctx.now()
    ident = yield ctx.uuid()
    yield ctx.set_state({"step": "last"})
    done = yield ctx.wait_for_signal(DONE)
    return [a, b, c, stamp.isoformat(), ident, done]


@workflow(name="golden.all_failure")
def all_failure(ctx: Any) -> Any:
    try:
        yield ctx.all([ctx.run(echo, "x"), ctx.run(fail, "bad input", retry=ONCE), ctx.run(echo, "z")])
        caught: Any = None
    except ActivityError as exc:
        caught = [exc.type, exc.message, exc.branch, sorted((exc.failures or {}).keys())]
    settled = yield ctx.all_settled(
        [ctx.run(echo, 1), ctx.run(fail, "again", retry=ONCE), ctx.wait_for_signal(DONE)]
    )
    rows = [[s.ok, s.value, s.error.type if s.error else None] for s in settled]
    return [caught, rows]


@workflow(name="golden.race")
def race(ctx: Any) -> Any:
    first = yield ctx.race([ctx.run(slow, "loser"), ctx.run(echo, "winner")])
    keyed = yield ctx.race({"slow": ctx.run(slow, "late"), "fast": ctx.run(echo, "early")})
    inner = yield ctx.all(
        [ctx.race([ctx.run(slow, "inner-loser"), ctx.run(echo, "inner")]), ctx.wait_for_signal(DONE)]
    )
    return [first, list(keyed), inner]


@workflow(name="golden.run_all")
def run_all(ctx: Any) -> Any:
    mapped = yield ctx.map([1, 2, 3], lambda x: ctx.run(add, x, 100), concurrency=2)
    named = yield ctx.run_all(
        {"b": ctx.run(add, 2, 3), "a": ctx.run(echo, "A"), "done": ctx.wait_for_signal(DONE)}
    )
    return [mapped, named]


@workflow(name="golden.signal")
def signal(ctx: Any) -> Any:
    first = yield ctx.wait_for_signal("golden.first")
    both = yield ctx.all(
        [ctx.wait_for_signal("golden.second"), ctx.run(echo, "beside"), ctx.wait_for_signal(DONE)]
    )
    return [first, both]


def _branch(ctx: Any, n: int, last: bool) -> Any:
    a = yield ctx.run(add, n, 1)
    pair = yield ctx.race([ctx.run(slow, "never"), ctx.run(echo, f"in-{n}")])
    if not last:
        return [a, pair]
    done = yield ctx.wait_for_signal(DONE)
    return [a, pair, done]


@workflow(name="golden.nested")
def nested(ctx: Any) -> Any:
    out = yield ctx.all([_branch(ctx, 1, False), _branch(ctx, 2, True), ctx.run(echo, "leaf")])
    return out


# name -> (workflow, signals sent right after the start: (name, payload, key))
SCENARIOS: dict[str, tuple[Any, list[tuple[str, Any, str | None]]]] = {
    "sequential": (sequential, []),
    "all_failure": (all_failure, []),
    "race": (race, []),
    "run_all": (run_all, []),
    "signal": (signal, [("golden.first", {"n": 1}, None), ("golden.second", [2, "two"], "k-2")]),
    "nested": (nested, []),
}


def run_id(name: str) -> str:
    return f"golden-{name}"


def plain(value: Any) -> Any:
    """A JSON-comparable form of a value ``history()`` returns."""
    if isinstance(value, Settled):
        return {
            "ok": value.ok,
            "value": plain(value.value),
            "error": value.error.type if value.error else None,
        }
    if value is PENDING:
        return "PENDING"
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def history_rows(handle: Any) -> list[list[Any]]:
    """``handle.history()`` as JSON-comparable rows: step, kind, name, status, value, error type, attempt."""
    return [
        [
            rec.step,
            rec.kind,
            rec.name,
            rec.status,
            plain(rec.value),
            rec.error.type if rec.error else None,
            rec.attempt,
        ]
        for rec in handle.history()
    ]
