"""The error hierarchy's root and the storage errors.

They live in the storage layer because storage is the lowest layer: it may
not import ``treadle.runtime``, yet its errors must be ``TreadleError``s.
``treadle.runtime`` re-exports every one of them.
"""

from __future__ import annotations

__all__ = [
    "JournalCorruptionError",
    "PayloadTooLargeError",
    "SerializationError",
    "StorageFullError",
    "StoreLockedError",
    "TreadleError",
]


class TreadleError(Exception):
    """Base of every error treadle raises; ``code`` is stable across releases."""

    code = "TRD"

    def __init__(self, message: str) -> None:
        super().__init__(f"[{self.code}] {message}")
        self.message = message


class SerializationError(TreadleError, TypeError):
    """A value cannot be stored: names the step (or argument) and the path inside it."""

    code = "TRD-SERIAL"

    def __init__(self, where: str, path: str, problem: str) -> None:
        super().__init__(f"{where}: cannot store {path}: {problem}")
        self.where = where
        self.path = path
        self.problem = problem


class PayloadTooLargeError(TreadleError, ValueError):
    """An encoded value is larger than the configured cap."""

    code = "TRD-TOOBIG"

    def __init__(self, where: str, size: int, limit: int) -> None:
        super().__init__(f"{where}: encoded size {size} bytes exceeds the limit of {limit} bytes")
        self.where = where
        self.size = size
        self.limit = limit


class JournalCorruptionError(TreadleError):
    """A stored record failed its CRC, could not be decoded or has an unknown version."""

    code = "TRD-CORRUPT"

    def __init__(self, database: str, key: bytes, reason: str, run_id: str | None = None) -> None:
        who = f"run {run_id} " if run_id is not None else ""
        super().__init__(f"{who}{database} record {key!r}: {reason}")
        self.database = database
        self.key = key
        self.reason = reason
        self.run_id = run_id


class StorageFullError(TreadleError):
    """The disk is full (``transient``: it may pass), or the map reached its configured cap."""

    code = "TRD-FULL"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreLockedError(TreadleError):
    """Another runtime (process ``pid``) owns the store."""

    code = "TRD-LOCKED"

    def __init__(self, path: str, pid: int | None) -> None:
        owner = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"store {path} is owned by {owner}; one runtime per store")
        self.path = path
        self.pid = pid
