"""A read-only view of a store that is safe while its owning runtime writes.

``LmdbStore(path, readonly=True)`` opens LMDB without its lock file
(``lock=False``), so its read transactions are not registered in the reader
table; the owner's writer may then reuse pages such a reader is still
walking, and a scan racing a busy writer can return missing or duplicated
records or fail with ``MDB_CORRUPTED`` / ``MDB_PAGE_NOTFOUND``. This reader
opens the environment the way ``mdb_stat``/``mdb_copy`` do — read-only but
*with* the lock file, so every read transaction is registered and the
writer keeps its pages — and follows the map when the writer grows it.
It needs write access to ``lock.mdb``; where that is missing, the CLI falls
back to ``LmdbStore(readonly=True)`` and retries torn reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import lmdb

from treadle.storage import DATABASES, JournalCorruptionError, open_record

__all__ = ["SharedReader"]

T = TypeVar("T")
_RESIZE_RETRIES = 5


class SharedReader:
    """``get``/``scan``/``values`` of a store folder, as registered LMDB readers."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._env = lmdb.open(path, readonly=True, lock=True, max_dbs=len(DATABASES) + 2, create=False)
        try:
            self._dbs = {name: self._env.open_db(name.encode(), create=False) for name in DATABASES}
        except BaseException:
            self._env.close()
            raise

    def _read(self, db: str, body: Callable[[Any], T]) -> T:
        """Run ``body(txn)`` in one read transaction; adopt a map the writer has grown meanwhile."""
        for _ in range(_RESIZE_RETRIES):
            try:
                with self._env.begin(db=self._dbs[db], buffers=True) as txn:
                    return body(txn)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # 0: take the size the writer set
        raise lmdb.MapResizedError("the store's map kept growing while it was read")

    def get(self, db: str, key: bytes) -> dict[str, Any] | None:
        def body(txn: Any) -> dict[str, Any] | None:
            data = txn.get(key)
            return None if data is None else open_record(data, db, key)

        return self._read(db, body)

    def scan(
        self, db: str, prefix: bytes = b"", on_error: Callable[[JournalCorruptionError], None] | None = None
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        def body(txn: Any) -> list[tuple[bytes, dict[str, Any]]]:
            rows: list[tuple[bytes, dict[str, Any]]] = []
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
            return rows

        return iter(self._read(db, body))

    def values(self, db: str, prefix: bytes) -> list[dict[str, Any]]:
        return [record for _, record in self.scan(db, prefix)]

    def close(self) -> None:
        self._env.close()
