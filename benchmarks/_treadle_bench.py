"""treadle side of the benchmarks; run by ``run.py`` as ``python _treadle_bench.py NAME PARAMS_JSON``.

Every benchmark opens its own store in a fresh folder under ``params["tmp"]``
(the same filesystem as the floor measurement) with ``durability="sync"``:
every commit is fsynced, as in production defaults.

Benchmarks that need a clean process per measurement (peak RSS, a store
written by a process that was then killed) run grandchildren of this same
script: ``map_one``, ``suspended_one``, ``build_long``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from _common import (
    PAIRED_FLOOR,
    CommitFloor,
    Stamps,
    child_main,
    closed_loop,
    metric,
    peak_rss_mb,
    rss_mb,
    wait_for,
)

from treadle.runtime import RunStatus, Runtime, activity, workflow

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT_TIMEOUT = 600.0

STAMPS = Stamps()  # bench_stamp invocations
GATE = Stamps()  # bench_gate invocations
GATE_BLOCKS = threading.Event()  # set in build_long: the gate activity never returns
FOREVER = threading.Event()  # never set


@activity(name="bench_noop")
def noop(i: Any) -> Any:
    return i


@activity(name="bench_stamp")
def stamp(i: int) -> int:
    STAMPS.hit()
    return i


@activity(name="bench_gate")
def gate(i: int) -> int:
    GATE.hit()
    if GATE_BLOCKS.is_set():
        FOREVER.wait(3600)  # the builder process is SIGKILLed while this waits
    return i


@workflow(name="bench_seq")
def seq_wf(ctx: Any, n: int) -> Any:
    for i in range(n):
        yield ctx.run(stamp, i)
    return n


@workflow(name="bench_fan")
def fan_wf(ctx: Any, n: int) -> Any:
    results = yield ctx.all([ctx.run(noop, i) for i in range(n)])
    return len(results)


@workflow(name="bench_race")
def race_wf(ctx: Any) -> Any:
    return (yield ctx.race([ctx.run(noop, 0), ctx.run(noop, 1)]))


@workflow(name="bench_three")
def three_wf(ctx: Any) -> Any:
    return (yield ctx.all([ctx.run(noop, 0), ctx.run(noop, 1), ctx.run(noop, 2)]))


@workflow(name="bench_map")
def map_wf(ctx: Any, n: int, concurrency: int) -> Any:
    results = yield ctx.map(list(range(n)), lambda i: ctx.run(noop, i), concurrency=concurrency)
    return len(results)


@workflow(name="bench_long")
def long_wf(ctx: Any, steps: int) -> Any:
    """``steps - 1`` no-op activities, then the gate activity (step ``steps - 1``)."""
    for i in range(steps - 1):
        yield ctx.run(noop, i)
    return (yield ctx.run(gate, steps - 1))


@workflow(name="bench_sleeper")
def sleeper_wf(ctx: Any) -> Any:
    yield ctx.sleep("1h")
    return None


# -- helpers ------------------------------------------------------------------------------


def _store(params: dict[str, Any], label: str) -> str:
    return tempfile.mkdtemp(prefix=f"treadle-{label}-", dir=params["tmp"])


def _open(path: str) -> Runtime:
    return Runtime(path, durability="sync")


def _close(rt: Runtime, timeout: float = 30.0) -> None:
    done = threading.Event()

    def stop() -> None:
        try:
            rt.shutdown()
        finally:
            done.set()

    threading.Thread(target=stop, daemon=True).start()
    if not done.wait(timeout):
        print(f"warning: Runtime.shutdown() did not return within {timeout}s", file=sys.stderr)


def _run_grandchild(mode: str, params: dict[str, Any], timeout: float = RESULT_TIMEOUT) -> dict[str, Any]:
    """Run ``mode`` in a fresh process of this script and return its result payload."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_treadle_bench.py"), mode, json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            payload: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
            if "error" in payload:
                raise RuntimeError(f"{mode}: {payload['error']}")
            return payload
    raise RuntimeError(f"{mode} exited {proc.returncode} without a result")


def _warm_up(params: dict[str, Any]) -> None:
    """Open a scratch runtime and run one tiny workflow so imports and first-call costs are paid."""
    tmp = _store(params, "warm")
    try:
        rt = _open(tmp)
        rt.start(three_wf).result(timeout=60)
        _close(rt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- benchmarks -----------------------------------------------------------------------------


def bench_seq_steps(params: dict[str, Any]) -> dict[str, Any]:
    """Step gaps of ``reps`` runs of ``steps`` steps, with a block of ``floor_block``
    floor commits before each run and after the last (the paired floor: measured in this
    process, seconds from the steps it is compared with)."""
    steps, reps, block = params["steps"], params["reps"], params["floor_block"]
    rt = _open(_store(params, "seq"))
    floor = CommitFloor(params["tmp"])
    try:
        rt.start(seq_wf, min(steps, 50)).result(timeout=RESULT_TIMEOUT)  # warm-up, not timed
        gaps: list[float] = []
        per_step: list[float] = []
        paired: list[float] = []
        for _ in range(reps):
            paired.extend(floor.commits(block))
            STAMPS.clear()
            t0 = time.perf_counter()
            rt.start(seq_wf, steps).result(timeout=RESULT_TIMEOUT)
            wall = time.perf_counter() - t0
            stamps = STAMPS.wait_count(steps, 10)
            gaps.extend((b - a) * 1000 for a, b in itertools.pairwise(stamps))
            per_step.append(wall * 1000 / steps)
        paired.extend(floor.commits(block))
    finally:
        floor.close()
        _close(rt)
    return {
        "metrics": [
            metric("step gap", "ms", gaps),
            metric("wall / steps", "ms", per_step),
            metric(PAIRED_FLOOR, "ms", paired),
        ]
    }


def bench_fanout(params: dict[str, Any]) -> dict[str, Any]:
    reps = params["reps"]
    out = []
    rt = _open(_store(params, "fanout"))
    try:
        for n in params["sizes"]:
            rt.start(fan_wf, n).result(timeout=RESULT_TIMEOUT)  # warm-up, not timed
            walls = []
            for _ in range(reps):
                t0 = time.perf_counter()
                got = rt.start(fan_wf, n).result(timeout=RESULT_TIMEOUT)
                walls.append((time.perf_counter() - t0) * 1000)
                assert got == n, got
            out.append(metric(f"all of {n}", "ms", walls, size=n))
    finally:
        _close(rt)
    return {"metrics": out}


def bench_race(params: dict[str, Any]) -> dict[str, Any]:
    reps, per_rep = params["reps"], params["per_rep"]
    rt = _open(_store(params, "race"))
    times: list[float] = []
    try:
        rt.start(race_wf).result(timeout=RESULT_TIMEOUT)  # warm-up
        for _ in range(reps * per_rep):
            t0 = time.perf_counter()
            rt.start(race_wf).result(timeout=RESULT_TIMEOUT)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        _close(rt)
    return {"metrics": [metric("race of 2", "ms", times)]}


def bench_throughput(params: dict[str, Any]) -> dict[str, Any]:
    reps, count, threads = params["reps"], params["count"], params["threads"]
    rt = _open(_store(params, "throughput"))
    rates = []
    try:
        rt.start(three_wf).result(timeout=RESULT_TIMEOUT)  # warm-up

        def one() -> None:
            rt.start(three_wf).result(timeout=RESULT_TIMEOUT)

        for _ in range(reps):
            rates.append(closed_loop(count, threads, one))
    finally:
        _close(rt)
    return {"metrics": [metric("3-branch workflows", "wf/s", rates, higher_is_better=True)]}


def build_long(params: dict[str, Any]) -> dict[str, Any]:
    """Grandchild: start ``runs`` runs of ``bench_long``, wait until every one blocks in its gate, then
    print READY and wait to be SIGKILLed (the parent kills it: a real crash, no clean shutdown)."""
    GATE_BLOCKS.set()
    rt = _open(params["path"])
    t0 = time.perf_counter()
    for i in range(params["runs"]):
        rt.start(long_wf, params["steps"], run_id=f"long-{i}")
    GATE.wait_count(params["runs"], RESULT_TIMEOUT)
    built = time.perf_counter() - t0
    sys.stdout.write(f"READY {built:.3f}\n")
    sys.stdout.flush()
    FOREVER.wait(RESULT_TIMEOUT)  # bounded: the parent kills us long before
    return {"error": "build_long was not killed"}


def _build_killed_store(params: dict[str, Any], runs: int, steps: int, label: str) -> tuple[str, float]:
    """A store holding ``runs`` unfinished runs of ``steps`` steps, written by a process killed with
    SIGKILL while every run's last activity was in flight. Returns (path, build seconds)."""
    path = _store(params, label)
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_treadle_bench.py"),
            "build_long",
            json.dumps({"path": path, "runs": runs, "steps": steps}),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(RESULT_TIMEOUT)
    line = result[0] if result else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if not line.startswith("READY"):
        raise RuntimeError(f"builder did not get ready: {line!r}")
    return path, float(line.split()[1])


def _measure_restart(source: str, params: dict[str, Any], runs: int) -> tuple[float, float, float]:
    """Copy the killed store and open a Runtime on it.

    Returns (ms inside ``Runtime()``, first re-dispatch ms after it returned,
    last of ``runs`` re-dispatches ms after it returned). Recovery runs in the
    supervisor's thread, so a re-dispatch can even precede the return (< 0).
    """
    path = _store(params, "restart")
    shutil.rmtree(path)
    shutil.copytree(source, path)
    GATE.clear()
    t_call = time.perf_counter()
    rt = _open(path)
    t_ret = time.perf_counter()
    try:
        stamps = GATE.wait_count(runs, RESULT_TIMEOUT)
        for i in range(runs):
            rt.get(f"long-{i}").result(timeout=RESULT_TIMEOUT)
    finally:
        _close(rt)
        shutil.rmtree(path, ignore_errors=True)
    return (t_ret - t_call) * 1000, (stamps[0] - t_ret) * 1000, (max(stamps) - t_ret) * 1000


def bench_recover(params: dict[str, Any]) -> dict[str, Any]:
    runs, steps, reps = params["runs"], params["steps"], params["reps"]
    source, built = _build_killed_store(params, runs, steps, "recover-src")
    _warm_up(params)
    opens, firsts, alls = [], [], []
    for _ in range(reps):
        o, f, a = _measure_restart(source, params, runs)
        opens.append(o)
        firsts.append(f)
        alls.append(a)
    return {
        "metrics": [
            metric("first re-dispatch", "ms", firsts),
            metric("Runtime() open", "ms", opens),
            metric("first, from Runtime() call", "ms", [o + f for o, f in zip(opens, firsts, strict=True)]),
            metric(f"all {runs} re-dispatched", "ms", alls),
        ],
        "info": {"build_seconds": built, "runs": runs, "steps": steps},
    }


def bench_replay(params: dict[str, Any]) -> dict[str, Any]:
    steps, reps = params["steps"], params["reps"]
    source, built = _build_killed_store(params, 1, steps, "replay-src")
    _warm_up(params)
    firsts, opens = [], []
    for _ in range(reps):
        o, f, _ = _measure_restart(source, params, 1)
        opens.append(o)
        firsts.append(f)
    return {
        "metrics": [
            metric(f"replay {steps} to new step", "ms", firsts),
            metric("Runtime() open", "ms", opens),
            metric("from Runtime() call", "ms", [o + f for o, f in zip(opens, firsts, strict=True)]),
        ],
        "info": {"build_seconds": built, "steps": steps},
    }


def map_one(params: dict[str, Any]) -> dict[str, Any]:
    """Grandchild: ``times`` maps of ``n`` with ``concurrency``, one after another in one runtime.

    Returns each map's wall time and this process's peak RSS.
    """
    rt = _open(_store(params, "map"))
    walls = []
    try:
        base = rss_mb()
        for _ in range(params.get("times", 1)):
            t0 = time.perf_counter()
            got = rt.start(map_wf, params["n"], params["concurrency"]).result(timeout=RESULT_TIMEOUT)
            walls.append(time.perf_counter() - t0)
            assert got == params["n"], got
        peak = peak_rss_mb()
    finally:
        _close(rt)
    return {"walls": walls, "peak": peak, "base": base}


def bench_map10k(params: dict[str, Any]) -> dict[str, Any]:
    """The large map once per process; the small one ``large // small`` times per process.

    The growth ratio of a rep is the large map's time over the median of its small maps. The
    small maps then do as much work, over as long a stretch, as the large one, so one noisy
    phase of the host cannot skew the ratio alone (a single 1k map takes ~80 ms; one slow
    stretch in it moved the ratio by 30 % either way).
    """
    small, large, conc, reps = params["small"], params["large"], params["concurrency"], params["reps"]
    walls: dict[int, list[float]] = {small: [], large: []}
    peaks: dict[int, list[float]] = {small: [], large: []}
    times = {small: max(1, large // small), large: 1}
    for _ in range(reps):
        for n in (small, large):
            got = _run_grandchild(
                "map_one", {"tmp": params["tmp"], "n": n, "concurrency": conc, "times": times[n]}
            )
            walls[n].append(statistics.median(got["walls"]) * 1000)
            peaks[n].append(got["peak"])
    ratios = [b / a for a, b in zip(walls[small], walls[large], strict=True)]
    return {
        "metrics": [
            metric(f"map {large} time", "ms", walls[large]),
            metric(f"map {large} peak RSS", "MB", peaks[large]),
            metric(f"time {large}/{small}", "x", ratios, linear=large / small),
            metric(f"map {small} time (median of {times[small]})", "ms", walls[small]),
            metric(f"map {small} peak RSS", "MB", peaks[small]),
        ]
    }


def suspended_one(params: dict[str, Any]) -> dict[str, Any]:
    """Grandchild: ``n`` runs each sleeping 1 h; threads and RSS once every one is suspended."""
    from concurrent.futures import ThreadPoolExecutor

    n = params["n"]
    rt = _open(_store(params, "suspended"))
    try:
        base_threads = threading.active_count()
        base_rss = rss_mb()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(lambda i: rt.start(sleeper_wf, run_id=f"sleep-{i}"), range(n)))
        started = time.perf_counter() - t0
        handles = [rt.get(f"sleep-{i}") for i in range(n)]

        def all_suspended() -> bool:
            return all(h.status() == RunStatus.SUSPENDED for h in handles)

        wait_for(all_suspended, RESULT_TIMEOUT, "every run to be suspended", poll=0.2)
        settled = time.perf_counter() - t0
        time.sleep(0.5)  # let passivated actors' threads finish exiting
        threads = threading.active_count()
        rss = rss_mb()
        peak = peak_rss_mb()
    finally:
        _close(rt)
    return {
        "threads": threads,
        "base_threads": base_threads,
        "rss": rss,
        "base_rss": base_rss,
        "peak": peak,
        "start_rate": n / started,
        "settled": settled,
    }


def bench_suspended(params: dict[str, Any]) -> dict[str, Any]:
    extra, rss, peak, rates = [], [], [], []
    for _ in range(params["reps"]):
        got = _run_grandchild("suspended_one", {"tmp": params["tmp"], "n": params["n"]})
        extra.append(got["threads"] - got["base_threads"])
        rss.append(got["rss"])
        peak.append(got["peak"])
        rates.append(got["start_rate"])
    n = params["n"]
    return {
        "metrics": [
            metric(f"extra threads, {n} asleep", "threads", extra),
            metric(f"RSS, {n} asleep", "MB", rss),
            metric("peak RSS", "MB", peak),
            metric("start rate (32 starters)", "runs/s", rates, higher_is_better=True),
        ]
    }


BENCHES = {
    "seq_steps": bench_seq_steps,
    "fanout": bench_fanout,
    "race": bench_race,
    "throughput": bench_throughput,
    "recover": bench_recover,
    "replay": bench_replay,
    "map10k": bench_map10k,
    "suspended": bench_suspended,
    "build_long": build_long,
    "map_one": map_one,
    "suspended_one": suspended_one,
}

if __name__ == "__main__":
    child_main(BENCHES)
