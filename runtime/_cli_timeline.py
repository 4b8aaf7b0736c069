"""``treadle timeline``: the run's timeline as one self-contained HTML page (inline CSS + SVG).

The same layout as the trace (``_cli_trace``): one row per branch, nested
steps stacked inside their branch's row, bars coloured by status and labelled
with step id and name; hovering a bar shows its details (SVG ``<title>``).
No script, no font or style sheet from the network.
"""

from __future__ import annotations

import math
from html import escape

from ._cli_render import clip, format_duration, format_time, summarize
from ._cli_trace import Slice, Timeline, slice_name

__all__ = ["render_html"]

COLOURS = {
    "completed": "#3a9b5c",
    "failed": "#d0463b",
    "running": "#3b7dd8",
    "abandoned": "#9aa0a6",
    "suspended": "#8e6fd1",
    "cancelled": "#e08a2c",
    "parked": "#c9a227",
}
_FALLBACK = "#777777"
WIDTH = 1200
LABELS = 260  # left column with the track names
BAR = 18
GAP = 2
ROW_PAD = 6
AXIS = 34
CHAR = 6.6  # average width of a 11px label character, to decide whether a label fits in its bar

_CSS = """
body { font: 13px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 16px;
       color: #202124; background: #ffffff; }
h1 { font-size: 18px; margin: 0 0 4px 0; }
.meta { color: #5f6368; margin-bottom: 10px; }
.meta b { color: #202124; font-weight: 600; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
            vertical-align: -2px; margin-right: 4px; }
svg { display: block; margin-top: 10px; width: 100%; height: auto; }
svg text { font-size: 11px; fill: #202124; }
svg text.in { fill: #ffffff; pointer-events: none; }
svg text.out { paint-order: stroke; stroke: #ffffff; stroke-width: 3px; pointer-events: none; }
svg text.track { font-size: 12px; }
svg .row { fill: #f6f8fa; }
svg .grid { stroke: #e3e6ea; stroke-width: 1; }
svg .tick { font-size: 10px; fill: #5f6368; }
svg rect.bar { stroke: #ffffff; stroke-width: 0.5; }
svg rect.lost { fill-opacity: 0.55; stroke: #5f6368; stroke-dasharray: 3 2; }
svg path.instant { fill: #e08a2c; }
svg line.instant { stroke: #e08a2c; stroke-width: 1; stroke-dasharray: 2 3; }
svg rect.retried { stroke: #202124; stroke-width: 1.5; }
"""


def _ticks(span: float) -> list[float]:
    """About eight round tick positions (1, 2 or 5 times a power of ten seconds) over ``[0, span]``."""
    if span <= 0:
        return [0.0]
    raw = span / 8
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(magnitude * f for f in (1, 2, 5, 10) if magnitude * f >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def _tick_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    return format_duration(seconds)


def render_html(timeline: Timeline) -> str:
    """The whole page."""
    run = timeline.run
    span = timeline.span if timeline.span > 0 else 1e-3
    chart = WIDTH - LABELS - 20
    scale = chart / span
    heights = [track.depth * (BAR + GAP) + ROW_PAD for track in timeline.tracks]
    total = AXIS + sum(heights) + 10
    parts: list[str] = []
    out = parts.append
    out(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total}" ')
    out(f'viewBox="0 0 {WIDTH} {total}" role="img" aria-label="timeline of run {escape(run.run_id)}">')
    for at in _ticks(span):
        x = LABELS + at * scale
        out(f'<line class="grid" x1="{x:.1f}" y1="{AXIS - 6}" x2="{x:.1f}" y2="{total - 10}"/>')
        out(f'<text class="tick" x="{x + 2:.1f}" y="{AXIS - 10}">{escape(_tick_label(at))}</text>')
    y = AXIS
    for index, (track, height) in enumerate(zip(timeline.tracks, heights, strict=True)):
        if index % 2 == 0:
            out(f'<rect class="row" x="0" y="{y}" width="{WIDTH}" height="{height}"/>')
        label, full = escape(clip(track.name, 40)), escape(track.name)
        out(f'<text class="track" x="6" y="{y + BAR - 3}">{label}<title>{full}</title></text>')
        ordered = sorted(track.slices, key=lambda s: (s.depth, s.start))
        free: dict[int, float] = {}  # per nesting level: where the last label ended
        labels = []
        for index, item in enumerate(ordered):
            after = ordered[index + 1] if index + 1 < len(ordered) else None
            limit = LABELS + after.start * scale if after is not None and after.depth == item.depth else WIDTH
            bar, label, free[item.depth] = _bar(item, y, scale, free.get(item.depth, float(LABELS)), limit)
            out(bar)
            labels.append(label)
        parts.extend(labels)  # over every bar of the row
        y += height
    for at, _, name, args in timeline.instants:
        x = LABELS + at * scale
        tip = escape(name + "".join(f"\n{key}: {value}" for key, value in args.items()))
        out(
            f'<g><title>{tip}</title><path class="instant" d="M{x:.1f} {AXIS - 4} l4 4 l-4 4 l-4 -4 z"/>'
            f'<line class="instant" x1="{x:.1f}" y1="{AXIS + 4}" x2="{x:.1f}" y2="{total - 10}"/></g>'
        )
    out("</svg>")
    svg = "".join(parts)
    start = run.created
    duration = None if start is None else run.end(timeline.origin + timeline.span) - start
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>' for name, colour in COLOURS.items()
    )
    meta = (
        f"workflow <b>{escape(run.workflow)}</b> &middot; status <b>{escape(run.status)}</b> &middot; "
        f"started <b>{escape(format_time(start))}</b> &middot; "
        f"duration <b>{escape(format_duration(duration))}</b>"
        f" &middot; {len(run.steps)} steps on {len(timeline.tracks)} tracks"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>treadle run {escape(run.run_id)}</title><style>{_CSS}</style></head><body>"
        f'<h1>run {escape(run.run_id)}</h1><div class="meta">{meta}</div>'
        f'<div class="legend">{legend} <span>dashed: race loser &middot; dark outline: retried &middot; '
        "orange marks: signals sent, cancel requested</span></div>"
        f"{svg}</body></html>\n"
    )


def _bar(item: Slice, top: int, scale: float, free: float, limit: float) -> tuple[str, str, float]:
    """The bar's SVG, its label's SVG and where the label ends.

    The label goes inside the bar when it fits, else right of the bar (up to
    ``limit``, the next bar of its level), else left of it, else cut short
    inside it; it never overlaps the previous label of its level (``free``).
    """
    x = LABELS + item.start * scale
    width = max(3.0, (item.end - item.start) * scale)
    y = top + ROW_PAD // 2 + item.depth * (BAR + GAP)
    colour = COLOURS.get(item.status, _FALLBACK)
    classes = ["bar"]
    if "lost" in item.marks or "abandoned" in item.marks:
        classes.append("lost")
    if any(mark.startswith("attempt") for mark in item.marks):
        classes.append("retried")
    name = slice_name(item)
    details = [name, f"{format_duration(item.end - item.start)} from +{format_duration(item.start)}"]
    details.extend(f"{key}: {summarize(value, 100)}" for key, value in item.args.items() if value is not None)
    title = escape("\n".join(details))
    bar = (
        f'<g><title>{title}</title><rect class="{" ".join(classes)}" x="{x:.1f}" y="{y}" '
        f'width="{width:.1f}" height="{BAR}" rx="2" fill="{colour}"/></g>'
    )
    baseline = y + BAR - 5
    text_width = len(name) * CHAR
    inside = max(x, free) + 3
    right = x + width
    if inside + text_width <= right:
        return bar, _text("in", inside, baseline, name), inside + text_width
    if right >= free and right + 3 + text_width <= min(limit, WIDTH):
        return bar, _text("out", right + 3, baseline, name), right + 3 + text_width
    if x - 3 - text_width >= free:
        return bar, _text("out", x - 3 - text_width, baseline, name), right
    fits = int((right - inside - 3) / CHAR)
    if fits >= 6:
        return bar, _text("in", inside, baseline, name[: fits - 1] + "\u2026"), right
    return bar, "", max(free, right)


def _text(kind: str, x: float, y: float, text: str) -> str:
    return f'<text class="{kind}" x="{x:.1f}" y="{y}">{escape(text)}</text>'
