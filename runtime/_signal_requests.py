"""Signals sent to runs, as the supervisor handles them.

A signal is durable before its sender hears back (its record, and its key's
index when it has one); then the run is told, if it is live or waits for that
name. Sequence numbers are per run, from the signals already stored.
"""

from __future__ import annotations

from treadle.storage import Op, WriteRequest, crash_point, signal_index_key, signal_key, signal_prefix

from ._errors import RunFinishedError
from ._messages import Pending, SendSignal, Signal, SignalArrived, _SignalStored
from ._records import FINISHED
from ._run_actor import safe_tell
from ._run_table import RunTable

__all__ = ["SignalRequests"]


class SignalRequests(RunTable):
    """The supervisor's signal handlers."""

    seqs: dict[str, int]
    pending_keys: dict[tuple[str, str, str], Pending]

    def on_send_signal(self, message: SendSignal) -> tuple[str, Pending | None]:
        status = self._status_of(message.run_id)
        if status in FINISHED:
            raise RunFinishedError(message.run_id, status)
        if message.key is not None:
            marker = (message.run_id, message.name, message.key)
            if marker in self.pending_keys:
                return ("duplicate", self.pending_keys[marker])
            if (
                self.store.get("signals", signal_index_key(message.run_id, message.name, message.key))
                is not None
            ):
                return ("duplicate", None)
        seq = self._next_seq(message.run_id)
        record = {
            "v": 1,
            "name": message.name,
            "p": message.packed,
            "key": message.key,
            "consumed": False,
            "sent": self.services.clock.time(),
        }
        ops = [Op("signals", signal_key(message.run_id, message.name, seq), record)]
        if message.key is not None:
            ops.append(
                Op(
                    "signals",
                    signal_index_key(message.run_id, message.name, message.key),
                    {"v": 1, "name": message.name, "seq": seq},
                )
            )
        pending = Pending()
        me = self.actor_ref
        marker_key = (message.run_id, message.name, message.key) if message.key is not None else None
        if marker_key is not None:
            self.pending_keys[marker_key] = pending

        def ack(error: BaseException | None) -> None:
            pending.done(error)
            if error is None:
                crash_point("after_signal_persist")
            safe_tell(me, _SignalStored(message.run_id, message.name))

        self._write(WriteRequest(ops, ack))
        return ("sent", pending)

    def _next_seq(self, run_id: str) -> int:
        seq = self.seqs.get(run_id)
        if seq is None:
            seq = 0
            for key, _ in self.store.scan("signals", signal_prefix(run_id)):
                seq = max(seq, int.from_bytes(key[-8:], "big"))
        seq += 1
        self.seqs[run_id] = seq
        return seq

    def on_signal_stored(self, message: _SignalStored) -> None:
        for marker in [m for m in self.pending_keys if m[0] == message.run_id and m[1] == message.name]:
            if self.pending_keys[marker].event.is_set():
                del self.pending_keys[marker]
        entry = self.entries.get(message.run_id)
        if entry is None:
            return
        if entry.ref is None and not entry.creating and not entry.passivating:
            waits = entry.driver.waits if entry.driver is not None else entry.waits
            if message.name not in waits:
                return
        self._route(message.run_id, SignalArrived(message.name))

    def on_signal(self, message: Signal) -> bool:
        from treadle.storage import encode

        packed, _ = encode(message.payload, "Signal.payload", root="payload", limit=self.services.max_payload)
        kind, pending = self.on_send_signal(SendSignal(message.run_id, message.name, packed, message.key))
        if pending is not None:
            pending.wait()
        return kind == "sent"
