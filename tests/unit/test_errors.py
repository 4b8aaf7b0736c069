"""The error hierarchy, stable codes, and errors as stored data (error_to_data/error_from_data)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

import treadle.runtime as tr
import treadle.storage as ts
from treadle.runtime import (
    ActivityError,
    ActivityTimeoutError,
    AllBranchesFailedError,
    BranchTopologyChangedError,
    CancelledError,
    ExecutorUnavailableError,
    JournalCorruptionError,
    NonDeterminismError,
    NotAnOperationError,
    PayloadTooLargeError,
    RunFinishedError,
    RunNotFoundError,
    RunParkedError,
    SerializationError,
    SignalWaitConflictError,
    StorageFullError,
    StoreLockedError,
    TreadleError,
    WorkerLostError,
    WorkflowFailedError,
)
from treadle.runtime._errors import error_from_data, error_to_data
from treadle.storage import decode, encode


def _through_store(exc: BaseException, run_id: str = "run-1") -> BaseException:
    """error_to_data, then the real codec (as the journal stores it), then error_from_data."""
    data, _ = encode(error_to_data(exc), "error")
    return error_from_data(decode(data), run_id)


class Outer:
    """Holds a nested exception class, to check qualified names."""

    class OutOfStock(Exception):
        pass


class WithDetails(Exception):
    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        self.details = details


# --- round trips -----------------------------------------------------------------


def test_activity_error_round_trip_with_branch_failures_and_run_id() -> None:
    """ActivityError keeps type, message, details, branch, run_id and failures (keys and order) as data."""
    first = ActivityError("builtins.ValueError", "bad input", {"field": "x"})
    second = ActivityTimeoutError("treadle.runtime.ActivityTimeoutError", "attempt ran past 5s")
    original = ActivityError(
        "shop.errors.OutOfStock",
        "sku 7 is gone",
        details=[1, "two"],
        branch="payment",
        failures={2: first, "payment": second, 0: first},
        run_id="child-9",
    )
    back = _through_store(original)
    assert type(back) is ActivityError
    assert (back.type, back.message, back.details) == ("shop.errors.OutOfStock", "sku 7 is gone", [1, "two"])
    assert back.branch == "payment"
    assert back.run_id == "child-9"
    assert back.failures is not None
    assert list(back.failures) == [2, "payment", 0]
    assert type(back.failures[2]) is ActivityError
    assert (back.failures[2].type, back.failures[2].message) == ("builtins.ValueError", "bad input")
    assert back.failures[2].details == {"field": "x"}
    assert type(back.failures["payment"]) is ActivityTimeoutError
    assert back.failures["payment"].message == "attempt ran past 5s"
    assert str(back) == str(original)


def test_activity_error_minimal_round_trip() -> None:
    """Without optional fields they come back as None."""
    back = _through_store(ActivityError("builtins.KeyError", "'k'"))
    assert isinstance(back, ActivityError)
    assert (back.details, back.branch, back.failures, back.run_id) == (None, None, None, None)


def test_activity_timeout_error_round_trip() -> None:
    """ActivityTimeoutError comes back as ActivityTimeoutError (still an ActivityError)."""
    original = ActivityTimeoutError(
        "treadle.runtime.ActivityTimeoutError", "attempt 1 ran past 30s", branch=1
    )
    back = _through_store(original)
    assert type(back) is ActivityTimeoutError
    assert isinstance(back, ActivityError)
    assert back.message == "attempt 1 ran past 30s"
    assert back.branch == 1


def test_all_branches_failed_round_trip() -> None:
    """AllBranchesFailedError keeps its message and every failure, in branch order."""
    failures = {
        0: ActivityError("builtins.ValueError", "no"),
        1: ActivityTimeoutError("treadle.runtime.ActivityTimeoutError", "slow"),
        2: ActivityError("builtins.OSError", "down"),
    }
    back = _through_store(AllBranchesFailedError("no branch of any() succeeded", failures))
    assert type(back) is AllBranchesFailedError
    assert back.message == "no branch of any() succeeded"
    assert list(back.failures) == [0, 1, 2]
    assert [type(e) for e in back.failures.values()] == [ActivityError, ActivityTimeoutError, ActivityError]
    assert [e.message for e in back.failures.values()] == ["no", "slow", "down"]


def test_builtin_timeout_error_round_trip() -> None:
    """A wait's built-in TimeoutError comes back as exactly the built-in TimeoutError, same message."""
    back = _through_store(TimeoutError("all(timeout=5) gave up on 2 branches"))
    assert type(back) is TimeoutError
    assert str(back) == "all(timeout=5) gave up on 2 branches"


def test_cancelled_error_round_trip() -> None:
    """CancelledError comes back as CancelledError with its message."""
    back = _through_store(CancelledError("cancelled by the operator"))
    assert type(back) is CancelledError
    assert back.message == "cancelled by the operator"
    assert str(back) == "[TRD-CANCELLED] cancelled by the operator"


@pytest.mark.parametrize("cls", [NonDeterminismError, BranchTopologyChangedError])
def test_nondeterminism_errors_round_trip(cls: type[NonDeterminismError]) -> None:
    """Non-determinism errors keep class, step, recorded, got and message; run_id is the caller's."""
    original = cls("order-42", "3", "branches ['a', 'b']", "branches ['a']")
    back = _through_store(original, run_id="order-42")
    assert type(back) is cls
    assert isinstance(back, NonDeterminismError)
    assert (back.run_id, back.step, back.recorded, back.got) == (
        "order-42",
        "3",
        "branches ['a', 'b']",
        "branches ['a']",
    )
    assert str(back) == str(original)


def test_plain_exception_becomes_activity_error_data() -> None:
    """Any other exception is stored as an ActivityError of its qualified type."""
    back = _through_store(Outer.OutOfStock("sku 7"))
    assert type(back) is ActivityError
    assert back.type == f"{__name__}.Outer.OutOfStock"
    assert back.message == "sku 7"


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SignalWaitConflictError("step 1: step 0 already waits on signal 'go'"), ValueError),
        (NotAnOperationError("step 2: a workflow must yield operations, got int"), TypeError),
    ],
)
def test_errors_the_runtime_raises_into_a_workflow_come_back_as_their_class(
    error: TreadleError, builtin: type[Exception]
) -> None:
    """Replayed as the same class (still the built-in kind DESIGN.md names), so an `except`
    around the step takes the same path on replay; the message is not prefixed twice."""
    back = _through_store(error)
    assert type(back) is type(error)
    assert isinstance(back, builtin)
    assert str(back) == str(error)


@pytest.mark.parametrize("cls", [ValueError, TypeError])
def test_a_workflows_own_value_or_type_error_is_stored_like_any_other(cls: type[Exception]) -> None:
    """Only the runtime's own classes are stored as 'usage'; a workflow's ValueError keeps its
    type, message and details as an ActivityError, like a KeyError would."""
    data = error_to_data(WithDetails("bad input", {"field": "sku"}) if cls is ValueError else cls("bad"))
    assert data["c"] == "activity"
    plain = error_to_data(cls("bad"))
    assert (plain["c"], plain["t"]) == ("activity", f"builtins.{cls.__name__}")
    back = _through_store(cls("bad"))
    assert type(back) is ActivityError and back.type == f"builtins.{cls.__name__}"


@pytest.mark.parametrize("cls", [ValueError, TypeError])
def test_usage_records_written_before_the_runtime_classes_still_replay(cls: type[Exception]) -> None:
    """Journals written before SignalWaitConflictError/NotAnOperationError stored the built-in class."""
    back = error_from_data({"c": "usage", "t": f"builtins.{cls.__name__}", "m": "old"})
    assert type(back) is cls and str(back) == "old"


# --- ActivityError.from_exception -------------------------------------------------


def test_from_exception_builtin_type_and_cause() -> None:
    """from_exception: .type 'builtins.ValueError', .message the message, __cause__ the original."""
    original = ValueError("bad quantity")
    error = ActivityError.from_exception(original)
    assert error.type == "builtins.ValueError"
    assert error.message == "bad quantity"
    assert error.__cause__ is original
    assert str(error) == "[TRD-ACTIVITY] builtins.ValueError: bad quantity"


def test_from_exception_user_class_uses_module_and_qualname() -> None:
    """A user's exception class is named module.QualName (nested classes included)."""
    original = Outer.OutOfStock("sku 7")
    error = ActivityError.from_exception(original)
    assert error.type == f"{Outer.OutOfStock.__module__}.Outer.OutOfStock"
    assert error.type == f"{__name__}.Outer.OutOfStock"
    assert error.__cause__ is original


def test_from_exception_keeps_plain_details_only() -> None:
    """An exception's `details` is kept as plain data (tuples as lists); anything else as its repr."""
    plain = ActivityError.from_exception(WithDetails("x", {"sku": 7, "pair": (1, 2)}))
    assert plain.details == {"sku": 7, "pair": [1, 2]}
    opaque = ActivityError.from_exception(WithDetails("x", {1, 2}))
    assert opaque.details == repr({1, 2})


def test_from_exception_returns_an_activity_error_unchanged() -> None:
    """An ActivityError is already data: it is returned as it is."""
    error = ActivityError("builtins.ValueError", "x")
    assert ActivityError.from_exception(error) is error


@pytest.mark.parametrize(
    "error",
    [
        SerializationError("step 3", "result['x'][3]", "set"),
        RunNotFoundError("order-1"),
        StorageFullError("disk full"),
        CancelledError(),
        AllBranchesFailedError("none succeeded", {}),
    ],
)
def test_treadle_errors_are_named_by_their_public_path(error: BaseException) -> None:
    """treadle's own errors get type 'treadle.runtime.X' (even those defined in treadle.storage)."""
    converted = ActivityError.from_exception(error)
    assert converted.type == f"treadle.runtime.{type(error).__name__}"
    assert converted.__cause__ is error
    assert not converted.message.startswith("[TRD"), "the code is not repeated inside the message"


def test_serialization_error_as_activity_error_keeps_the_path() -> None:
    """A result that cannot be stored reaches the workflow with the path in its message."""
    with pytest.raises(SerializationError) as info:
        encode({"x": [1, 2, 3, {4}]}, "step 3", root="result")
    converted = ActivityError.from_exception(info.value)
    assert converted.type == "treadle.runtime.SerializationError"
    assert "result['x'][3]: set" in converted.message


def test_with_branch_copies_and_keeps_type_and_cause() -> None:
    """with_branch returns a copy naming the branch and failures; the original is untouched."""
    original = ValueError("boom")
    error = ActivityTimeoutError("builtins.ValueError", "boom")
    error.__cause__ = original
    failures = {1: error}
    copy = error.with_branch(1, failures)
    assert type(copy) is ActivityTimeoutError
    assert (copy.branch, copy.failures) == (1, {1: error})
    assert copy.failures is not failures
    assert copy.__cause__ is original
    assert str(copy) == str(error)
    assert (error.branch, error.failures) == (None, None)


# --- codes and hierarchy --------------------------------------------------------

SAMPLES: list[BaseException] = [
    TreadleError("generic"),
    ActivityError("builtins.ValueError", "bad"),
    ActivityTimeoutError("treadle.runtime.ActivityTimeoutError", "slow"),
    AllBranchesFailedError("none succeeded", {}),
    NonDeterminismError("r", "1", "activity 'a'", "activity 'b'"),
    BranchTopologyChangedError("r", "1", "2 branches", "3 branches"),
    RunParkedError("r", "NonDeterminismError"),
    WorkflowFailedError("r", "builtins.ValueError", "bad"),
    RunNotFoundError("r"),
    RunFinishedError("r", "completed"),
    CancelledError(),
    SerializationError("step 1", "value", "set"),
    PayloadTooLargeError("step 1", 10, 5),
    JournalCorruptionError("journal", b"k", "CRC mismatch"),
    StorageFullError("full"),
    StoreLockedError("/store", 1234),
    WorkerLostError("processes", "worker process 12 died"),
    ExecutorUnavailableError("ray", "Ray is not installed"),
    SignalWaitConflictError("step 1: step 0 already waits on signal 'go'"),
    NotAnOperationError("step 2: a workflow must yield operations, got int"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_message_carries_its_stable_code(error: BaseException) -> None:
    """str(error) starts with '[<code>] ', where code is the class's own TRD code."""
    code = type(error).code  # type: ignore[attr-defined]
    assert re.fullmatch(r"TRD(-[A-Z]+)*", code)
    assert str(error).startswith(f"[{code}] ")
    if type(error) is not TreadleError:
        assert code.startswith("TRD-")


def test_codes_are_unique_per_class() -> None:
    """Each error class has its own code, so a code identifies the error."""
    codes = [type(e).code for e in SAMPLES]  # type: ignore[attr-defined]
    assert len(set(codes)) == len(codes)


def test_samples_cover_every_exported_error() -> None:
    """Every error class exported by treadle.runtime / treadle.storage is in SAMPLES (so has a code test)."""
    exported = {
        obj
        for module in (tr, ts)
        for name in module.__all__
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, BaseException)
    }
    assert exported == {type(e) for e in SAMPLES}


def test_storage_errors_are_reexported_by_runtime() -> None:
    """treadle.runtime re-exports the very same storage error classes."""
    for name in [
        "JournalCorruptionError",
        "PayloadTooLargeError",
        "SerializationError",
        "StorageFullError",
        "StoreLockedError",
        "TreadleError",
    ]:
        assert getattr(tr, name) is getattr(ts, name)


def test_hierarchy() -> None:
    """All errors but CancelledError are TreadleErrors; some are also built-in kinds."""
    for error in SAMPLES:
        if not isinstance(error, CancelledError):
            assert isinstance(error, TreadleError)
    assert issubclass(ActivityTimeoutError, ActivityError)
    assert issubclass(BranchTopologyChangedError, NonDeterminismError)
    assert issubclass(SerializationError, TypeError)
    assert issubclass(PayloadTooLargeError, ValueError)
    assert issubclass(RunNotFoundError, LookupError)
    assert issubclass(SignalWaitConflictError, ValueError)
    assert issubclass(NotAnOperationError, TypeError)


def test_cancelled_error_is_a_base_exception_not_an_exception() -> None:
    """CancelledError derives from BaseException, so `except Exception` in a workflow does not swallow it."""
    assert issubclass(CancelledError, BaseException)
    assert not issubclass(CancelledError, Exception)
    assert not issubclass(CancelledError, TreadleError)
    with pytest.raises(CancelledError):
        try:
            raise CancelledError()
        except Exception:  # the point of the test: this must not catch it
            pytest.fail("except Exception caught CancelledError")


def test_error_fields() -> None:
    """Errors carry their fields as attributes."""
    failed = WorkflowFailedError("order-42", "builtins.ValueError", "bad")
    assert (failed.run_id, failed.type, failed.message) == ("order-42", "builtins.ValueError", "bad")
    parked = RunParkedError("order-42", "recorded x, got y")
    assert (parked.run_id, parked.reason) == ("order-42", "recorded x, got y")
    assert RunNotFoundError("x").run_id == "x"
    finished = RunFinishedError("x", "completed")
    assert (finished.run_id, finished.status) == ("x", "completed")
    locked = StoreLockedError("/s", None)
    assert locked.pid is None
    assert "another process" in str(locked)
