"""What the CLI reads from a store: run and step views, loaded read-only.

The CLI never takes the store's owner lock for reading, so it works while a
service runs the runtime. ``LmdbStore(readonly=True)`` reads as a registered
LMDB reader (the writer keeps the pages it walks) and follows map growth;
where the lock file is not writable it reads unregistered, so reads that met
a rewritten record are retried.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import lmdb

from treadle.storage import (
    JournalCorruptionError,
    LmdbStore,
    decode,
    journal_prefix,
    run_key,
    signal_prefix,
)

from ._records import CANCEL_STEP, FINISHED, RunStatus

__all__ = [
    "CliError",
    "Reader",
    "RunView",
    "SignalView",
    "StepView",
    "check_store",
    "load_run",
    "load_runs",
    "owner",
    "read_store",
    "step_count",
]

_READ_ATTEMPTS = 5

# Exit codes: 1 the operation failed (unknown run, failed run, rejected command),
# 2 bad input (arguments, JSON), 3 gave up waiting (the command stays queued).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


class CliError(Exception):
    """An error the CLI reports as one line on stderr, with exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StepView:
    """One journal record, decoded for display."""

    step: str
    kind: str
    name: str | None
    status: str
    attempt: int
    started: float | None
    finished: float | None
    order: tuple[int, ...]
    value: Any = None
    error: dict[str, Any] | None = None
    layout: list[list[Any]] | None = None
    child: str | None = None
    deadline: float | None = None

    @property
    def parent(self) -> str:
        """The step id of the enclosing step (``""``: the workflow itself)."""
        return self.step.rpartition(".")[0]

    @property
    def depth(self) -> int:
        return self.step.count(".")

    @property
    def settled(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass(frozen=True)
class SignalView:
    name: str
    seq: int
    sent: float | None
    consumed: bool
    by: str | None
    payload: Any


@dataclass(frozen=True)
class RunView:
    """A run record with, when loaded by :func:`load_run`, its journal and signals."""

    run_id: str
    workflow: str
    status: str
    created: float | None
    updated: float | None
    result: Any = None
    error: dict[str, Any] | None = None
    waits: list[str] = field(default_factory=list)
    parent: list[Any] | None = None
    args: Any = None
    steps: list[StepView] = field(default_factory=list)
    signals: list[SignalView] = field(default_factory=list)
    cancel_requested: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def done(self) -> bool:
        """Nothing more happens without outside help: finished, or parked until the code is fixed."""
        return self.finished or self.status == RunStatus.PARKED.value

    def end(self, now: float) -> float:
        """Where the run's time line ends: its last update when finished, else ``now``."""
        if self.done and self.updated is not None:
            return self.updated
        return now

    def state(self) -> Any:
        """The last value given to ``ctx.set_state`` (``None`` before the first)."""
        states = [s for s in self.steps if s.kind == "state" and s.status == "completed"]
        return states[-1].value if states else None


# -- opening ------------------------------------------------------------------------------


class Reader(Protocol):
    """The reads the CLI makes (a read-only ``LmdbStore``, or ``Runtime.store``)."""

    def get(self, db: str, key: bytes) -> dict[str, Any] | None: ...

    def scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, dict[str, Any]]]: ...

    def values(self, db: str, prefix: bytes) -> list[dict[str, Any]]: ...


def check_store(path: str) -> str:
    """The store folder's real path; CliError if there is no store there."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise CliError(f"no treadle store at {path}: no such folder (use --store or TREADLE_STORE)")
    if not os.path.exists(os.path.join(real, "data.mdb")):
        raise CliError(f"no treadle store at {path}: the folder holds no data.mdb")
    return real


@contextlib.contextmanager
def read_store(path: str) -> Iterator[Reader]:
    """The store at ``path`` opened read-only (never takes the owner lock)."""
    real = check_store(path)
    try:
        store = LmdbStore(real, readonly=True)
    except lmdb.Error as exc:
        raise CliError(f"cannot open the store at {path}: {exc}") from None
    try:
        yield store
    finally:
        store.close()


def owner(path: str) -> int | None:
    """The pid of the runtime that owns the store (holds ``treadle.lock``), or ``None``.

    Probes the lock with a shared, non-blocking ``flock`` held for an instant.
    A process without a readable pid in the file but holding the lock gives ``-1``.
    """
    lock_path = os.path.join(path, "treadle.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                text = os.pread(fd, 32, 0).decode().strip()
                return int(text) if text else -1
            except (OSError, ValueError):
                return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------------------------


def _retrying(read: Any) -> Any:
    """Run ``read()``, retrying a few times when it met a record rewritten under it."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            return read()
        except (JournalCorruptionError, lmdb.Error) as exc:
            if attempt == _READ_ATTEMPTS - 1:
                raise CliError(f"cannot read the store: {exc}") from None
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


def _run_view(record: dict[str, Any], **extra: Any) -> RunView:
    status = str(record.get("st", "running"))
    return RunView(
        run_id=str(record.get("id", "?")),
        workflow=str(record.get("wf", "?")),
        status=status,
        created=_float(record.get("created")),
        updated=_float(record.get("up")),
        result=_decode(record.get("res")) if status == "completed" else None,
        error=record.get("err") if status in ("failed", "cancelled", "parked") else None,
        waits=list(record.get("waits") or []),
        parent=record.get("parent"),
        args=_decode(record.get("args")),
        **extra,
    )


def load_runs(store: Reader) -> list[RunView]:
    """Every run record (without journals), newest first."""
    rows = _retrying(lambda: [record for _, record in store.scan("runs")])
    runs = [_run_view(record) for record in rows]
    runs.sort(key=lambda run: (run.created or 0.0, run.run_id), reverse=True)
    return runs


def step_count(store: Reader, run_id: str) -> int:
    """How many steps (branches included) the run's journal holds."""
    records = _retrying(lambda: store.values("journal", journal_prefix(run_id)))
    return sum(1 for rec in records if not str(rec.get("s", "@")).startswith("@"))


def load_run(store: Reader, run_id: str) -> RunView:
    """The run ``run_id`` with its journal (in step order) and signals; CliError if unknown."""

    def read() -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[tuple[bytes, dict[str, Any]]]]:
        record = store.get("runs", run_key(run_id))
        if record is None:
            return None, [], []
        journal = store.values("journal", journal_prefix(run_id))
        signals = list(store.scan("signals", signal_prefix(run_id)))
        return record, journal, signals

    record, journal, signals = _retrying(read)
    if record is None:
        raise CliError(f"unknown run {run_id!r}: no run with that id in the store")
    steps: list[StepView] = []
    cancel_requested: float | None = None
    for rec in journal:
        step = str(rec.get("s", "@"))
        if step == CANCEL_STEP:
            cancel_requested = _float(rec.get("t0"))
            continue
        if step.startswith("@"):
            continue
        steps.append(_step_view(rec))
    steps.sort(key=lambda s: s.order)
    views = [
        SignalView(
            name=str(rec.get("name", "?")),
            seq=int.from_bytes(key[-8:], "big"),
            sent=_float(rec.get("sent")),
            consumed=bool(rec.get("consumed")),
            by=rec.get("by"),
            payload=_decode(rec.get("p")),
        )
        for key, rec in signals
    ]
    views.sort(key=lambda s: (s.sent or 0.0, s.seq))
    return _run_view(record, steps=steps, signals=views, cancel_requested=cancel_requested)


def _step_view(rec: dict[str, Any]) -> StepView:
    status = str(rec.get("st", "running"))
    error = rec.get("err") if status == "failed" else None
    return StepView(
        step=str(rec["s"]),
        kind=str(rec.get("k", "?")),
        name=rec.get("n"),
        status=status,
        attempt=int(rec.get("a", 1) or 1),
        started=_float(rec.get("t0")),
        finished=_float(rec.get("t1")),
        order=tuple(int(i) for i in rec.get("o") or ()),
        value=_decode(rec.get("val")) if status == "completed" else None,
        error=error if isinstance(error, dict) else None,
        layout=rec.get("lay"),
        child=rec.get("child"),
        deadline=_float(rec.get("dl")),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _decode(packed: Any) -> Any:
    if packed is None:
        return None
    try:
        return decode(packed)
    except Exception as exc:
        return f"<undecodable: {type(exc).__name__}>"
