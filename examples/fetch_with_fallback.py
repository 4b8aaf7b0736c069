"""fetch_with_fallback: race three sources with ``ctx.race``; the first answer wins.

The pattern::

    value = yield ctx.race([ctx.run(fetch, "primary"), ctx.run(fetch, "replica"), ctx.run(fetch, "cache")])

Semantics shown:

* the first branch to *settle* decides the race, and that decision is
  checkpointed (a replay returns the same winner without running anything);
* the losers are **not killed**: a losing activity runs to completion in its
  own thread and its late result is discarded (and logged). Their steps show
  ``abandoned`` in ``handle.history()``;
* the workflow does not wait for the losers: it has already returned.

To keep the outcome independent of timing, the cache answers only once both
slow requests are in flight, and the two slow sources are held until the race
has been decided, then released so that you can watch them finish in the
background.

Run: ``.venv/bin/python examples/fetch_with_fallback.py [--store PATH]``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, RunStatus, Runtime, activity, workflow

SLOW_SOURCES = ("primary", "replica")
started: dict[str, threading.Event] = {name: threading.Event() for name in SLOW_SOURCES}
release_slow_sources = threading.Event()
finished: dict[str, threading.Event] = {name: threading.Event() for name in (*SLOW_SOURCES, "cache")}
T0 = time.monotonic()


def stamp() -> str:
    return f"[{time.monotonic() - T0:5.2f}s]"


@activity(name="ex_fallback.fetch")
def fetch(source: str, path: str) -> str:
    if source in SLOW_SOURCES:
        started[source].set()
        # A slow network: held until the race is decided (bounded, so the example can never hang).
        release_slow_sources.wait(timeout=10)
        time.sleep(0.1 if source == "primary" else 0.2)
    else:
        for request in started.values():  # the cache answers once both slow requests are in flight
            request.wait(timeout=10)
    say(f"{stamp()}   activity fetch({source!r}) finished")
    finished[source].set()
    return f"{source}:{path}"


@workflow(name="ex_fallback.fetch_with_fallback")
def fetch_with_fallback(ctx: Context, path: str) -> Generator[Operation, Any, str]:
    return (
        yield ctx.race(
            [
                ctx.run(fetch, "primary", path),
                ctx.run(fetch, "replica", path),
                ctx.run(fetch, "cache", path),
            ]
        )
    )


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "fallback") as path, Runtime(path) as rt:
        say(f"{stamp()} Racing primary, replica and cache for /users/1")
        handle = rt.start(fetch_with_fallback, "/users/1", run_id="fetch-users-1")
        result = handle.result(timeout=30)
        say(f"{stamp()} Race decided: {result!r}; the run is {handle.status().value}")
        check(result == "cache:/users/1", f"the cache answers first, got {result!r}")
        check(handle.status() is RunStatus.COMPLETED, "the run completed without waiting for the losers")

        say(f"{stamp()} The losers are still running in the background; releasing them now")
        release_slow_sources.set()
        for source in SLOW_SOURCES:
            check(finished[source].wait(timeout=10), f"the losing fetch of {source} runs to completion")

        say(f"{stamp()} History (losers are 'abandoned', their results were discarded):")
        history = handle.history()
        for record in history:
            say(f"  {record.step:<4} {record.kind:<9} {record.status:<10} value={record.value!r}")
        statuses = {record.step: record.status for record in history}
        check(statuses.get("0.2") == "completed", "the cache branch is the recorded winner")
        check(
            statuses.get("0.0") == "abandoned" and statuses.get("0.1") == "abandoned",
            f"the losing branches are abandoned, got {statuses}",
        )
        check(
            handle.result(timeout=5) == "cache:/users/1",
            "the result did not change after the losers finished",
        )
        say(f"Result: {result!r}")
        say("OK: the fastest source won; the slower ones finished in the background and were discarded")


if __name__ == "__main__":
    main()
