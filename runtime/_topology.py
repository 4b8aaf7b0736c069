"""Does the journal still match the code? The checks replay makes at every step.

A recorded step whose kind or name differs, or a coordinator whose branches
differ from the recorded layout, is a ``NonDeterminismError`` (a
``BranchTopologyChangedError`` where a coordinator or branch is involved):
a wrong value is never returned.
"""

from __future__ import annotations

from typing import Any

from ._errors import BranchTopologyChangedError, NonDeterminismError
from ._ops import Branch, CoordOp, branch_kind, branch_name
from ._records import COORDINATOR_KINDS

__all__ = ["replay_mismatch"]

_TOPOLOGY_KINDS = COORDINATOR_KINDS | {"branch"}


def replay_mismatch(
    run_id: str, step: str, rec: dict[str, Any], branch: Branch
) -> NonDeterminismError | None:
    """The error to raise because ``rec`` (the journal at ``step``) disagrees with ``branch``, else None."""
    kind, name = branch_kind(branch), branch_name(branch)
    rkind, rname = rec.get("k"), rec.get("n")
    if rkind != kind or rname != name:
        cls = BranchTopologyChangedError if {kind, rkind} & _TOPOLOGY_KINDS else NonDeterminismError
        return cls(run_id, step, _describe(rkind, rname), _describe(kind, name))
    if isinstance(branch, CoordOp) and "lay" in rec:
        problem = _layout_problem(rec["lay"], branch)
        if problem is not None:
            return BranchTopologyChangedError(
                run_id,
                step,
                f"{kind} with branches {_keys(rec['lay'])}",
                f"{kind} with {_keys(branch.layout())}",
                problem,
            )
    return None


def _describe(kind: Any, name: Any) -> str:
    return f"{kind} {name!r}" if name is not None else str(kind)


def _keys(layout: list[list[Any]]) -> list[Any]:
    return [row[0] for row in layout]


def _layout_problem(recorded: list[list[Any]], op: CoordOp) -> str | None:
    new = op.layout()
    if op.named:
        old_map = {row[0]: (row[1], row[2]) for row in recorded}
        new_map = {row[0]: (row[1], row[2]) for row in new}
        if set(old_map) != set(new_map):
            return f"branch names differ: recorded {sorted(old_map)}, got {sorted(new_map)}"
        for key, shape in new_map.items():
            if old_map[key] != shape:
                return f"branch {key!r} was {_describe(*old_map[key])}, now {_describe(*shape)}"
        return None
    if len(recorded) != len(new):
        return f"recorded {len(recorded)} branches, got {len(new)}"
    for old_row, new_row in zip(recorded, new, strict=True):
        if (old_row[1], old_row[2]) != (new_row[1], new_row[2]):
            was, now = _describe(old_row[1], old_row[2]), _describe(new_row[1], new_row[2])
            return f"branch {new_row[0]} was {was}, now {now}"
    return None
