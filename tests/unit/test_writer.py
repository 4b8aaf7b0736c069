"""StoreWriter: the one writing actor, group commit, lazy requests and acknowledgements."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest

from treadle.storage import LmdbStore, MemoryStore, Op, StoreWriter, WriteLane, WriteRequest, write_and_wait

WAIT = 10.0


class GatedStore:
    """A MemoryStore whose ``apply`` number ``gate_call`` blocks until ``release`` is set.

    ``fail_calls`` lists apply numbers (from 1) that raise instead of writing.
    """

    def __init__(self, gate_call: int | None = 1, fail_calls: Sequence[int] = ()) -> None:
        self.inner = MemoryStore()
        self.path = self.inner.path
        self.gate_call = gate_call
        self.fail_calls = set(fail_calls)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batch_sizes: list[int] = []
        self.errors: list[BaseException] = []

    def apply(self, batch: Sequence[Op]) -> None:
        self.batch_sizes.append(len(batch))
        call = len(self.batch_sizes)
        if call == self.gate_call:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise AssertionError("GatedStore was never released")
        if call in self.fail_calls:
            error = RuntimeError(f"disk on fire in apply #{call}")
            self.errors.append(error)
            raise error
        self.inner.apply(batch)

    def get(self, db: str, key: bytes) -> dict[str, Any] | None:
        return self.inner.get(db, key)

    def scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, dict[str, Any]]]:
        return self.inner.scan(db, prefix)

    def close(self) -> None:
        self.inner.close()


class Acks:
    """Collects acknowledgements: one Event and one outcome per request id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[int, threading.Event] = {}
        self.outcomes: dict[int, list[BaseException | None]] = {}

    def make(
        self, ident: int, check: Callable[[], Any] | None = None
    ) -> Callable[[BaseException | None], None]:
        event = threading.Event()
        with self._lock:
            self.events[ident] = event
            self.outcomes[ident] = []

        def ack(error: BaseException | None) -> None:
            seen = check() if check is not None and error is None else None
            with self._lock:
                self.outcomes[ident].append(error if error is not None else seen)
            event.set()

        return ack

    def wait_all(self) -> None:
        for ident, event in self.events.items():
            assert event.wait(WAIT), f"request {ident} was never acknowledged"


@pytest.fixture
def start_writer() -> Iterator[Callable[..., pykka.ActorRef[StoreWriter]]]:
    refs: list[pykka.ActorRef[StoreWriter]] = []
    stores: list[Any] = []

    def start(store: Any, **kwargs: Any) -> pykka.ActorRef[StoreWriter]:
        ref = StoreWriter.start(store, **kwargs)
        refs.append(ref)
        stores.append(store)
        return ref

    yield start
    for store in stores:
        if isinstance(store, GatedStore):
            store.release.set()
    for ref in refs:
        ref.stop(block=True, timeout=WAIT)
    for store in stores:
        store.close()


def _op(i: int) -> Op:
    return Op("journal", b"k%05d" % i, {"i": i})


def _counters(ref: pykka.ActorRef[StoreWriter]) -> tuple[int, int, int]:
    proxy = ref.proxy()
    return (
        proxy.batches.get(timeout=WAIT),
        proxy.requests.get(timeout=WAIT),
        proxy.failures.get(timeout=WAIT),
    )


def test_concurrent_requests_are_acked_only_once_readable(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]], tmp_path: Path
) -> None:
    """Many threads submit at once; each ack arrives once, with no error, after its record is readable."""
    store = LmdbStore(str(tmp_path / "store"), durability="fast")
    ref = start_writer(store)
    acks = Acks()
    threads_n = 24
    barrier = threading.Barrier(threads_n, timeout=WAIT)

    def submit(i: int) -> None:
        ops = [_op(i), Op("runs", b"r%05d" % i, {"owner": i})]

        def readable() -> bool:
            return store.get("journal", b"k%05d" % i) == {"i": i} and store.get("runs", b"r%05d" % i) == {
                "owner": i
            }

        ack = acks.make(i, readable)
        barrier.wait()
        ref.tell(WriteRequest(ops, ack))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    acks.wait_all()
    for i in range(threads_n):
        assert acks.outcomes[i] == [True], f"request {i}: acked before readable or with an error"
    assert len(list(store.scan("journal"))) == threads_n
    batches, requests, failures = _counters(ref)
    assert requests == threads_n
    assert 1 <= batches <= threads_n
    assert failures == 0
    assert store.commits == batches


def test_group_commit_batches_requests_waiting_behind_a_commit(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """50 requests queued while a commit is in flight are committed together in one next batch."""
    store = GatedStore(gate_call=1)
    ref = start_writer(store)
    acks = Acks()
    ref.tell(WriteRequest([_op(0)], acks.make(0)))
    assert store.entered.wait(WAIT)

    barrier = threading.Barrier(50, timeout=WAIT)

    def submit(i: int) -> None:
        ack = acks.make(i)
        barrier.wait()
        ref.tell(WriteRequest([_op(i)], ack))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(1, 51)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    # every request is in the inbox (tell enqueues synchronously) before the first commit ends
    assert not any(thread.is_alive() for thread in threads)
    assert not acks.events[0].is_set()
    store.release.set()
    acks.wait_all()
    assert all(outcome == [None] for outcome in acks.outcomes.values())
    assert store.batch_sizes == [1, 50]
    assert _counters(ref) == (2, 51, 0)
    assert len(list(store.scan("journal"))) == 51


def test_max_batch_bounds_a_group_commit(start_writer: Callable[..., pykka.ActorRef[StoreWriter]]) -> None:
    """A batch stops growing once it holds max_batch ops; the rest form the following batches."""
    store = GatedStore(gate_call=1)
    ref = start_writer(store, max_batch=10)
    acks = Acks()
    ref.tell(WriteRequest([_op(0)], acks.make(0)))
    assert store.entered.wait(WAIT)
    for i in range(1, 36):
        ref.tell(WriteRequest([_op(i)], acks.make(i)))
    store.release.set()
    acks.wait_all()
    assert store.batch_sizes == [1, 10, 10, 10, 5]
    assert len(list(store.scan("journal"))) == 36


def test_a_failing_batch_is_retried_request_by_request_so_only_the_culprit_fails(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """When a group commit fails, its requests are committed one by one: only the one that
    fails again gets the error; the others that shared the transaction are committed (I7)."""
    # apply #1: the gated first request; #2: the batch of five (fails); #3..#7: one by one,
    # of which #4 (request 2) fails again.
    store = GatedStore(gate_call=1, fail_calls=[2, 4])
    ref = start_writer(store)
    acks = Acks()
    ref.tell(WriteRequest([_op(0)], acks.make(0)))
    assert store.entered.wait(WAIT)
    for i in range(1, 6):
        ref.tell(WriteRequest([_op(i)], acks.make(i)))
    store.release.set()
    acks.wait_all()
    assert store.batch_sizes == [1, 5, 1, 1, 1, 1, 1]
    assert acks.outcomes[0] == [None]
    _, culprit_error = store.errors
    assert acks.outcomes[2] == [culprit_error]
    for i in (1, 3, 4, 5):
        assert acks.outcomes[i] == [None]
        assert store.get("journal", f"k{i:05d}".encode()) == {"i": i}
    assert store.get("journal", b"k00002") is None
    # the writer survived and still commits
    write_and_wait(ref, [_op(99)], timeout=WAIT)
    assert store.get("journal", b"k00099") == {"i": 99}
    assert _counters(ref) == (8, 12, 1)


def test_request_without_ack_and_empty_request(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """A request without ack is still committed; an empty request is acked without a store commit."""
    store = MemoryStore()
    ref = start_writer(store)
    ref.tell(WriteRequest([_op(1)]))
    acks = Acks()
    ref.tell(WriteRequest([], acks.make(2)))
    acks.wait_all()
    write_and_wait(ref, [], timeout=WAIT)
    assert acks.outcomes[2] == [None]
    assert store.get("journal", b"k00001") == {"i": 1}


def test_lazy_request_is_committed_without_an_urgent_one(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """A lone lazy request is committed by itself once lazy_delay has passed."""
    store = MemoryStore()
    ref = start_writer(store, lazy_delay=0.02)
    acks = Acks()
    ref.tell(WriteRequest([_op(1)], acks.make(1, lambda: store.get("journal", b"k00001")), lazy=True))
    acks.wait_all()
    assert acks.outcomes[1] == [{"i": 1}]
    assert store.commits == 1


def test_lazy_request_rides_along_with_the_next_urgent_one(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """With a long lazy_delay, a lazy request is committed in the same batch as the next urgent one."""
    store = GatedStore(gate_call=None)
    ref = start_writer(store, lazy_delay=WAIT * 3)
    acks = Acks()
    ref.tell(WriteRequest([_op(1)], acks.make(1), lazy=True))
    ref.tell(WriteRequest([_op(2)], acks.make(2)))
    acks.wait_all()
    assert store.batch_sizes == [2]
    assert _counters(ref)[:2] == (1, 2)


def test_lazy_request_is_flushed_by_a_message_that_is_not_a_write(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """Another message (an ask) arriving while lazy requests wait is answered after they are committed."""
    store = MemoryStore()
    ref = start_writer(store, lazy_delay=WAIT * 3)
    acks = Acks()
    ref.tell(WriteRequest([_op(1)], acks.make(1), lazy=True))
    assert ref.proxy().requests.get(timeout=WAIT) == 1
    acks.wait_all()


def test_stopping_the_writer_commits_waiting_lazy_requests(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """ref.stop() while lazy requests wait for company commits them first; nothing is lost at shutdown."""
    store = MemoryStore()
    ref = start_writer(store, lazy_delay=WAIT * 3)
    acks = Acks()
    for i in range(3):
        ref.tell(WriteRequest([_op(i)], acks.make(i), lazy=True))
    ref.stop(block=True, timeout=WAIT)
    acks.wait_all()
    assert all(outcome == [None] for outcome in acks.outcomes.values())
    assert len(list(store.scan("journal"))) == 3


def test_ask_queued_behind_writes_is_answered_after_them(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """A non-write message taken from the inbox while batching is still answered, in order."""
    store = GatedStore(gate_call=1)
    ref = start_writer(store)
    acks = Acks()
    ref.tell(WriteRequest([_op(0)], acks.make(0)))
    assert store.entered.wait(WAIT)
    for i in range(1, 4):
        ref.tell(WriteRequest([_op(i)], acks.make(i)))
    answer = ref.proxy().requests
    for i in range(4, 7):
        ref.tell(WriteRequest([_op(i)], acks.make(i)))
    store.release.set()
    assert answer.get(timeout=WAIT) == 4  # the first commit and the three writes before the ask
    acks.wait_all()
    assert store.batch_sizes == [1, 3, 3]


def test_write_and_wait_returns_once_durable(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]], tmp_path: Path
) -> None:
    """write_and_wait blocks until the ops are committed: they are readable when it returns."""
    store = LmdbStore(str(tmp_path / "store"), durability="sync")
    ref = start_writer(store)
    write_and_wait(ref, [_op(1), Op("runs", b"run", {"status": "done"})], timeout=WAIT)
    assert store.get("journal", b"k00001") == {"i": 1}
    assert store.get("runs", b"run") == {"status": "done"}


def test_write_and_wait_raises_the_commit_error(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """write_and_wait re-raises the error the commit failed with."""
    store = GatedStore(gate_call=None, fail_calls=[1])
    ref = start_writer(store)
    with pytest.raises(RuntimeError, match="disk on fire") as info:
        write_and_wait(ref, [_op(1)], timeout=WAIT)
    assert info.value is store.errors[0]


def test_write_and_wait_times_out_with_builtin_timeout_error(
    start_writer: Callable[..., pykka.ActorRef[StoreWriter]],
) -> None:
    """A commit that does not finish in time: write_and_wait raises the built-in TimeoutError."""
    store = GatedStore(gate_call=1)
    ref = start_writer(store)
    with pytest.raises(TimeoutError, match="not acknowledged"):
        write_and_wait(ref, [_op(1)], timeout=0.05)
    store.release.set()
    write_and_wait(ref, [_op(2)], timeout=WAIT)
    assert store.get("journal", b"k00001") == {"i": 1}


# -- WriteLane: inline commit when the writer is idle, group commit otherwise -------------------


@pytest.fixture
def start_lane() -> Iterator[Callable[..., WriteLane]]:
    lanes: list[WriteLane] = []

    def start(store: Any, **kwargs: Any) -> WriteLane:
        lane = WriteLane.start(store, **kwargs)
        lanes.append(lane)
        return lane

    yield start
    for lane in lanes:
        if isinstance(lane.store, GatedStore):
            lane.store.release.set()
        lane.close()
        assert lane.ref is not None
        lane.ref.stop(block=True, timeout=WAIT)
        lane.store.close()


def test_lane_commits_inline_when_the_writer_is_idle(start_lane: Callable[..., WriteLane]) -> None:
    """With nothing queued, submit commits on the calling thread and acks there, once readable."""
    store = MemoryStore()
    lane = start_lane(store)
    seen: list[tuple[BaseException | None, int, Any]] = []

    def ack(error: BaseException | None) -> None:
        seen.append((error, threading.get_ident(), store.get("journal", b"k00001")))

    lane.submit(WriteRequest([_op(1)], ack))
    assert seen == [(None, threading.get_ident(), {"i": 1})]  # before submit returned
    assert lane.inline == 1
    assert lane.queued == 0
    assert store.commits == 1


def test_lane_queues_behind_a_commit_in_flight_and_keeps_each_threads_order(
    start_lane: Callable[..., WriteLane],
) -> None:
    """While the writer commits, submits queue (never wait for the lock) and form the next group
    commit; a thread's later request never overtakes its earlier one, even once the writer is idle."""
    store = GatedStore(gate_call=1)
    lane = start_lane(store)
    order: list[int] = []
    done = threading.Event()

    def ack_for(i: int) -> Callable[[BaseException | None], None]:
        def ack(error: BaseException | None) -> None:
            assert error is None
            order.append(i)
            if i == 3:
                done.set()

        return ack

    lane.submit(WriteRequest([_op(0)], ack_for(0)), inline=False)  # the writer takes it and blocks
    assert store.entered.wait(WAIT)
    lane.submit(WriteRequest([_op(1)], ack_for(1)))  # commit in flight: queued, returns at once
    lane.submit(WriteRequest([_op(2)], ack_for(2)))
    assert order == []
    assert lane.queued == 3
    store.release.set()
    lane.submit(WriteRequest([_op(3)], ack_for(3)))  # 1 and 2 may still be queued: it must not overtake
    assert done.wait(WAIT)
    assert order == [0, 1, 2, 3]
    assert store.batch_sizes[:2] == [1, 2] or store.batch_sizes[:2] == [1, 3]
    assert lane.queued == 0


def test_lane_sends_lazy_requests_to_the_writer(start_lane: Callable[..., WriteLane]) -> None:
    """A lazy request waits in the writer for company; the urgent one after it joins its batch."""
    store = GatedStore(gate_call=None)
    lane = start_lane(store, lazy_delay=WAIT * 3)
    acks = Acks()
    lane.submit(WriteRequest([_op(1)], acks.make(1), lazy=True))
    lane.submit(WriteRequest([_op(2)], acks.make(2)))  # the lazy one is queued: no inline commit
    acks.wait_all()
    assert store.batch_sizes == [2]
    assert lane.inline == 0


def test_lane_inline_commit_error_reaches_the_ack(start_lane: Callable[..., WriteLane]) -> None:
    """An inline commit that fails acks its error, like the writer would; the lane keeps working."""
    store = GatedStore(gate_call=None, fail_calls=[1])
    lane = start_lane(store)
    errors: list[BaseException | None] = []
    lane.submit(WriteRequest([_op(1)], errors.append))
    assert errors == [store.errors[0]]
    lane.submit(WriteRequest([_op(2)], errors.append))
    assert errors[1:] == [None]
    assert store.get("journal", b"k00002") == {"i": 2}


def test_closed_lane_commits_nothing_inline(start_lane: Callable[..., WriteLane]) -> None:
    """After close() (the store is about to close) requests still reach the writer, never inline."""
    store = MemoryStore()
    lane = start_lane(store)
    lane.close()
    acks = Acks()
    lane.submit(WriteRequest([_op(1)], acks.make(1)))
    acks.wait_all()
    assert lane.inline == 0
    assert store.get("journal", b"k00001") == {"i": 1}


def test_commit_if_idle_commits_on_this_thread_and_returns_the_outcome(
    start_lane: Callable[..., WriteLane],
) -> None:
    """The caller gets (True, error) back instead of an ack: None once durable, else the error."""
    store = GatedStore(gate_call=None, fail_calls=[2])
    lane = start_lane(store)
    assert lane.commit_if_idle([_op(1)]) == (True, None)
    assert store.get("journal", b"k00001") == {"i": 1}  # readable when it returns
    done, error = lane.commit_if_idle([_op(2)])
    assert done is True
    assert error is store.errors[0]
    assert store.get("journal", b"k00002") is None
    assert lane.inline == 2
    assert lane.queued == 0


def test_commit_if_idle_declines_while_the_writer_is_busy_or_the_lane_closed(
    start_lane: Callable[..., WriteLane],
) -> None:
    """With a commit in flight (or anything queued) it commits nothing: the caller queues."""
    store = GatedStore(gate_call=1)
    lane = start_lane(store)
    acks = Acks()
    lane.submit(WriteRequest([_op(0)], acks.make(0)), inline=False)  # the writer takes it and blocks
    assert store.entered.wait(WAIT)
    assert lane.commit_if_idle([_op(1)]) == (False, None)
    store.release.set()
    acks.wait_all()
    assert store.get("journal", b"k00001") is None
    lane.close()
    assert lane.commit_if_idle([_op(1)]) == (False, None)
    assert lane.inline == 0
