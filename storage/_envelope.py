"""Record envelope: one format byte, a CRC32 of the payload, the msgpack payload.

LMDB has no checksums, so a flipped bit would otherwise read back silently.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from ._codec import pack, unpack
from ._errors import JournalCorruptionError

__all__ = ["FORMAT_VERSION", "open_record", "seal"]

FORMAT_VERSION = 1
_HEADER = struct.Struct(">BI")


def seal(record: dict[str, Any]) -> bytes:
    """Encode a record map into its stored form."""
    payload = pack(record)
    return _HEADER.pack(FORMAT_VERSION, zlib.crc32(payload)) + payload


def open_record(data: bytes | memoryview, database: str, key: bytes) -> dict[str, Any]:
    """Check and decode a stored record.

    Raises:
        JournalCorruptionError: short record, unknown version, bad CRC or undecodable payload.
    """
    if len(data) < _HEADER.size:
        raise JournalCorruptionError(database, key, f"record of {len(data)} bytes is shorter than its header")
    version, crc = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise JournalCorruptionError(database, key, f"unknown format version {version}")
    payload = memoryview(data)[_HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise JournalCorruptionError(database, key, "CRC mismatch")
    try:
        record = unpack(payload)
    except Exception as exc:
        raise JournalCorruptionError(database, key, f"undecodable payload ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise JournalCorruptionError(database, key, "payload is not a map")
    return record
