"""approval: wait for a human's signal, with a deadline (``ctx.race`` of ``wait_for_signal`` and ``sleep``).

The pattern::

    winner, value = yield ctx.race({"decision": ctx.wait_for_signal("approval"), "deadline": ctx.sleep("1s")})
    if winner == "deadline": ...escalate...

and from outside the workflow (another thread, a web handler, another process)::

    rt.get(run_id).signal("approval", {"approved": True, "by": "dana"})

Semantics shown, with both outcomes:

* **approved**: an approver thread waits until the run publishes (via
  ``ctx.set_state``) that it is awaiting approval, then sends the signal.
  The signal wins the race; the losing timer is cleared;
* **timed out**: nobody answers; the durable timer wins after 1 s and the
  workflow escalates. A losing signal wait does *not* consume a signal: one
  arriving later would stay buffered for a later wait. Once the run has
  finished, ``signal()`` raises ``RunFinishedError``;
* while it waits, the run is ``SUSPENDED``: it holds no thread, and it would
  survive a restart of the process (the timer and any signal are durable).
  Signals are durable before ``signal()`` returns, and one sent *before* the
  workflow reaches its wait is buffered, not lost.

Each run gets its deadline as an argument, so the approved run can have a
generous one and the outcome never depends on how fast the approver thread
happens to be.

Run: ``.venv/bin/python examples/approval.py [--store PATH]``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import (
    Context,
    Operation,
    RunFinishedError,
    RunHandle,
    RunStatus,
    Runtime,
    activity,
    workflow,
)

T0 = time.monotonic()


def stamp() -> str:
    return f"[{time.monotonic() - T0:4.1f}s]"


@activity(name="ex_approval.notify_approver")
def notify_approver(expense: dict[str, Any]) -> str:
    return f"asked {expense['approver']} to approve {expense['amount']} EUR"


@activity(name="ex_approval.pay")
def pay(expense: dict[str, Any]) -> str:
    return f"paid {expense['amount']} EUR to {expense['employee']}"


@activity(name="ex_approval.escalate")
def escalate(expense: dict[str, Any]) -> str:
    return f"escalated {expense['id']} to finance"


@workflow(name="ex_approval.expense_approval")
def expense_approval(
    ctx: Context, expense: dict[str, Any], deadline: str
) -> Generator[Operation, Any, dict[str, Any]]:
    yield ctx.run(notify_approver, expense)
    yield ctx.set_state({"phase": "awaiting approval"})
    winner, value = yield ctx.race(
        {"decision": ctx.wait_for_signal("approval"), "deadline": ctx.sleep(deadline)}
    )
    if winner == "deadline":
        yield ctx.set_state({"phase": "escalated"})
        return {"outcome": "timed out", "action": (yield ctx.run(escalate, expense))}
    yield ctx.set_state({"phase": "decided"})
    if not value["approved"]:
        return {"outcome": "rejected", "by": value["by"]}
    return {"outcome": "approved", "by": value["by"], "action": (yield ctx.run(pay, expense))}


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.01)


def approver(handle: RunHandle, seen_status: list[RunStatus]) -> None:
    """Another thread: a person who opens the request and approves it."""
    wait_for(lambda: (handle.state() or {}).get("phase") == "awaiting approval", "the approval request")
    wait_for(lambda: handle.status() is RunStatus.SUSPENDED, "the run to suspend")
    seen_status.append(handle.status())
    time.sleep(0.2)  # reading the request
    say(f"{stamp()}   approver thread: run is {handle.status().value}; sending the approval signal")
    handle.signal("approval", {"approved": True, "by": "dana"})


def main() -> None:
    args = parse_args(__doc__ or "")
    expense = {"id": "exp-7", "employee": "sam", "amount": 420, "approver": "dana"}
    with store_folder(args.store, "approval") as path, Runtime(path) as rt:
        say(f"{stamp()} 1) Expense exp-7, deadline 1 minute; an approver thread will answer")
        approved = rt.start(expense_approval, expense, "1m", run_id="approval-exp-7")
        seen_status: list[RunStatus] = []
        thread = threading.Thread(target=approver, args=(approved, seen_status), daemon=True)
        thread.start()
        approved_result = approved.result(timeout=30)
        thread.join(timeout=10)
        say(f"{stamp()}   result: {approved_result}")
        check(
            approved_result == {"outcome": "approved", "by": "dana", "action": "paid 420 EUR to sam"},
            f"the approval wins the race, got {approved_result}",
        )
        check(seen_status == [RunStatus.SUSPENDED], "the waiting run held no thread (SUSPENDED)")

        expense_8 = {**expense, "id": "exp-8"}
        say(f"{stamp()} 2) Expense exp-8, deadline 1 second; nobody answers")
        timed_out = rt.start(expense_approval, expense_8, "1s", run_id="approval-exp-8")
        timed_out_result = timed_out.result(timeout=30)
        say(f"{stamp()}   result: {timed_out_result}")
        check(
            timed_out_result == {"outcome": "timed out", "action": "escalated exp-8 to finance"},
            f"the deadline wins the race, got {timed_out_result}",
        )
        try:
            timed_out.signal("approval", {"approved": True, "by": "dana"})
            late = "accepted"
        except RunFinishedError:
            late = "refused with RunFinishedError"
        say(f"{stamp()}   a late approval for exp-8 is {late}")
        check(late == "refused with RunFinishedError", "a signal to a finished run is refused")

        for handle in (approved, timed_out):
            race = {r.step: r.status for r in handle.history() if r.step.startswith("2.")}
            say(f"  {handle.run_id}: race branches {race}, final state {handle.state()}")
        check(
            {r.step: r.status for r in approved.history()}.get("2.deadline") == "abandoned",
            "the approved run's timer lost the race",
        )
        say("OK: one expense approved in time, the other escalated at its deadline")


if __name__ == "__main__":
    main()
