"""seal/open_record: the stored form of a record (format byte, CRC32, msgpack map)."""

from __future__ import annotations

import struct
import zlib

import pytest

from treadle.storage import FORMAT_VERSION, JournalCorruptionError, TreadleError, open_record, pack, seal

KEY = b"\x01run-key\x00step-3.1"
RECORD = {"s": "completed", "val": b"\x81\xa1x\x01", "a": 2, "list": [1, "two", None]}


def _sealed_with(payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """A record with a valid header for ``payload`` (correct CRC) and the given version."""
    return struct.pack(">BI", version, zlib.crc32(payload)) + payload


def test_round_trip() -> None:
    """open_record(seal(r)) == r, and the stored form starts with the format version."""
    data = seal(RECORD)
    assert isinstance(data, bytes)
    assert data[0] == FORMAT_VERSION
    assert open_record(data, "journal", KEY) == RECORD


def test_open_record_accepts_memoryview() -> None:
    """LMDB can hand back buffers: a memoryview of the stored bytes opens the same."""
    assert open_record(memoryview(seal(RECORD)), "journal", KEY) == RECORD  # type: ignore[arg-type]


@pytest.mark.parametrize("bit", [0, 3, 7])
def test_flipped_bit_in_payload_is_corruption_naming_the_key(bit: int) -> None:
    """One flipped payload bit fails the CRC: JournalCorruptionError naming database and key."""
    data = bytearray(seal(RECORD))
    data[len(data) // 2 + 3] ^= 1 << bit
    with pytest.raises(JournalCorruptionError) as info:
        open_record(bytes(data), "journal", KEY)
    err = info.value
    assert err.key == KEY
    assert err.database == "journal"
    assert repr(KEY) in str(err)
    assert "CRC" in err.reason
    assert isinstance(err, TreadleError)
    assert str(err).startswith("[TRD-CORRUPT] ")


def test_flipped_bit_in_crc_is_corruption() -> None:
    """A damaged header CRC is caught as well."""
    data = bytearray(seal(RECORD))
    data[2] ^= 0x10
    with pytest.raises(JournalCorruptionError, match="CRC"):
        open_record(bytes(data), "journal", KEY)


@pytest.mark.parametrize("keep", [0, 1, 4])
def test_record_shorter_than_header(keep: int) -> None:
    """A record cut inside its 5-byte header is corruption, not an IndexError/struct.error."""
    with pytest.raises(JournalCorruptionError) as info:
        open_record(seal(RECORD)[:keep], "runs", KEY)
    assert "shorter than its header" in info.value.reason
    assert info.value.key == KEY


def test_truncated_payload() -> None:
    """A record cut inside its payload is corruption naming the key."""
    data = seal(RECORD)
    with pytest.raises(JournalCorruptionError) as info:
        open_record(data[: len(data) - 3], "journal", KEY)
    assert repr(KEY) in str(info.value)


def test_truncated_msgpack_with_matching_crc() -> None:
    """Truncated msgpack whose CRC happens to match (written that way) is still corruption."""
    payload = pack(RECORD)[:-2]
    with pytest.raises(JournalCorruptionError) as info:
        open_record(_sealed_with(payload), "journal", KEY)
    assert "undecodable" in info.value.reason


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 255])
def test_unknown_format_version(version: int) -> None:
    """A format byte this code does not know is corruption that names the version."""
    data = _sealed_with(pack(RECORD), version=version)
    with pytest.raises(JournalCorruptionError) as info:
        open_record(data, "signals", KEY)
    assert f"unknown format version {version}" in str(info.value)
    assert info.value.database == "signals"


@pytest.mark.parametrize("value", [[1, 2, 3], "text", 42, None, b"raw"])
def test_non_map_payload(value: object) -> None:
    """A record must be a msgpack map: anything else (with a valid CRC) is corruption."""
    with pytest.raises(JournalCorruptionError) as info:
        open_record(_sealed_with(pack(value)), "timers", KEY)
    assert "not a map" in info.value.reason


def test_corruption_error_can_name_the_run() -> None:
    """With run_id, the message names the run as well as the key."""
    err = JournalCorruptionError("journal", KEY, "CRC mismatch", run_id="order-42")
    assert "run order-42" in str(err)
    assert err.run_id == "order-42"
