"""deadline: race an activity against a durable timer (``ctx.race`` with ``ctx.sleep``).

The pattern::

    result = yield ctx.race([ctx.run(call_external_api, payload), ctx.sleep(deadline)])
    if result is None:            # the sleep won: its result is None
        yield ctx.run(notify_timeout, payload)

Semantics shown, with both outcomes:

* **fast API**: the activity settles first and its value is the race's
  result; the losing sleep clears its timer (nothing fires later);
* **slow API**: the timer fires first, the race returns ``None`` and the
  workflow runs its timeout path. The losing activity is *not* killed: it
  finishes in its own thread and its result is discarded. Its step shows
  ``abandoned``.

The sleep is a durable timer: had the process died while waiting, the
deadline would still fire after a restart, at the original time.
The slow call is held until the deadline has passed (an event, not a guess
about timing), so the outcome of each run is deterministic.

Run: ``.venv/bin/python examples/deadline.py [--store PATH]``
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

release_slow_api = threading.Event()
slow_api_finished = threading.Event()
notified: list[str] = []


@activity(name="ex_deadline.call_external_api")
def call_external_api(payload: str, slow: bool) -> dict[str, str]:
    if slow:
        release_slow_api.wait(timeout=10)  # an API that hangs well past the deadline
        say(f"    (the slow API call for {payload!r} finished in the background; its result is discarded)")
        slow_api_finished.set()
    return {"answer": f"processed {payload}"}


@activity(name="ex_deadline.notify_timeout")
def notify_timeout(payload: str) -> str:
    notified.append(payload)
    return f"ops notified about {payload}"


@workflow(name="ex_deadline.with_deadline")
def with_deadline(ctx: Context, payload: str, slow: bool, deadline: str) -> Generator[Operation, Any, Any]:
    result = yield ctx.race([ctx.run(call_external_api, payload, slow), ctx.sleep(deadline)])
    if result is None:
        note = yield ctx.run(notify_timeout, payload)
        return {"timed_out": True, "note": note}
    return {"timed_out": False, "answer": result["answer"]}


def show_history(title: str, history: list[Any]) -> None:
    say(f"  history of {title}:")
    for record in history:
        say(f"    {record.step:<4} {record.kind:<9} {record.name or '':<31} {record.status}")


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "deadline") as path, Runtime(path) as rt:
        say("1) A fast API call against a 30 s deadline")
        fast = rt.start(with_deadline, "fast-job", False, "30s", run_id="deadline-fast")
        fast_result = fast.result(timeout=10)
        say(f"  result: {fast_result}")
        show_history("deadline-fast", fast.history())
        check(fast_result == {"timed_out": False, "answer": "processed fast-job"}, "the fast call wins")
        check(
            {r.step: r.status for r in fast.history()}.get("0.1") == "abandoned",
            "the losing sleep is abandoned (its timer is cleared)",
        )

        say("2) A hanging API call against a 500 ms deadline")
        slow = rt.start(with_deadline, "slow-job", True, "500ms", run_id="deadline-slow")
        slow_result = slow.result(timeout=10)
        say(f"  result: {slow_result}")
        release_slow_api.set()
        check(slow_api_finished.wait(timeout=10), "the losing API call runs to completion")
        show_history("deadline-slow", slow.history())
        check(
            slow_result == {"timed_out": True, "note": "ops notified about slow-job"},
            f"the deadline wins, got {slow_result}",
        )
        statuses = {r.step: r.status for r in slow.history()}
        check(statuses.get("0.0") == "abandoned" and statuses.get("0.1") == "completed", f"{statuses}")
        check(notified == ["slow-job"], f"notify_timeout runs only for the timed-out job, got {notified}")
        say("OK: the fast call beat its deadline; the slow one timed out and took the timeout path")


if __name__ == "__main__":
    main()
