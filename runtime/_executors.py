"""Where an activity attempt executes: the executor behind each branch actor.

A branch actor still represents each running branch and reports its outcome
by message, and the run's actor still checkpoints it; an executor only
decides where the activity's code runs. ``threads`` runs it in the branch
actor's own thread; ``processes`` and ``ray`` send it to a worker process or
a Ray task and the branch actor's thread waits for the answer, so every
durability and replay rule is the same whichever executor ran the code.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import ExecutorUnavailableError
from ._registry import EXECUTOR_KINDS, executor_kind

if TYPE_CHECKING:
    from ._activity import ActivityTask
    from ._messages import ActivityDone
    from ._registry import ActivityDef

__all__ = ["Executor", "Executors", "ThreadExecutor", "make_executor"]


class Executor(ABC):
    """Runs one activity attempt at a time per calling branch actor.

    ``run`` is called in a branch actor's thread and may block until the
    attempt ends. It returns the attempt's outcome, or ``None`` when the
    attempt was superseded (timed out and retried) before it could start.
    It should not raise; if it does, the attempt fails with that error.
    """

    kind: ClassVar[str]

    def start(self) -> None:  # noqa: B027  (optional hook)
        """Connect or warm up; called when a runtime opens with this executor configured."""

    @abstractmethod
    def run(self, task: ActivityTask) -> ActivityDone | None: ...

    def shutdown(self) -> None:  # noqa: B027  (optional hook)
        """Release workers and connections; called when the runtime closes."""


class ThreadExecutor(Executor):
    """The default: the activity runs in its branch actor's thread (I/O-bound work)."""

    kind = "threads"

    def run(self, task: ActivityTask) -> ActivityDone:
        return task.execute()

    def __repr__(self) -> str:
        return "ThreadExecutor()"


def make_executor(kind: str) -> Executor:
    """An executor of ``kind`` with default settings."""
    if kind == "threads":
        return ThreadExecutor()
    if kind == "processes":
        from ._processes import ProcessExecutor

        return ProcessExecutor()
    if kind == "ray":
        from ._ray import RayExecutor

        return RayExecutor()
    raise ValueError(f"executor must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")


def resolve_executors(default: Any, extra: Any) -> tuple[Executor, list[Executor]]:
    """Check ``Runtime(executor=, executors=)`` before anything is opened."""
    chosen = default if isinstance(default, Executor) else make_executor(executor_kind(default))
    if extra is None:
        extra = ()
    if isinstance(extra, (str, bytes)) or not isinstance(extra, Sequence):
        raise TypeError(f"executors must be a list of Executor instances, got {extra!r}")
    kinds = {chosen.kind}
    others: list[Executor] = []
    for item in extra:
        if not isinstance(item, Executor):
            raise TypeError(f"executors must hold Executor instances, got {item!r}")
        if item.kind in kinds:
            raise ValueError(f"executors: more than one {item.kind!r} executor given")
        kinds.add(item.kind)
        others.append(item)
    return chosen, others


class Executors:
    """The runtime's executors: the default, configured ones, and defaults made on first use."""

    def __init__(self, default: Executor, extra: Sequence[Executor] = ()) -> None:
        self.default = default
        self._by_kind: dict[str, Executor] = {default.kind: default}
        for item in extra:
            self._by_kind[item.kind] = item
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        for executor in list(self._by_kind.values()):
            executor.start()

    def for_activity(self, definition: ActivityDef) -> Executor:
        kind = definition.executor
        if kind is None:
            return self.default
        found = self._by_kind.get(kind)
        if found is not None:
            return found
        with self._lock:
            found = self._by_kind.get(kind)
            if found is None:
                if self._closed:
                    raise ExecutorUnavailableError(kind, "the runtime is closing")
                found = make_executor(kind)
                found.start()
                self._by_kind[kind] = found
        return found

    def run(self, task: ActivityTask) -> ActivityDone | None:
        try:
            executor = self.for_activity(task.definition)
        except Exception as exc:  # Ray missing or unreachable: this attempt fails, retry policy applies
            error = exc if isinstance(exc, ExecutorUnavailableError) else _unavailable(task, exc)
            return task.failed(error)
        try:
            return executor.run(task)
        except BaseException as exc:  # a broken executor fails the attempt, never the branch actor
            return task.failed(exc)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            executors = list(self._by_kind.values())
        for executor in executors:
            executor.shutdown()


def _unavailable(task: ActivityTask, exc: Exception) -> ExecutorUnavailableError:
    kind = task.definition.executor or "default"
    return ExecutorUnavailableError(kind, f"{type(exc).__name__}: {exc}")
