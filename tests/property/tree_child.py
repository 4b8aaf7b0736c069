"""Child script of the crash property test: one interpreter workflow that walks a JSON tree.

Run as ``python tree_child.py MODE STORE REPORT`` with ``PROP_TREE`` naming a
JSON file ``{"tree": ..., "signals": [...]}`` (see ``test_crash_property``) and
``TREADLE_COUNTERS`` a FileCounter folder. Every activity counts itself by step
id; every signal the tree expects is sent (with ``key=`` its name, so a second
process re-sending it is a no-op) right after the run is started.

Node kinds (``t``): ``act`` (``mode`` ok / fail / slow / loser), ``sleep``
(``s`` seconds), ``signal`` (``name``), ``seq`` (a generator branch: ``steps``,
``catch``: turn an ``ActivityError`` of a step into data instead of raising it),
and the coordinators ``all`` / ``all_settled`` / ``map`` (``b`` branches,
``c`` concurrency or null) and ``race`` (``b``, ``cl`` cancel_losers).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from treadle.runtime import (
    ActivityContext,
    ActivityError,
    RunFinishedError,
    Settled,
    activity,
    workflow,
)
from treadle.runtime.testing import FileCounter, child_main

SLOW = 0.1  # a "slow" activity: slower than a sleep, far faster than a race loser
LOSER = 5.0  # a race loser: far slower than any winner (which only takes short steps)

counters = FileCounter.from_env()


@activity(name="prop.act")
def act(node_id: str, mode: str, actx: ActivityContext) -> str:
    counters.hit(f"act.{actx.step}")
    if mode == "fail":
        raise ValueError(f"node {node_id} fails")
    if mode == "slow":
        time.sleep(SLOW)
    elif mode == "loser":
        actx.cancelled.wait(LOSER)
    return f"v-{node_id}"


def norm(value: Any) -> Any:
    """A JSON-able view of a result: ``Settled`` as ``[ok, value, error type]``."""
    if isinstance(value, Settled):
        return [value.ok, norm(value.value), None if value.error is None else value.error.type]
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    return value


def branch(ctx: Any, node: dict[str, Any]) -> Any:
    """The operation (or generator) for ``node``."""
    kind = node["t"]
    if kind == "act":
        return ctx.run(act, node["id"], node["mode"])
    if kind == "sleep":
        return ctx.sleep(node["s"])
    if kind == "signal":
        return ctx.wait_for_signal(node["name"])
    if kind == "seq":
        return seq(ctx, node)
    children = node["b"]
    if kind == "all":
        return ctx.all([branch(ctx, b) for b in children], concurrency=node["c"])
    if kind == "all_settled":
        return ctx.all_settled([branch(ctx, b) for b in children], concurrency=node["c"])
    if kind == "map":
        return ctx.map(list(range(len(children))), lambda i: branch(ctx, children[i]), concurrency=node["c"])
    if kind == "race":
        return ctx.race([branch(ctx, b) for b in children], cancel_losers=node["cl"])
    raise AssertionError(f"unknown node kind {kind!r}")


def seq(ctx: Any, node: dict[str, Any]) -> Any:
    out = []
    for step in node["steps"]:
        try:
            out.append(norm((yield branch(ctx, step))))
        except ActivityError as exc:
            if not node["catch"]:
                raise
            out.append(["error", exc.type, norm(exc.branch)])
    return out


@workflow(name="prop.tree")
def tree_workflow(ctx: Any, tree: dict[str, Any]) -> Any:
    return (yield from seq(ctx, tree))


def send_signals(signals: list[str]) -> Any:
    def on_start(handle: Any, mode: str) -> None:
        for name in signals:
            try:
                handle.signal(name, f"p-{name}", key=name)
            except RunFinishedError:
                return  # a recovering process found the run already finished

    return on_start


if __name__ == "__main__":
    with open(os.environ["PROP_TREE"]) as fh:
        spec = json.load(fh)
    child_main(tree_workflow, spec["tree"], run_id="prop", on_start=send_signals(spec["signals"]))
