"""cpu_bound: a CPU-bound fan-out on worker processes beside I/O activities on threads.

The pattern::

    @activity(executor="process")          # pure-Python CPU work: one worker process per core
    def checksum(block): ...

    @activity                              # I/O: the default executor, threads
    def fetch(name): ...

    blocks = yield ctx.all([ctx.run(fetch, name) for name in names])
    sums = yield ctx.map(blocks, lambda b: ctx.run(checksum, b))

Semantics shown:

* only where the code runs changes: results still come back in input order,
  every branch is still checkpointed by the runtime that owns the store;
* the process activity runs in another process (its pid differs from the
  runtime's), the I/O one in the runtime's own process;
* arguments and results cross through the store's codec, like every stored value.

A worker process imports ``checksum`` by name, which is why this script has
an ``if __name__ == "__main__":`` guard. On a machine with several cores the
``checksum`` branches run in parallel; on threads the GIL would hold them to
one core.

Run: ``.venv/bin/python examples/cpu_bound.py [--store PATH]``
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow


@activity(name="ex_cpu.fetch")
def fetch(name: str) -> dict[str, Any]:
    """Stands for an I/O call; returns a block of data and the pid that fetched it."""
    return {"name": name, "seed": name.encode().hex(), "pid": os.getpid()}


@activity(name="ex_cpu.checksum", executor="process")
def checksum(block: dict[str, Any]) -> dict[str, Any]:
    """CPU-bound: 20,000 rounds of SHA-256 over the block (pure CPU, no I/O)."""
    digest = bytes.fromhex(block["seed"])
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    return {"name": block["name"], "digest": digest.hex()[:16], "pid": os.getpid()}


@workflow(name="ex_cpu.checksums")
def checksums(ctx: Context, names: list[str]) -> Generator[Operation, Any, list[dict[str, Any]]]:
    blocks = yield ctx.all([ctx.run(fetch, name) for name in names])
    return (yield ctx.map(blocks, lambda block: ctx.run(checksum, block)))


def expected(name: str) -> str:
    digest = name.encode()
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def main() -> None:
    args = parse_args(__doc__ or "")
    names = [f"block-{i}" for i in range(6)]
    with store_folder(args.store, "cpu_bound") as path, Runtime(path) as rt:
        say(f"Fetching {len(names)} blocks on threads, checksumming them in worker processes")
        handle = rt.start(checksums, names, run_id="checksums-1")
        result = handle.result(timeout=60)
        me = os.getpid()
        for row in result:
            say(f"  {row['name']}: {row['digest']} (worker pid {row['pid']})")
        check([row["name"] for row in result] == names, "results come back in input order")
        check(all(row["digest"] == expected(row["name"]) for row in result), "every checksum is right")
        check(all(row["pid"] != me for row in result), "the checksums ran outside the runtime's process")
        fetched_here = {record.value["pid"] for record in handle.history() if record.name == "ex_cpu.fetch"}
        check(fetched_here == {me}, f"the fetches ran on the runtime's threads, got pids {fetched_here}")
        say("OK: the CPU-bound branches ran in worker processes, in input order, checkpointed as usual")


if __name__ == "__main__":
    main()
