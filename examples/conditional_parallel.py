"""conditional_parallel: build the branch list from the input, then ``ctx.all`` over it.

The pattern::

    tasks = []
    if order["requires_approval"]:
        tasks.append(ctx.run(request_approval, order["id"]))
    if order["is_international"]:
        tasks.append(ctx.run(file_customs, order["id"]))
    tasks.append(ctx.run(reserve_inventory, order["id"]))
    done = yield ctx.all(tasks)

Semantics shown:

* the branch list may depend on anything *deterministic* (the workflow's
  arguments, earlier step results): on replay the same list is rebuilt, so
  the recorded branches match by position;
* only the branches in the list run; results come back in list order;
* deciding from something non-deterministic (the wall clock, a random number)
  must go through an operation (``ctx.now()``, ``ctx.random()``), or a replay
  could build a different list and fail with ``BranchTopologyChangedError``.

Run: ``.venv/bin/python examples/conditional_parallel.py [--store PATH]``
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

calls: collections.Counter[str] = collections.Counter()
_calls_lock = threading.Lock()


def count_call(name: str) -> None:
    with _calls_lock:
        calls[name] += 1


@activity(name="ex_cond.request_approval")
def request_approval(order_id: str) -> str:
    count_call(f"approval:{order_id}")
    return "approved"


@activity(name="ex_cond.file_customs")
def file_customs(order_id: str) -> str:
    count_call(f"customs:{order_id}")
    return "customs filed"


@activity(name="ex_cond.reserve_inventory")
def reserve_inventory(order_id: str) -> str:
    count_call(f"inventory:{order_id}")
    return "reserved"


@workflow(name="ex_cond.prepare_order")
def prepare_order(ctx: Context, order: dict[str, Any]) -> Generator[Operation, Any, list[str]]:
    tasks = []
    if order["requires_approval"]:
        tasks.append(ctx.run(request_approval, order["id"]))
    if order["is_international"]:
        tasks.append(ctx.run(file_customs, order["id"]))
    tasks.append(ctx.run(reserve_inventory, order["id"]))
    return (yield ctx.all(tasks))


def main() -> None:
    args = parse_args(__doc__ or "")
    orders = [
        ({"id": "o-big-export", "requires_approval": True, "is_international": True}, 3),
        ({"id": "o-export", "requires_approval": False, "is_international": True}, 2),
        ({"id": "o-local", "requires_approval": False, "is_international": False}, 1),
    ]
    with store_folder(args.store, "cond") as path, Runtime(path) as rt:
        results = {}
        for order, expected_branches in orders:
            flags = ", ".join(f"{flag}={order[flag]}" for flag in ("requires_approval", "is_international"))
            handle = rt.start(prepare_order, order, run_id=f"prepare-{order['id']}")
            results[order["id"]] = done = handle.result(timeout=30)
            branches = [r.name for r in handle.history() if r.step.startswith("0.")]
            say(f"{order['id']:<13} ({flags})")
            say(f"    branches: {', '.join(str(name) for name in branches)} -> {done}")
            check(len(branches) == expected_branches, f"{order['id']} runs {expected_branches} branches")

        check(results["o-big-export"] == ["approved", "customs filed", "reserved"], f"{results}")
        check(results["o-export"] == ["customs filed", "reserved"], f"{results}")
        check(results["o-local"] == ["reserved"], f"{results}")
        check(calls["approval:o-local"] == 0 and calls["customs:o-local"] == 0, "unflagged tasks never run")
        check(all(count == 1 for count in calls.values()), f"every selected task ran once: {dict(calls)}")
        say("OK: each order ran exactly the tasks its flags asked for")


if __name__ == "__main__":
    main()
