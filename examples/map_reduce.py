"""map_reduce: split the input into chunks, ``ctx.map`` them with a concurrency limit, then combine.

The pattern (fan-out / fan-in)::

    chunks = [lines[i : i + size] for i in range(0, len(lines), size)]
    partials = yield ctx.map(chunks, lambda chunk: ctx.run(count_words, chunk), concurrency=3)
    totals = yield ctx.run(combine, partials)

Semantics shown:

* ``map`` is sugar over ``all``: ``fn(item)`` returns a branch per item and
  the results come back in input order;
* ``concurrency=3`` is a rolling pool: at most three chunks are processed at
  any moment, the next one starts as soon as a slot frees up;
* every chunk's result is checkpointed as it settles, so after a crash only
  the unfinished chunks would be processed again; the reduce step runs once
  all of them are durable.

Keep chunk results small: they are stored in the journal (the map step's
value is the list of them). Values go through msgpack, so a tuple comes back
as a list (the ``top`` pairs below).

Run: ``.venv/bin/python examples/map_reduce.py [--store PATH]``
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

TEXT = (
    """\
the quick brown fox jumps over the lazy dog
a durable workflow never repeats work it already finished
the fox and the dog run in parallel branches
every branch is checkpointed when it settles
""".splitlines()
    * 6
)  # 24 lines

LIMIT = 3


class InFlight:
    """Counts how many chunk activities run at the same moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


in_flight = InFlight()


@activity(name="ex_mapreduce.count_words")
def count_words(lines: list[str]) -> dict[str, int]:
    with in_flight:
        time.sleep(0.03)  # simulated work
        return dict(collections.Counter(word for line in lines for word in line.split()))


@activity(name="ex_mapreduce.combine")
def combine(partials: list[dict[str, int]]) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for partial in partials:
        total.update(partial)
    return dict(total.most_common())


@workflow(name="ex_mapreduce.word_count")
def word_count(
    ctx: Context, lines: list[str], chunk_size: int
) -> Generator[Operation, Any, dict[str, object]]:
    chunks = [lines[i : i + chunk_size] for i in range(0, len(lines), chunk_size)]
    partials = yield ctx.map(chunks, lambda chunk: ctx.run(count_words, chunk), concurrency=LIMIT)
    totals = yield ctx.run(combine, partials)
    return {"chunks": len(chunks), "words": sum(totals.values()), "top": list(totals.items())[:3]}


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "mapreduce") as path, Runtime(path) as rt:
        say(f"Counting words in {len(TEXT)} lines: chunks of 3 lines, {LIMIT} chunks at a time")
        handle = rt.start(word_count, TEXT, 3, run_id="word-count-1")
        result = handle.result(timeout=30)
        history = handle.history()
        chunk_steps = [
            r.step for r in history if r.kind == "activity" and r.name == "ex_mapreduce.count_words"
        ]
        say(
            f"Map step: {len(chunk_steps)} chunk branches ({chunk_steps[0]} .. {chunk_steps[-1]}), "
            f"at most {in_flight.max} running at once"
        )
        say(f"Reduce step: {[r.step for r in history if r.name == 'ex_mapreduce.combine']}")
        say(f"Result: {result}")

        expected = collections.Counter(word for line in TEXT for word in line.split())
        check(result["chunks"] == 8, f"8 chunks, got {result['chunks']}")
        check(result["words"] == sum(expected.values()), f"every word counted, got {result['words']}")
        check(result["top"] == [list(pair) for pair in expected.most_common(3)], f"top words {result['top']}")
        check(in_flight.max <= LIMIT, f"at most {LIMIT} chunks at once, saw {in_flight.max}")
        say("OK: the chunks were counted in a bounded pool and combined into one total")


if __name__ == "__main__":
    main()
