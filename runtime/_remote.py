"""One activity attempt run in another process: what crosses, and what comes back.

Used by the ``processes`` and ``ray`` executors. The branch actor's thread
turns an :class:`ActivityTask` into a :class:`RemoteCall`: the activity (by
module and qualified name for a worker process; the function itself for Ray,
which serialises it), its arguments packed with the store's codec, and what
the activity's :class:`ActivityContext` needs. The other side runs it with
:func:`execute` and answers with a :data:`Reply`; :func:`outcome` turns that
back into the ``ActivityDone`` the run's actor checkpoints. Nothing here
writes to the store: the run's actor still does, as for a thread.
"""

from __future__ import annotations

import importlib
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from treadle.storage import decode, encode, pack, unpack

from . import _records  # noqa: F401  (registers ActivityError & co. with the codec in a worker)
from ._errors import ActivityError, CancelledError, WorkerLostError
from ._messages import ActivityDone
from ._registry import ActivityContext, CancelFlag, not_importable

if TYPE_CHECKING:
    from ._activity import ActivityTask

__all__ = [
    "PolledFlag",
    "RemoteCall",
    "Reply",
    "execute",
    "lost",
    "outcome",
    "prepare",
    "refused",
    "resolve",
    "watch_cancel",
]

Reply = tuple[Any, ...]
"""``("ok", packed_result)`` or ``("error", packed ActivityError, pickled original or None, lineage)``.

``lineage`` names the error's classes (``module.QualName``, most derived
first), so that ``Retry(non_retryable=...)`` can still match an error whose
original could not be pickled back.
"""


@dataclass(frozen=True, slots=True)
class RemoteCall:
    module: str
    qualname: str
    function: Callable[..., Any] | None  # set only when the executor serialises functions (Ray)
    args: bytes
    context_param: str | None
    run_id: str
    step: str
    attempt: int
    key: str | None
    limit: int


class Refused(Exception):
    """The attempt cannot be sent: ``done`` is its (final) failed outcome."""

    def __init__(self, done: ActivityDone) -> None:
        super().__init__(str(done.error))
        self.done = done


def refused(task: ActivityTask, error: BaseException) -> ActivityDone:
    """A failed outcome that no retry can change (the same attempt would fail again)."""
    return task.failed(error, final=True)


def prepare(task: ActivityTask, *, by_name: bool) -> RemoteCall:
    """The call for ``task``; raises :class:`Refused` if it cannot be sent.

    Arguments go through the codec, so the activity sees exactly what replay
    would (tuples become lists); a value the codec refuses fails the step with
    ``SerializationError`` naming the argument, and is not retried.
    """
    definition = task.definition
    function = definition.fn
    if by_name:
        problem = not_importable(function)
        if problem is not None:
            raise Refused(refused(task, TypeError(f"activity {definition.name!r}: {problem}")))
    where = f"step {task.context.step}: arguments of activity {definition.name!r}"
    try:
        args, _ = encode(list(task.args), where, root="args", limit=task.limit)
    except Exception as exc:  # SerializationError, RecursionError...: the same on every attempt
        raise Refused(refused(task, exc)) from None
    context = task.context
    return RemoteCall(
        module=str(getattr(function, "__module__", "")),
        qualname=str(getattr(function, "__qualname__", "")),
        function=None if by_name else function,
        args=args,
        context_param=definition.context_param,
        run_id=context.run_id,
        step=context.step,
        attempt=context.attempt,
        key=context.key,
        limit=task.limit,
    )


_resolved: dict[tuple[str, str], Callable[..., Any]] = {}
_resolve_lock = threading.Lock()


def resolve(module: str, qualname: str) -> Callable[..., Any]:
    """Import ``module`` and walk ``qualname`` (cached per worker process)."""
    key = (module, qualname)
    with _resolve_lock:
        found = _resolved.get(key)
        if found is None:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            if not callable(target):
                raise TypeError(f"{module}.{qualname} is not callable")
            found = _resolved[key] = target
    return found


def execute(call: RemoteCall, cancelled: threading.Event) -> Reply:
    """Run the call (on the remote side); never raises."""
    try:
        function = call.function if call.function is not None else resolve(call.module, call.qualname)
        args = decode(call.args)
        kwargs: dict[str, Any] = {}
        if call.context_param is not None:
            kwargs[call.context_param] = ActivityContext(
                run_id=call.run_id, step=call.step, attempt=call.attempt, key=call.key, cancelled=cancelled
            )
        result = function(*args, **kwargs)
        packed, _ = encode(result, f"step {call.step}", root="result", limit=call.limit)
    except KeyboardInterrupt as exc:
        if cancelled.is_set():  # ray.cancel interrupts a running task this way
            return _error_reply(CancelledError("the attempt was interrupted after it was cancelled"))
        return _error_reply(exc)
    except BaseException as exc:  # SystemExit too: the worker must answer
        return _error_reply(exc)
    return ("ok", packed)


def _public(name: str) -> str:
    """A class name as the runtime's process knows it: a worker imports the main script as ``__mp_main__``."""
    return "__main__" + name[len("__mp_main__") :] if name.startswith("__mp_main__.") else name


def _error_reply(exc: BaseException) -> Reply:
    error = ActivityError.from_exception(exc)
    error.type = _public(error.type)
    original: bytes | None
    try:
        original = pickle.dumps(exc)
        pickle.loads(original)  # an exception that cannot be rebuilt is sent as data only
    except Exception:
        original = None
    error.__cause__ = None
    lineage = [_public(f"{cls.__module__}.{cls.__qualname__}") for cls in type(exc).__mro__]
    return ("error", pack(error), original, lineage)


def outcome(task: ActivityTask, reply: Reply) -> ActivityDone:
    """The ``ActivityDone`` a branch actor reports for a reply."""
    if reply[0] == "ok":
        packed = reply[1]
        return ActivityDone(task.node, task.attempt, True, value=decode(packed), packed=packed)
    error = unpack(reply[1])
    original: BaseException | None = None
    if reply[2] is not None:
        try:
            original = pickle.loads(reply[2])
        except Exception:
            original = None
    if original is not None:
        error.__cause__ = original
    lineage = tuple(reply[3]) if original is None else ()
    return ActivityDone(task.node, task.attempt, False, error=error, original=original, lineage=lineage)


def lost(task: ActivityTask, executor: str, detail: str) -> ActivityDone:
    """The attempt's worker died: a failed attempt, retried as the policy says."""
    return task.failed(WorkerLostError(executor, detail))


def watch_cancel(task: ActivityTask, listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` once when ``task``'s cancel flag is set; returns ``stop`` (see
    :meth:`CancelFlag.watch`: after ``stop()`` the listener is never called)."""
    flag = task.context.cancelled
    if isinstance(flag, CancelFlag):
        return flag.watch(listener)
    if flag.is_set():  # a plain Event (a context built by hand): only its state now is known
        listener()
    return lambda: None


class PolledFlag(threading.Event):
    """``ActivityContext.cancelled`` on the remote side: its state lives elsewhere (a byte
    shared with the parent, a Ray actor), so ``is_set`` reads it and ``wait`` polls."""

    poll = 0.01  # seconds between two reads while waiting

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = self.poll if deadline is None else min(self.poll, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True
