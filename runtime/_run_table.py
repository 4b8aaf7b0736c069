"""The supervisor's table of runs, and what every part of the supervisor shares.

:class:`Entry` is the supervisor's record of a run that is alive, dormant
or being created. :class:`RunTable` is the state and the helpers that the
supervisor and its request handlers (``_signal_requests``,
``_cancel_requests``) share; all of it is touched only by the supervisor's
thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from treadle.storage import Store, WriteRequest, run_key

from ._errors import RunNotFoundError
from ._messages import Pending
from ._records import RunStatus

if TYPE_CHECKING:
    from ._driver import RunDriver
    from ._run_actor import RunActor, Services

__all__ = ["Entry", "RunTable", "parent_of"]


@dataclass
class Entry:
    run_id: str
    workflow: str
    status: RunStatus = RunStatus.RUNNING
    ref: pykka.ActorRef[RunActor] | None = None
    driver: RunDriver | None = None
    generation: int = 0
    passivating: bool = False
    creating: bool = False
    queued: bool = False  # to be replayed from the store once a replay slot is free
    pending: list[Any] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)
    crashes: int = 0
    parent: tuple[str, str] | None = None
    watchers: list[tuple[str, str]] = field(default_factory=list)
    cancel_requested: bool = False
    record: dict[str, Any] | None = None  # a run just created: its record, until its first activation
    resumed: bool = False  # a parked run whose replay got past the divergence (its actor said so)
    # Cancels of a run stored as parked that an actor still holds: answered once it is known
    # whether the run stays parked (it is then cancelled) or is live again.
    parked_cancels: list[Pending] = field(default_factory=list)


def parent_of(record: dict[str, Any]) -> tuple[str, str] | None:
    """The (parent run, step) a run record names, if it is a child run."""
    parent = record.get("parent")
    return (parent[0], parent[1]) if parent else None


class RunTable:
    """State and helpers of the supervisor that its request handlers use too."""

    services: Services
    store: Store
    entries: dict[str, Entry]
    actor_ref: pykka.ActorRef[Any]

    def _write(self, request: WriteRequest) -> None:
        # Never inline: the supervisor serves every run, so it must not wait out an fsync;
        # its writes go through the writer's group commit and come back as acks.
        self.services.writer.submit(request, inline=False)

    def _existing(self, run_id: str) -> dict[str, Any] | None:
        return self.store.get("runs", run_key(run_id))

    def _status_of(self, run_id: str) -> str:
        entry = self.entries.get(run_id)
        record = self._existing(run_id)
        if record is None:
            if entry is not None:
                return "running"
            raise RunNotFoundError(run_id)
        return str(record.get("st"))

    def _route(self, run_id: str, message: Any) -> None:
        """Deliver ``message`` to run ``run_id``, waking or starting its actor (the supervisor's)."""
        raise NotImplementedError
