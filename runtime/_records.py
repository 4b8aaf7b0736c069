"""Public value types: StepRecord, RunStatus, RunSummary, Settled and PENDING."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._errors import ActivityError

__all__ = ["CANCEL_STEP", "FINISHED", "PENDING", "RunStatus", "RunSummary", "Settled", "StepRecord"]


class RunStatus(enum.StrEnum):
    """Where a run is in its life."""

    RUNNING = "running"
    SUSPENDED = "suspended"  # sleeping or waiting; no thread held
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PARKED = "parked"  # stopped by a NonDeterminismError; journal untouched

    @property
    def finished(self) -> bool:
        return self in FINISHED


# The statuses a run ends in, as stored (RunStatus is a StrEnum: its members match too).
FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

# The journal step id of a run's cancel request (read by the driver, the supervisor and the CLI).
CANCEL_STEP = "@cancel"


class _Pending:
    """The sentinel in unsettled slots of ``all(timeout=..., partial=True)``."""

    _instance: _Pending | None = None

    def __new__(cls) -> _Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "PENDING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "PENDING"


PENDING = _Pending()


@dataclass(frozen=True)
class Settled:
    """One outcome of ``all_settled``: ``ok`` with ``value``, or not with ``error``."""

    ok: bool
    value: Any = None
    error: ActivityError | None = None


@dataclass(frozen=True)
class StepRecord:
    """One step of a run's history (``handle.history()``)."""

    step: str
    kind: str
    name: str | None
    status: str
    value: Any
    error: ActivityError | None
    attempt: int
    started: datetime | None
    finished: datetime | None


@dataclass(frozen=True)
class RunSummary:
    """One row of ``rt.runs()``."""

    run_id: str
    workflow: str
    status: RunStatus
    created: datetime
    updated: datetime


COORDINATOR_KINDS = frozenset({"all", "all_settled", "run_all", "map", "race", "any", "quorum"})


def shape_value(
    kind: str,
    plain: Any,
    lay: list[list[Any]] | None = None,
    *,
    named: bool | None = None,
    run_id: str = "?",
) -> Any:
    """The value a workflow sees for a coordinator, from its stored plain form.

    Used on the first run and on replay alike, so both see the same shapes.
    ``lay`` (the recorded ``[key, kind, name]`` per branch) shapes branches
    that are coordinators themselves; a partial ``all`` stores
    ``{"values": [...], "pending": [indexes]}``.
    """
    kinds = {row[0]: row[1] for row in lay} if lay else {}

    def branch(key: Any, value: Any) -> Any:
        sub = kinds.get(key)
        return shape_value(sub, value, None, run_id=run_id) if sub in COORDINATOR_KINDS else value

    if kind in ("all", "map"):
        if isinstance(plain, dict):
            values = [branch(i, v) for i, v in enumerate(plain["values"])]
            for index in plain["pending"]:
                values[index] = PENDING
            return values
        return [branch(i, v) for i, v in enumerate(plain)]
    if kind == "run_all":
        return {key: branch(key, value) for key, value in plain.items()}
    if kind == "all_settled":
        from ._errors import error_from_data

        rows = []
        for index, (ok, value, err) in enumerate(plain):
            error = None
            if not ok:
                rebuilt = error_from_data(err, run_id)
                error = (
                    rebuilt if isinstance(rebuilt, ActivityError) else ActivityError.from_exception(rebuilt)
                )
            rows.append(Settled(bool(ok), branch(index, value) if ok else None, error))
        return rows
    if kind in ("race", "any"):
        key, value = plain
        value = branch(key, value)
        is_named = isinstance(key, str) if named is None else named
        return (key, value) if kind == "race" and is_named else value
    if kind == "quorum":
        return [(key, branch(key, value)) for key, value in plain]
    return plain


def _register_value_types() -> None:
    """Make treadle's own result types storable, so a workflow or branch may return them."""
    from treadle.storage import register_type

    from ._errors import ActivityTimeoutError, error_from_data, error_to_data

    def error_back(data: Any) -> ActivityError:
        error = error_from_data(data)
        return error if isinstance(error, ActivityError) else ActivityError.from_exception(error)

    register_type(_Pending, 1, lambda _: None, lambda _: PENDING)
    register_type(
        Settled,
        2,
        lambda s: [s.ok, s.value, None if s.error is None else error_to_data(s.error)],
        lambda p: Settled(bool(p[0]), p[1], None if p[2] is None else error_back(p[2])),
    )
    register_type(ActivityError, 3, error_to_data, error_back)
    register_type(ActivityTimeoutError, 4, error_to_data, error_back)


_register_value_types()
