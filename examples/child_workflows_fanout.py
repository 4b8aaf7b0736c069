"""child_workflows_fanout: fan out child workflows with ``ctx.child`` inside ``ctx.all``.

The pattern::

    reports = yield ctx.all(
        [ctx.child(region_report, region, run_id=f"{report_id}-{region}") for region in regions]
    )

Semantics shown:

* each ``ctx.child`` starts a *child run*: its own actor and its own journal,
  with its own steps, retries and timers. The parent's journal only records
  the child's outcome at the branch's step;
* the child's ``run_id`` must be deterministic (here derived from the
  parent's arguments), so that a parent replaying after a crash finds the
  same child instead of starting a second one; ``rt.get(child_id)`` opens it
  like any other run. Without ``run_id=`` treadle derives one from the
  parent's run id and the step;
* ``all`` over children returns their results in input order; a failed child
  would reach the parent as an ``ActivityError`` carrying the child's
  ``run_id``.

Use children when one branch is itself a long, multi-step process that you
want to inspect, signal or cancel on its own.

Run: ``.venv/bin/python examples/child_workflows_fanout.py [--store PATH]``
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, RunStatus, Runtime, activity, workflow

SALES = {"emea": [120, 80, 40], "americas": [200, 150], "apac": [90, 60, 30, 20]}


@activity(name="ex_children.fetch_sales")
def fetch_sales(region: str) -> list[int]:
    time.sleep(0.05)
    return SALES[region]


@activity(name="ex_children.summarize")
def summarize(region: str, sales: list[int]) -> dict[str, Any]:
    return {"region": region, "orders": len(sales), "revenue": sum(sales)}


@workflow(name="ex_children.region_report")
def region_report(ctx: Context, region: str) -> Generator[Operation, Any, dict[str, Any]]:
    """The child: two sequential steps in its own journal."""
    sales = yield ctx.run(fetch_sales, region)
    return (yield ctx.run(summarize, region, sales))


@workflow(name="ex_children.sales_report")
def sales_report(
    ctx: Context, report_id: str, regions: list[str]
) -> Generator[Operation, Any, dict[str, Any]]:
    """The parent: one child run per region, in parallel."""
    reports = yield ctx.all(
        [ctx.child(region_report, region, run_id=f"{report_id}-{region}") for region in regions]
    )
    return {"regions": reports, "total_revenue": sum(r["revenue"] for r in reports)}


def main() -> None:
    args = parse_args(__doc__ or "")
    regions = list(SALES)
    with store_folder(args.store, "children") as path, Runtime(path) as rt:
        say(f"Starting sales_report with one child workflow per region: {', '.join(regions)}")
        handle = rt.start(sales_report, "sales-2024", regions, run_id="sales-2024")
        result = handle.result(timeout=30)

        say("Parent history (each child is one step of the parent):")
        for record in handle.history():
            say(f"  {record.step:<4} {record.kind:<6} {record.name or '':<28} {record.status}")
        child_ids = [f"sales-2024-{region}" for region in regions]
        say("Each child has its own run and journal:")
        for child_id in child_ids:
            child = rt.get(child_id)
            steps = ", ".join(f"{r.step}:{r.name}" for r in child.history())
            say(f"  {child_id:<20} {child.status().value:<10} {steps}")
        say("All runs in the store:")
        for summary in sorted(rt.runs(), key=lambda summary: summary.run_id):
            say(f"  {summary.run_id:<20} {summary.workflow:<28} {summary.status.value}")
        say(f"Result: {result}")

        expected = [{"region": r, "orders": len(s), "revenue": sum(s)} for r, s in SALES.items()]
        check(result["regions"] == expected, f"child results in input order, got {result['regions']}")
        check(result["total_revenue"] == sum(sum(s) for s in SALES.values()), "the total adds up")
        check(all(rt.get(c).status() is RunStatus.COMPLETED for c in child_ids), "every child completed")
        check(
            all([r.step for r in rt.get(c).history()] == ["0", "1"] for c in child_ids),
            "each child journal holds its own two steps",
        )
        check(len(rt.runs()) == 1 + len(regions), "one parent run plus one run per child")
        say("OK: three child workflows ran in parallel and the parent combined their reports")


if __name__ == "__main__":
    main()
