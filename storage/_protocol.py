"""The one small interface through which the runtime reaches a store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from ._errors import JournalCorruptionError

__all__ = ["DATABASES", "Op", "Store"]

DATABASES = ("runs", "journal", "signals", "timers")


class Op(NamedTuple):
    """One write: ``record`` is stored at ``key`` of ``db``; ``None`` deletes the key."""

    db: str
    key: bytes
    record: dict[str, Any] | None


class Store(Protocol):
    """Reads from any thread; ``apply`` from one thread at a time (under the WriteLane's commit lock)."""

    path: str

    def apply(self, batch: Sequence[Op]) -> None:
        """Write ``batch`` in one durable transaction (all or nothing)."""

    def get(self, db: str, key: bytes) -> dict[str, Any] | None:
        """The record at ``key`` of ``db``, or ``None``."""

    def scan(
        self, db: str, prefix: bytes = b"", on_error: Callable[[JournalCorruptionError], None] | None = None
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Records whose key starts with ``prefix``, in key order (materialised).

        A corrupt record raises JournalCorruptionError, or, with ``on_error``,
        is passed to it and skipped (one bad run must not hide the others).
        """

    def values(self, db: str, prefix: bytes) -> list[dict[str, Any]]:
        """Like :meth:`scan` without the keys (the fast path for loading a journal)."""

    def close(self) -> None:
        """Release the store; idempotent."""
