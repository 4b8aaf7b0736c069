"""`treadle timeline` output renders in a real browser: headless Chromium takes a screenshot of it.

Chromium is Debian's ``chromium`` package. If it is missing, the session
fixture installs it once (``apt-get update`` + ``apt-get install -y chromium``)
and the test is skipped, with the reason, only when that is impossible.
The PNG is decoded here (zlib + PNG row filters) to check that bars in the
status colours were actually drawn.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Box
from treadle.runtime import ActivityContext, Retry, activity, workflow

TREADLE = Path(sys.executable).with_name("treadle")
INSTALL_TIMEOUT = 600
SHOT_TIMEOUT = 60
GREEN = (0x3A, 0x9B, 0x5C)  # completed
RED = (0xD0, 0x46, 0x3B)  # failed
CHART_TOP = 110  # px: the heading, the run's line and the legend end above this


@activity(name="cli_render.step")
def step(x: int) -> int:
    return x + 1


@activity(name="cli_render.flaky", retry=Retry(attempts=2, initial=0.01))
def flaky(x: int, actx: ActivityContext) -> int:
    if actx.attempt == 1:
        raise ValueError("first attempt")
    return x


@activity(name="cli_render.broken")
def broken(x: int) -> int:
    raise RuntimeError(f"broken {x}")


def _branch(ctx: Any, x: int) -> Any:
    a = yield ctx.run(step, x)
    b = yield ctx.all([ctx.run(step, a), ctx.sleep(0.05)])
    return b


@workflow(name="cli_render.flow")
def flow(ctx: Any) -> Any:
    yield ctx.run(flaky, 1)
    yield ctx.sleep(0.05)
    yield ctx.race([ctx.sleep(0.1), ctx.sleep(30)])
    settled = yield ctx.all_settled([*(_branch(ctx, i) for i in range(3)), ctx.run(broken, 9)])
    return [s.ok for s in settled]


def _chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _chromium_binary()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root (apt-get install -y chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    problems = []
    for args in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "chromium"]):
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{' '.join(args)} timed out after {INSTALL_TIMEOUT}s")
            break
        if done.returncode != 0:
            problems.append(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
            break
    found = _chromium_binary()
    if found is None:
        pytest.skip("chromium could not be installed: " + ("; ".join(problems) or "no binary after install"))
    return found


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Path]:
    """An HTML timeline of a finished run with retries, a race loser, nested branches and a failure."""
    box = Box(tmp_path / "store")
    try:
        rt = box.open()
        rt.start(flow, run_id="render-1").result(timeout=15)
    finally:
        box.close()
    out = tmp_path / "timeline.html"
    done = subprocess.run(
        [str(TREADLE), "--store", str(tmp_path / "store"), "timeline", "render-1", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=SHOT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yield out


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_timeline_renders_in_headless_chromium(chromium: str, page: Path, tmp_path: Path) -> None:
    """The page draws: a non-trivial screenshot with bars in the completed and failed colours."""
    shot = tmp_path / "t.png"
    profile = tmp_path / "profile"
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1200,800",
        page.as_uri(),
    ]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = child.communicate(timeout=SHOT_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert shot.exists(), f"no screenshot (exit {child.returncode}): {err[-500:]}"
    assert shot.stat().st_size > 10_000, f"screenshot of only {shot.stat().st_size} bytes"

    width, height, rows = read_png(shot)
    assert (width, height) == (1200, 800)
    bpp = len(rows[0]) // width
    colours: set[tuple[int, ...]] = set()
    # Below the title and the legend (whose swatches have the same colours): the SVG chart.
    for row in rows[CHART_TOP::2]:
        for x in range(0, len(row), bpp):
            colours.add(tuple(row[x : x + 3]))
    assert len(colours) > 50, f"only {len(colours)} distinct colours: nothing much was drawn"

    def near(target: tuple[int, int, int]) -> bool:
        return any(all(abs(c - t) <= 6 for c, t in zip(colour, target, strict=True)) for colour in colours)

    assert near(GREEN), "no bar in the 'completed' colour"
    assert near(RED), "no bar in the 'failed' colour"
