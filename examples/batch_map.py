"""batch_map: process many items with ``ctx.map``, a concurrency limit and per-item error handling.

The pattern: each item is a *generator branch* (a small sub-workflow) that
catches the activity's failure, so one bad item becomes data instead of
failing the whole batch::

    def process(ctx, name):
        try:
            return {"file": name, "ok": True, "words": (yield ctx.run(count_words, name))}
        except ActivityError as error:
            return {"file": name, "ok": False, "error": error.message}

    results = yield ctx.map(files, lambda name: process(ctx, name), concurrency=3)

Two ways to bound the work in flight, both shown here:

* **rolling pool** — ``ctx.map(..., concurrency=3)``: at most three items
  run at any moment and the next one starts as soon as *any* slot frees up.
  A slow item only holds its own slot. To prove it without relying on timing,
  ``file-00`` refuses to finish until ``file-05`` has finished: that can only
  happen if the other two slots keep flowing past it;
* **chunked** — a loop of ``ctx.map`` calls over chunks of three: each chunk
  is its own checkpointed step and the next chunk starts only when the whole
  previous chunk is done (simpler to reason about, but a slow item stalls its
  chunk).

Results come back in input order either way. Branch ids: item ``k`` of the
map at step ``S`` is ``S.k`` and its activity is ``S.k.0``.

Run: ``.venv/bin/python examples/batch_map.py [--store PATH]``
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import ActivityError, Context, Operation, Runtime, activity, workflow

FILES = [f"file-{i:02d}" for i in range(10)]
CORRUPT = {"file-03", "file-07"}
LIMIT = 3


class Timeline:
    """Records activity starts and ends in one logical order, and how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.finished: dict[str, threading.Event] = {name: threading.Event() for name in FILES}

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.in_flight = self.max_in_flight = 0
            for event in self.finished.values():
                event.clear()

    def start(self, name: str) -> None:
        with self.lock:
            self.events.append(("start", name))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, name: str) -> None:
        with self.lock:
            self.events.append(("end", name))
            self.in_flight -= 1
        self.finished[name].set()

    def position(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


timeline = Timeline()


class CorruptFile(Exception):
    """The file cannot be parsed."""


@activity(name="ex_batch.count_words")
def count_words(name: str, hold_first_item: bool) -> int:
    timeline.start(name)
    try:
        # A slow item: file-00 finishes only after file-05 did (bounded wait, so it can never hang).
        if hold_first_item and name == "file-00" and not timeline.finished["file-05"].wait(timeout=5):
            raise TimeoutError("file-05 never finished while file-00 held its slot")
        time.sleep(0.02)  # simulated work
        if name in CORRUPT:
            raise CorruptFile(f"{name}: unexpected end of data")
        return 100 + int(name[-2:])
    finally:
        timeline.end(name)


def process(ctx: Context, name: str, hold_first_item: bool) -> Generator[Operation, Any, dict[str, Any]]:
    """One item as a generator branch: its failure is caught and returned as data."""
    try:
        words = yield ctx.run(count_words, name, hold_first_item)
        return {"file": name, "ok": True, "words": words}
    except ActivityError as error:
        return {"file": name, "ok": False, "error": error.message}


@workflow(name="ex_batch.rolling_pool")
def rolling_pool(ctx: Context, files: list[str]) -> Generator[Operation, Any, list[dict[str, Any]]]:
    return (yield ctx.map(files, lambda name: process(ctx, name, True), concurrency=LIMIT))


@workflow(name="ex_batch.chunked")
def chunked(ctx: Context, files: list[str]) -> Generator[Operation, Any, list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    for i in range(0, len(files), LIMIT):
        chunk = files[i : i + LIMIT]
        results.extend((yield ctx.map(chunk, lambda name: process(ctx, name, False))))
    return results


def expected_results() -> list[dict[str, Any]]:
    return [
        {"file": name, "ok": False, "error": f"{name}: unexpected end of data"}
        if name in CORRUPT
        else {"file": name, "ok": True, "words": 100 + int(name[-2:])}
        for name in FILES
    ]


def summarize(results: list[dict[str, Any]]) -> None:
    good = [r["file"] for r in results if r["ok"]]
    bad = {r["file"]: r["error"] for r in results if not r["ok"]}
    say(f"  {len(good)} processed, {len(bad)} failed: {bad}")
    say(f"  total words: {sum(r['words'] for r in results if r['ok'])}")


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "batch") as path, Runtime(path) as rt:
        say(f"1) Rolling pool: ctx.map over {len(FILES)} files, concurrency={LIMIT}; file-00 is very slow")
        timeline.reset()
        handle = rt.start(rolling_pool, FILES, run_id="batch-rolling")
        rolling = handle.result(timeout=30)
        summarize(rolling)
        finished_before_00 = [
            name
            for kind, name in timeline.events[: timeline.position("end", "file-00")]
            if kind == "end" and name != "file-00"
        ]
        say(f"  while file-00 held one slot, these finished: {', '.join(finished_before_00)}")
        say(f"  at most {timeline.max_in_flight} items ran at once")
        check(rolling == expected_results(), f"rolling results in input order, got {rolling}")
        check(
            timeline.max_in_flight <= LIMIT, f"never more than {LIMIT} at once, saw {timeline.max_in_flight}"
        )
        check("file-05" in finished_before_00, "the pool kept rolling past the slow item")
        steps = {r.step: r.status for r in handle.history()}
        check(steps.get("0.3.0") == "failed" and steps.get("0.3") == "completed", f"caught failure: {steps}")

        say(f"2) Chunked: one ctx.map per chunk of {LIMIT}, each chunk a checkpointed step")
        timeline.reset()
        handle = rt.start(chunked, FILES, run_id="batch-chunked")
        chunked_results = handle.result(timeout=30)
        summarize(chunked_results)
        chunks = [FILES[i : i + LIMIT] for i in range(0, len(FILES), LIMIT)]
        say(f"  chunks: {' | '.join(' '.join(c) for c in chunks)}")
        top_level = [r.step for r in handle.history() if "." not in r.step]
        say(f"  top-level steps (one map per chunk): {top_level}")
        check(chunked_results == expected_results(), f"chunked results in input order, got {chunked_results}")
        for earlier, later in itertools.pairwise(chunks):
            last_end = max(timeline.position("end", name) for name in earlier)
            first_start = min(timeline.position("start", name) for name in later)
            check(last_end < first_start, f"chunk {later} started before chunk {earlier} finished")
        check(top_level == ["0", "1", "2", "3"], f"one step per chunk, got {top_level}")
        say("OK: both variants processed every file, reported the corrupt ones, and kept the limit")


if __name__ == "__main__":
    main()
