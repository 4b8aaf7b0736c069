"""A run laid out on tracks: Chrome trace-event JSON (``treadle trace``) and its model.

One track per branch: the workflow's own steps sit on track 1; every branch
of a coordinator gets a track of its own, on which its own steps (a
generator branch's ``S.k.0``, ``S.k.1``, ...) nest inside the branch's slice.
A coordinator is a slice on the track of whoever yielded it, spanning its
branches. Times are microseconds from the run's start, as the format wants.

The format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
(``"ph": "X"`` complete events with ``ts``/``dur``, ``"M"`` metadata naming
the tracks, ``"i"`` instant events); Perfetto and ``chrome://tracing`` open it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._cli_render import step_summary, summarize
from ._cli_store import RunView, StepView
from ._records import COORDINATOR_KINDS

__all__ = ["Slice", "Timeline", "Track", "build_timeline", "dump_trace", "slice_name", "trace_json"]

_LOSING_PARENTS = frozenset({"race", "any", "quorum"})
PID = 1
ROOT_TID = 1
# Reserved colour names of the trace viewer (chrome://tracing honours them; Perfetto picks its own).
_CNAME = {"completed": "good", "failed": "terrible", "abandoned": "grey", "running": "yellow"}


@dataclass
class Slice:
    """One bar: a step (or the run itself) from ``start`` to ``end`` (seconds since the run began)."""

    label: str
    start: float
    end: float
    status: str
    depth: int
    step: StepView | None = None
    marks: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Track:
    tid: int
    name: str
    slices: list[Slice] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return max((s.depth for s in self.slices), default=0) + 1


@dataclass
class Timeline:
    run: RunView
    origin: float
    span: float
    tracks: list[Track]
    instants: list[tuple[float, int, str, dict[str, Any]]]


def _kind_label(step: StepView) -> str:
    return f"{step.kind} {step.name}" if step.name else step.kind


def build_timeline(run: RunView, now: float) -> Timeline:
    """Lay ``run`` out on tracks (``now`` ends the bars of steps still running)."""
    origin = run.created
    if origin is None:
        origin = min((s.started for s in run.steps if s.started is not None), default=now)
    end = run.end(now)
    by_id = {s.step: s for s in run.steps}
    root = Track(ROOT_TID, f"workflow {run.workflow}")
    root.slices.append(
        Slice(
            label=f"run {run.run_id} ({run.workflow})",
            start=0.0,
            end=max(0.0, end - origin),
            status=run.status,
            depth=0,
            args={"run_id": run.run_id, "status": run.status},
        )
    )
    tracks = [root]
    track_of: dict[str, Track] = {"": root}
    depth_of: dict[str, int] = {"": 0}
    for step in run.steps:
        parent = by_id.get(step.parent)
        if step.parent and (parent is None or parent.kind in COORDINATOR_KINDS):
            # A branch: a track of its own, named after its coordinator.
            track = Track(len(tracks) + 1, _track_name(step, parent))
            tracks.append(track)
            depth = 0
        else:
            track = track_of.get(step.parent, root)
            depth = depth_of.get(step.parent, 0) + 1
        track_of[step.step] = track
        depth_of[step.step] = depth
        track.slices.append(_slice(step, by_id, origin, end, depth, run.done))
    instants: list[tuple[float, int, str, dict[str, Any]]] = []
    for signal in run.signals:
        if signal.sent is not None:
            args = {"seq": signal.seq, "consumed": signal.consumed, "by": signal.by}
            instants.append((signal.sent - origin, ROOT_TID, f"signal {signal.name!r} sent", args))
    if run.cancel_requested is not None:
        instants.append((run.cancel_requested - origin, ROOT_TID, "cancel requested", {}))
    latest = max([s.end for t in tracks for s in t.slices] + [i[0] for i in instants] + [0.0])
    return Timeline(run, origin, latest, tracks, instants)


def _track_name(step: StepView, parent: StepView | None) -> str:
    if parent is None:
        return f"branch {step.step}"
    key = step.step.rpartition(".")[2]
    return f"branch {step.step} ({parent.kind} {parent.step}, #{key})"


def _slice(
    step: StepView, by_id: dict[str, StepView], origin: float, end: float, depth: int, ended: bool
) -> Slice:
    start = (step.started if step.started is not None else origin) - origin
    finish = (step.finished if step.finished is not None else end) - origin
    marks = []
    args: dict[str, Any] = {
        "step": step.step,
        "kind": step.kind,
        "name": step.name,
        "status": step.status,
        "attempt": step.attempt,
    }
    parent = by_id.get(step.parent)
    if step.status == "abandoned":
        if parent is not None and parent.kind in _LOSING_PARENTS:
            marks.append("lost")
            args["race_loser"] = True
        else:
            marks.append("abandoned")
            args["abandoned"] = True
    if step.attempt > 1:
        marks.append(f"attempt {step.attempt}")
        args["retried"] = True
    if step.status in ("failed", "running"):
        marks.append(step.status)
    summary = step_summary(step, by_id, 120, ended=ended)
    if summary:
        args["error" if step.status == "failed" else "summary"] = summary
    if step.child:
        args["child_run"] = step.child
    label = f"{step.step} {_kind_label(step)}"
    return Slice(label, start, max(start, finish), step.status, depth, step, marks, args)


def slice_name(item: Slice) -> str:
    """The slice's label with its marks: ``1.1 activity slow [lost]``, ``0 activity charge (attempt 3)``."""
    name = item.label
    for mark in item.marks:
        name += f" (attempt {mark.split()[1]})" if mark.startswith("attempt") else f" [{mark}]"
    return name


def _us(seconds: float) -> float:
    return round(seconds * 1_000_000, 3)


def trace_json(timeline: Timeline) -> dict[str, Any]:
    """The timeline as a Chrome trace-event document (JSON object format)."""
    run = timeline.run
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "ts": 0,
            "pid": PID,
            "tid": ROOT_TID,
            "args": {"name": f"treadle run {run.run_id}"},
        }
    ]
    for track in timeline.tracks:
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "ts": 0,
                "pid": PID,
                "tid": track.tid,
                "args": {"name": track.name},
            }
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "ts": 0,
                "pid": PID,
                "tid": track.tid,
                "args": {"sort_index": track.tid},
            }
        )
    for track in timeline.tracks:
        # Parents before children at equal start times, so viewers nest them.
        for item in sorted(track.slices, key=lambda s: (s.start, s.depth)):
            event: dict[str, Any] = {
                "name": slice_name(item),
                "cat": item.step.kind if item.step is not None else "run",
                "ph": "X",
                "ts": _us(item.start),
                "dur": _us(item.end - item.start),
                "pid": PID,
                "tid": track.tid,
                "args": item.args,
            }
            cname = _CNAME.get(item.status)
            if cname is not None:
                event["cname"] = cname
            events.append(event)
    for at, tid, name, args in timeline.instants:
        events.append(
            {
                "name": name,
                "cat": "event",
                "ph": "i",
                "s": "t",
                "ts": _us(at),
                "pid": PID,
                "tid": tid,
                "args": args,
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "status": run.status,
            "origin_unix_seconds": timeline.origin,
            "result": summarize(run.result, 200) if run.status == "completed" else None,
            "error": run.error,
        },
    }


def dump_trace(timeline: Timeline) -> str:
    return json.dumps(trace_json(timeline), default=repr, indent=1)
