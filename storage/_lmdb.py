"""The LMDB store: one environment per folder, owned by one process.

Rules learned the hard way (RELIABILITY.md "Facts about the stack"):
``writemap`` stays off (a full disk would be SIGBUS); a ``MapFullError``
leaves its transaction unusable, so the batch is aborted, the map grown with
no transaction open, and the batch retried; every record is CRC-checked on
read; only the writer thread ever opens a write transaction.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lmdb

from ._envelope import open_record, seal
from ._errors import JournalCorruptionError, StorageFullError, StoreLockedError
from ._faults import crash_point
from ._protocol import DATABASES, Op

__all__ = ["LmdbStore"]

_MiB = 1024 * 1024
_open_paths: set[str] = set()
_open_paths_lock = threading.Lock()


class LmdbStore:
    """A store in folder ``path``.

    Args:
        path: folder of the store (created if missing).
        durability: ``"sync"`` fsyncs every commit; ``"fast"`` skips the meta
            page sync (survives a process crash, may lose the last commits on
            an OS crash).
        map_size: initial map size in bytes; grown by doubling when full.
        max_map_size: cap for growth; past it a commit fails with StorageFullError.
        readonly: open for reading only, without taking the owner lock (CLI,
            audit). Read transactions still register in LMDB's lock file, so a
            live owner never reuses pages a reader is walking.
    """

    def __init__(
        self,
        path: str,
        *,
        durability: str = "sync",
        map_size: int = 64 * _MiB,
        max_map_size: int = 64 * 1024 * _MiB,
        readonly: bool = False,
    ) -> None:
        if durability not in ("sync", "fast"):
            raise ValueError(f"durability must be 'sync' or 'fast', got {durability!r}")
        self.path = os.path.realpath(path)
        self.readonly = readonly
        self.max_map_size = max_map_size
        self._lock_fd: int | None = None
        self._readers = 0
        self._resizing = False
        self._cond = threading.Condition()
        self._closed = False
        if not readonly:
            os.makedirs(self.path, exist_ok=True)
            self._take_ownership()
        options: dict[str, Any] = {
            "map_size": min(map_size, max_map_size),
            "max_dbs": len(DATABASES) + 2,
            "writemap": False,
            "sync": True,
            "metasync": durability == "sync",
            "max_readers": 1024,
            "readonly": readonly,
            "create": not readonly,
        }
        try:
            try:
                self._env = lmdb.open(self.path, lock=True, **options)
            except lmdb.Error:
                if not readonly:
                    raise
                # A lock file we may not write (another user's store): unlocked
                # reads, which a live writer can disturb; reads retry below.
                self._env = lmdb.open(self.path, lock=False, **options)
        except BaseException:
            self._release_ownership()
            raise
        if not readonly:
            self._env.reader_check()
        self._dbs = {name: self._env.open_db(name.encode(), create=not readonly) for name in DATABASES}
        self.commits = 0

    # -- ownership ---------------------------------------------------------

    def _take_ownership(self) -> None:
        with _open_paths_lock:
            if self.path in _open_paths:
                raise StoreLockedError(self.path, os.getpid())
            lock_path = os.path.join(self.path, "treadle.lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreLockedError(self.path, owner) from None
                raise
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            os.fsync(fd)
            self._lock_fd = fd
            _open_paths.add(self.path)

    def _release_ownership(self) -> None:
        if self._lock_fd is None:
            return
        with _open_paths_lock:
            _open_paths.discard(self.path)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reads ---------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._resizing)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def _begin(self, db: str, buffers: bool) -> Any:
        if buffers:
            return self._env.begin(db=self._dbs[db], buffers=True)
        return self._env.begin(db=self._dbs[db])

    @contextlib.contextmanager
    def _read_txn(self, db: str, buffers: bool = False) -> Iterator[Any]:
        with self._reading():
            try:
                txn = self._begin(db, buffers)
            except lmdb.MapResizedError:
                # A read-only opener: the owner grew the map; adopt its size.
                self._env.set_mapsize(0)
                txn = self._begin(db, buffers)
            with txn:
                yield txn

    def get(self, db: str, key: bytes) -> dict[str, Any] | None:
        with self._read_txn(db) as txn:
            data = txn.get(key)
        return None if data is None else open_record(data, db, key)

    def scan(
        self, db: str, prefix: bytes = b"", on_error: Callable[[JournalCorruptionError], None] | None = None
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        # Records are decoded straight from LMDB's pages (buffers=True: no
        # copy) inside the read transaction; replay of a long journal is
        # dominated by this loop.
        rows: list[tuple[bytes, dict[str, Any]]] = []
        with self._read_txn(db, buffers=True) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    key_bytes = bytes(key)
                    if not key_bytes.startswith(prefix):
                        break
                    try:
                        rows.append((key_bytes, open_record(value, db, key_bytes)))
                    except JournalCorruptionError as exc:
                        if on_error is None:
                            raise
                        on_error(exc)
        return iter(rows)

    def values(self, db: str, prefix: bytes) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        size = len(prefix)
        with self._read_txn(db, buffers=True) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if key[:size] != prefix:
                        break
                    records.append(open_record(value, db, bytes(key)))
        return records

    def raw_put(self, db: str, key: bytes, data: bytes) -> None:
        """Store raw bytes (tests use it to plant corrupt records)."""
        with self._env.begin(write=True, db=self._dbs[db]) as txn:
            txn.put(key, data)

    def raw_get(self, db: str, key: bytes) -> bytes | None:
        with self._read_txn(db) as txn:
            data = txn.get(key)
        return None if data is None else bytes(data)

    # -- writes --------------------------------------------------------------

    def apply(self, batch: Sequence[Op]) -> None:
        """Write ``batch`` in one durable transaction; grow the map when it is full."""
        sealed = [(self._dbs[op.db], op.key, None if op.record is None else seal(op.record)) for op in batch]
        while True:
            txn = self._env.begin(write=True)
            try:
                for db, key, data in sealed:
                    if data is None:
                        txn.delete(key, db=db)
                    else:
                        txn.put(key, data, db=db)
                crash_point("in_commit")
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                self._grow()
                continue
            except lmdb.DiskError as exc:
                txn.abort()
                raise StorageFullError(
                    f"disk full while committing to {self.path}: {exc}", transient=True
                ) from None
            except lmdb.Error as exc:
                txn.abort()
                # A disk that fills in the middle of a commit gives a short write: EIO, not ENOSPC.
                if self._disk_nearly_full(sealed):
                    raise StorageFullError(
                        f"disk full while committing to {self.path}: {exc}", transient=True
                    ) from None
                raise
            except BaseException:
                txn.abort()
                raise
            self.commits += 1
            return

    def _disk_nearly_full(self, sealed: Sequence[tuple[Any, bytes, bytes | None]]) -> bool:
        try:
            stat = os.statvfs(self.path)
        except OSError:
            return False
        needed = 2 * sum(len(data) for _, _, data in sealed if data is not None) + 1024 * 1024
        return stat.f_bavail * stat.f_frsize < needed

    def _grow(self) -> None:
        current = self._env.info()["map_size"]
        if current >= self.max_map_size:
            raise StorageFullError(
                f"store {self.path} map is full at its cap of {self.max_map_size} bytes (max_map_size)"
            )
        target = min(current * 2, self.max_map_size)
        with self._cond:
            self._resizing = True
            self._cond.wait_for(lambda: self._readers == 0)
            try:
                self._env.set_mapsize(target)
            finally:
                self._resizing = False
                self._cond.notify_all()

    # -- introspection -------------------------------------------------------

    def map_usage(self) -> tuple[int, int]:
        """(bytes in use, map size)."""
        info = self._env.info()
        stat = self._env.stat()
        used = (info["last_pgno"] + 1) * stat["psize"]
        return used, info["map_size"]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._env.close()
        self._release_ownership()


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
