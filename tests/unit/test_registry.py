"""@activity, @workflow, Retry, ActivityContext detection and the Registry.

No ``from __future__ import annotations`` here: some tests need real class annotations.
"""

import threading
from datetime import timedelta
from typing import Any

import pytest

import treadle.runtime as tr
from treadle.runtime import ActivityContext, Registry, Retry, activity, default_registry, workflow

# --- registration ---------------------------------------------------------------


def unit_registry_plain_activity(x: int) -> int:
    return x + 1


def unit_registry_plain_workflow(ctx: Any) -> Any:
    yield ctx


def test_activity_registers_under_its_function_name() -> None:
    """@activity without arguments registers the function under its __name__ and returns it unchanged."""
    decorated = activity(unit_registry_plain_activity)
    assert decorated is unit_registry_plain_activity
    definition = default_registry.activities["unit_registry_plain_activity"]
    assert definition.fn is unit_registry_plain_activity
    assert definition.retry is None
    assert definition.timeout is None
    assert decorated(1) == 2  # still callable as a plain function


def test_activity_with_name_retry_and_timeout() -> None:
    """@activity(name=..., retry=..., timeout=...) registers under name= with the parsed timeout."""
    policy = Retry(attempts=4)

    @activity(name="unit_registry.charge", retry=policy, timeout="1.5s")
    def charge(amount: int) -> int:
        return amount

    definition = default_registry.activities["unit_registry.charge"]
    assert definition.fn is charge
    assert definition.name == "unit_registry.charge"
    assert definition.retry is policy
    assert definition.timeout == 1.5
    assert default_registry.activity("unit_registry.charge") is definition
    assert default_registry.activity(charge) is definition


def test_workflow_registers_by_name_and_with_name() -> None:
    """@workflow registers a generator function under __name__, or under name=."""
    assert workflow(unit_registry_plain_workflow) is unit_registry_plain_workflow
    assert default_registry.workflows["unit_registry_plain_workflow"].fn is unit_registry_plain_workflow

    @workflow(name="unit_registry.order")
    def order(ctx: Any) -> Any:
        yield ctx

    definition = default_registry.workflows["unit_registry.order"]
    assert definition.fn is order
    assert default_registry.workflow("unit_registry.order") is definition
    assert default_registry.workflow(order) is definition


def test_workflow_on_a_non_generator_is_a_type_error() -> None:
    """@workflow needs a generator function (one that yields): anything else is a TypeError."""

    def not_a_generator(ctx: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="generator"):
        workflow(not_a_generator)
    with pytest.raises(TypeError, match="generator"):
        workflow(name="unit_registry.nogen")(not_a_generator)
    assert "unit_registry.nogen" not in default_registry.workflows
    assert "not_a_generator" not in default_registry.workflows


@pytest.mark.parametrize("name", ["", "x" * 201, 42])
def test_bad_registration_names_are_value_errors(name: Any) -> None:
    """Names must be non-empty str of at most 200 characters."""
    with pytest.raises(ValueError, match="name"):
        activity(name=name)(unit_registry_plain_activity)
    with pytest.raises(ValueError, match="name"):
        workflow(name=name)(unit_registry_plain_workflow)


def test_bad_activity_options_are_refused() -> None:
    """retry must be a Retry (TypeError); timeout a duration (ValueError naming 'timeout')."""
    with pytest.raises(TypeError, match="retry"):
        activity(retry={"attempts": 3})  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="timeout"):
        activity(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        activity(timeout="soon")


def test_activity_on_a_non_callable_is_a_type_error() -> None:
    """@activity(name=...) applied to something not callable is a TypeError."""
    with pytest.raises(TypeError, match="callable"):
        activity(name="unit_registry.notcallable")(42)  # type: ignore[type-var]


# --- Retry ----------------------------------------------------------------------


def test_retry_defaults_and_parsed_durations() -> None:
    """Retry parses initial/max_interval durations into float seconds."""
    policy = Retry(attempts=5, initial="200ms", backoff=2, max_interval=timedelta(seconds=10))
    assert policy.initial == 0.2
    assert policy.max_interval == 10.0
    default = Retry()
    assert (default.attempts, default.initial, default.backoff, default.max_interval) == (3, 1.0, 2.0, 30.0)


@pytest.mark.parametrize("attempts", [0, -1])
def test_retry_attempts_below_one(attempts: int) -> None:
    """attempts < 1 is a ValueError naming Retry.attempts."""
    with pytest.raises(ValueError, match=r"Retry\.attempts"):
        Retry(attempts=attempts)


@pytest.mark.parametrize("attempts", [True, 2.0, "3", None])
def test_retry_attempts_must_be_an_int(attempts: Any) -> None:
    """attempts that is not an int (bool included) is a TypeError naming Retry.attempts."""
    with pytest.raises(TypeError, match=r"Retry\.attempts"):
        Retry(attempts=attempts)


@pytest.mark.parametrize("backoff", [0.5, 0, -2, True, float("nan"), "2", None])
def test_retry_backoff_must_be_a_number_at_least_one(backoff: Any) -> None:
    """backoff < 1, bool, NaN or not a number is a ValueError naming Retry.backoff."""
    with pytest.raises(ValueError, match=r"Retry\.backoff"):
        Retry(backoff=backoff)


@pytest.mark.parametrize(("field", "value"), [("initial", -1), ("initial", "5 s"), ("max_interval", None)])
def test_retry_intervals_must_be_durations(field: str, value: Any) -> None:
    """initial and max_interval are durations: anything else is a ValueError naming the field."""
    with pytest.raises(ValueError, match=rf"Retry\.{field}"):
        Retry(**{field: value})


@pytest.mark.parametrize("bad", [(int,), ("ValueError",), (ValueError, 3), (ValueError(),)])
def test_retry_non_retryable_must_hold_exception_classes(bad: Any) -> None:
    """non_retryable holds exception classes: anything else is a TypeError naming Retry.non_retryable."""
    with pytest.raises(TypeError, match=r"Retry\.non_retryable"):
        Retry(non_retryable=bad)


def test_retry_non_retryable_bare_class_names_the_parameter() -> None:
    """non_retryable=ValueError (a class, not a tuple) is a TypeError naming Retry.non_retryable."""
    with pytest.raises(TypeError, match=r"Retry\.non_retryable"):
        Retry(non_retryable=ValueError)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Retry\.non_retryable"):
        Retry(non_retryable="ValueError")  # type: ignore[arg-type]


def test_retry_non_retryable_list_is_normalised_to_a_tuple() -> None:
    """A list of exception classes is accepted and stored as a tuple."""
    policy = Retry(non_retryable=[KeyError, ValueError])  # type: ignore[arg-type]
    assert policy.non_retryable == (KeyError, ValueError)


def test_retry_delay_grows_by_backoff_and_is_capped_by_max_interval() -> None:
    """delay(n) = initial * backoff**(n-1), never above max_interval."""
    policy = Retry(attempts=10, initial="1s", backoff=2.0, max_interval="10s")
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    flat = Retry(initial=0.5, backoff=1, max_interval=60)
    assert [flat.delay(n) for n in (1, 2, 5)] == [0.5, 0.5, 0.5]
    capped_low = Retry(initial=5, max_interval=1)
    assert capped_low.delay(1) == 1.0


@pytest.mark.parametrize("backoff", [2.0, 2])
def test_retry_delay_stays_capped_for_many_attempts(backoff: float) -> None:
    """A long-lived retry policy (thousands of attempts) keeps returning max_interval."""
    policy = Retry(attempts=100_000, initial=1, backoff=backoff, max_interval="30s")
    assert policy.delay(2_000) == 30.0
    assert policy.delay(99_999) == 30.0


def test_retry_retries_counts_attempts_and_honours_non_retryable() -> None:
    """retries(): never past `attempts`; never for a non_retryable error (or its subclasses)."""
    policy = Retry(attempts=3, non_retryable=(LookupError,))
    assert policy.retries(ValueError("x"), 1)
    assert policy.retries(ValueError("x"), 2)
    assert not policy.retries(ValueError("x"), 3)
    assert not policy.retries(KeyError("k"), 1)
    assert not Retry(attempts=1).retries(ValueError("x"), 1)


# --- ActivityContext detection -----------------------------------------------------


def test_activity_context_parameter_detected_by_class_annotation() -> None:
    """A parameter annotated with the ActivityContext class is the one the context is given to."""

    @activity(name="unit_registry.ctx_class")
    def uses_ctx(order: dict, actx: ActivityContext) -> None:  # type: ignore[type-arg]
        return None

    assert default_registry.activities["unit_registry.ctx_class"].context_param == "actx"


@pytest.mark.parametrize(
    "annotation", ["ActivityContext", "treadle.runtime.ActivityContext", "tr.ActivityContext"]
)
def test_activity_context_parameter_detected_by_string_annotation(annotation: str) -> None:
    """A string annotation naming ActivityContext (postponed annotations) is detected too."""

    def uses_ctx(order, context):  # type: ignore[no-untyped-def]
        return None

    uses_ctx.__annotations__ = {"context": annotation}
    activity(name="unit_registry.ctx_string")(uses_ctx)
    assert default_registry.activities["unit_registry.ctx_string"].context_param == "context"


def test_activity_context_detected_with_quoted_annotation_in_source() -> None:
    """`actx: "ActivityContext"` written in source is detected."""

    @activity(name="unit_registry.ctx_quoted")
    def uses_ctx(order: dict, actx: "ActivityContext") -> None:  # type: ignore[type-arg]
        return None

    assert default_registry.activities["unit_registry.ctx_quoted"].context_param == "actx"
    assert tr.ActivityContext is ActivityContext


def test_no_activity_context_parameter() -> None:
    """Without such an annotation (or with a look-alike name), no context is injected."""

    class MyActivityContext:
        pass

    @activity(name="unit_registry.no_ctx")
    def plain(actx, other: MyActivityContext, text: "MyActivityContext") -> None:  # type: ignore[no-untyped-def]
        return None

    assert default_registry.activities["unit_registry.no_ctx"].context_param is None


def test_activity_context_fields() -> None:
    """ActivityContext carries run_id, step, attempt (from 1), key (None) and an unset cancelled Event."""
    actx = ActivityContext(run_id="order-42", step="3.1")
    assert (actx.run_id, actx.step, actx.attempt, actx.key) == ("order-42", "3.1", 1, None)
    assert isinstance(actx.cancelled, threading.Event)
    assert not actx.cancelled.is_set()
    assert ActivityContext(run_id="r", step="0").cancelled is not actx.cancelled


def test_cancelled_flag_behaves_as_an_event() -> None:
    """The cancel flag builds its waiting machinery lazily; it still wakes a waiter, times
    out a wait, clears, and calls a watcher once (or at once, if already set)."""
    flag = ActivityContext(run_id="r", step="0").cancelled
    assert flag.wait(0.01) is False
    woke = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        result.append(flag.wait(10))
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    calls: list[str] = []
    stop = flag.watch(lambda: calls.append("watched"))  # type: ignore[attr-defined]
    flag.set()
    flag.set()
    assert woke.wait(10) and result == [True]
    thread.join(10)
    assert flag.is_set() and flag.wait() is True and calls == ["watched"]
    stop()
    late: list[str] = []
    flag.watch(lambda: late.append("at once"))  # type: ignore[attr-defined]
    assert late == ["at once"]
    flag.clear()
    assert not flag.is_set() and flag.wait(0.01) is False
    assert "unset" in repr(flag)


# --- Registry resolution ---------------------------------------------------------


def test_registry_resolves_by_function_or_name() -> None:
    """Registry.workflow/activity accept the decorated function or its registered name."""

    @workflow(name="unit_registry.resolve_wf")
    def resolve_wf(ctx: Any) -> Any:
        yield ctx

    @activity(name="unit_registry.resolve_act")
    def resolve_act() -> None:
        return None

    wf = default_registry.workflow("unit_registry.resolve_wf")
    assert default_registry.workflow(resolve_wf) is wf
    assert default_registry.workflow(wf) is wf
    act = default_registry.activity("unit_registry.resolve_act")
    assert default_registry.activity(resolve_act) is act


def test_registry_unknown_name_is_a_value_error_naming_the_parameter() -> None:
    """An unregistered name is a ValueError that names the parameter and the name."""
    registry = Registry()
    with pytest.raises(ValueError, match=r"workflow.*'unit_registry\.nope'"):
        registry.workflow("unit_registry.nope")
    with pytest.raises(ValueError, match=r"^fn: .*'unit_registry\.nope'"):
        registry.activity("unit_registry.nope")
    with pytest.raises(ValueError, match=r"^child: "):
        registry.workflow("unit_registry.nope", param="child")


@pytest.mark.parametrize("ref", [None, 42, 1.5, ["x"], b"name"])
def test_registry_non_callable_is_a_type_error(ref: Any) -> None:
    """A reference that is neither a registered name nor callable is a TypeError."""
    with pytest.raises(TypeError, match="workflow"):
        default_registry.workflow(ref)
    with pytest.raises(TypeError, match=r"^fn must be an activity"):
        default_registry.activity(ref)


def test_registry_workflow_refuses_plain_functions_and_activity_refuses_workflows() -> None:
    """A plain function is not a workflow; a workflow is not an activity (use ctx.child)."""

    @workflow(name="unit_registry.not_an_activity")
    def wf(ctx: Any) -> Any:
        yield ctx

    with pytest.raises(TypeError, match="@workflow"):
        default_registry.workflow(unit_registry_plain_activity)
    with pytest.raises(TypeError, match=r"ctx\.child"):
        default_registry.activity(wf)


def test_registry_plain_callable_runs_under_its_qualified_name() -> None:
    """An undecorated callable resolves to an ad-hoc activity named module.qualname, with no retry."""

    def helper(actx: ActivityContext) -> None:
        return None

    definition = Registry().activity(helper)
    assert definition.name == f"{__name__}.{helper.__qualname__}"
    assert definition.fn is helper
    assert definition.retry is None
    assert definition.context_param == "actx"
