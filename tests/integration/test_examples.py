"""Every example in examples/ runs as a user would run it, exits 0 and tells its story.

Each example asserts its own promise and exits non-zero when it is not kept,
so this test only checks the exit code and one key line of the output. The
examples are discovered from the folder (files starting with ``_`` are
helpers), so a new example is tested automatically; the set below pins the
ones DESIGN.md and the README promise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_TIMEOUT = 60

# The key line each example prints when its promise holds (every example ends with an "OK: ..." line).
KEY_LINES = {
    "enrich_order": "OK: enrich_order combined three parallel lookups into one order",
    "fetch_with_fallback": "OK: the fastest source won",
    "deadline": "OK: the fast call beat its deadline; the slow one timed out",
    "named_parallel": "OK: the dashboard was assembled from named parallel results",
    "settle": "OK: one failure did not stop the others",
    "batch_map": "OK: both variants processed every file",
    "conditional_parallel": "OK: each order ran exactly the tasks its flags asked for",
    "nested": "OK: nested coordinators ran",
    "child_workflows_fanout": "OK: three child workflows ran in parallel",
    "approval": "OK: one expense approved in time, the other escalated at its deadline",
    "quality_checks": "OK: the loop converged",
    "map_reduce": "OK: the chunks were counted in a bounded pool",
    "cpu_bound": "OK: the CPU-bound branches ran in worker processes",
    "crash_and_resume": "OK: 4 completed branches were not run again; only shards [4, 5, 6, 7] ran again",
}

DISCOVERED = sorted(path.stem for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )


def test_every_promised_example_is_present() -> None:
    missing = sorted(set(KEY_LINES) - set(DISCOVERED))
    assert not missing, f"examples missing from {EXAMPLES}: {missing}"


def _param(name: str) -> object:
    marks = [pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)]
    if name == "crash_and_resume":
        marks.append(pytest.mark.crash)
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(name) for name in DISCOVERED])
def test_example_runs_and_keeps_its_promise(name: str) -> None:
    proc = run_example(name)
    output = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, f"examples/{name}.py exited {proc.returncode}\n{output}"
    key_line = KEY_LINES.get(name, "OK:")
    assert key_line in proc.stdout, f"examples/{name}.py did not print {key_line!r}\n{output}"
    assert "FAILED" not in proc.stdout + proc.stderr, output


def test_store_option_keeps_the_store(tmp_path: Path) -> None:
    store = tmp_path / "kept-store"
    proc = run_example("enrich_order", "--store", str(store))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (store / "data.mdb").exists(), "--store PATH keeps the LMDB store in PATH"
