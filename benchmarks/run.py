"""treadle benchmark harness: ``python benchmarks/run.py [names...] [--reps N] [--quick] [--json out.json]``.

Measures, in one invocation:

* the floor of the stack: a durable LMDB commit of 1 record (and of 100
  records) on a raw ``lmdb`` environment opened like treadle's store
  (``sync=True``, ``metasync=True``), in the same folder tree as every store
  below, at the start and at the end of the run; and a round trip between two
  threads (two ``SimpleQueue`` hand-offs), what a step's dispatch to a branch
  actor and its outcome's way back through the run actor's inbox cost (a
  sequential step whose run actor is idle makes neither: direct delivery);
* every treadle benchmark, each in its own child process (clean RSS, clean
  registry), with ``durability="sync"``;
* the same workloads written idiomatically for DBOS (embedded SQLite, FULL
  sync) when ``dbos`` is importable, also one child process per benchmark.

It prints one table: median and p99 over the repetitions, the target,
met/missed, the multiple of the floor and the ratio to DBOS. See
benchmarks/README.md for what each benchmark measures and how.
Exit status: 0 when every benchmark ran (met or missed), 1 when one failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import PAIRED_FLOOR, RESULT_PREFIX, CommitFloor, median, p99  # noqa: E402

ALL = ["floor", "seq_steps", "fanout", "race", "throughput", "recover", "map10k", "replay", "suspended"]
CHILD_TIMEOUT = 1800.0


# -- sizes ----------------------------------------------------------------------------------


def plan(name: str, reps: int, quick: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(treadle params, DBOS params or None) of benchmark ``name``."""
    q = quick
    if name == "seq_steps":
        steps = 20 if q else 1000
        return {"steps": steps, "reps": reps, "floor_block": 20 if q else 200}, {"steps": steps, "reps": reps}
    if name == "fanout":
        sizes = [10, 50] if q else [100, 1000]
        # DBOS takes seconds per fan-out of 1,000: one repetition of that size.
        return {"sizes": sizes, "reps": reps}, {"sizes": sizes, "reps_per_size": [reps, 1]}
    if name == "race":
        per_rep = 5 if q else 40
        return {"reps": reps, "per_rep": per_rep}, {"reps": reps, "per_rep": 5 if q else 10}
    if name == "throughput":
        threads = 10 if q else 100
        return (
            {"reps": reps, "count": 30 if q else 2000, "threads": threads},
            {"reps": min(reps, 3), "count": 30 if q else 300, "threads": threads},
        )
    if name == "recover":
        # DBOS writes one SQLite transaction per step (~3-5 ms here): 100 runs of 20 steps, not 1,000.
        return (
            {"runs": 3 if q else 100, "steps": 10 if q else 1000, "reps": reps},
            {"runs": 3 if q else 100, "steps": 10 if q else 20, "reps": min(reps, 3)},
        )
    if name == "map10k":
        return {
            "small": 50 if q else 1000,
            "large": 200 if q else 10_000,
            "concurrency": 64,
            "reps": reps,
        }, None
    if name == "replay":
        return {"steps": 50 if q else 10_000, "reps": reps}, None
    if name == "suspended":
        return {"n": 50 if q else 10_000, "reps": min(reps, 3)}, None
    raise KeyError(name)


# -- targets --------------------------------------------------------------------------------


@dataclass
class Target:
    text: str
    check: Callable[[float, float], bool]  # (median, floor ms) -> met
    dbos_text: str = ""
    dbos_check: Callable[[float], bool] | None = None  # (speed-up vs DBOS) -> met
    bound: Callable[[float], float] | None = None  # floor ms -> the limit in ms (floor-relative targets)


def targets(name: str, tp: dict[str, Any]) -> dict[str, Target]:
    """Targets of PERFORMANCE.md keyed by metric name (names depend on the sizes)."""
    if name == "seq_steps":
        # Judged against its paired floor (see build_rows).
        return {
            "step gap": Target(
                "p50 <= 1.25x paired floor", lambda m, f: m <= 1.25 * f, bound=lambda f: 1.25 * f
            )
        }
    if name == "fanout":
        a, b = tp["sizes"]
        return {
            f"all of {a}": Target("<= 25 ms", lambda m, f: m <= 25, ">= 20x faster", lambda s: s >= 20),
            f"all of {b}": Target("<= 250 ms", lambda m, f: m <= 250),
        }
    if name == "race":
        return {"race of 2": Target("<= 2 ms", lambda m, f: m <= 2)}
    if name == "throughput":
        return {
            "3-branch workflows": Target(
                ">= 1000 wf/s", lambda m, f: m >= 1000, ">= 10x DBOS", lambda s: s >= 10
            )
        }
    if name == "recover":
        return {"first re-dispatch": Target("<= 50 ms", lambda m, f: m <= 50)}
    if name == "map10k":
        large, small = tp["large"], tp["small"]
        slack = 1.25 * large / small
        return {
            f"map {large} time": Target("completes", lambda m, f: not math.isnan(m)),
            f"map {large} peak RSS": Target("< 200 MB", lambda m, f: m < 200),
            f"time {large}/{small}": Target(
                f"<= {slack:g} (linear {large // small})", lambda m, f: m <= slack
            ),
        }
    if name == "replay":
        return {f"replay {tp['steps']} to new step": Target("<= 100 ms", lambda m, f: m <= 100)}
    if name == "suspended":
        n = tp["n"]
        return {
            # No thread per suspended run: what remains is the bounded pool of idle run actors
            # (runtime/_supervisor.py: up to IDLE_HOSTS_BURST = 256 while runs are being started,
            # trimmed back to IDLE_HOSTS = 64 once the burst is over), the same for 1 or 10,000 runs.
            f"extra threads, {n} asleep": Target("<= 64 (pool bound; none per run)", lambda m, f: m <= 64),
            f"RSS, {n} asleep": Target("< 150 MB", lambda m, f: m < 150),
        }
    return {}


# -- the floor ------------------------------------------------------------------------------


def measure_floor(tmp: str, commits: int, batches: int) -> dict[str, list[float]]:
    """Durable LMDB commits on a raw environment opened like treadle's store (sync + metasync)."""
    floor = CommitFloor(tmp, warm_up=min(20, commits))
    try:
        singles = floor.commits(commits)
        hundreds = floor.commits(batches, records=100)
    finally:
        floor.close()
    return {"1 record/txn": singles, "100 records/txn": hundreds, "thread round trip": round_trips(commits)}


def round_trips(count: int) -> list[float]:
    """Two thread hand-offs through ``queue.SimpleQueue`` (what a dispatch to a branch actor
    and an outcome's way back through the run actor's inbox cost at the least), in ms."""
    there: queue.SimpleQueue[int] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        for _ in range(count + 20):
            back.put(there.get())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    for i in range(count + 20):
        t0 = time.perf_counter()
        there.put(i)
        back.get(timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
    thread.join(10)
    return times[20:]  # the first ones start the thread


# -- children -------------------------------------------------------------------------------


def run_child(system: str, name: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    script = os.path.join(HERE, "_treadle_bench.py" if system == "treadle" else "_dbos_bench.py")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, script, name, json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "seconds": time.perf_counter() - t0}
    payload: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            payload = json.loads(line[len(RESULT_PREFIX) :])
    if payload is None:
        payload = {"error": f"exit {proc.returncode} without a result"}
    if "error" in payload or proc.returncode != 0:
        payload.setdefault("error", f"exit {proc.returncode}")
        payload["stderr"] = proc.stderr[-4000:]
    payload["seconds"] = time.perf_counter() - t0
    return payload


# -- the table ------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    a = abs(value)
    if float(value).is_integer() and a < 1e6:
        return f"{int(value):,}"
    if a >= 100:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Row:
    bench: str
    metric: str
    unit: str
    median: float
    p99: float
    n: int
    target: str = ""
    met: str = ""
    x_floor: float | None = None
    dbos_median: float | None = None
    dbos_p99: float | None = None
    ratio: float | None = None  # treadle / DBOS (medians)
    speedup: float | None = None  # > 1: treadle better
    dbos_target: str = ""
    dbos_met: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def times_floor(unit: str, value: float, floor_ms: float) -> float | None:
    if math.isnan(value) or floor_ms <= 0:
        return None
    if unit == "ms":
        return value / floor_ms
    if unit in ("wf/s", "runs/s") and value > 0:
        return (1000.0 / value) / floor_ms  # time per workflow, in floors
    return None


def build_rows(
    name: str,
    tp: dict[str, Any],
    treadle: dict[str, Any],
    dbos: dict[str, Any] | None,
    floor_ms: float,
    quick: bool,
    dbos_note: str,
) -> list[Row]:
    rows: list[Row] = []
    if "error" in treadle:
        return [Row(name, "ERROR", "", math.nan, math.nan, 0, met="ERROR", note=treadle["error"])]
    goals = targets(name, tp)
    # A benchmark that measured its own floor alongside its repetitions (seq_steps) is
    # judged against that one: the floor drifts by more than a target's margin over the
    # minutes between the run-wide floor's two measurements.
    judge_floor, paired = floor_ms, False
    for m in treadle["metrics"]:
        if m["metric"] == PAIRED_FLOOR and m["samples"]:
            judge_floor, paired = median(m["samples"]), True
    peer = {}
    if dbos is not None and "error" not in dbos:
        peer = {m["metric"]: m for m in dbos.get("metrics", [])}
    for m in treadle["metrics"]:
        samples = m["samples"]
        row = Row(name, m["metric"], m["unit"], median(samples), p99(samples), len(samples), samples=samples)
        if m.get("higher_is_better"):
            row.p99 = min(samples) if samples else math.nan  # the worst repetition
            row.note = "p99 column: worst rep"
        row.x_floor = times_floor(row.unit, row.median, floor_ms)
        goal = goals.get(row.metric)
        if goal is not None:
            row.target = goal.text
            row.met = "n/a" if quick else ("met" if goal.check(row.median, judge_floor) else "MISSED")
            if goal.bound is not None:
                row.target += f" = {fmt(goal.bound(judge_floor))} ms"
            if paired:
                over = (row.median - judge_floor) * 1000
                row.note = f"{row.median / judge_floor:.2f}x paired floor, {over:.0f} us over it"
        other = peer.get(row.metric)
        if other is not None and other["samples"]:
            row.dbos_median, row.dbos_p99 = median(other["samples"]), p99(other["samples"])
            if m.get("higher_is_better"):
                row.dbos_p99 = min(other["samples"])
            if row.median and row.dbos_median:
                row.ratio = row.median / row.dbos_median
                row.speedup = row.ratio if m.get("higher_is_better") else 1 / row.ratio
            if goal is not None and goal.dbos_check is not None and row.speedup is not None:
                row.dbos_target = goal.dbos_text
                row.dbos_met = "n/a" if quick else ("met" if goal.dbos_check(row.speedup) else "MISSED")
            if dbos_note:
                row.note = (row.note + "; " if row.note else "") + dbos_note
        rows.append(row)
    if dbos is not None and "error" in dbos:
        rows[0].note = (rows[0].note + "; " if rows[0].note else "") + f"DBOS failed: {dbos['error']}"
    return rows


def speed_text(speedup: float | None) -> str:
    if speedup is None:
        return "-"
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"


def render(rows: list[Row]) -> str:
    head = [
        "benchmark",
        "metric",
        "unit",
        "median",
        "p99",
        "n",
        "target",
        "met",
        "x floor",
        "DBOS med",
        "DBOS p99",
        "vs DBOS",
        "DBOS target",
        "note",
    ]
    body = []
    for r in rows:
        met = r.met
        if r.dbos_met:
            met = f"{met} / DBOS {r.dbos_met}"
        body.append(
            [
                r.bench,
                r.metric,
                r.unit,
                fmt(r.median),
                fmt(r.p99),
                str(r.n),
                r.target,
                met,
                fmt(r.x_floor),
                fmt(r.dbos_median),
                fmt(r.dbos_p99),
                speed_text(r.speedup),
                r.dbos_target,
                r.note,
            ]
        )
    widths = [
        max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i]) for i in range(len(head))
    ]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(b) for b in body)
    return "\n".join(out)


# -- machine --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "nproc": affinity,
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def dbos_available() -> bool:
    return importlib.util.find_spec("dbos") is not None


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"benchmarks to run (default: all): {', '.join(ALL)}"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 1 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke test of the harness, not a measurement"
    )
    parser.add_argument("--json", metavar="OUT", help="also write every figure and sample to this JSON file")
    parser.add_argument("--no-dbos", action="store_true", help="skip the DBOS side even when it is installed")
    parser.add_argument(
        "--tmpdir", default=None, help="where stores and the floor live (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores written (default: removed)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    names = [n for n in ALL if n in args.names] if args.names else list(ALL)
    reps = args.reps if args.reps is not None else (1 if args.quick else 5)
    if reps < 1:
        parser.error("--reps must be >= 1")

    base = tempfile.mkdtemp(prefix="treadle-bench-", dir=args.tmpdir)
    info = machine()
    started = dt.datetime.now(dt.UTC)
    with_dbos = not args.no_dbos and dbos_available()
    print(
        f"treadle benchmarks {started:%Y-%m-%d %H:%M UTC}  nproc={info['nproc']}  Python {info['python']}  "
        f"load avg {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}"
    )
    print(
        f"stores and floor in {base} (one filesystem); reps={reps}"
        + ("  QUICK: tiny sizes, targets not judged" if args.quick else "")
    )
    if not with_dbos:
        print("DBOS: not installed" if not args.no_dbos else "DBOS: skipped (--no-dbos)")
    sys.stdout.flush()

    commits, batches = (20, 5) if args.quick else (1000, 100)
    floor_start = measure_floor(base, commits, batches)
    results: dict[str, Any] = {}
    failed = False
    dbos_info: dict[str, Any] = {}
    for name in names:
        if name == "floor":
            continue
        tp, dp = plan(name, reps, args.quick)
        assert tp is not None
        tp["tmp"] = base
        print(f"running {name} (treadle) ...", end=" ", flush=True)
        treadle = run_child("treadle", name, tp, CHILD_TIMEOUT)
        print(
            f"{treadle['seconds']:.1f}s" + (f"  ERROR: {treadle['error']}" if "error" in treadle else ""),
            flush=True,
        )
        if "error" in treadle:
            failed = True
            sys.stderr.write(treadle.get("stderr", ""))
        dbos = None
        if with_dbos and dp is not None:
            dp["tmp"] = base
            print(f"running {name} (DBOS) ...", end=" ", flush=True)
            dbos = run_child("dbos", name, dp, CHILD_TIMEOUT)
            print(
                f"{dbos['seconds']:.1f}s" + (f"  ERROR: {dbos['error']}" if "error" in dbos else ""),
                flush=True,
            )
            if "error" in dbos:
                failed = True
                sys.stderr.write(dbos.get("stderr", ""))
            else:
                dbos_info = {
                    k: v
                    for k, v in dbos.get("info", {}).items()
                    if k in ("dbos_version", "synchronous", "journal_mode")
                }
        results[name] = {"treadle_params": tp, "treadle": treadle, "dbos_params": dp, "dbos": dbos}

    floor_end = measure_floor(base, commits, batches)
    singles = floor_start["1 record/txn"] + floor_end["1 record/txn"]
    floor_ms = median(singles)

    def floor_row(metric: str, samples: list[float], note: str = "") -> Row:
        return Row("floor", metric, "ms", median(samples), p99(samples), len(samples), note=note)

    def both(key: str) -> list[float]:
        return floor_start[key] + floor_end[key]

    floor_rows = [
        floor_row("1 record/txn (start)", floor_start["1 record/txn"]),
        floor_row("1 record/txn (end)", floor_end["1 record/txn"]),
        floor_row("100 records/txn", both("100 records/txn"), "per txn"),
        floor_row("thread round trip", both("thread round trip"), "2 hand-offs between threads"),
    ]
    floor_rows[0].note = f"reference: pooled median {fmt(floor_ms)} ms"
    for r in floor_rows:
        r.x_floor = r.median / floor_ms
    # Now that the floor is known: multiples of it, and the floor-relative targets.
    final: list[Row] = list(floor_rows)
    for name in names:
        if name == "floor" or name not in results:
            continue
        res = results[name]
        dbos_note = ""
        dp = res["dbos_params"]
        if res["dbos"] is not None and name == "recover" and dp["steps"] != res["treadle_params"]["steps"]:
            dbos_note = f"DBOS at {dp['runs']} runs x {dp['steps']} steps"
        final.extend(
            build_rows(
                name, res["treadle_params"], res["treadle"], res["dbos"], floor_ms, args.quick, dbos_note
            )
        )

    info["loadavg_end"] = os.getloadavg()
    print()
    if with_dbos and dbos_info:
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            dbos_info.get("synchronous"), dbos_info.get("synchronous")
        )
        print(
            f"DBOS {dbos_info.get('dbos_version')}: SQLite synchronous={sync}, "
            f"journal_mode={dbos_info.get('journal_mode')}; "
            "treadle: durability='sync' (fsync every commit)"
        )
    print(render(final))
    print(
        f"\nfloor = median durable LMDB commit of 1 record = {fmt(floor_ms)} ms; "
        f"load avg at end {' '.join(f'{x:.2f}' for x in info['loadavg_end'])}"
    )
    if args.json:
        out = {
            "date": started.isoformat(),
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "machine": info,
            "quick": args.quick,
            "reps": reps,
            "floor_ms": floor_ms,
            "dbos": dbos_info if with_dbos else None,
            "rows": [r.as_dict() for r in final],
            "raw": results,
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
