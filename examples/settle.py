"""settle: run branches with ``ctx.all_settled`` and inspect every outcome, failures included.

The pattern::

    outcomes = yield ctx.all_settled([ctx.run(notify, channel) for channel in channels])
    for outcome in outcomes:          # Settled(ok, value, error)
        if outcome.ok: ... outcome.value
        else:          ... outcome.error.type, outcome.error.message

Semantics shown:

* ``all_settled`` never raises for a branch failure: one failing branch does
  not stop or abort its siblings, and the workflow gets a ``Settled`` per
  branch, in input order;
* a failure is data: ``outcome.error`` is an ``ActivityError`` whose ``.type``
  is the original exception's qualified class name and ``.message`` its text
  (the same error is rebuilt from the journal on replay; nothing is unpickled);
* the failed branch's step is ``failed`` in the history, the coordinator
  itself ``completed``.

(Because this file runs as a script, the exception's module is ``__main__``:
the type reads ``__main__.ProviderDown``. Define errors in an importable module
to get stable names such as ``shop.errors.ProviderDown`` in the journal.)

Run: ``.venv/bin/python examples/settle.py [--store PATH]``
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow


class ProviderDown(Exception):
    """The SMS provider is unreachable."""


@activity(name="ex_settle.notify")
def notify(channel: str, message: str) -> str:
    if channel == "sms":
        raise ProviderDown("SMS gateway returned 503")
    return f"{channel} sent: {message}"


@workflow(name="ex_settle.notify_everywhere")
def notify_everywhere(ctx: Context, message: str) -> Generator[Operation, Any, dict[str, Any]]:
    channels = ["email", "sms", "push"]
    outcomes = yield ctx.all_settled([ctx.run(notify, channel, message) for channel in channels])
    delivered, failed = [], {}
    for channel, outcome in zip(channels, outcomes, strict=True):
        if outcome.ok:
            delivered.append(channel)
        else:
            failed[channel] = f"{outcome.error.type}: {outcome.error.message}"
    return {"delivered": delivered, "failed": failed}


def main() -> None:
    args = parse_args(__doc__ or "")
    with store_folder(args.store, "settle") as path, Runtime(path) as rt:
        say("Sending one message on email, sms and push; the SMS provider is down")
        handle = rt.start(notify_everywhere, "your parcel is on its way", run_id="notify-1")
        result = handle.result(timeout=30)
        say("Outcomes:")
        for record in handle.history():
            detail = (
                repr(record.value) if record.error is None else f"{record.error.type}: {record.error.message}"
            )
            if record.kind == "all_settled":
                detail = "(never raises for branch failures)"
            say(f"  {record.step:<4} {record.kind:<12} {record.status:<10} {detail}")
        say(f"Result: {result}")

        check(result["delivered"] == ["email", "push"], f"email and push are delivered, got {result}")
        check(
            result["failed"] == {"sms": "__main__.ProviderDown: SMS gateway returned 503"},
            f"the sms failure is reported as data, got {result['failed']}",
        )
        statuses = [record.status for record in handle.history()]
        check(statuses == ["completed", "completed", "failed", "completed"], f"step statuses {statuses}")
        say("OK: one failure did not stop the others, and every outcome was inspected")


if __name__ == "__main__":
    main()
