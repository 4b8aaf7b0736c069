"""crash_and_resume: kill -9 a process in the middle of a parallel fan-out, start again, lose nothing.

This is treadle's headline guarantee. The workflow fans out eight shards::

    results = yield ctx.map(shards, lambda shard: ctx.run(process_shard, shard))
    report = yield ctx.run(publish_report, results)

What the demo does:

1. It re-runs this very file as a **child process** (``--child``) that opens a
   Runtime on the store and starts the fan-out. In that first process shards
   0-3 are quick and shards 4-7 are slow, so half of the branches finish and
   half are still working.
2. Each activity appends a line to a per-shard counter file (fsynced, so it
   survives the kill) and writes a marker when it finishes. The parent waits
   (bounded) until half the shards have finished and the child has seen them
   checkpointed in its journal, then sends **SIGKILL**: no shutdown, no
   cleanup, threads gone mid-activity.
3. The parent then opens a ``Runtime`` on the same store itself. Opening it
   resumes every unfinished run: the workflow is replayed from the journal,
   the four checkpointed shards are fed back from the store *without being
   run again*, and only the four unfinished ones are dispatched.

Semantics shown: every branch is checkpointed when it settles (not "at the
next yield"), so a crash in the middle of an ``all``/``map`` re-runs only the
branches that had not finished. An activity that was interrupted runs again
(at-least-once), which is why real activities should be idempotent (use
``ctx.run(..., key=...)`` to hand them an idempotency key).

Run: ``.venv/bin/python examples/crash_and_resume.py [--store PATH]`` (``make demo``)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from _support import build_parser, check, say, store_folder

from treadle.runtime import Context, Operation, RunStatus, Runtime, activity, workflow

SHARDS = list(range(8))
FAST = SHARDS[: len(SHARDS) // 2]  # shards that finish before the crash
WAIT = 30.0  # bound of every wait in this demo (seconds)

# Where the counter and marker files live: the parent creates a temporary folder and hands it
# to the child in the environment. FIRST_LIFE is True in the child (the process that gets killed).
MARKERS = Path(os.environ.get("TREADLE_DEMO_MARKERS", "."))
FIRST_LIFE = False


# --------------------------------------------------------------------------- counters and markers


def _append_fsynced(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def runs_of(shard: int) -> list[int]:
    """The pids of every process that ran ``process_shard(shard)``, in order."""
    path = MARKERS / f"shard-{shard}.runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def finished_in(shard: int) -> list[int]:
    """The pids of every process in which ``process_shard(shard)`` returned."""
    path = MARKERS / f"shard-{shard}.done"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


# --------------------------------------------------------------------------- the workflow


@activity(name="ex_crash.process_shard")
def process_shard(shard: int) -> int:
    _append_fsynced(MARKERS / f"shard-{shard}.runs", f"{os.getpid()}\n")
    slow = FIRST_LIFE and shard not in FAST
    time.sleep(WAIT if slow else 0.05 * (1 + shard % 4))  # simulated work; slow shards get killed
    _append_fsynced(MARKERS / f"shard-{shard}.done", f"{os.getpid()}\n")
    return shard * shard


@activity(name="ex_crash.publish_report")
def publish_report(results: list[int]) -> dict[str, Any]:
    return {"shards": len(results), "sum_of_squares": sum(results)}


@workflow(name="ex_crash.process_batch")
def process_batch(ctx: Context, shards: list[int]) -> Generator[Operation, Any, dict[str, Any]]:
    results = yield ctx.map(shards, lambda shard: ctx.run(process_shard, shard))
    return (yield ctx.run(publish_report, results))


# --------------------------------------------------------------------------- the child process


def child_main(store: str, run_id: str) -> None:
    """First life: start the fan-out, report what is checkpointed, then wait to be killed."""
    say(f"  [child pid {os.getpid()}] opened the store, starting run {run_id!r} with {len(SHARDS)} shards")
    with Runtime(store) as rt:
        handle = rt.start(process_batch, SHARDS, run_id=run_id)
        deadline = time.monotonic() + WAIT
        while True:
            done = [r.step for r in handle.history() if r.kind == "activity" and r.status == "completed"]
            if len(done) >= len(FAST) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        (MARKERS / "checkpointed.json").write_text(json.dumps(done))
        say(f"  [child pid {os.getpid()}] journal has {len(done)} completed branches: {', '.join(done)}")
        handle.result(timeout=WAIT)  # never returns normally: the parent kills us first


# --------------------------------------------------------------------------- the parent process


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {WAIT:.0f}s waiting for {what}")
        time.sleep(0.01)


def crash_child(store: str, run_id: str) -> int:
    """Run the first life in a child process and SIGKILL it mid fan-out; return its pid."""
    command = [sys.executable, __file__, "--child", "--store", store, "--run-id", run_id]
    child = subprocess.Popen(command, env={**os.environ, "TREADLE_DEMO_MARKERS": str(MARKERS)})
    try:
        wait_for(
            lambda: all(finished_in(shard) for shard in FAST) or child.poll() is not None,
            "half of the shards to finish",
        )
        wait_for(
            lambda: (MARKERS / "checkpointed.json").exists() or child.poll() is not None,
            "the child to see them checkpointed",
        )
        check(child.poll() is None, f"the child is still running before the kill (exit code {child.poll()})")
        running = [shard for shard in SHARDS if runs_of(shard) and not finished_in(shard)]
        say(f"Half the shards are done and {len(running)} are mid-flight: sending SIGKILL to pid {child.pid}")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=WAIT)
    say(f"Child exited with {child.returncode} (killed by signal {-child.returncode})")
    return child.pid


def print_table(title: str, rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    say(title)
    for n, row in enumerate(rows):
        say(("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip())
        if n == 0:
            say("  " + "  ".join("-" * width for width in widths))


def parent_main(store: str, keep_store: bool) -> None:
    run_id = f"crash-demo-{int(time.time())}"
    say(f"Store: {store}")
    say(f"Counters and markers: {MARKERS}")
    say(f"Step 1: a child process runs {len(SHARDS)} shards in parallel; it will be killed mid fan-out")
    child_pid = crash_child(store, run_id)
    checkpointed = set(json.loads((MARKERS / "checkpointed.json").read_text()))

    before = {shard: runs_of(shard) for shard in SHARDS}
    rows = [["shard", "runs", "finished", "checkpointed (step)"]]
    for shard in SHARDS:
        step = f"0.{shard}"
        rows.append(
            [
                str(shard),
                str(len(before[shard])),
                "yes" if finished_in(shard) else "no (killed)",
                f"yes ({step})" if step in checkpointed else "no",
            ]
        )
    say()
    print_table("BEFORE the restart (what the killed process left behind):", rows)

    say()
    say(f"Step 2: this process (pid {os.getpid()}) opens a Runtime on the same store")
    with Runtime(store) as rt:
        handle = rt.get(run_id)
        say(f"  the run was resumed on open; status: {handle.status().value}")
        result = handle.result(timeout=WAIT)
        final_status = handle.status()
        history = {r.step: r for r in handle.history()}
    say(f"  result: {result}")

    rows = [["shard", "runs total", "ran again after the crash?", "result"]]
    for shard in SHARDS:
        again = [pid for pid in runs_of(shard) if pid == os.getpid()]
        rows.append(
            [
                str(shard),
                str(len(runs_of(shard))),
                "yes (was unfinished)" if again else "no (checkpointed)",
                str(history[f"0.{shard}"].value),
            ]
        )
    say()
    print_table("AFTER the restart:", rows)

    # The promises: checkpointed shards never ran again; every other shard ran exactly once more.
    expected = {"shards": len(SHARDS), "sum_of_squares": sum(s * s for s in SHARDS)}
    check(result == expected, f"result should be {expected}, got {result}")
    check(final_status is RunStatus.COMPLETED, f"the run completed, status {final_status}")
    check(
        checkpointed == {f"0.{shard}" for shard in FAST}, f"the fast shards were checkpointed: {checkpointed}"
    )
    for shard in SHARDS:
        pids = runs_of(shard)
        if f"0.{shard}" in checkpointed:
            check(pids == [child_pid], f"shard {shard} finished before the crash and never ran again: {pids}")
        else:
            check(pids == [child_pid, os.getpid()], f"shard {shard} ran once more after the crash: {pids}")
    reran = [s for s in SHARDS if f"0.{s}" not in checkpointed]
    say()
    say(f"OK: {len(checkpointed)} completed branches were not run again; only shards {reran} ran again")
    say()
    say("Where to look next:")
    where = store if keep_store else "./demo-store"
    if not keep_store:
        say("  - keep the store to inspect it: add --store ./demo-store to the command line, then:")
    say(f"  - .venv/bin/treadle --store {where} show {run_id}      (the step tree, statuses, attempts)")
    say(f"  - .venv/bin/treadle --store {where} timeline {run_id} -o run.html   (branches over time)")
    say("  - examples/batch_map.py and examples/map_reduce.py: the same fan-out with concurrency limits")
    say("  - docs/parallel-semantics.md: what is checkpointed when, and what runs again after a crash")


def main() -> None:
    global MARKERS, FIRST_LIFE
    parser = build_parser(__doc__ or "")
    parser.add_argument("--child", action="store_true", help="(internal) run the first life of the demo")
    parser.add_argument("--run-id", help="(internal) the run id the child starts")
    args = parser.parse_args()
    if args.child:
        FIRST_LIFE = True
        child_main(args.store, args.run_id)
        return
    MARKERS = Path(tempfile.mkdtemp(prefix="treadle-crash-markers-"))
    try:
        with store_folder(args.store, "crash") as store:
            parent_main(store, keep_store=args.store is not None)
    finally:
        for path in MARKERS.iterdir():
            path.unlink()
        MARKERS.rmdir()


if __name__ == "__main__":
    main()
