"""enrich_order: fan out three independent lookups with ``ctx.all``, then one sequential step.

The pattern::

    inventory, shipping, tax = yield ctx.all([ctx.run(a, ...), ctx.run(b, ...), ctx.run(c, ...)])
    order = yield ctx.run(create_order, ...)

Semantics shown:

* the three activities run at the same time, each in its own branch actor
  (thread), so the fan-out takes about as long as the slowest lookup;
* ``all`` returns the results in *input order*, whatever order they finish in
  (here the lookups finish in reverse order on purpose);
* every branch is checkpointed as it settles, and ``create_order`` only
  starts once all three are durable.

Run: ``.venv/bin/python examples/enrich_order.py [--store PATH]``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

finish_order: list[str] = []
_finish_lock = threading.Lock()


def _finished(name: str) -> None:
    with _finish_lock:
        finish_order.append(name)


@activity(name="ex_enrich.check_inventory")
def check_inventory(items: list[str]) -> dict[str, Any]:
    time.sleep(0.3)  # the slowest lookup
    _finished("check_inventory")
    return {"in_stock": items}


@activity(name="ex_enrich.calculate_shipping")
def calculate_shipping(address: dict[str, str]) -> dict[str, Any]:
    time.sleep(0.2)
    _finished("calculate_shipping")
    return {"carrier": "PostNL" if address["country"] == "NL" else "DHL", "cost": 5.0}


@activity(name="ex_enrich.compute_tax")
def compute_tax(total: float) -> float:
    time.sleep(0.1)  # the fastest lookup
    _finished("compute_tax")
    return round(total * 0.21, 2)


@activity(name="ex_enrich.create_order")
def create_order(
    order: dict[str, Any], inventory: dict[str, Any], shipping: dict[str, Any], tax: float
) -> dict[str, Any]:
    _finished("create_order")
    return {
        "order_id": order["id"],
        "items": inventory["in_stock"],
        "carrier": shipping["carrier"],
        "grand_total": round(order["total"] + shipping["cost"] + tax, 2),
    }


@workflow(name="ex_enrich.enrich_order")
def enrich_order(ctx: Context, order: dict[str, Any]) -> Generator[Operation, Any, Any]:
    inventory, shipping, tax = yield ctx.all(
        [
            ctx.run(check_inventory, order["items"]),
            ctx.run(calculate_shipping, order["address"]),
            ctx.run(compute_tax, order["total"]),
        ]
    )
    return (yield ctx.run(create_order, order, inventory, shipping, tax))


def main() -> None:
    args = parse_args(__doc__ or "")
    order = {"id": "order-42", "items": ["sku-1", "sku-7"], "address": {"country": "NL"}, "total": 100.0}
    with store_folder(args.store, "enrich") as path, Runtime(path) as rt:
        say(f"Starting enrich_order for {order['id']} (store: {path})")
        started = time.monotonic()
        handle = rt.start(enrich_order, order, run_id="order-42")
        result = handle.result(timeout=30)
        elapsed = time.monotonic() - started

        say(f"Lookups finished in this order: {', '.join(finish_order[:3])}")
        say(f"...then {finish_order[3]} ran, after all three were checkpointed.")
        say(f"Total time {elapsed:.2f}s (the lookups sleep 0.3 + 0.2 + 0.1 s: they ran in parallel)")
        say("Steps in the journal:")
        for record in handle.history():
            say(f"  {record.step:<4} {record.kind:<9} {record.name or '':<30} {record.status}")
        say(f"Result: {result}")

        expected = {
            "order_id": "order-42",
            "items": ["sku-1", "sku-7"],
            "carrier": "PostNL",
            "grand_total": 126.0,
        }
        check(result == expected, f"result should be {expected}, got {result}")
        check(finish_order[-1] == "create_order", "create_order runs after the three lookups")
        check(
            sorted(finish_order[:3]) == sorted(["check_inventory", "calculate_shipping", "compute_tax"]),
            "each lookup ran exactly once",
        )
        say("OK: enrich_order combined three parallel lookups into one order")


if __name__ == "__main__":
    main()
