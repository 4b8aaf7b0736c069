"""Minimal trees that the crash property test (``test_crash_property``) found to break treadle.

Each is pinned here in-process, so that it runs fast and deterministically.
Found: a coordinator used as a branch of another handed its parent the value
shaped for workflow code (``Settled`` rows, ``PENDING``), which the parent
could not store: ``TypeError`` in the run actor, restarted for ever, so
``result()`` never returned. And ``journal_snapshot`` raised ``lmdb.Error`` on
a store killed while LMDB was creating it. Fixed in ca8ecda and 91bd0b5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from treadle.runtime import PENDING, Settled, activity, workflow
from treadle.runtime.testing import journal_snapshot

# A one-activity workflow finishes in milliseconds; the buggy ones never did.
QUICK = 5.0


@activity(name="prop.reg.one")
def one() -> int:
    return 1


@workflow(name="prop.reg.settled_in_all")
def settled_in_all(ctx: Any) -> Any:
    return (yield ctx.all([ctx.all_settled([ctx.run(one)])]))


@workflow(name="prop.reg.settled_in_race")
def settled_in_race(ctx: Any) -> Any:
    return (yield ctx.race([ctx.all_settled([ctx.run(one)])]))


@workflow(name="prop.reg.settled_in_map")
def settled_in_map(ctx: Any) -> Any:
    return (yield ctx.map([0], lambda _: ctx.all_settled([ctx.run(one)])))


@workflow(name="prop.reg.partial_in_all")
def partial_in_all(ctx: Any) -> Any:
    inner = ctx.all([ctx.run(one), ctx.sleep(30)], timeout=0.05, partial=True)
    return (yield ctx.all([inner]))


def _rows(value: Any) -> Any:
    if isinstance(value, Settled):
        return ["settled", value.ok, value.value, value.error]
    if isinstance(value, (list, tuple)):
        return [_rows(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        pytest.param(settled_in_all, [[["settled", True, 1, None]]], id="all_settled-in-all"),
        pytest.param(settled_in_race, [["settled", True, 1, None]], id="all_settled-in-race"),
        pytest.param(settled_in_map, [[["settled", True, 1, None]]], id="all_settled-in-map"),
    ],
)
def test_all_settled_as_a_branch_of_a_coordinator(rt: Any, flow: Any, expected: Any) -> None:
    """DESIGN "Nesting works at every level": an ``all_settled`` branch gives its Settled list."""
    assert _rows(rt.start(flow).result(timeout=QUICK)) == expected


def test_partial_all_as_a_branch_of_a_coordinator(rt: Any) -> None:
    """DESIGN "all with timeout ... partial=True returns the list with unsettled slots PENDING"."""
    [inner] = rt.start(partial_in_all).result(timeout=QUICK)
    assert inner[0] == 1 and inner[1] is PENDING


def test_journal_snapshot_of_a_store_killed_while_being_created(tmp_path: Path) -> None:
    """``journal_snapshot``: "``[]`` if the store has no journal yet", even an empty ``data.mdb``."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "data.mdb").touch()  # what a SIGKILL right after lmdb.open created the file leaves
    assert journal_snapshot(store, "prop") == []
