"""Cancellation requests, as the supervisor handles them.

A live run's cancel is a journal record (``@cancel``), durable before the
caller hears back, then a ``CancelRun`` for its code. A parked run runs no
code: it ends cancelled at once. A run stored as parked that an actor still
holds (it has just parked, or start-up replays it) may park again or resume,
so its cancels are held until the supervisor knows which.
"""

from __future__ import annotations

from typing import Any

from treadle.storage import Op, WriteRequest, journal_key, run_key

from ._errors import CancelledError, RunNotFoundError, error_to_data
from ._messages import Cancel, CancelChild, CancelRun, ChildDone, Pending, RequestCancel, Resumed, Route
from ._records import CANCEL_STEP, FINISHED
from ._run_actor import safe_tell
from ._run_table import RunTable, parent_of

__all__ = ["CancelRequests"]


class CancelRequests(RunTable):
    """The supervisor's cancellation handlers."""

    def on_request_cancel(self, message: RequestCancel) -> tuple[str, Any]:
        pending = Pending()
        kind, info = self._cancel(message.run_id, pending)
        if kind == "held":
            return ("sent", pending)
        return (kind, info)

    def _cancel(self, run_id: str, pending: Pending) -> tuple[str, Any]:
        """Cancel run ``run_id``; ``pending`` is answered once the cancel is durable.

        Returns ``("sent", pending)``, ``("held", None)`` (``pending`` is answered later, once
        the supervisor knows whether the run stays parked), ``("already", None)`` or
        ``("finished", status)``.
        """
        status = self._status_of(run_id)
        if status in FINISHED:
            return ("finished", status)
        entry = self.entries.get(run_id)
        if status == "parked":
            if entry is None:
                # A parked run runs no code: it ends cancelled at once.
                record = self._existing(run_id) or {}
                parent = parent_of(record)
                self._end_parked(run_id, record, [pending], [parent] if parent else [])
                return ("sent", pending)
            if not entry.resumed:
                # An actor still holds it: it has just parked (its RunEnded is on the way), or
                # it replays the run, which may park again or resume. Writing the cancel now
                # would race with that outcome: on_run_ended or on_resumed decides.
                entry.parked_cancels.append(pending)
                return ("held", None)
        if entry is not None and entry.cancel_requested:
            return ("already", None)
        now = self.services.clock.time()
        record = {"v": 1, "s": CANCEL_STEP, "k": "cancel", "n": None, "st": "requested", "t0": now, "o": []}
        me = self.actor_ref

        def ack(error: BaseException | None) -> None:
            pending.done(error)
            if error is None:
                safe_tell(me, Route(run_id, CancelRun()))

        if entry is not None:
            entry.cancel_requested = True
        self._write(WriteRequest([Op("journal", journal_key(run_id, CANCEL_STEP), record)], ack))
        return ("sent", pending)

    def _end_parked(
        self, run_id: str, record: dict[str, Any], cancels: list[Pending], watchers: list[tuple[str, str]]
    ) -> None:
        """Write the parked run ``run_id`` cancelled (its journal is left as it is)."""
        cancelled = {
            **record,
            "st": "cancelled",
            "err": error_to_data(CancelledError()),
            "waits": [],
            "up": self.services.clock.time(),
        }
        completions = self.services.completions
        me = self.actor_ref

        def ack(error: BaseException | None) -> None:
            for pending in cancels:
                pending.done(error)
            completions.notify(run_id, cancelled if error is None else None)
            if error is None:
                for parent_id, step in watchers:
                    safe_tell(me, Route(parent_id, ChildDone(step, run_id, cancelled)))

        self._write(WriteRequest([Op("runs", run_key(run_id), cancelled)], ack))

    def _answer_cancel(self, run_id: str, pending: Pending) -> None:
        """Handle again a cancel held while the run's fate was open."""
        try:
            kind, _ = self._cancel(run_id, pending)
        except Exception as exc:  # its record is unreadable, say: the caller is told
            pending.done(exc)
            return
        if kind in ("already", "finished"):
            pending.done(None)

    def on_resumed(self, message: Resumed) -> None:
        entry = self.entries.get(message.run_id)
        if entry is None:
            return
        entry.resumed = True
        cancels, entry.parked_cancels = entry.parked_cancels, []
        for pending in cancels:  # it is live: the cancel goes to its code
            self._answer_cancel(message.run_id, pending)

    def on_cancel(self, message: Cancel) -> bool:
        pending = Pending()
        kind, _ = self._cancel(message.run_id, pending)
        if kind == "sent":
            pending.wait()
            return True
        # "held": answered once this actor learns whether the run stays parked, which it
        # cannot wait for on its own thread. The cancel is taken either way.
        return kind in ("held", "already")

    def on_cancel_child(self, message: CancelChild) -> None:
        try:
            self.on_request_cancel(RequestCancel(message.child_id))
        except RunNotFoundError:
            pass
