"""LmdbStore: reads and writes, one owner per store, map growth and its cap, CRC on read."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from treadle.storage import (
    JournalCorruptionError,
    LmdbStore,
    Op,
    StorageFullError,
    StoreLockedError,
    TreadleError,
    seal,
)

KiB = 1024
MiB = 1024 * KiB
SUBPROCESS_TIMEOUT = 30


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def store(path: str) -> Iterator[LmdbStore]:
    opened = LmdbStore(path, durability="fast")
    yield opened
    opened.close()


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_apply_get_scan_with_prefix(store: LmdbStore) -> None:
    """apply writes a batch; get reads one key; scan returns only keys with the prefix, in key order."""
    store.apply(
        [
            Op("journal", b"run1/2", {"v": 2}),
            Op("journal", b"run1/0", {"v": 0}),
            Op("journal", b"run2/0", {"v": "other"}),
            Op("journal", b"run1/1", {"v": (1, 1)}),
            Op("runs", b"run1", {"status": "running"}),
        ]
    )
    assert store.get("journal", b"run1/1") == {"v": [1, 1]}
    assert store.get("runs", b"run1") == {"status": "running"}
    assert store.get("journal", b"missing") is None
    assert store.get("runs", b"run1/0") is None  # databases are separate
    assert list(store.scan("journal", b"run1/")) == [
        (b"run1/0", {"v": 0}),
        (b"run1/1", {"v": [1, 1]}),
        (b"run1/2", {"v": 2}),
    ]
    assert [key for key, _ in store.scan("journal")] == [b"run1/0", b"run1/1", b"run1/2", b"run2/0"]
    assert list(store.scan("journal", b"run3")) == []
    assert list(store.scan("journal", b"\xff")) == []
    assert store.commits == 1


def test_none_record_deletes_and_batches_apply_in_order(store: LmdbStore) -> None:
    """An Op with record None deletes the key; later ops in a batch win over earlier ones."""
    store.apply([Op("signals", b"k1", {"n": 1}), Op("signals", b"k2", {"n": 2})])
    store.apply([Op("signals", b"k1", None), Op("signals", b"k2", {"n": 3}), Op("signals", b"k2", {"n": 4})])
    store.apply([Op("signals", b"never-there", None)])
    assert store.get("signals", b"k1") is None
    assert list(store.scan("signals")) == [(b"k2", {"n": 4})]


def test_second_store_in_same_process_is_locked(store: LmdbStore, path: str) -> None:
    """A second LmdbStore on an owned path, same process: StoreLockedError with pid == os.getpid()."""
    with pytest.raises(StoreLockedError) as info:
        LmdbStore(path)
    err = info.value
    assert err.pid == os.getpid()
    assert str(os.getpid()) in str(err)
    assert isinstance(err, TreadleError)
    assert str(err).startswith("[TRD-LOCKED] ")
    # the failed attempt did not disturb the owner
    store.apply([Op("runs", b"r", {"ok": True})])
    assert store.get("runs", b"r") == {"ok": True}


def test_second_store_via_another_path_spelling_is_locked(store: LmdbStore, path: str) -> None:
    """The same folder spelled differently (trailing slash, '..') is still the same store."""
    with pytest.raises(StoreLockedError):
        LmdbStore(path + "/")
    with pytest.raises(StoreLockedError):
        LmdbStore(os.path.join(path, "..", os.path.basename(path)))


def test_second_process_is_locked_and_told_the_owner_pid(store: LmdbStore, path: str, tmp_path: Path) -> None:
    """Another process opening an owned store gets StoreLockedError whose message names the owner pid."""
    code = (
        "import sys\n"
        "from treadle.storage import LmdbStore, StoreLockedError\n"
        "try:\n"
        f"    LmdbStore({path!r})\n"
        "except StoreLockedError as exc:\n"
        "    print(exc.pid)\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit('opened a store owned by another process')\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    pid_line, message = done.stdout.splitlines()[:2]
    assert pid_line == str(os.getpid())
    assert f"process {os.getpid()}" in message
    assert "[TRD-LOCKED]" in message


def test_close_releases_ownership(path: str, tmp_path: Path) -> None:
    """After close() the store reopens, in this process and in another; close() is idempotent."""
    first = LmdbStore(path, durability="fast")
    first.apply([Op("runs", b"kept", {"n": 1})])
    first.close()
    first.close()
    second = LmdbStore(path, durability="fast")
    try:
        assert second.get("runs", b"kept") == {"n": 1}
    finally:
        second.close()
    code = (
        "from treadle.storage import LmdbStore\n"
        f"s = LmdbStore({path!r})\n"
        "print(s.get('runs', b'kept'))\n"
        "s.close()\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'n': 1}"


def test_map_grows_from_a_tiny_initial_size(path: str) -> None:
    """A 64 KiB map grows (abort, grow, retry) until a few MiB written in batches all fit and read back."""
    store = LmdbStore(path, durability="fast", map_size=64 * KiB)
    try:
        _, initial = store.map_usage()
        blob = "z" * (4 * KiB)
        for batch in range(16):  # 16 batches x 64 records x 4 KiB = 4 MiB
            store.apply([Op("journal", b"%03d/%03d" % (batch, i), {"b": blob, "i": i}) for i in range(64)])
        rows = list(store.scan("journal"))
        assert len(rows) == 16 * 64
        assert all(record == {"b": blob, "i": int(key[4:])} for key, record in rows)
        used, size = store.map_usage()
        assert size > initial
        assert used <= size
        assert store.commits == 16
    finally:
        store.close()


def test_map_growth_while_readers_read(path: str) -> None:
    """Readers on other threads keep reading correct data while the writer grows the map."""
    store = LmdbStore(path, durability="fast", map_size=64 * KiB)
    store.apply([Op("runs", b"anchor", {"a": 1})])
    stop = threading.Event()
    started = threading.Barrier(3, timeout=10)
    problems: list[BaseException] = []

    def read() -> None:
        try:
            assert store.get("runs", b"anchor") == {"a": 1}
            started.wait()
            # bursts with a short pause: a hot loop of GIL-releasing calls starves the
            # writer thread of the GIL (a CPython convoy), which is not what is tested here
            while not stop.wait(0.001):
                for _ in range(20):
                    assert store.get("runs", b"anchor") == {"a": 1}
                assert len(list(store.scan("runs"))) == 1
        except BaseException as exc:
            problems.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        started.wait()
        blob = "y" * (8 * KiB)
        for batch in range(8):
            store.apply([Op("journal", b"%d/%d" % (batch, i), {"b": blob}) for i in range(32)])
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    try:
        assert not any(thread.is_alive() for thread in readers)
        assert problems == []
        assert len(list(store.scan("journal"))) == 8 * 32
        assert store.map_usage()[1] > 64 * KiB
    finally:
        store.close()


def test_batch_past_max_map_size_is_storage_full(path: str) -> None:
    """Past max_map_size a batch fails with StorageFullError, all or nothing; earlier data stays readable."""
    store = LmdbStore(path, durability="fast", map_size=64 * KiB, max_map_size=256 * KiB)
    try:
        store.apply([Op("journal", b"early/%d" % i, {"i": i}) for i in range(10)])
        too_big = [Op("journal", b"big/%04d" % i, {"b": "x" * KiB}) for i in range(1024)]
        with pytest.raises(StorageFullError) as info:
            store.apply(too_big)
        assert isinstance(info.value, TreadleError)
        assert "max_map_size" in str(info.value)
        assert [record for _, record in store.scan("journal", b"early/")] == [{"i": i} for i in range(10)]
        assert list(store.scan("journal", b"big/")) == []
        assert store.map_usage()[1] <= 256 * KiB
        # the store is still usable for a batch that fits
        store.apply([Op("journal", b"late", {"ok": True})])
        assert store.get("journal", b"late") == {"ok": True}
    finally:
        store.close()


def test_flipped_bit_on_disk_is_corruption_on_get_and_scan(store: LmdbStore) -> None:
    """A record with a flipped bit (planted with raw_put) raises JournalCorruptionError on get and on scan."""
    store.apply([Op("journal", b"run/0", {"v": "fine"}), Op("journal", b"run/2", {"v": "fine too"})])
    damaged = bytearray(seal({"v": "about to rot", "n": 12345}))
    damaged[-4] ^= 0x04
    store.raw_put("journal", b"run/1", bytes(damaged))
    assert store.raw_get("journal", b"run/1") == bytes(damaged)
    with pytest.raises(JournalCorruptionError) as on_get:
        store.get("journal", b"run/1")
    assert on_get.value.key == b"run/1"
    assert on_get.value.database == "journal"
    assert "b'run/1'" in str(on_get.value)
    with pytest.raises(JournalCorruptionError) as on_scan:
        list(store.scan("journal", b"run/"))
    assert on_scan.value.key == b"run/1"
    # neighbours are still readable one by one
    assert store.get("journal", b"run/0") == {"v": "fine"}
    assert store.get("journal", b"run/2") == {"v": "fine too"}


def test_readonly_reader_reads_while_owner_holds_the_lock(
    store: LmdbStore, path: str, tmp_path: Path
) -> None:
    """readonly=True (the CLI) opens an owned store from another process without the lock and reads it."""
    store.apply([Op("runs", b"order-42", {"status": "running", "n": [1, 2]})])
    code = (
        "from treadle.storage import LmdbStore\n"
        f"s = LmdbStore({path!r}, readonly=True)\n"
        "print(s.get('runs', b'order-42'))\n"
        "print(len(list(s.scan('runs'))))\n"
        "s.close()\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'status': 'running', 'n': [1, 2]}", "1"]
    # the owner kept its lock: a writer still cannot open the store
    with pytest.raises(StoreLockedError):
        LmdbStore(path)
    store.apply([Op("runs", b"after", {"ok": 1})])
    assert store.get("runs", b"after") == {"ok": 1}


def test_bad_durability_is_refused_before_taking_the_lock(path: str) -> None:
    """durability must be 'sync' or 'fast' (ValueError naming it); the store is not left locked."""
    with pytest.raises(ValueError, match="durability"):
        LmdbStore(path, durability="maybe")
    opened = LmdbStore(path, durability="sync")
    opened.close()
