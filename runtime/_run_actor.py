"""RunActor: one per active run; it owns the run's driver while it is alive.

A run that only sleeps or waits holds no thread: its actor tells the
supervisor it is idle, the supervisor asks it to passivate, and it stops;
the driver (the generator and its replay state) stays in memory with the
supervisor until a timer, a signal or a child wakes the run again.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pykka

from treadle.storage import DEFAULT_MAX_PAYLOAD, Op, Store, WriteLane, WriteRequest, run_key

from ._activity import ActivityTask
from ._branch import BranchPool
from ._clock import Clock
from ._driver import RunDriver
from ._errors import JournalCorruptionError
from ._messages import (
    ActivityDone,
    AttemptTimedOut,
    CancelChild,
    Committed,
    FlushLazy,
    Idle,
    Latch,
    Passivate,
    Passivated,
    PassivateRefused,
    Replayed,
    Resumed,
    RetryDue,
    RunCrashed,
    RunEnded,
    StartChild,
    Wake,
)
from ._registry import Registry
from ._scheduler import AddTimer, RemoveTimer, Scheduler, TimerHandle, TimerService

__all__ = ["Completions", "Host", "RunActor", "RunPort", "Services", "safe_tell"]

# Messages a run actor may handle back to back before one flush.
_PLAIN = (ActivityDone, Committed, Wake, RetryDue, AttemptTimedOut, FlushLazy)
_DRAIN_LIMIT = 256


def safe_tell(ref: pykka.ActorRef[Any] | None, message: Any) -> None:
    """Tell ``ref``; a stopped actor means the message is no longer wanted."""
    if ref is None:
        return
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass


class Completions:
    """Lets ``handle.result()`` wait for a run's terminal record without polling."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[EndWatch]] = {}
        # Runs created by this runtime whose end has not been notified yet: a result()
        # registered while its run is in here is certain to be woken, so it need not read
        # the store first (under load each store read waits for the GIL once per call).
        self._unfinished: set[str] = set()

    def expect(self, run_id: str) -> None:
        """Run ``run_id`` was just created here: its end will be notified."""
        with self._lock:
            self._unfinished.add(run_id)

    def forget(self, run_id: str) -> None:
        """Run ``run_id`` will not be notified after all (its creation failed)."""
        with self._lock:
            self._unfinished.discard(run_id)

    def unfinished(self, run_id: str) -> bool:
        """Whether the end of run ``run_id`` is still to be notified (a ``watch`` made
        before this returned ``True`` is certain to be set)."""
        with self._lock:
            return run_id in self._unfinished

    def watch(self, run_id: str) -> EndWatch:
        watch = EndWatch()
        with self._lock:
            self._waiters.setdefault(run_id, []).append(watch)
        return watch

    def unwatch(self, run_id: str, watch: EndWatch) -> None:
        with self._lock:
            watches = self._waiters.get(run_id)
            if watches and watch in watches:
                watches.remove(watch)
                if not watches:
                    del self._waiters[run_id]

    def notify(self, run_id: str, record: dict[str, Any] | None = None) -> None:
        """Run ``run_id`` ended. ``record``: its terminal run record, given only once it is
        durable; a watcher that gets it need not read the store."""
        with self._lock:
            self._unfinished.discard(run_id)
            watches = self._waiters.pop(run_id, [])
        for watch in watches:
            watch.record = record
            watch.set()


class EndWatch(Latch):
    """One ``result()`` call waiting for a run's end; set with the terminal record if known."""

    __slots__ = ("record",)

    def __init__(self) -> None:
        super().__init__()
        self.record: dict[str, Any] | None = None


@dataclass
class Services:
    """What every run actor shares."""

    store: Store
    writer: WriteLane
    pool: BranchPool
    scheduler: Scheduler
    timers: pykka.ActorRef[TimerService]
    registry: Registry
    clock: Clock
    log: Any
    max_payload: int = DEFAULT_MAX_PAYLOAD
    completions: Completions = field(default_factory=Completions)
    states: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, Any] = field(default_factory=dict)  # the supervisor's table; others only read it
    resumed: set[str] = field(default_factory=set)  # parked runs whose replay got past the divergence
    supervisor: pykka.ActorRef[Any] | None = None


class RunPort:
    """The driver's window on the rest of the runtime."""

    def __init__(self, services: Services, run_id: str) -> None:
        self.services = services
        self.run_id = run_id
        self.ref: pykka.ActorRef[RunActor] | None = None
        self.actor: RunActor | None = None  # the actor hosting the run now (set with ref)
        self.owner: Any = None  # the driver: acks name it, so a reused actor drops stale ones
        self.store = services.store
        self.registry = services.registry
        self.clock = services.clock
        self.max_payload = services.max_payload
        self.log = services.log
        # (batch, error) of batches this run's own thread committed inline: the actor handles
        # them right after its flush instead of telling them to itself.
        self.local_acks: deque[tuple[int, BaseException | None]] = deque()

    def submit(self, ops: Sequence[Op], batch: int | None, lazy: bool) -> None:
        writer = self.services.writer
        if batch is None:
            writer.submit(WriteRequest(ops, None, lazy))
            return
        if not lazy:
            done, error = writer.commit_if_idle(ops)
            if done:
                # Committed by this thread (the run actor's, or a branch actor's delivering an
                # outcome: RunActor.deliver): the actor handles the ack right after its flush.
                self.local_acks.append((batch, error))
                return
        ref, owner = self.ref, self.owner

        def ack(error: BaseException | None) -> None:
            safe_tell(ref, Committed(batch, error, owner))

        writer.submit(WriteRequest(ops, ack, lazy), inline=False)

    def dispatch(self, task: ActivityTask) -> None:
        actor = self.actor
        assert actor is not None, "a run dispatches only while an actor hosts it"
        task.deliver = actor.deliver
        self.services.pool.submit(task)

    def call_later(self, delay: float, message: Any) -> TimerHandle:
        ref = self.ref
        return self.services.scheduler.call_later(delay, lambda: safe_tell(ref, message))

    def add_timer(self, step: str, due: float) -> None:
        self.services.timers.tell(AddTimer(self.run_id, step, due))

    def remove_timer(self, step: str) -> None:
        self.services.timers.tell(RemoveTimer(self.run_id, step))

    def start_child(self, step: str, child_id: str, workflow: str, packed_args: bytes) -> None:
        safe_tell(self.services.supervisor, StartChild(self.run_id, step, child_id, workflow, packed_args))

    def cancel_child(self, child_id: str) -> None:
        safe_tell(self.services.supervisor, CancelChild(child_id))

    def set_state(self, value: Any) -> None:
        self.services.states[self.run_id] = value

    def set_resumed(self, resumed: bool) -> None:
        """Mark a parked run as live again (its stored status may still say parked)."""
        if resumed:
            self.services.resumed.add(self.run_id)
        else:
            self.services.resumed.discard(self.run_id)

    def run_finished(self, status: str, record: dict[str, Any]) -> None:
        """The run's terminal (or parked) record is durable."""
        self.set_resumed(False)  # only now: until this commit the store may still say "parked"
        self.services.completions.notify(self.run_id, record)
        safe_tell(self.services.supervisor, RunEnded(self.run_id, status, record))


class RunInbox(queue.SimpleQueue[Any]):
    """A run actor's inbox that counts messages put and not yet handled.

    ``pending`` is 0 only when nothing is queued and the actor's thread is not
    between taking a message and finishing it: the condition for a branch actor
    to handle its outcome itself (:meth:`RunActor.deliver`) without overtaking
    a message sent before it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._count_lock = threading.Lock()
        self.pending = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self._count_lock:
            self.pending += 1
        super().put(item, block, timeout)

    def handled(self) -> None:
        """One message taken from this inbox is finished."""
        with self._count_lock:
            self.pending -= 1


class RunActor(pykka.ThreadingActor):
    """Drives one run at a time; the supervisor reuses an idle one for the next run.

    A run is handed over with :class:`Host` (replayed from the journal when it
    comes without a driver). Passivating or finishing a run leaves the actor
    free for another; messages still arriving for an earlier run's driver are
    recognised and dropped.
    """

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> RunInbox:
        return RunInbox()

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.inbox = cast("RunInbox", self.actor_inbox)
        self.services = services
        self.run_id = ""
        self.driver: RunDriver | None = None
        # Held while the run's state is handled: by this actor's thread for each message,
        # or by a branch actor's thread that delivers an outcome directly (deliver).
        self.lock = threading.Lock()
        self.stopping = False

    def on_stop(self) -> None:
        # Waits for a delivery in progress on a branch actor's thread; none starts after.
        with self.lock:
            self.stopping = True

    def _handle_receive(self, message: Any) -> Any:
        # Every envelope taken from the inbox, pykka's own (stop, proxy calls) included, is
        # counted as handled only once it is finished.
        try:
            return super()._handle_receive(message)
        finally:
            self.inbox.handled()

    def on_receive(self, message: Any) -> Any:
        with self.lock:
            leftover = self._receive(message)
        if leftover is not None:
            self._handle_envelope(leftover)
        return None

    def deliver(self, message: ActivityDone) -> None:
        """A branch actor's outcome, called in the branch actor's thread.

        When this actor is idle (``RunInbox.pending`` is 0: no message queued,
        none taken and not yet finished) the outcome is handled right here,
        under the actor's lock, exactly as the actor's own thread would handle
        it: the record is committed (inline when the writer is idle), the
        generator resumes and the next attempt is dispatched, which the calling
        branch actor keeps for itself. That saves two thread hand-offs per
        sequential step, each a cross-CPU wake-up. Otherwise it is told to the
        actor, behind what is already there, so it overtakes no earlier message.

        The run's state is still touched by one thread at a time, and the actor
        stays free while an activity runs: cancels and timeouts are handled at
        once.
        """
        inbox = self.inbox
        lock = self.lock
        if not inbox.pending and lock.acquire(blocking=False):
            try:
                driver = self.driver
                if (
                    not inbox.pending
                    and driver is not None
                    and message.node.driver is driver
                    and not self.stopping
                    and not self.actor_stopped.is_set()
                ):
                    self._handle(driver, message)  # raises only if _crash failed (BranchPool logs it)
                    return
            finally:
                lock.release()
        safe_tell(self.actor_ref, message)

    def _receive(self, message: Any) -> Any:
        """Handle one message under ``lock``; the envelope to handle after it, if any."""
        if isinstance(message, Host):
            self._host(message)
            return None
        driver = self.driver
        if driver is None:
            return None
        if isinstance(message, Passivate):
            if driver.idle and message.generation == driver.generation:
                driver.suspend()
                self.driver = None
                safe_tell(self.services.supervisor, Passivated(self.run_id, message.generation, driver))
            else:
                safe_tell(self.services.supervisor, PassivateRefused(self.run_id))
            return None
        return self._handle(driver, message, drain=True)

    def _handle(self, driver: RunDriver, message: Any, drain: bool = False) -> Any:
        try:
            driver.handle(message)
            leftover = self._drain(driver) if drain else None
            self._after()
        except Exception as exc:
            self._crash(exc)
            return None
        return leftover

    def _drain(self, driver: RunDriver) -> Any:
        """Handle the run's other messages already waiting, so they share one batch.

        Returns the first envelope that is not a plain run message (it is
        handled after the flush, keeping the inbox order).
        """
        inbox = self.inbox
        for _ in range(_DRAIN_LIMIT):
            if inbox.empty():
                return None
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                return None
            message = envelope.message
            if envelope.reply_to is not None or not isinstance(message, _PLAIN):
                return envelope  # counted as handled by _handle_receive, when it is
            try:
                driver.handle(message)
            finally:
                inbox.handled()
        return None

    def _handle_envelope(self, envelope: Any) -> None:
        try:
            response = self._handle_receive(envelope.message)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            return
        if envelope.reply_to is not None:
            envelope.reply_to.set(response)

    def _host(self, message: Host) -> None:
        self.run_id = message.run_id
        replay = message.driver is None and message.record is None
        try:
            self._take_over(message)
        finally:
            if replay:  # replayed, parked or crashed: either way its replay slot is free
                safe_tell(self.services.supervisor, Replayed(message.run_id))

    def _take_over(self, message: Host) -> None:
        try:
            driver = message.driver
            parked = False
            if driver is None:
                record = message.record
                if record is None:
                    record = self.services.store.get("runs", run_key(message.run_id))
                    if record is None:
                        raise LookupError(f"run {message.run_id} has no record")
                driver = RunDriver(RunPort(self.services, message.run_id), record)
                driver.fresh = message.record is not None
                parked = record.get("st") == "parked"
            driver.port.ref = self.actor_ref
            driver.port.actor = self
            self.driver = driver
            if not driver.begun:
                driver.begin()
            self._after()
            if parked and not driver.finished:
                # The code matches the journal again. The supervisor holds the cancels it took
                # while it could not tell whether this replay would park the run again.
                safe_tell(self.services.supervisor, Resumed(self.run_id))
        except Exception as exc:
            self._crash(exc)

    def _after(self) -> None:
        driver = self.driver
        assert driver is not None
        driver.writes.flush()
        # A batch the writer lane committed on this thread (it was idle) is durable already:
        # handle its ack now; what that dispatches or records is flushed in turn.
        acks = driver.port.local_acks
        while acks:
            driver.committed(*acks.popleft())
            driver.writes.flush()
        if driver.finished and driver.writes.settled:
            # Its terminal record is durable: late messages (a race loser's result) are
            # dropped, and the idle actor must not keep the run's objects alive.
            self.driver = None
            driver.dispose()
            return
        if driver.idle:
            safe_tell(self.services.supervisor, Idle(self.run_id, driver.generation))

    def _park_corrupt(self, exc: JournalCorruptionError) -> None:
        """A record of this run is corrupt: park the run (replaying it would fail again)."""
        services, run_id = self.services, self.run_id
        services.log.error("corrupt record: the run is parked", run_id=run_id, error=str(exc))
        self.driver = None
        try:
            record = services.store.get("runs", run_key(run_id))
        except JournalCorruptionError:
            record = None
        err = {"c": "corrupt", "t": "treadle.runtime.JournalCorruptionError", "m": exc.message}
        if record is None:
            safe_tell(services.supervisor, RunEnded(run_id, "parked", {}))
            services.completions.notify(run_id)
            return
        parked = {**record, "st": "parked", "err": err, "up": services.clock.time()}

        def ack(error: BaseException | None) -> None:
            services.completions.notify(run_id, parked if error is None else None)
            safe_tell(services.supervisor, RunEnded(run_id, "parked", parked))

        services.writer.submit(WriteRequest([Op("runs", run_key(run_id), parked)], ack))

    def _crash(self, exc: BaseException) -> None:
        if isinstance(exc, JournalCorruptionError):
            self._park_corrupt(exc)
            return
        self.services.log.error(
            "run actor crashed; the supervisor restarts it from the journal",
            run_id=self.run_id,
            error=repr(exc),
            exc_info=exc,
        )
        # The actor itself is sound (its state is the driver it drops): it stays alive and
        # the supervisor takes it back for another run. Stopping it here once lost a run: the
        # supervisor could already have handed it the next run (it is released when its own
        # run ends, which may be just before the error), and that Host died with the actor.
        self.driver = None
        safe_tell(self.services.supervisor, RunCrashed(self.run_id, repr(exc), self.actor_ref))


@dataclass(slots=True)
class Host:
    """Drive run ``run_id`` (its dormant ``driver``, or a replay when ``None``).

    ``record`` comes with a run the supervisor has just created: its record, durable, and
    no journal yet (the run record is a run's first write), so neither is read back.
    """

    run_id: str
    driver: RunDriver | None
    record: dict[str, Any] | None = None
