"""The ``treadle`` console script, run for real in a subprocess against a live store.

A Runtime in this test process owns the store (as a service would) while the
CLI reads it read-only and steers runs through the store's command inbox.
Every CLI error is one line on stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Box, wait_until
from treadle.runtime import (
    ActivityContext,
    Retry,
    RunHandle,
    RunStatus,
    Runtime,
    WorkflowFailedError,
    activity,
    workflow,
)
from treadle.storage import LmdbStore, run_key

TREADLE = Path(sys.executable).with_name("treadle")
CLI_TIMEOUT = 45
WAIT = 10.0
GATES: dict[str, threading.Event] = {}


# -- workflows (registry names start with "cli.") -------------------------------------------


@activity(name="cli.double")
def double(x: int) -> int:
    return x * 2


@activity(name="cli.flaky", retry=Retry(attempts=3, initial=0.01))
def flaky(x: int, actx: ActivityContext) -> int:
    if actx.attempt < 2:
        raise ValueError("the first attempt always fails")
    return x


@activity(name="cli.broken")
def broken(x: int) -> int:
    raise KeyError(f"no item {x}")


@activity(name="cli.gated")
def gated(key: str, i: int) -> int:
    assert GATES[key].wait(WAIT), "gate not opened"
    return i


def _sub(ctx: Any, x: int) -> Any:
    first = yield ctx.run(double, x)
    pair = yield ctx.all([ctx.run(double, first), ctx.run(double, x + 1)])
    return [first, pair]


@workflow(name="cli.showcase")
def showcase(ctx: Any, x: int) -> Any:
    a = yield ctx.run(flaky, x)
    b = yield ctx.race([ctx.run(double, x), ctx.sleep(30)])
    settled = yield ctx.all_settled([ctx.run(broken, x), _sub(ctx, x)])
    return [a, b, settled[1].value]


@workflow(name="cli.waiter")
def waiter(ctx: Any) -> Any:
    yield ctx.set_state("waiting")
    payload = yield ctx.wait_for_signal("go")
    return {"got": payload}


@workflow(name="cli.fan")
def fan(ctx: Any, key: str, n: int) -> Any:
    return (yield ctx.map(list(range(n)), lambda i: ctx.run(gated, key, i), concurrency=2))


# -- fixtures ------------------------------------------------------------------------------------


class Cli:
    """Runs the console script; tracks long-running children so teardown can kill them."""

    def __init__(self, store: Path, cwd: Path) -> None:
        if not TREADLE.exists():
            pytest.fail(
                f"no console script at {TREADLE}: run `{sys.executable} -m pip install -e . --no-deps`"
            )
        self.store = store
        self.cwd = cwd
        self.children: list[subprocess.Popen[str]] = []

    def argv(self, args: tuple[str, ...], store: Path | None) -> list[str]:
        return [str(TREADLE), "--store", str(store or self.store), *args]

    def __call__(self, *args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(args, store),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
            env=_env(),
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            self.argv(args, None),
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "store", tmp_path)
    yield runner
    runner.close()


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The run failed with ``code`` and a single stderr line holding every needle; no traceback."""
    assert done.returncode == code, f"exit {done.returncode}, stdout={done.stdout!r} stderr={done.stderr!r}"
    err = done.stderr.strip()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got {done.stderr!r}"
    assert err.startswith("treadle"), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def _suspended(handle: RunHandle) -> bool:
    return handle.status() == RunStatus.SUSPENDED


# -- runs / show ---------------------------------------------------------------------------------


def test_runs_lists_every_run_with_status_duration_and_steps(rt: Runtime, cli: Cli) -> None:
    """`treadle runs`: a table (run id, workflow, status, started, duration, steps), filters and a limit."""
    done = rt.start(showcase, 3, run_id=_rid("show"))
    assert done.result(timeout=WAIT) == [3, 6, [6, [12, 8]]]
    waiting = rt.start(waiter, run_id=_rid("wait"))
    wait_until(lambda: _suspended(waiting), WAIT, "the waiter to suspend")

    table = cli("runs")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "WORKFLOW", "STATUS", "STARTED", "DURATION", "STEPS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[done.run_id][1:3] == ["cli.showcase", "completed"]
    assert rows[waiting.run_id][1:3] == ["cli.waiter", "suspended"]
    steps = len(done.history())
    assert rows[done.run_id][-1] == str(steps)
    assert lines[1].split()[0] == waiting.run_id, "newest first"

    only = cli("runs", "--status", "suspended", "--json")
    assert only.returncode == 0, only.stderr
    assert [json.loads(line)["run_id"] for line in only.stdout.splitlines()] == [waiting.run_id]
    by_wf = cli("runs", "--workflow", "cli.showcase", "--limit", "1")
    assert by_wf.stdout.splitlines()[1].split()[0] == done.run_id
    assert len(by_wf.stdout.splitlines()) == 2
    _one_line_error(cli("runs", "--status", "sleepy"), 2, "invalid choice")


def test_show_prints_the_step_tree_with_branches_indented(rt: Runtime, cli: Cli) -> None:
    """`treadle show`: coordinators with branches indented, status, attempt, duration, value or error."""
    handle = rt.start(showcase, 5, run_id=_rid("tree"))
    handle.result(timeout=WAIT)
    shown = cli("show", handle.run_id)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"run {handle.run_id}  (workflow cli.showcase)" in out
    assert "status    completed" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    # step -> (indentation, kind, name, status, attempt)
    expected = {
        "0": (2, "activity", "cli.flaky", "completed", "2"),
        "1": (2, "race", "-", "completed", "1"),
        "1.0": (4, "activity", "cli.double", "completed", "1"),
        "1.1": (4, "sleep", "-", "abandoned", "1"),
        "2": (2, "all_settled", "-", "completed", "1"),
        "2.0": (4, "activity", "cli.broken", "failed", "1"),
        "2.1": (4, "branch", "-", "completed", "1"),
        "2.1.0": (6, "activity", "cli.double", "completed", "1"),
        "2.1.1": (6, "all", "-", "completed", "1"),
        "2.1.1.0": (8, "activity", "cli.double", "completed", "1"),
    }
    for step, (indent, kind, name, status, attempt) in expected.items():
        line = rows[step]
        assert len(line) - len(line.lstrip()) == indent, line
        assert line.split()[1:5] == [kind, name, status, attempt], line
    assert "branch 0 won: 10" in rows["1"]
    assert "race loser" in rows["1.1"]
    assert "builtins.KeyError" in rows["2.0"] and "no item 5" in rows["2.0"]
    assert rows["2.1.1"].rstrip().endswith("[20, 12]")

    as_json = json.loads(cli("show", handle.run_id, "--json").stdout)
    assert as_json["status"] == "completed"
    assert [s["step"] for s in as_json["steps"]] == [r.step for r in handle.history()]


def test_show_follow_reports_fan_out_progress_until_the_run_finishes(rt: Runtime, cli: Cli) -> None:
    """`show --follow` refreshes until the run ends, with done/total, failed, in flight for fan-outs."""
    key = _rid("fan")
    GATES[key] = threading.Event()
    try:
        handle = rt.start(fan, key, 4, run_id=key)
        wait_until(lambda: len(handle.history()) >= 3, WAIT, "the fan-out to dispatch")
        child = cli.popen("show", handle.run_id, "--follow", "--interval", "0.1", "--timeout", "40")
        lines: queue.Queue[str] = queue.Queue()
        assert child.stdout is not None
        stdout = child.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        seen = []
        while True:
            line = lines.get(timeout=WAIT)
            seen.append(line)
            if "0 map: 0/4 done, 0 failed, 2 in flight" in line:
                break
        GATES[key].set()
        assert handle.result(timeout=WAIT) == [0, 1, 2, 3]
        assert child.wait(timeout=30) == 0
        while not lines.empty():
            seen.append(lines.get_nowait())
        text = "".join(seen)
        assert f"{handle.run_id}: completed" in text
        assert "status    completed" in text
    finally:
        GATES[key].set()
        GATES.pop(key, None)


# -- signal / cancel through the inbox -----------------------------------------------------------


def test_signal_through_the_inbox_completes_the_waiting_run(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """`treadle signal` while the runtime owns the store: applied by the owner, the waiting run completes."""
    handle = rt.start(waiter, run_id=_rid("sig"))
    wait_until(lambda: _suspended(handle), WAIT, "the waiter to suspend")
    sent = cli("signal", handle.run_id, "go", '{"by": "ann", "n": [1, 2]}', "--key", "k-1")
    assert sent.returncode == 0, sent.stderr
    assert f"signal 'go' to run {handle.run_id}: sent" in sent.stdout
    assert handle.result(timeout=WAIT) == {"got": {"by": "ann", "n": [1, 2]}}
    inbox = tmp_path / "store" / "inbox"
    assert sorted(p.name for p in inbox.iterdir()) == [], "command and answer files are cleaned up"

    _one_line_error(
        cli("signal", handle.run_id, "go", "2"), 1, "signal rejected", "RunFinishedError", handle.run_id
    )


def test_signal_with_a_used_key_is_a_no_op(rt: Runtime, cli: Cli) -> None:
    """`--key`: a re-sent signal with the same key is reported as a duplicate and not buffered twice."""
    handle = rt.start(waiter, run_id=_rid("dup"))
    wait_until(lambda: _suspended(handle), WAIT, "the waiter to suspend")
    handle.signal("other", 1, key="same")
    again = cli("signal", handle.run_id, "other", "1", "--key", "same")
    assert again.returncode == 0, again.stderr
    assert "duplicate" in again.stdout
    assert sum(1 for _ in rt.store.scan("signals")) == 2  # one signal record + its key index


def test_cancel_through_the_inbox(rt: Runtime, cli: Cli) -> None:
    """`treadle cancel`: the run ends CANCELLED; cancelling again says so; a completed run is an error."""
    handle = rt.start(waiter, run_id=_rid("cancel"))
    wait_until(lambda: _suspended(handle), WAIT, "the waiter to suspend")
    done = cli("cancel", handle.run_id)
    assert done.returncode == 0, done.stderr
    assert "cancel requested" in done.stdout
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=WAIT)
    assert info.value.type == "treadle.runtime.CancelledError"
    again = cli("cancel", handle.run_id)
    assert again.returncode == 0 and "already cancelled" in again.stdout, again

    finished = rt.start(showcase, 1, run_id=_rid("fin"))
    finished.result(timeout=WAIT)
    _one_line_error(cli("cancel", finished.run_id), 1, "cancel rejected", "already finished (completed)")


def test_commands_queued_without_a_runtime_are_applied_at_its_next_start(box: Box, cli: Cli) -> None:
    """No runtime owns the store: the command is queued and applied when one starts ("never lost")."""
    rt = box.open()
    handle = rt.start(waiter, run_id=_rid("later"))
    wait_until(lambda: _suspended(handle), WAIT, "the waiter to suspend")
    box.shutdown()

    queued = cli("signal", handle.run_id, "go", '"late"')
    assert queued.returncode == 0, queued.stderr
    assert "queued: no runtime owns" in queued.stdout
    _one_line_error(cli("signal", "no-such-run", "go"), 1, "unknown run 'no-such-run'")

    rt = box.open()
    assert rt.get(handle.run_id).result(timeout=WAIT) == {"got": "late"}
    inbox = box.path / "inbox"
    wait_until(
        lambda: not [p for p in inbox.glob("*.json") if not p.name.endswith(".done.json")],
        WAIT,
        "the command file to go",
    )
    answers = [json.loads(p.read_text()) for p in inbox.glob("*.done.json")]
    assert [a["ok"] for a in answers] == [True]


# -- trace / timeline ----------------------------------------------------------------------------

REQUIRED = ("name", "ph", "ts", "pid", "tid")


def validate_trace(document: Any) -> list[dict[str, Any]]:
    """Check the trace-event format's required fields; return the events."""
    assert isinstance(document, dict) and isinstance(document["traceEvents"], list)
    events: list[dict[str, Any]] = document["traceEvents"]
    assert events
    for event in events:
        for field in REQUIRED:
            assert field in event, f"{field} missing in {event}"
        assert isinstance(event["name"], str) and isinstance(event["ph"], str) and len(event["ph"]) == 1
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
        assert event["ph"] in ("X", "M", "i"), event
    return events


def test_trace_writes_chrome_trace_events(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """`treadle trace`: one track per branch, nested coordinators nest, losers and retries are marked."""
    handle = rt.start(showcase, 2, run_id=_rid("trace"))
    handle.result(timeout=WAIT)
    out = tmp_path / "trace.json"
    done = cli("trace", handle.run_id, "-o", str(out))
    assert done.returncode == 0, done.stderr
    events = validate_trace(json.loads(out.read_text()))
    slices = {e["args"]["step"]: e for e in events if e["ph"] == "X" and "step" in e["args"]}
    assert set(slices) == {r.step for r in handle.history()}
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}

    root = slices["0"]["tid"]
    assert names[root] == "workflow cli.showcase"
    assert {slices[s]["tid"] for s in ("0", "1", "2")} == {root}
    branch_tids = [slices[s]["tid"] for s in ("1.0", "1.1", "2.0", "2.1", "2.1.1.0", "2.1.1.1")]
    assert len(set(branch_tids)) == len(branch_tids) and root not in branch_tids, "one track per branch"
    # A generator branch's own steps nest inside it, on its track.
    branch, inner = slices["2.1"], slices["2.1.1"]
    assert inner["tid"] == branch["tid"] == slices["2.1.0"]["tid"]
    assert branch["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= branch["ts"] + branch["dur"] + 1
    assert slices["1.1"]["args"]["race_loser"] is True and slices["1.1"]["name"].endswith("[lost]")
    assert slices["0"]["args"]["attempt"] == 2 and "(attempt 2)" in slices["0"]["name"]
    assert (
        slices["2.0"]["args"]["status"] == "failed" and "builtins.KeyError" in slices["2.0"]["args"]["error"]
    )
    # Times are microseconds from the steps' own started/finished.
    record = {r.step: r for r in handle.history()}["2.1.1"]
    assert record.started is not None and record.finished is not None
    expected = (record.finished - record.started).total_seconds() * 1e6
    assert abs(inner["dur"] - expected) < 2


def test_timeline_writes_a_self_contained_html_page(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """`treadle timeline`: one HTML file, inline CSS and SVG, nothing fetched from the network."""
    handle = rt.start(showcase, 4, run_id=_rid("html"))
    handle.result(timeout=WAIT)
    out = tmp_path / "t.html"
    done = cli("timeline", handle.run_id, "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    for forbidden in ("<script src", "<link", "@import", "url(", "https://"):
        assert forbidden not in page, forbidden
    assert "1.1 sleep [lost]" in page and "0 activity cli.flaky (attempt 2)" in page
    assert "#d0463b" in page, "the failed branch is drawn in the failure colour"


# -- run -------------------------------------------------------------------------------------------

FLOWS = """
from treadle.runtime import activity, workflow


@activity(name="cli_run.add")
def add(a, b):
    return a + b


@workflow(name="cli_run.sum")
def total(ctx, numbers):
    acc = 0
    for n in numbers:
        acc = yield ctx.run(add, acc, n)
    return {"total": acc}


@workflow(name="cli_run.fails")
def fails(ctx):
    yield ctx.run(add, 1, 1)
    raise RuntimeError("it went wrong")
"""


def test_run_starts_a_workflow_and_prints_its_result(cli: Cli, tmp_path: Path) -> None:
    """`treadle run MODULE:WORKFLOW ARGS_JSON`: imports from cwd, runs to the end, exit 1 on failure."""
    (tmp_path / "cli_flows.py").write_text(textwrap.dedent(FLOWS))
    other = tmp_path / "other-store"
    done = cli("run", "cli_flows:total", "[[1, 2, 3]]", "--run-id", "sum-1", store=other)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"total": 6}
    assert "run sum-1" in done.stderr
    store = LmdbStore(str(other), readonly=True)
    try:
        record = store.get("runs", run_key("sum-1"))
    finally:
        store.close()
    assert record is not None and record["st"] == "completed"

    failed = cli("run", "cli_flows:fails", "--quiet", store=other)
    _one_line_error(failed, 1, "failed: builtins.RuntimeError: it went wrong")
    _one_line_error(cli("run", "cli_flows:nope", store=other), 1, "has no workflow 'nope'")
    _one_line_error(cli("run", "no_such_module:wf", store=other), 1, "cannot import module 'no_such_module'")
    _one_line_error(cli("run", "cli_flows:total", "[1,", store=other), 2, "ARGS_JSON is not valid JSON")


def test_run_on_a_store_owned_by_a_runtime_is_refused(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """One runtime per store: `treadle run` on a store a service owns fails clearly, naming the owner."""
    (tmp_path / "cli_flows.py").write_text(textwrap.dedent(FLOWS))
    refused = cli("run", "cli_flows:total", "[[1]]", "-q")
    _one_line_error(refused, 1, f"owned by process {os.getpid()}")


# -- errors and backup -------------------------------------------------------------------------------


def test_errors_are_one_line_and_a_non_zero_exit(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """Unknown run, bad JSON, missing store: one clear line on stderr, non-zero exit, no traceback."""
    handle = rt.start(waiter, run_id=_rid("err"))
    wait_until(lambda: _suspended(handle), WAIT, "the waiter to suspend")
    for command in ("show", "trace", "timeline"):
        extra = ("-o", str(tmp_path / "x.out")) if command != "show" else ()
        _one_line_error(cli(command, "no-such-run", *extra), 1, "unknown run 'no-such-run'")
    # With a runtime owning the store, the unknown run comes back through the inbox's answer file.
    _one_line_error(cli("signal", "no-such-run", "go"), 1, "RunNotFoundError", "no-such-run")
    _one_line_error(cli("cancel", "no-such-run"), 1, "RunNotFoundError")
    _one_line_error(cli("signal", handle.run_id, "go", "{not json"), 2, "PAYLOAD_JSON is not valid JSON")
    missing = tmp_path / "nowhere"
    _one_line_error(cli("runs", store=missing), 1, "no treadle store at", "nowhere")
    _one_line_error(cli("show", "x", store=missing), 1, "no treadle store")
    _one_line_error(cli("signal", "x", "go", store=missing), 1, "no treadle store")
    _one_line_error(cli("bogus"), 2, "invalid choice")
    assert not (tmp_path / "x.out").exists()
    assert handle.status() == RunStatus.SUSPENDED, "nothing reached the run"


def test_backup_copies_a_live_store(rt: Runtime, cli: Cli, tmp_path: Path) -> None:
    """`treadle backup DEST` while the runtime owns the store: a store that opens and holds the runs."""
    handle = rt.start(showcase, 1, run_id=_rid("bak"))
    handle.result(timeout=WAIT)
    dest = tmp_path / "backup"
    done = cli("backup", str(dest))
    assert done.returncode == 0, done.stderr
    listed = cli("runs", "--json", store=dest)
    assert handle.run_id in [json.loads(line)["run_id"] for line in listed.stdout.splitlines()]
    _one_line_error(cli("backup", str(dest)), 2, "already holds a store")
