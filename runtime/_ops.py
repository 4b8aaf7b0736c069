"""Operations (what a workflow yields) and the ``Context`` that builds them.

An operation is a description, not an action: nothing runs until the
workflow yields it, and the run's driver gives it a step id at that moment.
Arguments are validated here, at the call, so bad input fails in the
workflow's own code before anything is dispatched or written.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime
from typing import Any

from treadle.storage import DEFAULT_MAX_PAYLOAD, encode

from ._durations import Duration, parse_duration, parse_optional_duration
from ._errors import SignalWaitConflictError
from ._registry import ActivityDef, Registry, Retry, WorkflowDef

__all__ = [
    "ActivityOp",
    "Branch",
    "ChildOp",
    "Context",
    "CoordOp",
    "Operation",
    "RecordOp",
    "SignalOp",
    "SleepOp",
    "StateOp",
]

_BRANCH_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RACE_KINDS = frozenset({"race", "any", "quorum"})


class Operation:
    """Something a workflow yields; ``yield`` it to get its result."""

    __slots__ = ()
    kind: str = "?"

    @property
    def name(self) -> str | None:
        return None

    def signal_names(self) -> list[str]:
        """Signal names waited on by this operation's tree (for the duplicate check)."""
        return []


Branch = Operation | Generator[Any, Any, Any]


class ActivityOp(Operation):
    __slots__ = ("args", "definition", "key", "retry", "timeout")
    kind = "activity"

    def __init__(
        self,
        definition: ActivityDef,
        args: tuple[Any, ...],
        key: str | None,
        retry: Retry | None,
        timeout: float | None,
    ) -> None:
        self.definition = definition
        self.args = args
        self.key = key
        self.retry = retry
        self.timeout = timeout

    @property
    def name(self) -> str | None:
        return self.definition.name


class SleepOp(Operation):
    __slots__ = ("seconds", "until")
    kind = "sleep"

    def __init__(self, seconds: float | None, until: float | None) -> None:
        self.seconds = seconds
        self.until = until


class SignalOp(Operation):
    __slots__ = ("signal", "timeout")
    kind = "signal"

    def __init__(self, signal: str, timeout: float | None) -> None:
        self.signal = signal
        self.timeout = timeout

    @property
    def name(self) -> str | None:
        return self.signal

    def signal_names(self) -> list[str]:
        return [self.signal]


class CoordOp(Operation):
    """all / all_settled / run_all / map / race / any / quorum."""

    __slots__ = (
        "branches",
        "cancel_losers",
        "concurrency",
        "fail_fast",
        "keys",
        "kind_",
        "n",
        "partial",
        "timeout",
    )

    def __init__(
        self,
        kind: str,
        keys: list[int | str],
        branches: list[Branch],
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        partial: bool = False,
        fail_fast: bool = False,
        cancel_losers: bool = False,
        n: int = 0,
    ) -> None:
        self.kind_ = kind
        self.keys = keys
        self.branches = branches
        self.concurrency = concurrency
        self.timeout = timeout
        self.partial = partial
        self.fail_fast = fail_fast
        self.cancel_losers = cancel_losers
        self.n = n
        names = self.signal_names()
        duplicates = sorted({s for s in names if names.count(s) > 1})
        if duplicates:
            raise SignalWaitConflictError(
                f"ctx.{kind}: several branches wait on the same signal {duplicates}; "
                "one coordination tree may wait on a signal name only once"
            )

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.kind_

    @property
    def named(self) -> bool:
        return bool(self.keys) and isinstance(self.keys[0], str)

    def layout(self) -> list[list[Any]]:
        """``[key, kind, name]`` per branch: what replay checks the code against."""
        return [
            [key, branch_kind(b), branch_name(b)] for key, b in zip(self.keys, self.branches, strict=True)
        ]

    def signal_names(self) -> list[str]:
        names: list[str] = []
        for branch in self.branches:
            if isinstance(branch, Operation):
                names.extend(branch.signal_names())
        return names


class ChildOp(Operation):
    __slots__ = ("args", "definition", "packed_args", "run_id")
    kind = "child"

    def __init__(
        self, definition: WorkflowDef, args: list[Any], packed_args: bytes, run_id: str | None
    ) -> None:
        self.definition = definition
        self.args = args
        self.packed_args = packed_args
        self.run_id = run_id

    @property
    def name(self) -> str | None:
        return self.definition.name


class RecordOp(Operation):
    """now / uuid / random: a value recorded once and replayed."""

    __slots__ = ("kind_",)

    def __init__(self, kind: str) -> None:
        self.kind_ = kind

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.kind_


class StateOp(Operation):
    __slots__ = ("packed", "value")
    kind = "state"

    def __init__(self, value: Any, packed: bytes) -> None:
        self.value = value
        self.packed = packed


def branch_kind(branch: Branch) -> str:
    return branch.kind if isinstance(branch, Operation) else "branch"


def branch_name(branch: Branch) -> str | None:
    return branch.name if isinstance(branch, Operation) else None


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_concurrency(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{where}: concurrency must be an int >= 1 or None, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"{where}: concurrency must be >= 1, got {value}")
    return value


def _check_flag(value: Any, param: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {param} must be a bool, got {type(value).__name__} {value!r}")
    return value


def _check_branch(branch: Any, where: str, label: str) -> Branch:
    if isinstance(branch, (Operation, types.GeneratorType)):
        return branch
    hint = ""
    if callable(branch):
        hint = " (a function: call it, or wrap it in ctx.run)"
    raise TypeError(
        f"{where}: branch {label} must be an operation (ctx.run, ctx.sleep, ...) or a generator, "
        f"got {type(branch).__name__}{hint}"
    )


def _list_branches(branches: Any, where: str) -> list[Branch]:
    if type(branches) is list:  # the common case; skip the ABC checks
        for i, branch in enumerate(branches):
            if not isinstance(branch, (Operation, types.GeneratorType)):
                _check_branch(branch, where, f"[{i}]")
        return list(branches)
    if isinstance(branches, (str, bytes, Mapping)) or not isinstance(branches, Iterable):
        raise TypeError(
            f"{where}: branches must be a list of operations or generators, got {type(branches).__name__}"
        )
    items = list(branches)
    return [_check_branch(b, where, f"[{i}]") for i, b in enumerate(items)]


def _named_branches(branches: Any, where: str) -> tuple[list[int | str], list[Branch]]:
    if not isinstance(branches, Mapping):
        raise TypeError(
            f"{where}: branches must be a dict of name -> operation, got {type(branches).__name__}"
        )
    keys: list[int | str] = []
    values: list[Branch] = []
    for key, branch in branches.items():
        if not isinstance(key, str) or not _BRANCH_NAME.match(key):
            raise ValueError(f"{where}: branch name {key!r} must match [A-Za-z0-9_-]{{1,64}}")
        keys.append(key)
        values.append(_check_branch(branch, where, repr(key)))
    return keys, values


def _check_name(value: Any, param: str, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: {param} must be a str, got {type(value).__name__} {value!r}")
    if not value or len(value) > 256:
        raise ValueError(f"{where}: {param} must have 1 to 256 characters, got {len(value)}")
    return value


class Context:
    """What a workflow uses to build its operations; passed as its first argument."""

    def __init__(
        self, run_id: str, workflow: str, registry: Registry, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> None:
        self._run_id = run_id
        self._workflow = workflow
        self._registry = registry
        self._max_payload = max_payload

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def workflow(self) -> str:
        return self._workflow

    # -- single steps ---------------------------------------------------------

    def run(
        self,
        fn: Callable[..., Any] | str,
        *args: Any,
        key: str | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
    ) -> ActivityOp:
        """Run an activity; its return value is the result.

        ``key`` is an idempotency key handed to the activity (``ActivityContext.key``);
        ``retry`` and ``timeout`` override the activity's own.
        """
        definition = self._registry.activity(fn, "ctx.run: fn")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"ctx.run: key must be a str or None, got {type(key).__name__}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"ctx.run: retry must be a Retry or None, got {type(retry).__name__}")
        seconds = parse_optional_duration(timeout, "ctx.run: timeout")
        return ActivityOp(
            definition,
            args,
            key,
            retry if retry is not None else definition.retry,
            seconds if seconds is not None else definition.timeout,
        )

    def sleep(self, duration: Duration) -> SleepOp:
        """A durable timer: survives restarts; the result is ``None``."""
        return SleepOp(parse_duration(duration, "ctx.sleep: duration"), None)

    def sleep_until(self, when: datetime) -> SleepOp:
        """Sleep until a timezone-aware datetime."""
        if not isinstance(when, datetime):
            raise ValueError(f"ctx.sleep_until: when must be a datetime, got {type(when).__name__}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("ctx.sleep_until: when must be timezone-aware (naive datetimes are ambiguous)")
        return SleepOp(None, when.timestamp())

    def wait_for_signal(self, name: str, timeout: Duration | None = None) -> SignalOp:
        """The oldest buffered signal ``name`` (sent before or after the wait).

        With ``timeout``, raises the built-in ``TimeoutError`` when none comes in time.
        """
        signal = _check_name(name, "name", "ctx.wait_for_signal")
        return SignalOp(signal, parse_optional_duration(timeout, "ctx.wait_for_signal: timeout"))

    def child(self, workflow: Callable[..., Any] | str, *args: Any, run_id: str | None = None) -> ChildOp:
        """Run a child workflow (its own run and journal); the result is its return value."""
        definition = self._registry.workflow(workflow, "ctx.child: workflow")
        if run_id is not None:
            _check_name(run_id, "run_id", "ctx.child")
        packed, values = encode(list(args), "ctx.child", root="args", limit=self._max_payload)
        return ChildOp(definition, values, packed, run_id)

    def now(self) -> RecordOp:
        """The current time (an aware UTC datetime), recorded once."""
        return RecordOp("now")

    def uuid(self) -> RecordOp:
        """A random UUID (str), recorded once."""
        return RecordOp("uuid")

    def random(self) -> RecordOp:
        """A float in [0, 1), recorded once."""
        return RecordOp("random")

    def set_state(self, value: Any) -> StateOp:
        """Publish a small serializable value that ``handle.state()`` reads."""
        packed, back = encode(value, "ctx.set_state", root="value", limit=self._max_payload)
        return StateOp(back, packed)

    # -- coordinators -----------------------------------------------------------

    def all(
        self,
        branches: Iterable[Branch],
        concurrency: int | None = None,
        timeout: Duration | None = None,
        partial: bool = False,
        fail_fast: bool = False,
    ) -> CoordOp:
        """Run branches in parallel; a list of results in input order.

        A failed branch does not abort its siblings: they finish and are
        checkpointed, then the lowest-positioned failure is raised (an
        ``ActivityError`` with ``.branch`` and ``.failures``). ``fail_fast``
        raises at the first failure instead. ``timeout`` raises
        ``TimeoutError``, or with ``partial=True`` fills unsettled slots with
        ``PENDING``. ``concurrency`` caps branches running at once (rolling).
        """
        where = "ctx.all"
        items = _list_branches(branches, where)
        seconds = parse_optional_duration(timeout, f"{where}: timeout")
        _check_flag(partial, "partial", where)
        _check_flag(fail_fast, "fail_fast", where)
        if partial and seconds is None:
            raise ValueError(f"{where}: partial=True needs a timeout")
        return CoordOp(
            "all",
            list(range(len(items))),
            items,
            concurrency=_check_concurrency(concurrency, where),
            timeout=seconds,
            partial=partial,
            fail_fast=fail_fast,
        )

    def all_settled(self, branches: Iterable[Branch], concurrency: int | None = None) -> CoordOp:
        """Run branches in parallel; a list of ``Settled(ok, value, error)``.

        Never raises for branch failures.
        """
        items = _list_branches(branches, "ctx.all_settled")
        return CoordOp(
            "all_settled",
            list(range(len(items))),
            items,
            concurrency=_check_concurrency(concurrency, "ctx.all_settled"),
        )

    def run_all(self, branches: Mapping[str, Branch], concurrency: int | None = None) -> CoordOp:
        """Like ``all``, keyed by name: a dict of results. Reordering the dict between attempts is safe."""
        keys, items = _named_branches(branches, "ctx.run_all")
        return CoordOp("run_all", keys, items, concurrency=_check_concurrency(concurrency, "ctx.run_all"))

    def map(
        self, items: Iterable[Any], fn: Callable[[Any], Branch], concurrency: int | None = None
    ) -> CoordOp:
        """``all`` over ``fn(item)`` for each item (``fn`` returns a branch)."""
        where = "ctx.map"
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise TypeError(f"{where}: items must be an iterable of items, got {type(items).__name__}")
        if not callable(fn):
            raise TypeError(f"{where}: fn must be callable, got {type(fn).__name__}")
        limit = _check_concurrency(concurrency, where)
        branches = [_check_branch(fn(item), where, f"fn(items[{i}])") for i, item in enumerate(items)]
        return CoordOp("map", list(range(len(branches))), branches, concurrency=limit)

    def race(self, branches: Iterable[Branch] | Mapping[str, Branch], cancel_losers: bool = False) -> CoordOp:
        """The first branch to settle (succeed or fail) decides; with a dict, ``(key, value)``.

        Losers are not killed: a losing activity runs to completion and its
        result is dropped; ``cancel_losers=True`` sets their
        ``ActivityContext.cancelled``. ``race([])`` raises ``ValueError``.
        """
        where = "ctx.race"
        _check_flag(cancel_losers, "cancel_losers", where)
        if isinstance(branches, Mapping):
            keys, items = _named_branches(branches, where)
        else:
            items = _list_branches(branches, where)
            keys = list(range(len(items)))
        if not items:
            raise ValueError(f"{where}: needs at least one branch")
        return CoordOp("race", keys, items, cancel_losers=cancel_losers)

    def any(self, branches: Iterable[Branch]) -> CoordOp:
        """The first branch to succeed; ``AllBranchesFailedError`` when none does."""
        items = _list_branches(branches, "ctx.any")
        if not items:
            raise ValueError("ctx.any: needs at least one branch")
        return CoordOp("any", list(range(len(items))), items)

    def quorum(self, branches: Iterable[Branch], n: int) -> CoordOp:
        """``[(index, value), ...]`` of the first ``n`` branches to succeed, in finishing order."""
        where = "ctx.quorum"
        items = _list_branches(branches, where)
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"{where}: n must be an int, got {type(n).__name__}")
        if not 1 <= n <= len(items):
            raise ValueError(
                f"{where}: n must be between 1 and the number of branches ({len(items)}), got {n}"
            )
        return CoordOp("quorum", list(range(len(items))), items, n=n)
