"""nested: coordinators as branches of other coordinators (``all`` inside ``race``, ``race`` inside ``all``).

The pattern::

    # step 0: an all inside a race -- both lookups, or give up after 30 s
    stock = yield ctx.race([ctx.all([ctx.run(stock_in, "ams"), ctx.run(stock_in, "rtm")]), ctx.sleep("30s")])

    # step 1: a race inside an all -- the cheapest-carrier race next to a two-step generator branch
    quote, insurance = yield ctx.all([
        ctx.race([ctx.run(carrier_quote, "fast-post"), ctx.run(carrier_quote, "slow-freight")]),
        insure(ctx, stock),               # a generator branch: several steps of its own
    ])

Semantics shown:

* nesting works at every level and every nested branch is checkpointed on
  its own;
* step ids are paths, which ``handle.history()`` lists in step order: branch
  ``k`` of step ``S`` is ``S.k``; a coordinator used as a branch sits at
  ``S.k`` with its branches at ``S.k.j``; a generator branch's own steps are
  ``S.k.0``, ``S.k.1``. Nested work never shifts the numbering of later
  top-level steps, which is what makes replay safe;
* a race loser (the sleep in step 0, the slow carrier in step 1) shows
  ``abandoned``. The fast carrier answers only once the slow one is in
  flight, and the slow one is held until the run has finished, so the winner
  does not depend on timing; the losing quote still runs to completion.

Run: ``.venv/bin/python examples/nested.py [--store PATH]``
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

slow_carrier_started = threading.Event()
release_slow_carrier = threading.Event()
slow_carrier_done = threading.Event()


@activity(name="ex_nested.stock_in")
def stock_in(warehouse: str) -> int:
    return {"ams": 4, "rtm": 6}[warehouse]


@activity(name="ex_nested.carrier_quote")
def carrier_quote(carrier: str) -> dict[str, Any]:
    if carrier == "slow-freight":
        slow_carrier_started.set()
        release_slow_carrier.wait(timeout=10)  # held until the run has finished
        slow_carrier_done.set()
        return {"carrier": carrier, "price": 3.0}
    slow_carrier_started.wait(timeout=10)  # both quotes are in flight before the fast one answers
    return {"carrier": carrier, "price": 7.5}


@activity(name="ex_nested.insurance_rate")
def insurance_rate(units: int) -> float:
    return 0.5 * units


@activity(name="ex_nested.issue_policy")
def issue_policy(premium: float) -> str:
    return f"policy for {premium:.2f} EUR"


def insure(ctx: Context, units: int) -> Generator[Operation, Any, str]:
    """A generator branch: two sequential steps inside one branch of the ``all``."""
    premium = yield ctx.run(insurance_rate, units)
    return (yield ctx.run(issue_policy, premium))


@workflow(name="ex_nested.ship")
def ship(ctx: Context) -> Generator[Operation, Any, dict[str, Any]]:
    stock = yield ctx.race(
        [
            ctx.all([ctx.run(stock_in, "ams"), ctx.run(stock_in, "rtm")]),
            ctx.sleep("30s"),
        ]
    )
    if stock is None:
        return {"error": "stock lookup timed out"}
    units = sum(stock)
    quote, policy = yield ctx.all(
        [
            ctx.race([ctx.run(carrier_quote, "fast-post"), ctx.run(carrier_quote, "slow-freight")]),
            insure(ctx, units),
        ]
    )
    return {"units": units, "carrier": quote["carrier"], "policy": policy}


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "nested") as path, Runtime(path) as rt:
        say("Running a workflow with an all inside a race, then a race inside an all")
        handle = rt.start(ship, run_id="ship-1")
        result = handle.result(timeout=30)
        release_slow_carrier.set()
        check(slow_carrier_done.wait(timeout=10), "the losing carrier quote runs to completion")

        history = handle.history()
        say("handle.history(), in step order:")
        say(f"  {'step':<10} {'kind':<9} {'name':<25} status")
        for record in history:
            indent = "  " * record.step.count(".")
            say(f"  {indent + record.step:<10} {record.kind:<9} {record.name or '':<25} {record.status}")
        say(f"Result: {result}")

        expected = {"units": 10, "carrier": "fast-post", "policy": "policy for 5.00 EUR"}
        check(result == expected, f"result should be {expected}, got {result}")
        statuses = {record.step: record.status for record in history}
        expected_steps = {
            "0": "completed",  # race
            "0.0": "completed",  # all inside the race (the winner)
            "0.0.0": "completed",
            "0.0.1": "completed",
            "0.1": "abandoned",  # the losing sleep
            "1": "completed",  # all
            "1.0": "completed",  # race inside the all
            "1.0.0": "completed",
            "1.0.1": "abandoned",  # the losing carrier
            "1.1": "completed",  # generator branch
            "1.1.0": "completed",
            "1.1.1": "completed",
        }
        check(statuses == expected_steps, f"step ids and statuses: {statuses}")
        check([r.step for r in history] == list(expected_steps), "history lists the steps in step order")
        say("OK: nested coordinators ran, and every branch has its own path-shaped step id")


if __name__ == "__main__":
    main()
