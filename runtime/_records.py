"""Public value types: StepRecord, RunStatus, RunSummary, Settled and PENDING."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._errors import ActivityError

__all__ = ["PENDING", "RunStatus", "RunSummary", "Settled", "StepRecord"]


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
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


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


def shape_value(
    kind: str, plain: Any, extra: dict[str, Any], *, named: bool | None = None, run_id: str = "?"
) -> Any:
    """The value a workflow sees for a coordinator, from its stored plain form.

    Used on the first run and on replay alike, so both see the same shapes.
    """
    if kind in ("all", "map"):
        pend = extra.get("pend")
        if pend:
            values = list(plain)
            for index in pend:
                values[index] = PENDING
            return values
        return plain
    if kind == "all_settled":
        from ._errors import error_from_data

        rows = []
        for ok, value, err in plain:
            error = None
            if not ok:
                rebuilt = error_from_data(err, run_id)
                error = (
                    rebuilt if isinstance(rebuilt, ActivityError) else ActivityError.from_exception(rebuilt)
                )
            rows.append(Settled(bool(ok), value, error))
        return rows
    if kind in ("race", "any"):
        key, value = plain
        is_named = isinstance(key, str) if named is None else named
        return (key, value) if kind == "race" and is_named else value
    if kind == "quorum":
        return [(key, value) for key, value in plain]
    return plain
