"""treadle.storage: the LMDB store, the record codec and the group-commit writer.

For people who extend or inspect the store; workflow authors import from
``treadle.runtime`` only. This package never imports ``treadle.runtime``.
"""

from ._codec import DEFAULT_MAX_PAYLOAD, decode, encode, pack, register_type, unpack
from ._envelope import FORMAT_VERSION, open_record, seal
from ._errors import (
    JournalCorruptionError,
    PayloadTooLargeError,
    SerializationError,
    StorageFullError,
    StoreLockedError,
    TreadleError,
)
from ._faults import FAULT_POINTS, crash_point, reload_faults
from ._keys import (
    MAX_KEY,
    journal_key,
    journal_prefix,
    run_key,
    signal_index_key,
    signal_key,
    signal_prefix,
    step_key,
    timer_key,
)
from ._lmdb import LmdbStore
from ._memory import MemoryStore
from ._protocol import DATABASES, Op, Store
from ._writer import Ack, StoreWriter, WriteLane, WriteRequest, write_and_wait

__all__ = [
    "DATABASES",
    "DEFAULT_MAX_PAYLOAD",
    "FAULT_POINTS",
    "FORMAT_VERSION",
    "MAX_KEY",
    "Ack",
    "JournalCorruptionError",
    "LmdbStore",
    "MemoryStore",
    "Op",
    "PayloadTooLargeError",
    "SerializationError",
    "StorageFullError",
    "Store",
    "StoreLockedError",
    "StoreWriter",
    "TreadleError",
    "WriteLane",
    "WriteRequest",
    "crash_point",
    "decode",
    "encode",
    "journal_key",
    "journal_prefix",
    "open_record",
    "pack",
    "register_type",
    "reload_faults",
    "run_key",
    "seal",
    "signal_index_key",
    "signal_key",
    "signal_prefix",
    "step_key",
    "timer_key",
    "unpack",
    "write_and_wait",
]
