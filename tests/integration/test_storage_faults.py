"""Storage faults: disk full, map full, corrupt records (RELIABILITY.md scenarios 6, 7, 8).

Also the store audit of a clean mixed workload (the baseline every fault test
compares with). Scenario 16 (a second runtime process on one store is refused
with ``StoreLockedError`` naming the owner's pid) is
``tests/unit/test_lmdb_store.py::test_second_process_is_locked_and_told_the_owner_pid``:
``Runtime`` takes the store's lock through ``LmdbStore``, so it is not repeated here.

The runtime has no ``map_size`` parameter (the map starts at 64 MiB), so the
map tests give it a store with a small initial map by patching the
``LmdbStore`` that ``treadle.runtime._runtime`` constructs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import subprocess
import threading
import uuid as uuid_mod
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    WAIT,
    Box,
    assert_cancel_ended_the_run,
    cancel_in_thread,
    step_status,
    supervisor_handled,
    wait_until,
)
from treadle.runtime import (
    ActivityContext,
    RunParkedError,
    RunStatus,
    StorageFullError,
    WorkflowFailedError,
    _run_actor,
    activity,
    workflow,
)
from treadle.runtime._messages import RequestCancel, RunEnded
from treadle.runtime.testing import audit
from treadle.storage import FORMAT_VERSION, JournalCorruptionError, LmdbStore, Op, journal_key, run_key

P = "faults."
KiB = 1024
MiB = 1024 * KiB
RESUME = 30.0  # a stalled run is retried with a backoff of up to a few seconds

GATES: dict[str, threading.Event] = {}


def _run_id(prefix: str) -> str:
    return f"{prefix}-{uuid_mod.uuid4().hex[:8]}"


def _gate(box: Box, run_id: str) -> threading.Event:
    GATES[run_id] = gate = box.gate()
    return gate


@activity(name=P + "blob")
def blob(size: int) -> bytes:
    return bytes([size % 251]) * size


@activity(name=P + "gated_blob")
def gated_blob(size: int, actx: ActivityContext) -> bytes:
    gate = GATES.get(actx.run_id)
    if gate is not None:
        assert gate.wait(WAIT), "gate not opened"
    return bytes([size % 251]) * size


@activity(name=P + "tens")
def tens(n: int) -> int:
    return n * 10


@activity(name=P + "gated_tens")
def gated_tens(n: int, actx: ActivityContext) -> int:
    gate = GATES.get(actx.run_id)
    if gate is not None:
        assert gate.wait(WAIT), "gate not opened"
    return n * 10


@activity(name=P + "boom")
def boom(message: str) -> None:
    raise ValueError(message)


@workflow(name=P + "two_blobs")
def two_blobs(ctx: Any, first: int, second: int) -> Any:
    a = yield ctx.run(blob, first)
    b = yield ctx.run(gated_blob, second)
    return [len(a), len(b)]


@workflow(name=P + "many_blobs")
def many_blobs(ctx: Any, count: int, size: int) -> Any:
    sizes = []
    for i in range(count):
        value = yield ctx.run(blob, size + i)
        assert value == bytes([(size + i) % 251]) * (size + i), f"step {i} read back wrong"
        sizes.append(len(value))
    return sizes


@workflow(name=P + "one_step")
def one_step(ctx: Any, n: int) -> Any:
    return (yield ctx.run(tens, n))


@workflow(name=P + "gated_steps")
def gated_steps(ctx: Any, n: int) -> Any:
    a = yield ctx.run(tens, n)
    b = yield ctx.run(gated_tens, n + 1)
    return [a, b]


@workflow(name=P + "signal_steps")
def signal_steps(ctx: Any, n: int) -> Any:
    a = yield ctx.run(tens, n)
    b = yield ctx.wait_for_signal(P + "go")
    return [a, b]


@workflow(name=P + "child")
def child_flow(ctx: Any, n: int) -> Any:
    value = yield ctx.run(tens, n)
    return value + 1


@workflow(name=P + "mixed")
def mixed(ctx: Any, n: int) -> Any:
    pair = yield ctx.all([ctx.run(tens, n), ctx.run(tens, n + 1)])
    won = yield ctx.race([ctx.run(tens, n + 2), ctx.sleep("1h")])
    go = yield ctx.wait_for_signal(P + "go")
    yield ctx.sleep(0.01)
    kid = yield ctx.child(child_flow, n)
    both = yield ctx.all([ctx.wait_for_signal(P + "more"), ctx.run(tens, n + 3)])
    named = yield ctx.run_all({"x": ctx.run(tens, n + 4), "y": ctx.run(tens, n + 5)})
    return [pair, won, go, kid, both, named]


@workflow(name=P + "failing")
def failing(ctx: Any) -> Any:
    yield ctx.run(tens, 1)
    yield ctx.run(boom, "planned failure")


@workflow(name=P + "waiting")
def waiting(ctx: Any) -> Any:
    yield ctx.run(tens, 2)
    yield ctx.wait_for_signal(P + "never")


def _crashed(caplog: pytest.LogCaptureFixture, run_id: str) -> bool:
    return any(
        "restarting crashed run" in rec.getMessage() and run_id in rec.getMessage()
        for rec in list(caplog.records)
    )


@pytest.fixture
def small_map(monkeypatch: pytest.MonkeyPatch) -> int:
    """Runtimes built in this test open their store with a 256 KiB map (the default is 64 MiB)."""
    initial = 256 * KiB
    import treadle.runtime._runtime as runtime_module

    class SmallMapStore(LmdbStore):
        def __init__(self, path: str, **kwargs: Any) -> None:
            super().__init__(path, map_size=initial, **kwargs)

    monkeypatch.setattr(runtime_module, "LmdbStore", SmallMapStore)
    return initial


# --------------------------------------------------------------------------
# the baseline: a mixed workload leaves a store that passes the audit
# --------------------------------------------------------------------------


def test_mixed_workload_leaves_a_store_that_passes_the_audit(box: Box) -> None:
    """all, race (with a sleeping loser), signals (alone and inside all), sleep, child, run_all,
    a failed and a cancelled run: every invariant the audit checks holds, open and at rest."""
    rt = box.open(durability="fast")
    handles = [rt.start(mixed, n, run_id=f"audit-mixed-{n}") for n in range(6)]
    for n, handle in enumerate(handles):
        handle.signal(P + "go", f"go-{n}")
        handle.signal(P + "more", f"more-{n}", key=f"k-{n}")
        handle.signal(P + "more", f"more-{n}", key=f"k-{n}")  # a duplicate: stored once
    failed = rt.start(failing, run_id="audit-failing")
    cancelled = rt.start(waiting, run_id="audit-cancelled")
    for n, handle in enumerate(handles):
        assert handle.result(timeout=WAIT) == [
            [n * 10, n * 10 + 10],
            n * 10 + 20,
            f"go-{n}",
            n * 10 + 1,
            [f"more-{n}", n * 10 + 30],
            {"x": n * 10 + 40, "y": n * 10 + 50},
        ]
    with pytest.raises(WorkflowFailedError):
        failed.result(timeout=WAIT)
    wait_until(lambda: step_status(cancelled, "1") == "running", message="the wait is recorded")
    assert cancelled.cancel()
    with pytest.raises(WorkflowFailedError):
        cancelled.result(timeout=WAIT)
    wait_until(lambda: all(step_status(h, "1.1") == "abandoned" for h in handles), message="losers")

    live = audit(rt.store)
    assert live.ok, str(live)
    box.shutdown()
    report = audit(str(box.path))
    assert report.ok, str(report)
    assert report.warnings == []
    assert report.records["runs"] == 6 * 2 + 2  # the mixed runs, their children, failing, cancelled
    assert report.records["signals"] == 6 * 3  # go, more and the index entry of more's key
    assert report.records["timers"] == 0


# --------------------------------------------------------------------------
# 7. map full: grow and retry; past the configured cap, StorageFullError
# --------------------------------------------------------------------------


def test_map_grows_transparently_below_the_cap(box: Box, small_map: int) -> None:
    """Several MiB written through a runtime whose map starts at 256 KiB: every value reads back,
    the map grew, runs went on while it grew."""
    rt = box.open(durability="fast")
    handles = [rt.start(many_blobs, 4, 400 * KiB + n, run_id=f"grow-{n}") for n in range(4)]
    for n, handle in enumerate(handles):
        assert handle.result(timeout=WAIT * 2) == [400 * KiB + n + i for i in range(4)]
    used, size = rt.store.map_usage()  # type: ignore[attr-defined]
    assert size > small_map and used > 6 * MiB
    assert all(rec.status == "completed" for h in handles for rec in h.history())
    box.shutdown()
    assert audit(str(box.path)).ok


def test_max_map_size_below_the_default_initial_map_is_honoured(box: Box) -> None:
    rt = box.open(durability="fast", max_map_size=2 * MiB)
    _, size = rt.store.map_usage()  # type: ignore[attr-defined]
    assert size <= 2 * MiB


def test_past_the_map_cap_earlier_checkpoints_stay_and_other_runs_go_on(box: Box, small_map: int) -> None:
    """RELIABILITY 7 / DESIGN "a full map grows the map or fails the step clearly; it never
    corrupts the store": past max_map_size the run fails with StorageFullError (the cap will
    not move by itself, so retrying would only re-run the activity); its earlier checkpoint
    stays readable, other runs complete, and the store passes the audit."""
    rt = box.open(durability="fast", max_map_size=2 * MiB, max_payload=8 * MiB)
    big = rt.start(two_blobs, 1000, 4 * MiB, run_id="map-big")
    with pytest.raises(WorkflowFailedError) as info:
        big.result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.StorageFullError"
    assert "max_map_size" in info.value.message
    others = [rt.start(one_step, n, run_id=f"map-other-{n}") for n in range(3)]
    assert [h.result(timeout=WAIT) for h in others] == [0, 10, 20]
    first = big.history()[0]
    assert (first.step, first.status, first.value) == ("0", "completed", bytes([1000 % 251]) * 1000)
    assert big.status() == RunStatus.FAILED
    box.shutdown()
    report = audit(str(box.path))
    assert report.ok, str(report)


def test_run_past_the_map_cap_gets_storage_full_error(box: Box, small_map: int) -> None:
    rt = box.open(durability="fast", max_map_size=2 * MiB, max_payload=8 * MiB)
    big = rt.start(two_blobs, 1000, 4 * MiB, run_id="map-full")
    with pytest.raises((WorkflowFailedError, StorageFullError)) as info:
        big.result(timeout=WAIT)
    error = info.value
    if isinstance(error, WorkflowFailedError):
        assert error.type == "treadle.runtime.StorageFullError", error
    assert "max_map_size" in str(error)


# --------------------------------------------------------------------------
# 6. disk full: StorageFullError; earlier checkpoints readable; others go on; resumes after
# --------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root and mount): a disk that fills up for real."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full tests mount a 4 MiB tmpfs: they need root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"disk-full tests mount a 4 MiB tmpfs, which failed here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        unmounted = subprocess.run(["umount", str(disk)], capture_output=True, timeout=30, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def disk_box(tiny_disk: Path) -> Iterator[Box]:
    holder = Box(tiny_disk / "store")
    yield holder
    holder.close()  # before the tmpfs is unmounted


def _fill(disk: Path, headroom: int) -> Callable[[], None]:
    """Fill ``disk`` but ``headroom`` bytes; returns what frees the space again."""
    spare = disk / "spare"
    spare.write_bytes(b"s" * headroom)
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        chunk = b"f" * (64 * KiB)
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    spare.unlink()
    return filler.unlink


def test_disk_full_during_commit_is_a_typed_storage_full_error(tiny_disk: Path) -> None:
    store = LmdbStore(str(tiny_disk / "store"))
    try:
        store.apply([Op("journal", b"early", {"i": 1})])
        free = _fill(tiny_disk, 160 * KiB)
        with pytest.raises(StorageFullError):
            store.apply([Op("journal", b"big", {"b": b"x" * (512 * KiB)})])
        assert store.get("journal", b"early") == {"i": 1}
        free()
        store.apply([Op("journal", b"big", {"b": b"x" * (512 * KiB)})])
        assert store.get("journal", b"big") == {"b": b"x" * (512 * KiB)}
    finally:
        store.close()


def test_disk_full_run_stalls_keeps_its_checkpoints_others_go_on_and_it_resumes(
    disk_box: Box, tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rt = disk_box.open()
    run_id = _run_id("disk-big")
    gate = _gate(disk_box, run_id)
    big = rt.start(two_blobs, 1000, 512 * KiB, run_id=run_id)
    wait_until(lambda: step_status(big, "0") == "completed", message="step 0's checkpoint")
    free = _fill(tiny_disk, 160 * KiB)
    freed = False
    try:
        gate.set()  # step 1's 512 KiB result does not fit on the disk any more
        wait_until(lambda: _crashed(caplog, run_id), message="the commit on the full disk to fail")
        # small writes still fit: other runs go on
        others = [rt.start(one_step, n, run_id=f"{run_id}-other-{n}") for n in range(3)]
        assert [h.result(timeout=WAIT) for h in others] == [0, 10, 20]
        first = big.history()[0]
        assert (first.step, first.status, len(first.value)) == ("0", "completed", 1000)
        assert big.status() not in (RunStatus.COMPLETED, RunStatus.FAILED)
        free()
        freed = True
    finally:
        if not freed:
            free()
    assert big.result(timeout=RESUME) == [1000, 512 * KiB]
    disk_box.shutdown()
    report = audit(str(disk_box.path))
    assert report.ok, str(report)


# --------------------------------------------------------------------------
# 8. corrupt records: JournalCorruptionError naming run and key; that run parks; others go on
# --------------------------------------------------------------------------


def _flip_bit(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[-2] ^= 0x10
    return bytes(damaged)


def _truncate_msgpack(data: bytes) -> bytes:
    """The payload cut short, re-sealed with a matching CRC: only the decoder can tell."""
    payload = data[5:-3]
    return struct.pack(">BI", FORMAT_VERSION, zlib.crc32(payload)) + payload


def _unknown_version(data: bytes) -> bytes:
    return bytes([FORMAT_VERSION + 41]) + data[1:]


DAMAGE = {
    "flip": (_flip_bit, "CRC mismatch"),
    "trunc": (_truncate_msgpack, "undecodable payload"),
    "ver": (_unknown_version, "unknown format version"),
}


def _plant(path: Path, damage: dict[bytes, Callable[[bytes], bytes]], db: str = "journal") -> None:
    store = LmdbStore(str(path))
    try:
        for key, spoil in damage.items():
            raw = store.raw_get(db, key)
            assert raw is not None, key
            store.raw_put(db, key, spoil(raw))
    finally:
        store.close()


def _parked_error(handle: Any) -> RunParkedError:
    with pytest.raises(RunParkedError) as info:
        handle.result(timeout=WAIT)
    return info.value


def test_corrupt_journal_record_parks_its_run_and_the_others_go_on(box: Box) -> None:
    """Runs replayed at start-up (they were running): the ones with a corrupt journal record park,
    naming the record's key and what is wrong with it; the clean ones complete."""
    rt = box.open()
    names = [*DAMAGE, "clean-1", "clean-2"]
    ids = {name: _run_id(f"corrupt-{name}") for name in names}
    handles = {}
    for n, name in enumerate(names):
        _gate(box, ids[name])
        handles[name] = rt.start(gated_steps, n, run_id=ids[name])
    for handle in handles.values():
        wait_until(lambda h=handle: step_status(h, "1") == "running", message="step 1 running")
    box.shutdown()
    for name in names:
        GATES[ids[name]].set()
    _plant(box.path, {journal_key(ids[name], "0"): DAMAGE[name][0] for name in DAMAGE})

    rt = box.open()
    for name, (_, reason) in DAMAGE.items():
        handle = rt.get(ids[name])
        error = _parked_error(handle)
        assert ids[name] in str(error)
        assert repr(journal_key(ids[name], "0")) in str(error), error
        assert reason in str(error), error
        assert handle.status() == RunStatus.PARKED
    for n, name in enumerate(names):
        if name.startswith("clean"):
            assert rt.get(ids[name]).result(timeout=WAIT) == [n * 10, n * 10 + 10]
    statuses = {summary.run_id: summary.status for summary in rt.runs()}
    assert statuses == {
        ids[name]: RunStatus.PARKED if name in DAMAGE else RunStatus.COMPLETED for name in names
    }
    # the parked runs' journals are untouched: the audit still sees exactly the planted damage
    box.shutdown()
    report = audit(str(box.path))
    assert report.counts == {"corrupt": 3}, str(report)
    for name in DAMAGE:
        assert any(
            ids[name] in line and repr(journal_key(ids[name], "0")) in line for line in report.problems
        )


def test_corrupt_journal_record_of_a_suspended_run_parks_it_when_it_wakes(box: Box) -> None:
    rt = box.open()
    bad, good = _run_id("corrupt-sleeper"), _run_id("clean-sleeper")
    handles = [rt.start(signal_steps, n, run_id=run_id) for n, run_id in enumerate([bad, good])]
    for handle in handles:
        wait_until(lambda h=handle: h.status() == RunStatus.SUSPENDED, message="waiting for the signal")
    box.shutdown()
    _plant(box.path, {journal_key(bad, "0"): _flip_bit})

    rt = box.open()
    for run_id in (bad, good):
        rt.get(run_id).signal(P + "go", run_id)
    error = _parked_error(rt.get(bad))
    assert "CRC mismatch" in str(error) and repr(journal_key(bad, "0")) in str(error)
    assert rt.get(good).result(timeout=WAIT) == [10, good]


def test_corrupt_run_record_does_not_stop_start_up_and_the_others_are_listed(box: Box) -> None:
    rt = box.open()
    ids = [_run_id(f"corrupt-run-{n}") for n in range(3)]
    for n, run_id in enumerate(ids):
        _gate(box, run_id)
        rt.start(gated_steps, n, run_id=run_id)
    for run_id in ids:
        wait_until(lambda r=run_id: step_status(rt.get(r), "1") == "running", message="step 1 running")
    box.shutdown()
    for run_id in ids:
        GATES[run_id].set()
    _plant(box.path, {run_key(ids[0]): _flip_bit}, db="runs")

    rt = box.open()
    assert sorted(summary.run_id for summary in rt.runs()) == sorted(ids[1:])
    assert [rt.get(run_id).result(timeout=WAIT) for run_id in ids[1:]] == [[10, 20], [20, 30]]
    with pytest.raises(JournalCorruptionError) as info:
        rt.get(ids[0])
    assert info.value.database == "runs" and info.value.key == run_key(ids[0])
    # start() under that id reads the corrupt record: the error reaches the caller, and the
    # supervisor, which serves every start, goes on serving.
    with pytest.raises(JournalCorruptionError):
        rt.start(gated_steps, 9, run_id=ids[0])
    after = _run_id("corrupt-run-after")
    _gate(box, after).set()
    assert rt.start(gated_steps, 3, run_id=after).result(timeout=WAIT) == [30, 40]


def _corrupt_a_running_run(box: Box, prefix: str) -> str:
    """A run whose step 1 was running when the runtime shut down, with its step 0 record
    corrupted since: the next runtime parks it (the runtime is left shut down)."""
    rt = box.open()
    run_id = _run_id(prefix)
    _gate(box, run_id)
    rt.start(gated_steps, 1, run_id=run_id)
    wait_until(lambda: step_status(rt.get(run_id), "1") == "running", message="step 1 running")
    box.shutdown()
    GATES[run_id].set()
    _plant(box.path, {journal_key(run_id, "0"): _unknown_version})
    return run_id


def test_a_parked_corrupt_run_can_be_cancelled(box: Box) -> None:
    """A parked run runs no code: cancelling it ends it at once (the journal is left as it is)."""
    run_id = _corrupt_a_running_run(box, "corrupt-cancel")

    rt = box.open()
    handle = rt.get(run_id)
    _parked_error(handle)
    assert handle.cancel()
    with pytest.raises(WorkflowFailedError):
        handle.result(timeout=WAIT)
    assert handle.status() == RunStatus.CANCELLED


def test_a_cancel_taken_before_the_supervisor_hears_of_the_park_still_cancels_the_run(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind a flaky `test_a_parked_corrupt_run_can_be_cancelled`: the parked record
    is durable (result() raises RunParkedError) but the supervisor has not yet handled the run
    actor's RunEnded when the cancel reaches it. The cancel must still end the run cancelled,
    and once cancel() has returned True, result() must not say parked."""
    run_id = _corrupt_a_running_run(box, "corrupt-cancel-race")

    # Hold the run actor's RunEnded(parked) until the supervisor has taken the cancel.
    held: list[tuple[Any, RunEnded]] = []
    parked = threading.Event()
    tell = _run_actor.safe_tell

    def holding_tell(ref: Any, message: Any) -> None:
        if isinstance(message, RunEnded) and message.run_id == run_id and not held:
            held.append((ref, message))
            parked.set()
            return
        tell(ref, message)

    monkeypatch.setattr(_run_actor, "safe_tell", holding_tell)
    took_cancel = supervisor_handled(monkeypatch, RequestCancel, run_id)

    rt = box.open()
    handle = rt.get(run_id)
    assert parked.wait(WAIT), "the run did not park"
    assert held[0][1].status == "parked"
    _parked_error(handle)  # the parked record is durable; the supervisor does not know yet

    canceller, outcome = cancel_in_thread(handle)
    assert took_cancel.wait(WAIT), "the supervisor did not take the cancel"
    tell(*held[0])
    assert_cancel_ended_the_run(canceller, outcome, handle)
