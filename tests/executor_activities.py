"""Activities and workflows the executor tests run on threads, worker processes and Ray.

They live at module level in an importable module because the ``processes``
executor imports activities by name in its workers. Cross-process
coordination goes through marker files in a folder the test passes in, with
bounded waits only.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from treadle.runtime import ActivityContext, activity, workflow

LIMIT = 20.0  # seconds any activity here waits for a marker before giving up


def _wait_for(path: Path, limit: float = LIMIT) -> bool:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def touch(folder: str, name: str, text: str = "") -> None:
    tmp = Path(folder) / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, Path(folder) / name)


class OutOfStock(Exception):
    """A user error class the executors must carry across with its type."""


@activity(name="ex.where")
def where(i: int, delay: float) -> list[Any]:
    """Sleep ``delay`` (later inputs finish first) and say which process ran it."""
    time.sleep(delay)
    return [i, os.getpid()]


@activity(name="ex.echo")
def echo(value: Any) -> list[Any]:
    """Return the argument as the activity saw it, with its Python type."""
    return [value, type(value).__name__]


@activity(name="ex.fail")
def fail(message: str) -> None:
    raise OutOfStock(message)


@activity(name="ex.gate")
def gate(folder: str, name: str, ctx: ActivityContext) -> str:
    """Block until marker ``open.NAME`` exists or the cancel flag is seen; say which it was."""
    touch(folder, f"started.{name}", str(os.getpid()))
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if ctx.cancelled.is_set():
            touch(folder, f"cancel-seen.{name}")
            return "cancelled"
        if (Path(folder) / f"open.{name}").exists():
            touch(folder, f"finished.{name}")
            return "opened"
        time.sleep(0.005)
    return "gave up"


@activity(name="ex.stubborn")
def stubborn(folder: str, name: str) -> str:
    """Ignore the cancel flag; mark ``done.NAME`` when let go, ``interrupted.NAME`` if interrupted."""
    touch(folder, f"started.{name}", str(os.getpid()))
    try:
        _wait_for(Path(folder) / f"open.{name}")
        touch(folder, f"done.{name}")
        return "done"
    except BaseException:
        touch(folder, f"interrupted.{name}")
        raise


@activity(name="ex.die_first")
def die_first(folder: str, value: int, ctx: ActivityContext) -> list[int]:
    """Kill the process running attempt 1 (SIGKILL); later attempts return ``value``."""
    touch(folder, f"attempt.{ctx.attempt}", str(os.getpid()))
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return [value, ctx.attempt]


@activity(name="ex.spin")
def spin(n: int) -> int:
    """Pure-Python CPU work (the GIL holds it to one core on threads)."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


@activity(name="ex.pid_on_process", executor="process")
def pid_on_process() -> int:
    return os.getpid()


@activity(name="ex.pid_here")
def pid_here() -> int:
    return os.getpid()


@workflow(name="ex.fan_out")
def fan_out(ctx: Any, n: int) -> Any:
    return (yield ctx.all([ctx.run(where, i, 0.01 * (n - i)) for i in range(n)]))


@workflow(name="ex.settle")
def settle(ctx: Any, folder: str) -> Any:
    results = yield ctx.all_settled(
        [ctx.run(where, 0, 0.05), ctx.run(fail, "no widgets"), ctx.run(where, 2, 0.0)]
    )
    return [[s.ok, s.value, None if s.error is None else s.error.type] for s in results]


@workflow(name="ex.race")
def race(ctx: Any, folder: str, cancel_losers: bool) -> Any:
    winner = yield ctx.race(
        [ctx.run(where, 0, 0.0), ctx.run(gate, folder, "loser")], cancel_losers=cancel_losers
    )
    return winner


@workflow(name="ex.one")
def one(ctx: Any, name: str, *args: Any) -> Any:
    return (yield ctx.run(name, *args))


class CodeError(Exception):
    """Does not survive pickling (its __init__ takes two arguments), so only its name crosses."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


@activity(name="ex.fail_coded")
def fail_coded() -> None:
    raise CodeError(409, "conflict")


@activity(name="ex.numbered_gate")
def numbered_gate(folder: str, ctx: ActivityContext) -> int:
    """Mark ``attempt.N`` and hold until ``open.gate`` exists (bounded)."""
    touch(folder, f"attempt.{ctx.attempt}", str(os.getpid()))
    _wait_for(Path(folder) / "open.gate")
    return ctx.attempt
