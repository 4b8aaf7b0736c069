"""Runtime (the facade a service embeds) and RunHandle."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from treadle.storage import (
    DEFAULT_MAX_PAYLOAD,
    LmdbStore,
    Store,
    WriteLane,
    decode,
    encode,
    journal_prefix,
    run_key,
)

from ._branch import BranchPool
from ._clock import Clock, SystemClock
from ._errors import (
    ActivityError,
    JournalCorruptionError,
    RunNotFoundError,
    RunParkedError,
    WorkflowFailedError,
    error_from_data,
)
from ._executors import Executor, Executors, resolve_executors
from ._log import get_logger
from ._messages import CreateRun, Pending, RequestCancel, Route, SendSignal, Shutdown, TimerFired
from ._records import COORDINATOR_KINDS, RunStatus, RunSummary, StepRecord, shape_value
from ._registry import Registry, default_registry
from ._run_actor import Services
from ._scheduler import AddTimer, Scheduler, TimerService
from ._supervisor import Supervisor

__all__ = ["RunHandle", "Runtime"]

_ASK_TIMEOUT = 30.0


def _check_run_id(run_id: Any, param: str = "run_id") -> str:
    if not isinstance(run_id, str):
        raise TypeError(f"{param} must be a str, got {type(run_id).__name__} {run_id!r}")
    if not run_id or len(run_id) > 1024:
        raise ValueError(f"{param} must have 1 to 1024 characters, got {len(run_id)}")
    return run_id


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, got {type(timeout).__name__} {timeout!r}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    return float(timeout)


def _utc(stamp: Any) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(float(stamp), tz=UTC)


class Runtime:
    """An embedded treadle runtime on the LMDB store in folder ``path``.

    Opening it starts the actor system and resumes every unfinished run whose
    workflow is registered.

    Args:
        path: the store's folder (created if missing). One runtime process per store.
        max_branch_actors: cap on live branch actors, runtime-wide.
        durability: ``"sync"`` (fsync every commit) or ``"fast"``.
        clock: a :class:`Clock` (tests pass ``treadle.runtime.testing.FakeClock``).
        executor: where activities run by default: ``"threads"`` (I/O-bound work),
            ``"processes"`` (CPU-bound work, a worker per CPU), ``"ray"`` (a local
            or existing Ray cluster), or a configured ``ThreadExecutor``,
            ``ProcessExecutor`` or ``RayExecutor``. ``@activity(executor=...)``
            overrides it per activity.
        executors: configured executors for the kinds activities ask for by
            name (``[RayExecutor(address="ray://head:10001")]``); a kind not
            configured starts with its defaults on first use.
        max_payload: cap in bytes of one stored value (arguments, results, signals).

    Example::

        with Runtime("./treadle-data") as rt:
            handle = rt.start(enrich_order, order, run_id="order-42")
            print(handle.result(timeout=30))
    """

    def __init__(
        self,
        path: str,
        *,
        max_branch_actors: int = 256,
        durability: str = "sync",
        clock: Clock | None = None,
        executor: str | Executor = "threads",
        executors: Sequence[Executor] | None = None,
        registry: Registry | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_map_size: int | None = None,
    ) -> None:
        if not isinstance(path, str) and not hasattr(path, "__fspath__"):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        if isinstance(max_branch_actors, bool) or not isinstance(max_branch_actors, int):
            raise TypeError(f"max_branch_actors must be an int, got {type(max_branch_actors).__name__}")
        if max_branch_actors < 1:
            raise ValueError(f"max_branch_actors must be >= 1, got {max_branch_actors}")
        if durability not in ("sync", "fast"):
            raise ValueError(f"durability must be 'sync' or 'fast', got {durability!r}")
        default_executor, extra_executors = resolve_executors(executor, executors)
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise ValueError(f"max_payload must be a positive int of bytes, got {max_payload!r}")
        if clock is not None and not all(
            callable(getattr(clock, name, None)) for name in ("time", "monotonic", "wait_hint", "subscribe")
        ):
            raise TypeError(f"clock must implement treadle.runtime.Clock, got {type(clock).__name__}")
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(f"registry must be a treadle.runtime.Registry, got {type(registry).__name__}")
        self._closed = False
        self._lock = threading.Lock()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.registry = registry if registry is not None else default_registry
        self.max_payload = max_payload
        if max_map_size is None:
            store = LmdbStore(str(path), durability=durability)
        else:
            store = LmdbStore(str(path), durability=durability, max_map_size=max_map_size)
        self.store: Store = store
        self._lmdb = store
        self._scheduler: Scheduler | None = None
        try:
            self._start(max_branch_actors, Executors(default_executor, extra_executors))
        except BaseException:
            self._stop_services()
            raise

    def _start(self, max_branch_actors: int, executors: Executors) -> None:
        log = get_logger("treadle.runtime")
        self._executors = executors
        executors.start()
        self._scheduler = Scheduler(self.clock)
        self._writer = WriteLane.start(self.store)
        self._pool = BranchPool(max_branch_actors, executors)
        holder: dict[str, Any] = {}

        def fire(run_id: str, step: str) -> None:
            supervisor = holder.get("supervisor")
            if supervisor is not None:
                supervisor.tell(Route(run_id, TimerFired(step)))

        self._timers = TimerService.start(self.clock, self._scheduler, fire)
        self._services = Services(
            store=self.store,
            writer=self._writer,
            pool=self._pool,
            scheduler=self._scheduler,
            timers=self._timers,
            registry=self.registry,
            clock=self.clock,
            log=log,
            max_payload=self.max_payload,
        )
        self._supervisor = Supervisor.start(self._services)
        holder["supervisor"] = self._supervisor
        for _, timer in self.store.scan("timers", on_error=self._corrupt):
            self._timers.tell(AddTimer(timer["run"], timer["step"], float(timer["due"])))
        # -- hook: command inbox (runtime/_inbox.py), applies `treadle signal`/`treadle cancel` --
        from ._inbox import Inbox

        self._inbox: Inbox | None = Inbox(self)
        self._inbox.start()
        # -- end hook: command inbox --

    # -- runs ---------------------------------------------------------------------------

    @property
    def supervisor(self) -> Any:
        """The supervisor's pykka ``ActorRef``: ask it ``StartRun``/``Signal``/``Cancel`` messages."""
        return self._supervisor

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Runtime has been shut down")

    def start(self, workflow: Callable[..., Any] | str, *args: Any, run_id: str | None = None) -> RunHandle:
        """Start a run of ``workflow`` (the decorated function or its registered name).

        The same ``run_id`` again returns the existing run; it is never started
        twice. Returns once the run is durable.

        Raises:
            TypeError / ValueError: unknown workflow, bad ``run_id``, or the id
                exists with another workflow.
            SerializationError / PayloadTooLargeError: arguments that cannot be stored.
        """
        self._check_open()
        definition = self.registry.workflow(workflow)
        new_id = run_id is None
        run_id = uuid.uuid4().hex if run_id is None else _check_run_id(run_id)
        packed, _ = encode(list(args), f"start of {definition.name}", root="args", limit=self.max_payload)
        # One wait: the reply comes once the new run is durable (or at once if it exists).
        reply = Pending()
        self._supervisor.tell(CreateRun(run_id, definition.name, packed, reply=reply, new_id=new_id))
        kind, info, stored_args = reply.wait(_ASK_TIMEOUT)
        if kind == "exists":
            if info != definition.name:
                raise ValueError(
                    f"run {run_id!r} already exists with workflow {info!r}, not {definition.name!r}"
                )
            if stored_args is not None and stored_args != packed:
                self._services.log.info(
                    "start of an existing run: the new arguments are ignored", run_id=run_id
                )
        return RunHandle(self, run_id)

    def get(self, run_id: str) -> RunHandle:
        """A handle on an existing run. Raises RunNotFoundError if there is none."""
        _check_run_id(run_id)
        self._check_open()
        if self.store.get("runs", run_key(run_id)) is None:
            raise RunNotFoundError(run_id)
        return RunHandle(self, run_id)

    def runs(self, status: RunStatus | str | None = None) -> list[RunSummary]:
        """Summaries of every run in the store, optionally only those with ``status``."""
        self._check_open()
        wanted = None if status is None else RunStatus(status)
        summaries = []
        for _, record in self.store.scan("runs", on_error=self._corrupt):
            summary = RunSummary(
                run_id=record["id"],
                workflow=record["wf"],
                status=self._status(record["id"], record),
                created=_utc(record.get("created")) or datetime.now(UTC),
                updated=_utc(record.get("up")) or datetime.now(UTC),
            )
            if wanted is None or summary.status == wanted:
                summaries.append(summary)
        return summaries

    def _corrupt(self, error: JournalCorruptionError) -> None:
        self._services.log.error("corrupt record skipped", error=str(error))

    def _status(self, run_id: str, record: dict[str, Any]) -> RunStatus:
        stored = RunStatus(record.get("st", "running"))
        if stored.finished or (stored == RunStatus.PARKED and run_id not in self._services.resumed):
            return stored
        entry = self._services_entry(run_id)
        if entry is not None:
            return entry.status  # type: ignore[no-any-return]
        return stored

    def _services_entry(self, run_id: str) -> Any:
        return self._services.entries.get(run_id)

    # -- life cycle -----------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Stop every actor and close the store (bounded; activities still running are left behind)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._supervisor.ask(Shutdown(10.0 if wait else 1.0), timeout=30)
        except Exception:
            self._services.log.warning("supervisor did not shut down cleanly")
        self._stop_services()

    def _stop_services(self) -> None:
        # -- hook: command inbox (runtime/_inbox.py): stop polling before the actors go --
        inbox = getattr(self, "_inbox", None)
        if inbox is not None:
            inbox.stop()
        # -- end hook: command inbox --
        for name in ("_supervisor", "_timers"):
            ref = getattr(self, name, None)
            if ref is not None:
                try:
                    ref.stop(block=True, timeout=5)
                except Exception:
                    pass
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown()
        executors = getattr(self, "_executors", None)
        if executors is not None:
            executors.shutdown()
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()  # no inline commit may start once the store is closing
            try:
                assert writer.ref is not None
                writer.ref.stop(block=True, timeout=10)
            except Exception:
                pass
        if self._scheduler is not None:
            self._scheduler.stop()
        self._lmdb.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class RunHandle:
    """A handle on one run; cheap to create, safe to share between threads."""

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self._rt = runtime
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def _record(self) -> dict[str, Any]:
        self._rt._check_open()
        record = self._rt.store.get("runs", run_key(self.run_id))
        if record is None:
            raise RunNotFoundError(self.run_id)
        return record

    def result(self, timeout: float | None = None) -> Any:
        """The run's return value, waiting up to ``timeout`` seconds.

        Raises:
            WorkflowFailedError: the run failed or was cancelled.
            RunParkedError: the run is parked (its code no longer matches its journal).
            TimeoutError: not finished in time.
        """
        deadline = None if timeout is None else time.monotonic() + _check_timeout(timeout)
        completions = self._rt._services.completions
        first = True
        while True:
            watch = completions.watch(self.run_id)
            try:
                if first and timeout != 0 and completions.unfinished(self.run_id):
                    # Started here and not ended: its end will set ``watch``, mostly with the
                    # terminal record (durable by then), so the store need not be read.
                    first = False
                    self._rt._check_open()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    watch.wait(remaining if remaining is None else min(remaining, 5.0))
                    if watch.record is None:
                        continue
                    record = watch.record
                else:
                    first = False
                    record = self._record()
                status = record.get("st")
                if status == "completed":
                    return decode(record.get("res"))
                if status in ("failed", "cancelled"):
                    err = record.get("err") or {
                        "t": "treadle.runtime.CancelledError",
                        "m": "the run was cancelled",
                    }
                    raise WorkflowFailedError(self.run_id, err.get("t", "?"), err.get("m", ""))
                if status == "parked" and self.run_id not in self._rt._services.resumed:
                    err = record.get("err") or {}
                    raise RunParkedError(
                        self.run_id, err.get("m", "workflow code does not match the journal")
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"run {self.run_id!r} did not finish within {timeout}s")
                watch.wait(remaining if remaining is None else min(remaining, 5.0))
            finally:
                completions.unwatch(self.run_id, watch)

    def status(self) -> RunStatus:
        """RUNNING, SUSPENDED, COMPLETED, FAILED, CANCELLED or PARKED."""
        return self._rt._status(self.run_id, self._record())

    def signal(self, name: str, payload: Any = None, key: str | None = None) -> bool:
        """Send signal ``name``; durable before this returns.

        With ``key``, a re-sent signal is a no-op (returns ``False``).

        Raises:
            RunNotFoundError, RunFinishedError, SerializationError, PayloadTooLargeError.
        """
        self._rt._check_open()
        if not isinstance(name, str):
            raise TypeError(f"signal name must be a str, got {type(name).__name__}")
        if not name or len(name) > 256:
            raise ValueError(f"signal name must have 1 to 256 characters, got {len(name)}")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 256):
            raise TypeError(f"key must be None or a str of 1 to 256 characters, got {key!r}")
        packed, _ = encode(payload, f"signal {name!r}", root="payload", limit=self._rt.max_payload)
        kind, pending = self._rt._supervisor.ask(
            SendSignal(self.run_id, name, packed, key), timeout=_ASK_TIMEOUT
        )
        if pending is not None:
            pending.wait(_ASK_TIMEOUT)
        return bool(kind == "sent")

    def cancel(self) -> bool:
        """Raise CancelledError into the workflow at its current yield.

        Returns ``False`` (and does nothing) if the run has already finished.
        """
        self._rt._check_open()
        kind, pending = self._rt._supervisor.ask(RequestCancel(self.run_id), timeout=_ASK_TIMEOUT)
        if kind == "sent":
            assert isinstance(pending, Pending)
            pending.wait(_ASK_TIMEOUT)
            return True
        return bool(kind == "already")

    def state(self) -> Any:
        """The last value the workflow gave ``ctx.set_state()`` (``None`` before the first)."""
        self._rt._check_open()
        states = self._rt._services.states
        if self.run_id in states:
            return states[self.run_id]
        last: tuple[list[int], Any] | None = None
        for _, rec in self._rt.store.scan("journal", journal_prefix(self.run_id)):
            if rec.get("k") == "state" and rec.get("st") == "completed":
                order = rec.get("o", [])
                if last is None or order > last[0]:
                    last = (order, rec.get("val"))
        return None if last is None else decode(last[1])

    def history(self) -> list[StepRecord]:
        """Every step, branches included, in step order."""
        self._record()
        records = [
            rec
            for _, rec in self._rt.store.scan("journal", journal_prefix(self.run_id))
            if not str(rec.get("s", "@")).startswith("@")
        ]
        records.sort(key=lambda rec: rec.get("o", []))
        return [_step_record(rec, self.run_id) for rec in records]


def _step_record(rec: dict[str, Any], run_id: str) -> StepRecord:
    kind = rec.get("k", "?")
    value: Any = None
    error: ActivityError | None = None
    if rec.get("st") == "completed":
        value = decode(rec.get("val"))
        if kind in COORDINATOR_KINDS:
            value = shape_value(kind, value, rec.get("lay"), run_id=run_id)
    elif rec.get("err") is not None:
        rebuilt = error_from_data(rec["err"], run_id)
        error = rebuilt if isinstance(rebuilt, ActivityError) else ActivityError.from_exception(rebuilt)
    return StepRecord(
        step=rec["s"],
        kind=kind,
        name=rec.get("n"),
        status=rec.get("st", "running"),
        value=value,
        error=error,
        attempt=int(rec.get("a", 1)),
        started=_utc(rec.get("t0")),
        finished=_utc(rec.get("t1")),
    )
