"""StoreWriter: the one actor that writes, with group commit.

Every write request from every run goes to this actor. When it takes a
request it also drains every other request already waiting, and commits them
all in one transaction; requests that arrive while that commit is in flight
wait in the inbox and form the next batch. There is no fixed delay: under
load batches grow by themselves, with one writer they are a single request.

*Lazy* requests (records that only need to be durable soon, such as "this
activity started") do not start a commit by themselves: they ride along with
the next one, or are committed after ``lazy_delay`` seconds.

Each requester is acknowledged only after its commit is durable.

:class:`WriteLane` is how the runtime submits: when the writer is idle
(nothing queued, nothing being committed) the submitting thread commits its
own request at once, under the lane's commit lock, and then runs its ack itself
(``commit_if_idle`` hands the outcome back instead, for a caller that needs no
callback); that saves two thread hand-offs (to the writer and back) on the path of a
lone step. Whenever anything is queued or in flight the request joins the
writer's inbox instead, so under load every request still goes through the
writer's group commit. See :class:`WriteLane` for why this keeps each
thread's write order and the "ack only once durable" rule.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pykka

from ._faults import crash_point
from ._protocol import Op, Store

__all__ = ["Ack", "StoreWriter", "WriteLane", "WriteRequest", "write_and_wait"]

Ack = Callable[[BaseException | None], None]


@dataclass(slots=True)
class WriteRequest:
    """Records to commit together; ``ack`` is called (in the writer thread) after the commit."""

    ops: Sequence[Op]
    ack: Ack | None = None
    lazy: bool = False
    meta: Any = field(default=None)
    counted: bool = False  # submitted through a WriteLane: counted in its ``queued`` until committed


class StoreWriter(pykka.ThreadingActor):
    """Owns every write transaction of ``store``."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # put and wake-up in C: every run's requests come here, and under load the writer
        # is the busiest thread.
        return queue.SimpleQueue()

    def __init__(
        self,
        store: Store,
        *,
        lazy_delay: float = 0.05,
        max_batch: int = 20_000,
        lane: WriteLane | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.lane = lane if lane is not None else WriteLane(store)
        self.lazy_delay = lazy_delay
        self.max_batch = max_batch
        self.batches = 0
        self.requests = 0
        self.failures = 0

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, WriteRequest):
            return super().on_receive(message)
        batch = [message]
        leftover = self._drain(batch)
        if all(request.lazy for request in batch) and leftover is None:
            leftover = self._wait_for_urgent(batch)
        lane = self.lane
        with lane.commit_lock:
            self._commit(batch)
            lane.committed(batch)
        if leftover is not None:
            self._handle_other(leftover)
        return None

    def _inbox(self) -> queue.SimpleQueue[Any]:
        return cast("queue.SimpleQueue[Any]", self.actor_inbox)

    def _drain(self, batch: list[WriteRequest]) -> Any:
        """Move every waiting WriteRequest into ``batch``; return the first other envelope."""
        inbox = self._inbox()
        count = sum(len(r.ops) for r in batch)
        while count < self.max_batch:
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                return None
            if not isinstance(envelope.message, WriteRequest):
                return envelope
            batch.append(envelope.message)
            count += len(envelope.message.ops)
        return None

    def _wait_for_urgent(self, batch: list[WriteRequest]) -> Any:
        inbox = self._inbox()
        deadline = time.monotonic() + self.lazy_delay
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                envelope = inbox.get(timeout=remaining)
            except queue.Empty:
                return None
            if not isinstance(envelope.message, WriteRequest):
                return envelope
            batch.append(envelope.message)
            leftover = self._drain(batch)
            if leftover is not None or not envelope.message.lazy:
                return leftover
            if not all(r.lazy for r in batch):
                return None

    def _commit(self, batch: list[WriteRequest]) -> None:
        self.batches += 1
        self.requests += len(batch)
        error = _apply(self.store, [op for request in batch for op in request.ops])
        if error is not None and len(batch) > 1:
            # One request (say, a value past the map cap) must not fail the
            # others that shared its transaction: commit them one by one.
            for request in batch:
                self._commit([request])
            return
        if error is not None:
            self.failures += 1
        for request in batch:
            if request.ack is not None:
                request.ack(error)

    def _handle_other(self, envelope: Any) -> None:
        """Process a non-write envelope taken out of the inbox while batching."""
        try:
            response = self._handle_receive(envelope.message)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            return
        if envelope.reply_to is not None:
            envelope.reply_to.set(response)


class WriteLane:
    """The way into the store's write transactions: inline when the writer is idle, else group commit.

    ``submit`` from any thread. A request is committed by the submitting
    thread itself (and its ack run there, right after the commit; ``commit_if_idle``
    returns the outcome instead) only when
    the commit lock is free and no request submitted through this lane is
    queued or being committed by the writer. Otherwise it is counted and told
    to the :class:`StoreWriter`, which takes the same lock for each batch.

    Why this is safe:

    * One write transaction at a time: the writer's commits and inline ones
      hold ``commit_lock`` (LMDB allows one writer anyway; each transaction
      begins and ends in one thread).
    * Each thread's writes stay in order: a request queued to the writer stays
      counted until it is committed and acknowledged, so a later request from
      the same thread cannot overtake it inline; an inline request is
      committed before ``submit`` returns.
    * Acks still come only after the commit is durable, with its error if it
      failed, exactly as from the writer.
    * Group commit under load: a submitter never waits for the lock. If a
      commit is in flight or anything is queued, it queues, and the writer
      drains everything queued into one transaction as before. Only a
      request that would have been a batch of one is committed inline.

    Lazy requests always queue (they wait in the writer for company).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ref: pykka.ActorRef[StoreWriter] | None = None
        self.commit_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.queued = 0
        self.inline = 0
        self.closed = False

    @classmethod
    def start(cls, store: Store, **options: Any) -> WriteLane:
        """A lane with its own started :class:`StoreWriter` (``options`` go to the writer)."""
        lane = cls(store)
        lane.ref = StoreWriter.start(store, lane=lane, **options)
        return lane

    def submit(self, request: WriteRequest, inline: bool = True) -> None:
        """Commit ``request`` now if the writer is idle (``inline``), else queue it to the writer.

        Raises ``pykka.ActorDeadError`` if the writer has stopped.
        """
        if inline and not request.lazy:
            done, error = self.commit_if_idle(request.ops)
            if done:
                if request.ack is not None:
                    request.ack(error)
                return
        assert self.ref is not None, "WriteLane.submit before start()"
        request.counted = True
        with self._count_lock:
            self.queued += 1
        try:
            self.ref.tell(request)
        except BaseException:
            with self._count_lock:
                self.queued -= 1
            raise

    def commit_if_idle(self, ops: Sequence[Op]) -> tuple[bool, BaseException | None]:
        """Commit ``ops`` on this thread now if the writer is idle; no ack is called.

        ``(True, error)`` once committed, ``error`` being the commit's error if it
        failed: the caller acknowledges it itself (a run's own thread does, without
        building a callback or a message). ``(False, None)`` when a commit is in
        flight or anything is queued: queue the request with ``submit``.
        """
        if self.queued == 0 and self.commit_lock.acquire(blocking=False):
            try:
                if self.queued == 0 and not self.closed:
                    self.inline += 1
                    return True, _apply(self.store, ops)
            finally:
                self.commit_lock.release()
        return False, None

    def committed(self, batch: Sequence[WriteRequest]) -> None:
        """The writer committed and acknowledged ``batch`` (called under ``commit_lock``)."""
        counted = sum(1 for request in batch if request.counted)
        if counted:
            with self._count_lock:
                self.queued -= counted

    def close(self) -> None:
        """No more inline commits (waits for one in progress); queued requests still reach the writer."""
        with self.commit_lock:
            self.closed = True


def _apply(store: Store, ops: Sequence[Op]) -> BaseException | None:
    """Commit ``ops`` in one transaction; the error, if it failed (else the ``after_commit``
    crash point, before anyone is told)."""
    if ops:
        try:
            store.apply(ops)
        except Exception as exc:
            return exc
    crash_point("after_commit")
    return None


def write_and_wait(writer: pykka.ActorRef[StoreWriter], ops: Sequence[Op], timeout: float = 30.0) -> None:
    """Submit ``ops`` and block until they are durable (or raise the commit's error)."""
    done = threading.Event()
    outcome: list[BaseException | None] = []

    def ack(error: BaseException | None) -> None:
        outcome.append(error)
        done.set()

    writer.tell(WriteRequest(ops, ack))
    if not done.wait(timeout):
        raise TimeoutError(f"store commit not acknowledged within {timeout}s")
    if outcome[0] is not None:
        raise outcome[0]
