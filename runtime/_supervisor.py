"""The Supervisor actor: starts, wakes, passivates and restarts run actors.

It is the only place that knows which runs are alive, dormant or finished,
so every message for a run that may not be running (timers, signals, child
results, cancellation) is routed through it. It never blocks on a commit on
the hot path: writes it makes are acknowledged back to it as messages.

Services that already use pykka can ask it :class:`StartRun`,
:class:`Signal` and :class:`Cancel` directly (``rt.supervisor``).

Its table of runs is ``_run_table``; signals and cancellation requests are
handled by ``_signal_requests`` and ``_cancel_requests``, mixed into it.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections import deque
from typing import Any

import pykka

from treadle.storage import Op, WriteRequest, journal_key, run_key, signal_prefix

from ._branch import simple_inbox
from ._cancel_requests import CancelRequests
from ._errors import JournalCorruptionError
from ._messages import (
    Cancel,
    CancelChild,
    ChildDone,
    CreateRun,
    Idle,
    Passivate,
    Passivated,
    PassivateRefused,
    Pending,
    Replayed,
    RequestCancel,
    Resumed,
    Route,
    RunCrashed,
    RunEnded,
    SendSignal,
    Shutdown,
    Signal,
    StartChild,
    StartRun,
    Wake,
    _Created,
    _ReplayLeaseOver,
    _Restart,
    _SignalStored,
)
from ._records import CANCEL_STEP, FINISHED, RunStatus
from ._run_actor import Host, RunActor, Services, safe_tell
from ._run_table import Entry, parent_of
from ._signal_requests import SignalRequests

__all__ = ["Supervisor"]

# Run actors kept for reuse (a bound, not one per run): starting a thread costs more than a short run.
IDLE_HOSTS = 64
# While the number of active runs swings (a host had to be started in the last HOST_BURST
# seconds), up to IDLE_HOSTS_BURST are kept: under a closed loop of 100 starters the count
# of active runs swings by more than IDLE_HOSTS at each group commit, and a bound of 64
# stopped and restarted a thread for one run start in four.
IDLE_HOSTS_BURST = 256
HOST_BURST = 1.0
# Runs replayed from the store at once. Replay is Python on the GIL: a hundred runs
# replaying side by side after a restart finish together, late, each slowed by all the
# others (and the first re-dispatch waits for that). A few at a time finish in turn.
REPLAY_SLOTS = 2
# A replay that has not finished after this long (workflow code that blocks, a journal of
# millions of steps, an actor lost before it began) stops counting against the slots, so
# it cannot hold up every other run; it goes on replaying all the same.
REPLAY_LEASE = 1.0


class Supervisor(SignalRequests, CancelRequests, pykka.ThreadingActor):
    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        return simple_inbox()

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.store = services.store
        self.log = services.log.bind(component="supervisor")
        self.entries: dict[str, Entry] = services.entries
        self.seqs: dict[str, int] = {}
        self.pending_keys: dict[tuple[str, str, str], Pending] = {}
        self.closing = False
        self.idle_hosts: list[pykka.ActorRef[RunActor]] = []
        self.last_host_start = float("-inf")
        self.replaying: dict[str, int] = {}  # runs whose actor replays them now -> their lease
        self.replay_queue: deque[Entry] = deque()  # runs waiting for a replay slot, in order
        self.leases = 0

    # -- start-up -----------------------------------------------------------------

    def on_start(self) -> None:
        self.services.supervisor = self.actor_ref
        registry = self.services.registry

        def corrupt(error: JournalCorruptionError) -> None:
            self.log.error("corrupt run record: that run is left alone, the others resume", error=str(error))

        for _, record in self.store.scan("runs", on_error=corrupt):
            status = record.get("st")
            if status in FINISHED:
                continue
            run_id, workflow = record["id"], record["wf"]
            if workflow not in registry.workflows:
                self.log.warning(
                    "run left untouched: its workflow is not registered", run_id=run_id, workflow=workflow
                )
                continue
            entry = Entry(run_id, workflow, parent=parent_of(record))
            self.entries[run_id] = entry
            if status == "suspended":
                entry.status = RunStatus.SUSPENDED
                entry.waits = list(record.get("waits") or [])
                if self._has_buffered(run_id, entry.waits) or self._cancel_recorded(run_id):
                    self._activate(entry)
            else:
                self._activate(entry)

    def _has_buffered(self, run_id: str, names: list[str]) -> bool:
        for name in names:
            for _, rec in self.store.scan("signals", signal_prefix(run_id, name)):
                if not rec.get("consumed"):
                    return True
        return False

    def _cancel_recorded(self, run_id: str) -> bool:
        return self.store.get("journal", journal_key(run_id, CANCEL_STEP)) is not None

    # -- dispatch -------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, CreateRun) and message.reply is not None:
            # Told, not asked: an error must reach the caller, not stop this actor.
            try:
                if self.closing:
                    raise RuntimeError("the runtime is shutting down")
                self.on_create(message)
            except Exception as exc:
                message.reply.done(exc)
            return None
        if self.closing and not isinstance(message, Shutdown):
            if isinstance(message, (CreateRun, SendSignal, RequestCancel, StartRun, Signal, Cancel)):
                raise RuntimeError("the runtime is shutting down")
            return None
        handler = _HANDLERS.get(type(message))
        if handler is None:
            return super().on_receive(message)
        return handler(self, message)

    # -- creating runs -----------------------------------------------------------------

    def on_create(self, message: CreateRun) -> tuple[str, Any, Any]:
        reply = message.reply
        entry = self.entries.get(message.run_id)
        if entry is not None:
            if reply is not None:
                reply.done(None, ("exists", entry.workflow, None))
            return ("exists", entry.workflow, None)
        # A run id Runtime.start drew itself (uuid4) names no stored run: no read needed.
        record = None if message.new_id else self._existing(message.run_id)
        if record is not None:
            if reply is not None:
                reply.done(None, ("exists", record["wf"], record.get("args")))
            return ("exists", record["wf"], record.get("args"))
        now = self.services.clock.time()
        record = {
            "v": 1,
            "id": message.run_id,
            "wf": message.workflow,
            "args": message.packed_args,
            "st": "running",
            "created": now,
            "up": now,
            "parent": list(message.parent) if message.parent else None,
        }
        entry = Entry(message.run_id, message.workflow, creating=True, parent=message.parent, record=record)
        self.entries[message.run_id] = entry
        self.services.completions.expect(message.run_id)
        pending = Pending()
        me = self.actor_ref

        def ack(error: BaseException | None) -> None:
            pending.done(error)
            if reply is not None:
                reply.done(error, ("created", None, None))
            safe_tell(me, _Created(message.run_id, error))

        self._write(WriteRequest([Op("runs", run_key(message.run_id), record)], ack))
        return ("created", pending, None)

    def on_created(self, message: _Created) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None:
            return
        entry.creating = False
        if message.error is not None:
            del self.entries[message.run_id]
            self.services.completions.forget(message.run_id)
            return
        self._activate(entry)

    def on_start_run(self, message: StartRun) -> str:
        from treadle.storage import encode

        definition = self.services.registry.workflow(message.workflow, "StartRun.workflow")
        run_id = message.run_id or uuid.uuid4().hex
        packed, _ = encode(
            list(message.args), f"StartRun({definition.name})", root="args", limit=self.services.max_payload
        )
        kind, info, _ = self.on_create(CreateRun(run_id, definition.name, packed, new_id=not message.run_id))
        if kind == "exists":
            if info != definition.name:
                raise ValueError(f"run {run_id!r} exists with workflow {info!r}, not {definition.name!r}")
            return run_id
        info.wait()
        return run_id

    def on_start_child(self, message: StartChild) -> None:
        link = (message.parent, message.step)
        entry = self.entries.get(message.child_id)
        if entry is not None:
            if link not in entry.watchers and entry.parent != link:
                entry.watchers.append(link)
            return
        record = self._existing(message.child_id)
        if record is not None:
            if record.get("st") in FINISHED:
                self._route(message.parent, ChildDone(message.step, message.child_id, record))
                return
            entry = Entry(message.child_id, record["wf"], parent=parent_of(record))
            if link != entry.parent:
                entry.watchers.append(link)
            self.entries[message.child_id] = entry
            if record["wf"] in self.services.registry.workflows:
                self._activate(entry)
            return
        self.on_create(CreateRun(message.child_id, message.workflow, message.packed_args, link))

    # -- routing, activation, passivation ----------------------------------------------------

    def _activate(self, entry: Entry) -> None:
        """Give ``entry``'s run an actor. A run replayed from the store (no dormant driver,
        not just created) takes a replay slot; with none free it waits in line (``queued``),
        and messages for it are held until it has an actor."""
        if entry.driver is None and entry.record is None:
            if len(self.replaying) >= REPLAY_SLOTS:
                if not entry.queued:
                    entry.queued = True
                    self.replay_queue.append(entry)
                return
            self.leases += 1
            lease, me = self.leases, self.actor_ref
            self.replaying[entry.run_id] = lease
            self.services.scheduler.call_later(
                REPLAY_LEASE, lambda: safe_tell(me, _ReplayLeaseOver(entry.run_id, lease))
            )
        host = None
        while self.idle_hosts and host is None:
            candidate = self.idle_hosts.pop()
            host = candidate if candidate.is_alive() else None
        if host is None:
            host = RunActor.start(self.services)
            self.last_host_start = self.services.clock.monotonic()
        entry.ref = host
        entry.status = RunStatus.RUNNING
        safe_tell(host, Host(entry.run_id, entry.driver, entry.record))
        entry.driver = None  # the host owns it now
        entry.record = None

    def on_replayed(self, message: Replayed) -> None:
        # A run is replayed by one actor at a time: its next replay (after a crash, say) is
        # activated only once this actor has told its RunCrashed, which comes before this.
        if self.replaying.pop(message.run_id, None) is not None:
            self._admit_replays()

    def on_replay_lease_over(self, message: _ReplayLeaseOver) -> None:
        if self.replaying.get(message.run_id) != message.lease:
            return  # that replay finished in time
        del self.replaying[message.run_id]
        if self.replay_queue:
            self.log.warning(
                "a replay is taking long: its slot goes to the next run in line",
                run_id=message.run_id,
                lease=REPLAY_LEASE,
                waiting=len(self.replay_queue),
            )
            self._admit_replays()

    def _admit_replays(self) -> None:
        while self.replay_queue and len(self.replaying) < REPLAY_SLOTS:
            entry = self.replay_queue.popleft()
            entry.queued = False
            if self.entries.get(entry.run_id) is not entry or entry.ref is not None:
                continue  # it ended or was given an actor meanwhile
            self._activate(entry)
            self._flush_pending(entry)

    def _release_host(self, ref: pykka.ActorRef[RunActor] | None) -> None:
        """A run left this actor (passivated or finished): keep it for the next run."""
        if ref is None:
            return
        bursting = self.services.clock.monotonic() - self.last_host_start < HOST_BURST
        if len(self.idle_hosts) < (IDLE_HOSTS_BURST if bursting else IDLE_HOSTS) and not self.closing:
            self.idle_hosts.append(ref)
        else:
            ref.stop(block=False)
        while not bursting and len(self.idle_hosts) > IDLE_HOSTS:  # the swing is over: back to the bound
            self.idle_hosts.pop().stop(block=False)

    def _route(self, run_id: str, message: Any) -> None:
        entry = self.entries.get(run_id)
        if entry is None:
            record = self._existing(run_id)
            if record is None or record.get("st") in FINISHED or record.get("st") == "parked":
                return
            if record["wf"] not in self.services.registry.workflows:
                return
            entry = Entry(run_id, record["wf"], status=RunStatus.SUSPENDED, parent=parent_of(record))
            self.entries[run_id] = entry
        if entry.passivating or entry.creating or entry.queued:
            entry.pending.append(message)
            return
        if entry.ref is None:
            self._activate(entry)
            if entry.ref is None:  # it waits for a replay slot
                entry.pending.append(message)
                return
        entry.generation += 1
        safe_tell(entry.ref, Wake(message, entry.generation))

    def on_route(self, message: Route) -> None:
        self._route(message.run_id, message.message)

    def on_idle(self, message: Idle) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None or entry.ref is None or entry.passivating or entry.generation != message.generation:
            return
        entry.passivating = True
        safe_tell(entry.ref, Passivate(message.generation))

    def on_passivated(self, message: Passivated) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None:
            return
        entry.passivating = False
        self._release_host(entry.ref)
        entry.ref = None
        entry.status = RunStatus.SUSPENDED
        entry.crashes = 0
        entry.driver = message.driver
        if entry.driver is not None:
            entry.waits = entry.driver.waits
        self._flush_pending(entry)

    def on_passivate_refused(self, message: PassivateRefused) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None:
            return
        entry.passivating = False
        self._flush_pending(entry)

    def _flush_pending(self, entry: Entry) -> None:
        pending, entry.pending = entry.pending, []
        for item in pending:
            self._route(entry.run_id, item)

    def on_run_ended(self, message: RunEnded) -> None:
        entry = self.entries.pop(message.run_id, None)
        self.seqs.pop(message.run_id, None)
        self.services.states.pop(message.run_id, None)
        watchers: list[tuple[str, str]] = []
        parent = parent_of(message.record)
        if parent is not None:
            watchers.append(parent)
        cancels: list[Pending] = []
        if entry is not None:
            self._release_host(entry.ref)
            watchers.extend(w for w in entry.watchers if w not in watchers)
            cancels = entry.parked_cancels
            if message.status == "parked" and message.record and (entry.cancel_requested or cancels):
                # A cancel came while the run was parking: a parked run runs no code, so it
                # ends cancelled now, and the cancels are answered once that is durable.
                self._end_parked(message.run_id, message.record, cancels, watchers)
                return
        for pending in cancels:  # the run ended, or its record cannot be read: answer afresh
            self._answer_cancel(message.run_id, pending)
        if message.status in FINISHED:
            for parent_id, step in watchers:
                self._route(parent_id, ChildDone(step, message.run_id, message.record))

    def on_crashed(self, message: RunCrashed) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None:
            return  # it crashed after its run ended: the supervisor had taken its actor back
        if entry.ref is not None and entry.ref is message.host:
            self._release_host(entry.ref)  # the actor dropped the run and is free again
        entry.ref, entry.driver = None, None
        entry.passivating = False
        entry.resumed = False  # its replay starts over
        entry.generation = 0  # the replaying driver counts wakes from 0 again
        entry.crashes += 1
        delay = min(0.05 * (2 ** min(entry.crashes, 10)), 30.0)
        self.log.warning("restarting crashed run", run_id=message.run_id, attempt=entry.crashes, delay=delay)
        me = self.actor_ref
        self.services.scheduler.call_later(delay, lambda: safe_tell(me, _Restart(message.run_id)))

    def on_restart(self, message: _Restart) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None or entry.ref is not None:
            return
        self._activate(entry)
        self._flush_pending(entry)

    # -- introspection and shutdown ---------------------------------------------------------

    def on_shutdown(self, message: Shutdown) -> None:
        self.closing = True
        for entry in self.entries.values():
            for pending in entry.parked_cancels:
                pending.done(RuntimeError("the runtime is shutting down"))
        refs = [entry.ref for entry in self.entries.values() if entry.ref is not None] + self.idle_hosts
        self.idle_hosts = []
        self.replay_queue.clear()
        # A stop's future is done once on_stop returned, which waits for an outcome that a
        # branch actor's thread is handling for the run (RunActor.deliver).
        stops = [ref.stop(block=False) for ref in refs]
        deadline = time.monotonic() + message.timeout
        for stop in stops:  # one deadline for all, not one per actor
            try:
                stop.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                break
        self.entries.clear()


_HANDLERS: dict[type, Any] = {
    CreateRun: Supervisor.on_create,
    _Created: Supervisor.on_created,
    StartRun: Supervisor.on_start_run,
    StartChild: Supervisor.on_start_child,
    Route: Supervisor.on_route,
    Idle: Supervisor.on_idle,
    Passivated: Supervisor.on_passivated,
    PassivateRefused: Supervisor.on_passivate_refused,
    RunEnded: Supervisor.on_run_ended,
    Resumed: Supervisor.on_resumed,
    Replayed: Supervisor.on_replayed,
    _ReplayLeaseOver: Supervisor.on_replay_lease_over,
    RunCrashed: Supervisor.on_crashed,
    _Restart: Supervisor.on_restart,
    SendSignal: Supervisor.on_send_signal,
    _SignalStored: Supervisor.on_signal_stored,
    Signal: Supervisor.on_signal,
    RequestCancel: Supervisor.on_request_cancel,
    Cancel: Supervisor.on_cancel,
    CancelChild: Supervisor.on_cancel_child,
    Shutdown: Supervisor.on_shutdown,
}
