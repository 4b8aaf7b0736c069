"""The ``ray`` executor: activity attempts as Ray tasks (``pip install 'treadle[ray]'``).

Only the activity's code runs on the cluster. The run's coordinator, its
journal and every checkpoint stay with the runtime that owns the store: the
branch actor submits one task per attempt, waits for it, and reports the
outcome to the run's actor like any other. Ray's own task retries are off
(``max_retries=0``) so that the activity's ``Retry`` policy is the only one:
a lost worker or node fails the attempt with ``WorkerLostError`` and the
policy decides.

``ActivityContext.cancelled`` reaches the task through a small flag actor.
``ray.cancel`` is called on a cancelled attempt only with
``RayExecutor(cancel_tasks=True)``; by default a loser or a cancelled
attempt keeps running, as it does on threads.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import CancelledError, ExecutorUnavailableError
from ._executors import Executor
from ._messages import ActivityDone
from ._remote import (
    PolledFlag,
    Refused,
    RemoteCall,
    Reply,
    execute,
    lost,
    outcome,
    prepare,
    watch_cancel,
)

if TYPE_CHECKING:
    from ._activity import ActivityTask

__all__ = ["RayExecutor"]

_POLL = 0.05  # how stale a remote task's view of its cancel flag may be, in seconds
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOST = (  # Ray's errors for a task whose worker, node or result went away
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "OutOfMemoryError",
    "RaySystemError",
)


class _Session:
    """The Ray connection treadle's executors share in this process.

    Ray is one connection per process: the first executor that had to start
    (or join) it owns it, and it is shut down when the last executor using
    it closes, never under another runtime's feet.
    """

    lock = threading.Lock()
    users = 0
    started_by_us = False


class _Flags:
    """A Ray actor holding the cancel flags of running attempts (by token)."""

    def __init__(self) -> None:
        self._set: set[str] = set()

    def set(self, token: str) -> None:
        self._set.add(token)

    def clear(self, token: str) -> None:
        self._set.discard(token)

    def is_set(self, token: str) -> bool:
        return token in self._set


class _RemoteFlag(PolledFlag):
    """``ActivityContext.cancelled`` inside a Ray task: asks the flag actor (at most every 50 ms)."""

    poll = _POLL

    def __init__(self, flags: Any, token: str) -> None:
        super().__init__()
        self._flags = flags
        self._token = token
        self._checked = 0.0

    def is_set(self) -> bool:
        if super().is_set():
            return True
        now = time.monotonic()
        if now - self._checked >= _POLL:
            import ray

            self._checked = now
            if ray.get(self._flags.is_set.remote(self._token)):
                super().set()
        return super().is_set()


def _ray_entry(call: RemoteCall, flags: Any, token: str) -> Reply:
    """The Ray task: run one attempt (in a Ray worker process)."""
    return execute(call, _RemoteFlag(flags, token))


class RayExecutor(Executor):
    """Runs activity attempts as Ray tasks.

    Args:
        address: the cluster to join (``"auto"``, ``"ray://head:10001"``); ``None``
            joins the cluster ``RAY_ADDRESS`` names or starts a local one. If Ray is
            already initialised in this process, that connection is used as it is.
        cancel_tasks: call ``ray.cancel`` on an attempt whose ``cancelled`` flag is
            set (run cancelled, attempt timed out, race lost with ``cancel_losers``).
            Off by default: the task only sees the cooperative flag.
        num_cpus: CPUs Ray reserves for each attempt.
        init: more keyword arguments for ``ray.init`` (``runtime_env``, say).

    The function is serialised by Ray (cloudpickle), so a module-level function
    is imported by name on the worker and a nested one is shipped by value; the
    worker must be able to import every module it refers to. Arguments and
    results cross as the store's msgpack codec packs them.

    Example:
        ``Runtime(path, executor=RayExecutor(address="auto"))``
    """

    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cancel_tasks: bool = False,
        num_cpus: float = 1,
        init: Mapping[str, Any] | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise TypeError(f"RayExecutor: address must be a str or None, got {address!r}")
        if not isinstance(cancel_tasks, bool):
            raise TypeError(f"RayExecutor: cancel_tasks must be a bool, got {cancel_tasks!r}")
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus < 0:
            raise ValueError(f"RayExecutor: num_cpus must be a number >= 0, got {num_cpus!r}")
        if init is not None and not isinstance(init, Mapping):
            raise TypeError(f"RayExecutor: init must be a mapping of ray.init arguments, got {init!r}")
        self.address = address
        self.cancel_tasks = cancel_tasks
        self.num_cpus = num_cpus
        self.init = dict(init or {})
        self._lock = threading.Lock()
        self._started = False
        self._task: Any = None
        self._flags: Any = None
        self._ray: Any = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, cancel_tasks={self.cancel_tasks})"

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            try:
                import ray
            except ImportError as exc:
                raise ExecutorUnavailableError(
                    "ray", f"Ray is not installed ({exc}); pip install 'treadle[ray]'"
                ) from None
            with _Session.lock:
                if not ray.is_initialized():
                    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                    options.update(self.init)
                    ray.init(address=self.address, **options)
                    _Session.started_by_us = True
                _Session.users += 1
            self._ray = ray
            self._task = ray.remote(_ray_entry).options(
                max_retries=0, retry_exceptions=False, num_cpus=self.num_cpus
            )
            self._flags = ray.remote(_Flags).options(num_cpus=0).remote()
            self._started = True

    def run(self, task: ActivityTask) -> ActivityDone | None:
        # Started when its runtime opened (or when an activity first named it). Never start
        # it here: an attempt still on its way after shutdown() would start Ray again.
        with self._lock:
            ray, flags, remote = self._ray, self._flags, self._task
        if flags is None:
            return task.failed(ExecutorUnavailableError("ray", "this executor is not started, or shut down"))
        if not ray.is_initialized():  # never let a stale handle start a new Ray
            return task.failed(ExecutorUnavailableError("ray", "Ray was shut down in this process"))
        try:
            call = prepare(task, by_name=False)
        except Refused as refusal:
            return refusal.done
        token = uuid.uuid4().hex
        flagged: list[bool] = []
        ref: Any = None

        def listener() -> None:
            flagged.append(True)
            try:
                done = flags.set.remote(token)
                if self.cancel_tasks and ref is not None:
                    ray.get(done, timeout=10)  # the task must find its flag set once interrupted
                    ray.cancel(ref)
            except Exception:  # Ray going away: the attempt's own wait reports it
                pass

        try:
            ref = remote.remote(call, flags, token)
        except Exception as exc:
            return lost(task, self.kind, f"could not submit the task: {type(exc).__name__}: {exc}")
        stop_watching = watch_cancel(task, listener)
        try:
            reply = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return task.failed(CancelledError("the Ray task was cancelled before it started"))
        except ray.exceptions.RayTaskError as exc:  # raised outside the activity (unpickling it, say)
            cause = getattr(exc, "cause", None)
            if type(exc).__name__.startswith("RayTaskError") and isinstance(cause, Exception):
                return task.failed(cause)
            return lost(task, self.kind, _describe(exc))
        except ray.exceptions.RayError as exc:
            return lost(task, self.kind, _describe(exc))
        finally:
            stop_watching()  # after this the listener cannot run: the flag can be cleared
            if flagged:
                try:
                    flags.clear.remote(token)
                except Exception:
                    pass
        return outcome(task, reply)

    def shutdown(self) -> None:
        with self._lock:
            started, self._started = self._started, False
            flags, self._flags = self._flags, None
        ray = self._ray
        if not started or ray is None:
            return
        with _Session.lock:
            _Session.users -= 1
            last = _Session.users == 0 and _Session.started_by_us
            if last:
                _Session.started_by_us = False
            if flags is not None and ray.is_initialized():
                try:  # leave no flag actor behind in a Ray that goes on
                    ray.kill(flags)
                except Exception:
                    pass
            if last:
                ray.shutdown()


def _describe(exc: BaseException) -> str:
    """Ray's error, named, without its terminal colours, its cause kept."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kind = type(exc).__name__
    tag = " (worker or node lost)" if any(name in kind for name in _LOST) else ""
    return f"{kind}{tag}: {' / '.join(lines[:3]) if lines else kind}"
