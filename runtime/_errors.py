"""Every error a workflow author can meet, and their form as stored data.

Errors seen by workflows are data: an activity's exception reaches the
workflow as an ``ActivityError`` carrying the original's qualified class
name and message (and, on the live path only, the original as
``__cause__``). The same error is rebuilt from the journal on replay; nothing
is ever unpickled.
"""

from __future__ import annotations

from typing import Any

from treadle.storage import (
    JournalCorruptionError,
    PayloadTooLargeError,
    SerializationError,
    StorageFullError,
    StoreLockedError,
    TreadleError,
)

__all__ = [
    "ActivityError",
    "ActivityTimeoutError",
    "AllBranchesFailedError",
    "BranchTopologyChangedError",
    "CancelledError",
    "ExecutorUnavailableError",
    "JournalCorruptionError",
    "NonDeterminismError",
    "NotAnOperationError",
    "PayloadTooLargeError",
    "RunFinishedError",
    "RunNotFoundError",
    "RunParkedError",
    "SerializationError",
    "SignalWaitConflictError",
    "StorageFullError",
    "StoreLockedError",
    "TreadleError",
    "WorkerLostError",
    "WorkflowFailedError",
    "error_from_data",
    "error_to_data",
    "type_name",
]

BranchKey = int | str


def type_name(cls: type[BaseException]) -> str:
    """``module.QualName`` of an exception class; treadle's own use their public path."""
    module = cls.__module__
    if module.startswith("treadle."):
        return f"treadle.runtime.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, (TreadleError, CancelledError)):
        return str(getattr(exc, "message", exc))
    return str(exc)


class ActivityError(TreadleError):
    """An activity, a branch or a child workflow failed.

    Attributes:
        type: qualified class name of the original error (``"builtins.ValueError"``).
        message: the original error's message.
        details: extra serializable data (the original's ``details`` attribute, if any).
        branch: the branch key (position or ``run_all`` name) when raised by a coordinator.
        failures: ``{branch key: ActivityError}`` of every failed branch, in branch order.
        run_id: the child run's id when a child workflow failed.
    """

    code = "TRD-ACTIVITY"

    def __init__(
        self,
        type: str,
        message: str,
        details: Any = None,
        *,
        branch: BranchKey | None = None,
        failures: dict[BranchKey, ActivityError] | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.details = details
        self.branch = branch
        self.failures = failures
        self.run_id = run_id

    @classmethod
    def from_exception(cls, exc: BaseException) -> ActivityError:
        """The data form of ``exc`` (an ``ActivityError`` is returned as it is)."""
        if isinstance(exc, ActivityError):
            return exc
        if isinstance(exc, AllBranchesFailedError):
            error = ActivityError(type_name(type(exc)), exc.message, failures=exc.failures)
        else:
            details = getattr(exc, "details", None)
            error = ActivityError(type_name(type(exc)), _message_of(exc), _plain(details))
        error.__cause__ = exc
        return error

    def with_branch(self, branch: BranchKey, failures: dict[BranchKey, ActivityError]) -> ActivityError:
        """A copy that names the coordinator's failing branch and every failure."""
        cls = type(self)
        copy = cls.__new__(cls)
        copy.__dict__.update(self.__dict__)
        Exception.__init__(copy, *self.args)
        copy.branch = branch
        copy.failures = dict(failures)
        copy.__cause__ = self.__cause__
        return copy


class ActivityTimeoutError(ActivityError):
    """An activity attempt ran past its ``timeout``."""

    code = "TRD-ACT-TIMEOUT"


class AllBranchesFailedError(TreadleError):
    """``any``/``quorum`` could not get enough successes; ``failures`` holds every failure."""

    code = "TRD-ALLFAILED"

    def __init__(self, message: str, failures: dict[BranchKey, ActivityError]) -> None:
        super().__init__(message)
        self.failures = failures


class NonDeterminismError(TreadleError):
    """Replay met workflow code that does not match the journal.

    Attributes: ``run_id``, ``step``, ``recorded`` (what the journal holds),
    ``got`` (what the code did).
    """

    code = "TRD-NONDET"

    def __init__(self, run_id: str, step: str, recorded: str, got: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"run {run_id} step {step}: recorded {recorded}, got {got}{extra}")
        self.run_id = run_id
        self.step = step
        self.recorded = recorded
        self.got = got


class BranchTopologyChangedError(NonDeterminismError):
    """A coordinator's branches differ from the recorded ones (count, names, kinds)."""

    code = "TRD-TOPOLOGY"


class RunParkedError(TreadleError):
    """``result()`` of a run parked by a NonDeterminismError."""

    code = "TRD-PARKED"

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} is parked: {reason}")
        self.run_id = run_id
        self.reason = reason


class WorkflowFailedError(TreadleError):
    """``result()`` of a failed (or cancelled) run; ``type`` is the error that ended it."""

    code = "TRD-FAILED"

    def __init__(self, run_id: str, type: str, message: str) -> None:
        super().__init__(f"run {run_id} failed with {type}: {message}")
        self.run_id = run_id
        self.type = type
        self.message = message


class RunNotFoundError(TreadleError, LookupError):
    """No run with that id exists in the store."""

    code = "TRD-NORUN"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunFinishedError(TreadleError):
    """The run has finished; it can no longer receive signals."""

    code = "TRD-FINISHED"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id!r} has finished ({status}); it takes no more signals")
        self.run_id = run_id
        self.status = status


class SignalWaitConflictError(TreadleError, ValueError):
    """Two waits on one signal name in one coordination tree: raised at the coordinator's
    call when its branches are operations, or into a generator branch at its second wait.
    A ``ValueError``, as DESIGN.md says; its own class so that the journal can tell it from
    a ``ValueError`` the workflow raised itself."""

    code = "TRD-SIGNAL-CONFLICT"


class NotAnOperationError(TreadleError, TypeError):
    """A workflow yielded something that is not an operation (``ctx.run``, ``ctx.all``, ...),
    raised back into the workflow at that ``yield``."""

    code = "TRD-NOT-OPERATION"


class WorkerLostError(TreadleError):
    """The process, Ray worker or node running an activity attempt died or became unreachable.

    That attempt fails with this error and the activity's retry policy
    applies, as for any other failed attempt; nothing already checkpointed is
    affected.
    """

    code = "TRD-WORKER-LOST"

    def __init__(self, executor: str, detail: str) -> None:
        super().__init__(f"the {executor} executor lost the attempt: {detail}")
        self.executor = executor
        self.detail = detail


class ExecutorUnavailableError(TreadleError):
    """An activity asked for an executor that cannot be used here (Ray not installed, say)."""

    code = "TRD-NO-EXECUTOR"

    def __init__(self, executor: str, detail: str) -> None:
        super().__init__(f"the {executor} executor is not available: {detail}")
        self.executor = executor
        self.detail = detail


class CancelledError(BaseException):
    """Raised into a workflow by ``handle.cancel()``.

    A ``BaseException``, like ``asyncio.CancelledError``, so that a workflow's
    ``except Exception`` does not swallow it.
    """

    code = "TRD-CANCELLED"

    def __init__(self, message: str = "the run was cancelled") -> None:
        super().__init__(f"[{self.code}] {message}")
        self.message = message


# --------------------------------------------------------------------------
# errors as stored data
# --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Keep ``details`` only if it is plain data (it is stored)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return repr(value)


# Errors the runtime raises into a workflow at a step. They are stored as "usage" and rebuilt
# as the same class, so an ``except`` around the step takes the same path on replay. A
# workflow's own ValueError is not one of them: it is stored like any other error.
_USAGE: tuple[type[TreadleError], ...] = (SignalWaitConflictError, NotAnOperationError)
_USAGE_BY_NAME: dict[str, type[Exception]] = {
    **{type_name(cls): cls for cls in _USAGE},
    # journals written before these classes existed stored the built-in ones
    "builtins.ValueError": ValueError,
    "builtins.TypeError": TypeError,
}


def error_to_data(exc: BaseException) -> dict[str, Any]:
    """The stored form of an error seen by a workflow."""
    if isinstance(exc, CancelledError):
        return {"c": "cancelled", "t": type_name(CancelledError), "m": exc.message}
    if isinstance(exc, NonDeterminismError):
        kind = "topology" if isinstance(exc, BranchTopologyChangedError) else "nondet"
        return {
            "c": kind,
            "t": type_name(type(exc)),
            "m": exc.message,
            "s": exc.step,
            "r": exc.recorded,
            "g": exc.got,
        }
    if isinstance(exc, AllBranchesFailedError):
        return {
            "c": "allfailed",
            "t": type_name(type(exc)),
            "m": exc.message,
            "f": _failures_data(exc.failures),
        }
    if isinstance(exc, TimeoutError) and not isinstance(exc, ActivityError):
        return {"c": "timeout", "t": type_name(TimeoutError), "m": str(exc)}
    if type(exc) in _USAGE:
        return {"c": "usage", "t": type_name(type(exc)), "m": _message_of(exc)}
    error = ActivityError.from_exception(exc)
    data: dict[str, Any] = {
        "c": "activity_timeout" if isinstance(error, ActivityTimeoutError) else "activity",
        "t": error.type,
        "m": error.message,
    }
    if error.details is not None:
        data["d"] = _plain(error.details)
    if error.branch is not None:
        data["b"] = error.branch
    if error.failures:
        data["f"] = _failures_data(error.failures)
    if error.run_id is not None:
        data["r"] = error.run_id
    return data


def _failures_data(failures: dict[BranchKey, ActivityError] | None) -> list[list[Any]]:
    return [[key, error_to_data(err)] for key, err in (failures or {}).items()]


def _failures_from(rows: list[list[Any]] | None) -> dict[BranchKey, ActivityError]:
    result: dict[BranchKey, ActivityError] = {}
    for key, data in rows or []:
        error = error_from_data(data)
        result[key] = error if isinstance(error, ActivityError) else ActivityError.from_exception(error)
    return result


def error_from_data(data: dict[str, Any], run_id: str = "?") -> BaseException:
    """Rebuild the error a workflow saw from its stored form."""
    kind = data.get("c", "activity")
    message = data.get("m", "")
    if kind == "cancelled":
        return CancelledError(message)
    if kind in ("nondet", "topology"):
        cls = BranchTopologyChangedError if kind == "topology" else NonDeterminismError
        error = cls.__new__(cls)
        TreadleError.__init__(error, message)
        error.run_id, error.step, error.recorded, error.got = (
            run_id,
            data.get("s", ""),
            data.get("r", ""),
            data.get("g", ""),
        )
        return error
    if kind == "allfailed":
        return AllBranchesFailedError(message, _failures_from(data.get("f")))
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "usage":
        return _USAGE_BY_NAME.get(data.get("t", ""), ValueError)(message)
    cls_ = ActivityTimeoutError if kind == "activity_timeout" else ActivityError
    return cls_(
        data.get("t", "builtins.Exception"),
        message,
        data.get("d"),
        branch=data.get("b"),
        failures=_failures_from(data.get("f")) if data.get("f") else None,
        run_id=data.get("r"),
    )
