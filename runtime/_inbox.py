"""The command inbox: how ``treadle signal``/``treadle cancel`` reach the runtime that owns a store.

One runtime process owns a store (the ``treadle.lock`` flock), so another
process cannot write to it. The CLI instead drops a command file into
``<store>/inbox/`` (written to a temporary name, fsynced, then renamed, so
the poller never sees half a file). The owning runtime polls the folder on its
scheduler every ~200 ms, applies each command through the public handle API
(``rt.get(run_id).signal(...)`` / ``.cancel()``), writes the outcome to
``<id>.done.json`` and only then deletes the command file. Commands waiting
when a runtime starts are applied on its first poll, so a command is never
lost; a crash between applying and acknowledging applies it again at the
next start, which is harmless: a signal without ``key`` is sent with the
command's id as its idempotency key, and cancelling twice is a no-op.

File names start with a zero-padded nanosecond timestamp, so sorting them
applies commands in the order they were written (signals stay FIFO).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ._errors import RunFinishedError, type_name
from ._log import get_logger
from ._records import RunStatus

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._scheduler import TimerHandle

__all__ = [
    "INBOX_DIR",
    "POLL_INTERVAL",
    "Inbox",
    "command_path",
    "done_path",
    "new_command_id",
    "write_atomic",
    "write_command",
]

INBOX_DIR = "inbox"
POLL_INTERVAL = 0.2
COMMAND_SUFFIX = ".json"
DONE_SUFFIX = ".done.json"
FORMAT = 1
# Acknowledgements nobody collected (the CLI gave up waiting) and temporary files of
# a CLI killed mid-write are removed after these ages (seconds), checked once a minute.
DONE_TTL = 24 * 3600.0
TMP_TTL = 3600.0
SWEEP_EVERY = 60.0
_JOIN_TIMEOUT = 10.0


def inbox_dir(store: str) -> str:
    return os.path.join(store, INBOX_DIR)


def command_path(store: str, command_id: str) -> str:
    return os.path.join(inbox_dir(store), command_id + COMMAND_SUFFIX)


def done_path(store: str, command_id: str) -> str:
    return os.path.join(inbox_dir(store), command_id + DONE_SUFFIX)


def new_command_id() -> str:
    """A sortable, unique id: ``<ns since epoch, 20 digits>-<pid>-<random>``."""
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: temporary file, fsync, rename, fsync the folder."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_command(store: str, command: dict[str, Any]) -> str:
    """Queue ``command`` (``{"cmd": "signal"|"cancel", "run_id": ..., ...}``); returns its id."""
    os.makedirs(inbox_dir(store), exist_ok=True)
    command_id = new_command_id()
    body = {"v": FORMAT, "id": command_id, **command}
    write_atomic(command_path(store, command_id), json.dumps(body).encode("utf-8"))
    return command_id


def pending_ids(folder: str) -> list[str]:
    """Ids of the commands waiting in ``folder``, oldest first."""
    ids = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(COMMAND_SUFFIX) or name.endswith(DONE_SUFFIX):
                continue
            ids.append(name[: -len(COMMAND_SUFFIX)])
    ids.sort()
    return ids


class Inbox:
    """Applies the commands the CLI leaves in ``<store>/inbox/`` (one per runtime).

    The scheduler thread only lists the folder; commands are applied on a
    short-lived worker thread, because applying one waits for a commit and the
    scheduler thread also serves retries and timeouts. At most one of "a poll
    is scheduled" and "a worker runs" holds at any time, so commands are never
    applied twice concurrently.

    The scheduler follows the runtime's clock: under a
    ``treadle.runtime.testing.FakeClock`` the folder is read at start-up and
    then each time the clock is advanced past the next poll.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self.folder = inbox_dir(runtime.store.path)
        self._log = get_logger("treadle.inbox")
        self._lock = threading.Lock()
        self._stopped = False
        self._timer: TimerHandle | None = None
        self._worker: threading.Thread | None = None
        self._last_sweep: float | None = None
        self._unreadable: set[str] = set()

    def start(self) -> None:
        """Create the folder and poll it at once (commands queued while no runtime ran)."""
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            self._log.warning("command inbox disabled: cannot create its folder", error=str(exc))
            return
        self._schedule(0.0)

    def stop(self) -> None:
        """Stop polling; wait (bounded) for a worker applying commands to finish."""
        with self._lock:
            self._stopped = True
            timer, self._timer = self._timer, None
            worker = self._worker
        if timer is not None:
            timer.cancel()
        if worker is not None and worker is not threading.current_thread():
            worker.join(_JOIN_TIMEOUT)

    # -- polling ------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        scheduler = self._rt._scheduler
        with self._lock:
            if self._stopped or scheduler is None:
                return
            self._timer = scheduler.call_later(delay, self._tick)

    def _tick(self) -> None:
        """On the scheduler thread: list the folder; hand any command to a worker."""
        with self._lock:
            self._timer = None
            if self._stopped:
                return
        try:
            handed_over = self._poll()
        except Exception:  # never let one bad poll stop the polling
            self._log.exception("command inbox poll failed")
            handed_over = False
        if not handed_over:
            self._schedule(POLL_INTERVAL)

    def _poll(self) -> bool:
        """Start a worker if commands wait (it schedules the next poll); whether one was started."""
        try:
            ids = pending_ids(self.folder)
        except FileNotFoundError:  # removed by hand: put it back, there is nothing in it
            os.makedirs(self.folder, exist_ok=True)
            ids = []
        except OSError as exc:
            self._log.warning("cannot read the command inbox", error=str(exc))
            ids = []
        ids = [command_id for command_id in ids if command_id not in self._unreadable]
        if not ids:
            self._sweep()
            return False
        worker = threading.Thread(target=self._work, args=(ids,), name="treadle-inbox", daemon=True)
        with self._lock:
            if self._stopped:
                return True  # nothing more to schedule
            self._worker = worker
            worker.start()
        return True

    def _work(self, ids: list[str]) -> None:
        try:
            for command_id in ids:
                if self._stopped or self._rt._closed:
                    return
                self._handle(command_id)
        except Exception:
            self._log.exception("command inbox worker failed")
        finally:
            with self._lock:
                self._worker = None
            self._schedule(POLL_INTERVAL)

    # -- one command ----------------------------------------------------------------

    def _handle(self, command_id: str) -> None:
        path = os.path.join(self.folder, command_id + COMMAND_SUFFIX)
        done = os.path.join(self.folder, command_id + DONE_SUFFIX)
        if os.path.exists(done):  # acknowledged before a crash; only the clean-up was missing
            _unlink(path)
            return
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._unreadable.add(command_id)
            self._log.warning("cannot read a queued command", command=command_id, error=str(exc))
            return
        try:
            command = json.loads(raw.decode("utf-8"))
            if not isinstance(command, dict):
                raise ValueError(f"a command is a JSON object, got {type(command).__name__}")
            outcome = self._apply(command_id, command)
        except Exception as exc:
            if self._rt._closed:
                return  # shutting down: left queued for the next start
            outcome = {"ok": False, "error": {"type": type_name(type(exc)), "message": str(exc)}}
            self._log.info("command rejected", command=command_id, error=outcome["error"]["type"])
        result = {"v": FORMAT, "id": command_id, "applied": self._rt.clock.time(), **outcome}
        try:
            write_atomic(done, json.dumps(result, default=repr).encode("utf-8"))
        except OSError as exc:
            self._unreadable.add(command_id)
            self._log.warning("cannot acknowledge a command", command=command_id, error=str(exc))
            return
        _unlink(path)

    def _apply(self, command_id: str, command: dict[str, Any]) -> dict[str, Any]:
        kind = command.get("cmd")
        run_id = command.get("run_id")
        if not isinstance(run_id, str):
            raise ValueError(f"command {command_id}: 'run_id' must be a string, got {run_id!r}")
        if kind == "signal":
            name, key = command.get("name"), command.get("key")
            if not isinstance(name, str):
                raise ValueError(f"command {command_id}: 'name' must be a string, got {name!r}")
            handle = self._rt.get(run_id)
            # Without a key, the command's own id makes re-applying it after a crash a no-op.
            key = key if key is not None else f"inbox:{command_id}"
            sent = handle.signal(name, command.get("payload"), key=key)
            return {"ok": True, "outcome": "sent" if sent else "duplicate"}
        if kind == "cancel":
            handle = self._rt.get(run_id)
            if handle.cancel():
                return {"ok": True, "outcome": "cancel requested"}
            status = handle.status()
            if status == RunStatus.CANCELLED:
                return {"ok": True, "outcome": "already cancelled"}
            message = f"run {run_id!r} has already finished ({status}); there is nothing to cancel"
            return {"ok": False, "error": {"type": type_name(RunFinishedError), "message": message}}
        raise ValueError(f"command {command_id}: unknown command {kind!r} (expected 'signal' or 'cancel')")

    # -- housekeeping -------------------------------------------------------------------

    def _sweep(self) -> None:
        """Remove stale acknowledgements and temporary files (at most once a minute)."""
        now = self._rt.clock.time()
        if self._last_sweep is not None and now - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = now
        wall = time.time()  # file ages are in the file system's time, not the runtime's clock
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(DONE_SUFFIX):
                        ttl = DONE_TTL
                    elif name.startswith(".") and name.endswith(".tmp"):
                        ttl = TMP_TTL
                    else:
                        continue
                    try:
                        if wall - entry.stat().st_mtime > ttl:
                            _unlink(entry.path)
                    except OSError:
                        pass
        except OSError:
            pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
