"""Value codec: msgpack with a round trip at write time.

``encode`` packs a value and unpacks it again, so that user code sees exactly
the types replay will give it (tuples become lists, and so on) even on the
first run. When packing fails, the value is walked to name the exact path of
the offending part (``result['x'][3]: set``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgpack

from ._errors import PayloadTooLargeError, SerializationError

__all__ = ["DEFAULT_MAX_PAYLOAD", "decode", "encode", "pack", "register_type", "unpack"]

DEFAULT_MAX_PAYLOAD = 1024 * 1024

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


_EXT_BY_TYPE: dict[type, tuple[int, Callable[[Any], Any]]] = {}
_EXT_BY_CODE: dict[int, Callable[[Any], Any]] = {}


def register_type(
    cls: type, code: int, to_plain: Callable[[Any], Any], from_plain: Callable[[Any], Any]
) -> None:
    """Let values of ``cls`` be stored (as msgpack extension type ``code``, 1-100).

    ``to_plain`` turns a value into plain data (itself encodable), ``from_plain``
    rebuilds it. The layer above registers its own value types this way
    (``PENDING``, ``Settled``, ``ActivityError``); storage knows none of them.
    """
    if not 1 <= code <= 100:
        raise ValueError(f"extension code must be between 1 and 100, got {code}")
    _EXT_BY_TYPE[cls] = (code, to_plain)
    _EXT_BY_CODE[code] = from_plain


def _default(value: Any) -> Any:
    entry = _EXT_BY_TYPE.get(type(value))
    if entry is None:
        raise TypeError(f"can not serialize {type(value).__name__!r} object")
    code, to_plain = entry
    # A packer of its own: this runs in the middle of the thread's packer's pack().
    return msgpack.ExtType(code, msgpack.packb(to_plain(value), **_PACK_OPTIONS))


def _ext_hook(code: int, data: bytes) -> Any:
    from_plain = _EXT_BY_CODE.get(code)
    if from_plain is None:
        return msgpack.ExtType(code, data)
    return from_plain(unpack(data))


# How every record is packed, nested extension values included.
_PACK_OPTIONS: dict[str, Any] = {"use_bin_type": True, "datetime": True, "default": _default}
_local = threading.local()


def pack(value: Any) -> bytes:
    """Pack a value that is known to be encodable (internal records)."""
    # One reused packer per thread: building one per call (``packb``) doubles what packing
    # a step record costs. A packer resets its buffer when packing raises.
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(**_PACK_OPTIONS)
    return packer.pack(value)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview) -> Any:
    """Unpack bytes produced by :func:`pack`."""
    return msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True, ext_hook=_ext_hook)


def encode(
    value: Any, where: str, *, root: str = "value", limit: int = DEFAULT_MAX_PAYLOAD
) -> tuple[bytes, Any]:
    """Pack ``value`` and return ``(packed, round_tripped_value)``.

    Raises:
        SerializationError: the value (at the named path) cannot be stored.
        PayloadTooLargeError: the packed value exceeds ``limit`` bytes.
    """
    try:
        data = pack(value)
        back = unpack(data)
    except Exception as exc:  # msgpack raises several types; find the real culprit
        path, problem = _find_problem(value, root)
        if path is None:
            raise SerializationError(where, root, f"{type(exc).__name__}: {exc}") from None
        raise SerializationError(where, path, problem) from None
    if len(data) > limit:
        raise PayloadTooLargeError(where, len(data), limit)
    return data, back


def decode(data: bytes | None) -> Any:
    """Unpack a value stored by :func:`encode` (``None`` stays ``None``)."""
    if data is None:
        return None
    return unpack(data)


def _find_problem(value: Any, root: str) -> tuple[str | None, str]:
    """Walk ``value`` depth first; return the path and problem of the first bad part."""
    active: set[int] = set()

    def walk(item: Any, path: str) -> tuple[str | None, str]:
        if item is None or isinstance(item, (bool, str, bytes, bytearray)):
            return None, ""
        if isinstance(item, int):
            if _INT_MIN <= item <= _INT_MAX:
                return None, ""
            return path, "int out of range (must fit in 64 bits)"
        if isinstance(item, float):
            return None, ""
        if type(item) in _EXT_BY_TYPE:
            return None, ""
        if isinstance(item, datetime):
            if item.tzinfo is None:
                return path, "naive datetime (use a timezone-aware one)"
            return None, ""
        if isinstance(item, (list, tuple, dict)):
            if id(item) in active:
                return path, f"{type(item).__name__} refers to itself"
            active.add(id(item))
            try:
                if isinstance(item, dict):
                    for key, sub in item.items():
                        if not isinstance(key, str):
                            return (
                                f"{path}[{key!r}]",
                                f"dict key of type {type(key).__name__} (keys must be str)",
                            )
                        found = walk(sub, f"{path}[{key!r}]")
                        if found[0] is not None:
                            return found
                else:
                    for index, sub in enumerate(item):
                        found = walk(sub, f"{path}[{index}]")
                        if found[0] is not None:
                            return found
            finally:
                active.discard(id(item))
            return None, ""
        return path, type(item).__name__

    return walk(value, root)
