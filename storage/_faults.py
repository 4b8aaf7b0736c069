"""Named crash points for fault-injection tests.

A process started with ``TREADLE_CRASH_AT=point`` (or ``point:N`` for the
N-th time the point is reached, from 1) kills itself with SIGKILL there, the
closest thing to pulling the plug that a test can do. Unset, a crash point
costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["FAULT_POINTS", "crash_point", "reload_faults"]

FAULT_POINTS = (
    "after_step_before_commit",
    "in_commit",
    "after_commit",
    "after_branch_spawn",
    "after_race_decision",
    "after_signal_persist",
    "in_sleep",
)

_armed: dict[str, int] = {}
_lock = threading.Lock()


def reload_faults() -> None:
    """Read ``TREADLE_CRASH_AT`` again (called at import and by the test harness)."""
    _armed.clear()
    spec = os.environ.get("TREADLE_CRASH_AT", "").strip()
    if not spec:
        return
    for part in spec.split(","):
        name, _, count = part.partition(":")
        if name not in FAULT_POINTS:
            raise ValueError(f"TREADLE_CRASH_AT names unknown fault point {name!r}; known: {FAULT_POINTS}")
        _armed[name] = int(count) if count else 1


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is armed and its count is reached."""
    if not _armed or name not in _armed:
        return
    with _lock:
        _armed[name] -= 1
        fire = _armed[name] == 0
    if fire:
        os.kill(os.getpid(), signal.SIGKILL)


reload_faults()
