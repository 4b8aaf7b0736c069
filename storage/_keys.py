"""Key schema. Every key stays well under LMDB's 511-byte limit.

Run ids are hashed to a fixed 16 bytes (the full id is kept in the run
record); step ids and names are kept as text unless they are long, then hashed.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = [
    "MAX_KEY",
    "journal_key",
    "journal_prefix",
    "run_key",
    "signal_index_key",
    "signal_key",
    "signal_prefix",
    "step_key",
    "timer_key",
]

MAX_KEY = 511
_TEXT_LIMIT = 160
_SEQ = struct.Struct(">Q")
_U64_MAX = 2**64 - 1


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _text(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) <= _TEXT_LIMIT and b"\x00" not in raw:
        return raw
    return b"\x00#" + _digest(text)


def run_key(run_id: str) -> bytes:
    """Fixed-length key of a run (16 bytes)."""
    return _digest(run_id)


def journal_prefix(run_id: str) -> bytes:
    """Prefix shared by every journal key of ``run_id`` (scan it to load the journal)."""
    return run_key(run_id)


def journal_key(run_id: str, step: str) -> bytes:
    """Key of step ``step`` (a path such as ``"3.1.0"``) in run ``run_id``'s journal."""
    return run_key(run_id) + _text(step)


def step_key(prefix: bytes, step: str) -> bytes:
    """``journal_key(run_id, step)`` from ``prefix = journal_prefix(run_id)``, without
    hashing the run id again (a run's actor writes one key per step)."""
    return prefix + _text(step)


def signal_prefix(run_id: str, name: str | None = None) -> bytes:
    """Prefix of the signals of ``run_id`` (of one ``name``, if given), in sequence order."""
    base = run_key(run_id) + b"S"
    return base if name is None else base + _text(name) + b"\x00"


def signal_key(run_id: str, name: str, seq: int) -> bytes:
    """Key of signal number ``seq`` (per run, from 1) named ``name``."""
    return signal_prefix(run_id, name) + _SEQ.pack(seq)


def signal_index_key(run_id: str, name: str, key: str) -> bytes:
    """Key of the idempotency entry of a signal sent with ``key=`` (makes re-sends no-ops)."""
    return run_key(run_id) + b"K" + _text(name) + b"\x00" + _text(key)


def timer_key(due: float, run_id: str, step: str) -> bytes:
    """Key of a durable timer: due time (µs, big-endian, so keys sort by deadline), run, step.

    Deadlines beyond what 64 bits of microseconds hold (~584,000 years) sort last.
    """
    micros = min(max(0, int(due * 1_000_000)), _U64_MAX)
    return _SEQ.pack(micros) + run_key(run_id) + _text(step)
