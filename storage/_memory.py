"""An in-memory :class:`Store` for unit tests: same contract, no disk."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._envelope import open_record, seal
from ._errors import JournalCorruptionError
from ._protocol import DATABASES, Op

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps sealed records in dicts, so CRC and codec paths are exercised too."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dbs: dict[str, dict[bytes, bytes]] = {name: {} for name in DATABASES}
        self.commits = 0

    def apply(self, batch: Sequence[Op]) -> None:
        sealed = [(op.db, op.key, None if op.record is None else seal(op.record)) for op in batch]
        with self._lock:
            for db, key, data in sealed:
                if data is None:
                    self._dbs[db].pop(key, None)
                else:
                    self._dbs[db][key] = data
            self.commits += 1

    def get(self, db: str, key: bytes) -> dict[str, Any] | None:
        with self._lock:
            data = self._dbs[db].get(key)
        return None if data is None else open_record(data, db, key)

    def scan(
        self, db: str, prefix: bytes = b"", on_error: Callable[[JournalCorruptionError], None] | None = None
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        with self._lock:
            items = sorted((k, v) for k, v in self._dbs[db].items() if k.startswith(prefix))
        rows = []
        for key, data in items:
            try:
                rows.append((key, open_record(data, db, key)))
            except JournalCorruptionError as exc:
                if on_error is None:
                    raise
                on_error(exc)
        return iter(rows)

    def values(self, db: str, prefix: bytes) -> list[dict[str, Any]]:
        return [record for _, record in self.scan(db, prefix)]

    def raw(self, db: str) -> dict[bytes, bytes]:
        """The sealed bytes of a database (tests corrupt them)."""
        return self._dbs[db]

    def close(self) -> None:
        return None
