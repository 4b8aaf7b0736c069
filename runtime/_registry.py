"""``@workflow``, ``@activity``, ``Retry``, ``ActivityContext`` and the registry by name.

Journals refer to names, not functions, so renaming a function does not
break recovery as long as ``name=`` keeps the old name.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from ._durations import Duration, parse_duration, parse_optional_duration

__all__ = [
    "EXECUTOR_KINDS",
    "ActivityContext",
    "ActivityDef",
    "CancelFlag",
    "Registry",
    "Retry",
    "WorkflowDef",
    "activity",
    "default_registry",
    "executor_kind",
    "workflow",
]

F = TypeVar("F", bound=Callable[..., Any])
_ACTIVITY_ATTR = "__treadle_activity__"
_WORKFLOW_ATTR = "__treadle_workflow__"


@dataclass(frozen=True)
class Retry:
    """Retry policy of an activity.

    Args:
        attempts: total attempts, at least 1 (1 means no retry).
        initial: delay before the second attempt (a duration).
        backoff: multiplier of the delay after each failure (>= 1).
        max_interval: cap of the delay (a duration).
        non_retryable: exception classes that fail the step at once.

    Example:
        ``Retry(attempts=5, initial="200ms", backoff=2.0, max_interval="10s")``
    """

    attempts: int = 3
    initial: Duration = 1.0
    backoff: float = 2.0
    max_interval: Duration = 30.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry.attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be >= 1, got {self.attempts}")
        object.__setattr__(self, "initial", parse_duration(self.initial, "Retry.initial"))
        object.__setattr__(self, "max_interval", parse_duration(self.max_interval, "Retry.max_interval"))
        if (
            isinstance(self.backoff, bool)
            or not isinstance(self.backoff, (int, float))
            or not self.backoff >= 1
        ):
            raise ValueError(f"Retry.backoff must be a number >= 1, got {self.backoff!r}")
        if not isinstance(self.non_retryable, (tuple, list)):
            raise TypeError(
                f"Retry.non_retryable must be a tuple of exception classes, got {self.non_retryable!r}"
            )
        classes = tuple(self.non_retryable)
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise TypeError(f"Retry.non_retryable must hold exception classes, got {cls!r}")
        object.__setattr__(self, "non_retryable", classes)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (from 1) failed."""
        initial = float(self.initial)  # type: ignore[arg-type]
        cap = float(self.max_interval)  # type: ignore[arg-type]
        try:
            delay = initial * float(self.backoff) ** (failed_attempt - 1)
        except OverflowError:  # a long-lived policy: the cap holds for ever
            return cap
        return min(delay, cap)

    def retries(self, error: BaseException | None, failed_attempt: int) -> bool:
        """Whether another attempt follows a failure of ``failed_attempt``."""
        if failed_attempt >= self.attempts:
            return False
        return error is None or not isinstance(error, self.non_retryable)

    def retries_named(self, lineage: tuple[str, ...], failed_attempt: int) -> bool:
        """:meth:`retries` for an error known by its classes' ``module.QualName`` only
        (it was raised in a worker process and could not be rebuilt here)."""
        if failed_attempt >= self.attempts:
            return False
        names = {f"{cls.__module__}.{cls.__qualname__}" for cls in self.non_retryable}
        return names.isdisjoint(lineage)


class CancelFlag(threading.Event):
    """``ActivityContext.cancelled``: an event that also tells listeners when it is set.

    An executor that runs the attempt in another process watches it to carry
    the flag across (a shared byte for a worker process, a flag actor for Ray).

    One is built for every attempt, so it is cheap to build: a plain
    ``threading.Event`` makes a ``Condition`` (several Python-level objects)
    up front, this makes the event a thread waits on only when one waits.
    That is why ``Event.__init__`` is not called: every method is overridden.
    """

    def __init__(self) -> None:  # no Event.__init__: see the class docstring
        self._flag = False
        self._lock = threading.Lock()  # set(), wait() and stopping a watch exclude each other
        self._waiter: threading.Event | None = None
        self._listeners: list[Callable[[], None]] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._lock:
            if self._flag:
                return
            self._flag = True
            if self._waiter is not None:
                self._waiter.set()
            for listener in self._listeners or ():
                listener()

    def clear(self) -> None:
        with self._lock:
            self._flag = False
            if self._waiter is not None:
                self._waiter.clear()

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._flag:
                return True
            if self._waiter is None:
                self._waiter = threading.Event()
            waiter = self._waiter
        return waiter.wait(timeout)

    def _at_fork_reinit(self) -> None:
        self._lock = threading.Lock()
        self._waiter = None

    def watch(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` once when the flag is set (now, if it is already set).

        Returns ``stop``: once it has returned, ``listener`` is never called,
        so whatever the listener touches may be reused for another attempt.
        """
        with self._lock:
            if self._flag:
                listener()
                return _no_watch
            if self._listeners is None:
                self._listeners = []
            self._listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if self._listeners is not None and listener in self._listeners:
                    self._listeners.remove(listener)

        return stop


def _no_watch() -> None:
    return None


@dataclass
class ActivityContext:
    """Given to an activity that declares a parameter annotated ``ActivityContext``.

    Attributes:
        cancelled: set when the run is cancelled, the attempt timed out, or the
            branch lost a race with ``cancel_losers=True`` (cooperative).
        attempt: the attempt number, from 1.
        run_id: the run's id.
        step: the step id (``"3.1"``); with ``run_id`` it makes side effects idempotent.
        key: the ``key=`` given to ``ctx.run``, or ``None``.
    """

    run_id: str
    step: str
    attempt: int = 1
    key: str | None = None
    cancelled: threading.Event = field(default_factory=CancelFlag)


@dataclass(frozen=True)
class ActivityDef:
    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    timeout: float | None = None
    context_param: str | None = None
    executor: str | None = None


@dataclass(frozen=True)
class WorkflowDef:
    name: str
    fn: Callable[..., Any]


class Registry:
    """Workflows and activities by name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.workflows: dict[str, WorkflowDef] = {}
        self.activities: dict[str, ActivityDef] = {}

    def add_workflow(self, definition: WorkflowDef) -> None:
        with self._lock:
            self.workflows[definition.name] = definition

    def add_activity(self, definition: ActivityDef) -> None:
        with self._lock:
            self.activities[definition.name] = definition

    def workflow(self, ref: Any, param: str = "workflow") -> WorkflowDef:
        """Resolve a decorated workflow function or a registered name."""
        if isinstance(ref, str):
            found = self.workflows.get(ref)
            if found is None:
                raise ValueError(f"{param}: no workflow registered under the name {ref!r}")
            return found
        definition = getattr(ref, _WORKFLOW_ATTR, None)
        if isinstance(definition, WorkflowDef):
            return definition
        if isinstance(ref, WorkflowDef):
            return ref
        raise TypeError(f"{param} must be a @workflow function or a registered name, got {ref!r}")

    def activity(self, ref: Any, param: str = "fn") -> ActivityDef:
        """Resolve an ``@activity`` function, a registered name, or a plain callable."""
        if isinstance(ref, str):
            found = self.activities.get(ref)
            if found is None:
                raise ValueError(f"{param}: no activity registered under the name {ref!r}")
            return found
        definition = getattr(ref, _ACTIVITY_ATTR, None)
        if isinstance(definition, ActivityDef):
            return definition
        if getattr(ref, _WORKFLOW_ATTR, None) is not None:
            raise TypeError(f"{param}: {ref!r} is a workflow; use ctx.child to run it")
        if callable(ref):
            # An undecorated callable runs under its qualified name, no retry.
            name = f"{getattr(ref, '__module__', '?')}.{getattr(ref, '__qualname__', repr(ref))}"
            return ActivityDef(name=name, fn=ref, context_param=_context_param(ref))
        raise TypeError(f"{param} must be an activity (callable or registered name), got {ref!r}")


default_registry = Registry()


def _context_param(fn: Callable[..., Any]) -> str | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    for name, parameter in signature.parameters.items():
        annotation = parameter.annotation
        if annotation is ActivityContext or (
            isinstance(annotation, str) and annotation.split(".")[-1] == "ActivityContext"
        ):
            return name
    return None


EXECUTOR_KINDS = ("threads", "processes", "ray")
_EXECUTOR_ALIASES = {"thread": "threads", "process": "processes"}


def executor_kind(name: Any, param: str = "executor") -> str:
    """The executor kind ``name`` means (``"process"`` and ``"processes"`` are one kind)."""
    if not isinstance(name, str):
        raise TypeError(f"{param} must be one of {', '.join(EXECUTOR_KINDS)}, got {name!r}")
    kind = _EXECUTOR_ALIASES.get(name, name)
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"{param} must be one of {', '.join(EXECUTOR_KINDS)}, got {name!r}")
    return kind


def not_importable(function: Callable[..., Any]) -> str | None:
    """Why a worker process could not import ``function`` by module and name, or None."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return f"{function!r} has no module and qualified name to import it by"
    if "<locals>" in qualname or "<lambda>" in qualname:
        return (
            f"{module}.{qualname} is defined inside a function or is a lambda; "
            "a worker process imports activities by name, so define it at module level"
        )
    return None


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"{what} name must be a non-empty str of at most 200 characters, got {name!r}")
    return name


@overload
def activity(fn: F, /) -> F: ...
@overload
def activity(
    *,
    name: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    executor: str | None = None,
) -> Callable[[F], F]: ...


def activity(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    executor: str | None = None,
) -> Any:
    """Register an activity: a plain function a workflow runs with ``ctx.run``.

    Args:
        name: registered name (default: the function's ``__name__``).
        retry: a :class:`Retry` policy; without one the activity is tried once.
        timeout: per-attempt timeout (a duration); a timed-out attempt fails
            with ``ActivityTimeoutError`` and sets ``ActivityContext.cancelled``.
        executor: where its attempts run, overriding the runtime's default:
            ``"threads"``, ``"processes"`` (or ``"process"``) or ``"ray"``. A
            process or Ray activity must be importable by its module and name.

    Example:
        ``@activity(name="charge", retry=Retry(attempts=5), timeout="30s")``
    """
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be a Retry, got {type(retry).__name__}")
    timeout_s = parse_optional_duration(timeout, "timeout")
    kind = None if executor is None else executor_kind(executor)

    def register(function: F) -> F:
        if not callable(function):
            raise TypeError(f"@activity needs a callable, got {function!r}")
        if kind == "processes":
            problem = not_importable(function)
            if problem is not None:
                raise ValueError(f"@activity(executor={executor!r}): {problem}")
        registered = _check_name(name if name is not None else function.__name__, "activity")
        definition = ActivityDef(
            name=registered,
            fn=function,
            retry=retry,
            timeout=timeout_s,
            context_param=_context_param(function),
            executor=kind,
        )
        setattr(function, _ACTIVITY_ATTR, definition)
        default_registry.add_activity(definition)
        return function

    return register(fn) if fn is not None else register


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(*, name: str | None = None) -> Callable[[F], F]: ...


def workflow(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Register a workflow: a generator function ``(ctx, *args)`` that yields operations.

    Example::

        @workflow
        def enrich_order(ctx, order):
            inventory, tax = yield ctx.all([ctx.run(check, order), ctx.run(tax, order)])
            return {"inventory": inventory, "tax": tax}
    """

    def register(function: F) -> F:
        if not inspect.isgeneratorfunction(function):
            raise TypeError(f"@workflow needs a generator function (one that yields), got {function!r}")
        registered = _check_name(name if name is not None else function.__name__, "workflow")
        definition = WorkflowDef(name=registered, fn=function)
        setattr(function, _WORKFLOW_ATTR, definition)
        default_registry.add_workflow(definition)
        return function

    return register(fn) if fn is not None else register
