"""named_parallel: run branches in parallel by name with ``ctx.run_all``; the result is a dict.

The pattern::

    parts = yield ctx.run_all({"profile": ctx.run(...), "orders": ctx.run(...), "preferences": ctx.run(...)})
    parts["orders"]

Semantics shown:

* results are keyed by name, so there is no positional unpacking to get wrong;
* the branch step ids use the names (``0.profile``, ``0.orders``, ...), and
  replay matches branches by name, so reordering the dict in a later version
  of the code is safe;
* a *different set of names* than the one recorded for an unfinished run
  raises ``BranchTopologyChangedError`` before anything is dispatched (not
  demonstrated here; see DESIGN.md "Parallel semantics").

Run: ``.venv/bin/python examples/named_parallel.py [--store PATH]``
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow


@activity(name="ex_named.get_profile")
def get_profile(user_id: str) -> dict[str, str]:
    time.sleep(0.05)
    return {"id": user_id, "name": "Ada Lovelace"}


@activity(name="ex_named.get_orders")
def get_orders(user_id: str) -> list[str]:
    time.sleep(0.1)
    return [f"{user_id}-order-1", f"{user_id}-order-2"]


@activity(name="ex_named.get_preferences")
def get_preferences(user_id: str) -> dict[str, Any]:
    return {"newsletter": True, "theme": "dark"}


@workflow(name="ex_named.user_dashboard")
def user_dashboard(ctx: Context, user_id: str) -> Generator[Operation, Any, dict[str, Any]]:
    parts = yield ctx.run_all(
        {
            "profile": ctx.run(get_profile, user_id),
            "orders": ctx.run(get_orders, user_id),
            "preferences": ctx.run(get_preferences, user_id),
        }
    )
    return {
        "greeting": f"Hello, {parts['profile']['name']}",
        "order_count": len(parts["orders"]),
        "theme": parts["preferences"]["theme"],
    }


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "named") as path, Runtime(path) as rt:
        say("Loading a dashboard: profile, orders and preferences in parallel, by name")
        handle = rt.start(user_dashboard, "u-7", run_id="dashboard-u-7")
        result = handle.result(timeout=30)
        say("Steps (branch ids carry the names):")
        for record in handle.history():
            value = "(the whole dict)" if record.kind == "run_all" else repr(record.value)
            say(f"  {record.step:<14} {record.kind:<9} {record.name or '':<26} {value}")
        say(f"Result: {result}")

        check(result == {"greeting": "Hello, Ada Lovelace", "order_count": 2, "theme": "dark"}, f"{result}")
        steps = {record.step for record in handle.history()}
        check(
            {"0.profile", "0.orders", "0.preferences"} <= steps, f"named branch step ids, got {sorted(steps)}"
        )
        say("OK: the dashboard was assembled from named parallel results")


if __name__ == "__main__":
    main()
