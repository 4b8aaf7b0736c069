"""Text the CLI prints: the runs table, the step tree and the fan-out progress line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ._cli_store import RunView, StepView
from ._records import COORDINATOR_KINDS

__all__ = [
    "clip",
    "fanouts",
    "format_duration",
    "format_time",
    "progress_line",
    "render_run",
    "render_runs",
    "run_to_json",
    "step_summary",
    "summarize",
]

_LOSING_PARENTS = frozenset({"race", "any", "quorum"})


def format_time(stamp: float | None) -> str:
    """``2026-01-31 12:00:05Z`` (UTC), or ``-``."""
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def clip(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def summarize(value: Any, width: int = 60) -> str:
    """A one-line, bounded ``repr`` of ``value``."""
    return clip(repr(value), width)


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    kind, message = error.get("t", "?"), " ".join(str(error.get("m", "")).split())
    return f"{kind}: {message}" if message else str(kind)


def _losing_parent(step: StepView, by_id: dict[str, StepView]) -> str | None:
    parent = by_id.get(step.parent)
    return parent.kind if parent is not None else None


def step_summary(step: StepView, by_id: dict[str, StepView], width: int = 60, ended: bool = False) -> str:
    """What a step produced, in a few words: its value, its error, or why it has none.

    ``ended``: the run is over, so a step still marked running will never settle.
    """
    if step.status == "running" and ended:
        return "never settled: the run ended first"
    if step.status == "failed":
        return clip(_error_text(step.error), width)
    if step.status == "abandoned":
        return "race loser" if _losing_parent(step, by_id) in _LOSING_PARENTS else "abandoned"
    if step.status == "running":
        parts = []
        if step.kind == "signal":
            parts.append(f"waiting for signal {step.name!r}")
        elif step.kind == "sleep" and step.deadline is not None:
            parts.append(f"sleeping until {format_time(step.deadline)}")
        elif step.kind == "child" and step.child:
            parts.append(f"child run {step.child}")
        return "; ".join(parts)
    value = step.value
    if step.kind in ("race", "any") and isinstance(value, (list, tuple)) and len(value) == 2:
        return f"branch {value[0]} won: {summarize(value[1], width - 16)}"
    if step.kind == "quorum" and isinstance(value, list):
        keys = [row[0] for row in value if isinstance(row, (list, tuple)) and row]
        return f"{len(value)} answers from branches {keys}"
    if step.kind == "all_settled" and isinstance(value, list):
        ok = sum(1 for row in value if isinstance(row, (list, tuple)) and row and row[0])
        return f"{ok}/{len(value)} ok"
    if step.kind == "sleep":
        return ""
    text = summarize(value, width)
    if step.kind == "child" and step.child:
        text = f"{text} (child run {step.child})"
    return text


def _duration(step: StepView, now: float) -> float | None:
    if step.started is None:
        return None
    return (step.finished if step.finished is not None else now) - step.started


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append((indent + "  ".join([*cells, row[-1]])).rstrip())
    return lines


# -- runs ----------------------------------------------------------------------------------


def render_runs(runs: Sequence[RunView], counts: dict[str, int], now: float) -> list[str]:
    """The ``treadle runs`` table."""
    rows = []
    for run in runs:
        start = run.created
        duration = None if start is None else run.end(now) - start
        rows.append(
            [
                run.run_id,
                run.workflow,
                run.status,
                format_time(start),
                format_duration(duration),
                str(counts.get(run.run_id, 0)),
            ]
        )
    return _table(["RUN ID", "WORKFLOW", "STATUS", "STARTED", "DURATION", "STEPS"], rows)


# -- one run ----------------------------------------------------------------------------------


def fanouts(run: RunView) -> list[tuple[StepView, int, int, int, int]]:
    """Running coordinators as ``(step, done, total, failed, in_flight)``."""
    by_id = {s.step: s for s in run.steps}
    found = []
    for step in run.steps:
        if step.kind not in COORDINATOR_KINDS or step.status != "running":
            continue
        keys = [row[0] for row in step.layout or []]
        branches = [by_id.get(f"{step.step}.{key}") for key in keys]
        done = sum(1 for b in branches if b is not None and b.status in ("completed", "failed", "abandoned"))
        failed = sum(1 for b in branches if b is not None and b.status == "failed")
        flight = sum(1 for b in branches if b is not None and b.status == "running")
        found.append((step, done, len(keys), failed, flight))
    return found


def progress_line(run: RunView, now: float) -> str:
    """One line: status, elapsed time, steps done and each running fan-out."""
    settled = sum(1 for s in run.steps if s.settled)
    start = run.created
    elapsed = format_duration(None if start is None else run.end(now) - start)
    parts = [f"{run.run_id}: {run.status}", elapsed, f"{settled}/{len(run.steps)} steps settled"]
    for step, done, total, failed, flight in [] if run.done else fanouts(run):
        parts.append(f"{step.step} {step.kind}: {done}/{total} done, {failed} failed, {flight} in flight")
    if run.waits and not run.done:
        parts.append("waits for " + ", ".join(repr(name) for name in run.waits))
    return " | ".join(parts)


def render_run(run: RunView, now: float, *, width: int = 120, owner: int | None = None) -> list[str]:
    """The ``treadle show`` page: a header and the step tree."""
    start = run.created
    lines = [f"run {run.run_id}  (workflow {run.workflow})"]
    status = run.status
    if not run.done and owner is None:
        status += " (no runtime owns the store right now)"
    lines.append(f"  status    {status}")
    lines.append(
        f"  started   {format_time(start)}   duration "
        f"{format_duration(None if start is None else run.end(now) - start)}"
    )
    if run.parent:
        lines.append(f"  parent    run {run.parent[0]}, step {run.parent[1]}")
    lines.append(f"  args      {summarize(run.args, width - 12)}")
    state = run.state()
    if state is not None:
        lines.append(f"  state     {summarize(state, width - 12)}")
    if run.status == "completed":
        lines.append(f"  result    {summarize(run.result, width - 12)}")
    elif run.error:
        lines.append(f"  error     {clip(_error_text(run.error), width - 12)}")
    if run.waits and not run.done:
        lines.append("  waits for " + ", ".join(repr(name) for name in run.waits))
    if run.cancel_requested is not None:
        lines.append(f"  cancel    requested {format_time(run.cancel_requested)}")
    buffered = [s for s in run.signals if not s.consumed]
    if buffered:
        names = ", ".join(f"{s.name!r}" for s in buffered)
        lines.append(f"  buffered  {len(buffered)} signal(s) not consumed yet: {names}")
    for step, done, total, failed, flight in [] if run.done else fanouts(run):
        lines.append(
            f"  fan-out   {step.step} {step.kind}: {done}/{total} done, {failed} failed, {flight} in flight"
        )
    lines.append("")
    if not run.steps:
        lines.append("  (no steps yet)")
        return lines
    by_id = {s.step: s for s in run.steps}
    rows = []
    for step in run.steps:
        rows.append(
            [
                "  " * step.depth + step.step,
                step.kind,
                step.name or "-",
                step.status,
                str(step.attempt),
                format_duration(_duration(step, run.end(now))),
                "",
            ]
        )
    head = ["STEP", "KIND", "NAME", "STATUS", "TRY", "DURATION", "VALUE / ERROR"]
    fixed = _table([*head[:-1], ""], [[*row[:-1], ""] for row in rows], "  ")
    room = max(20, width - max(len(line) for line in fixed) - 2)
    for row, step in zip(rows, run.steps, strict=True):
        row[-1] = step_summary(step, by_id, room, ended=run.done)
    lines.extend(_table(head, rows, "  "))
    return lines


def run_to_json(run: RunView) -> str:
    """The run and its steps as JSON (values that JSON cannot hold become their ``repr``)."""
    data = {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "created": run.created,
        "updated": run.updated,
        "args": run.args,
        "result": run.result,
        "error": run.error,
        "waits": run.waits,
        "state": run.state(),
        "cancel_requested": run.cancel_requested,
        "steps": [
            {
                "step": s.step,
                "kind": s.kind,
                "name": s.name,
                "status": s.status,
                "attempt": s.attempt,
                "started": s.started,
                "finished": s.finished,
                "value": s.value,
                "error": s.error,
            }
            for s in run.steps
        ],
        "signals": [
            {"name": s.name, "seq": s.seq, "sent": s.sent, "consumed": s.consumed, "by": s.by}
            for s in run.signals
        ],
    }
    return json.dumps(data, default=repr, indent=2)
