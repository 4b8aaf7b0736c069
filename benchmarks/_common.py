"""Helpers shared by the benchmark harness and its child processes (stdlib only).

A child process prints exactly one line ``BENCH-RESULT {json}`` on stdout;
everything else it prints (logs, DBOS warnings) is ignored by the parent.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
# seq_steps' own floor: commits measured in its process, in blocks between its repetitions.
PAIRED_FLOOR = "commit floor, paired"


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples)) if samples else math.nan


def p99(samples: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (the max when there are fewer than 100 samples)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return float(ordered[rank - 1])


def proc_status_mb(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` figure of this process in MB (ru_maxrss when /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    return proc_status_mb("VmRSS")


def peak_rss_mb() -> float:
    return proc_status_mb("VmHWM")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.001) -> Any:
    """Poll ``predicate`` until truthy; ``TimeoutError`` after ``timeout`` seconds (every wait is bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Stamps:
    """Thread-safe list of ``time.perf_counter()`` stamps with an event per count reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times: list[float] = []
        self._cond = threading.Condition(self._lock)

    def hit(self) -> None:
        now = time.perf_counter()
        with self._cond:
            self.times.append(now)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self.times.clear()

    def count(self) -> int:
        with self._cond:
            return len(self.times)

    def wait_count(self, n: int, timeout: float) -> list[float]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.times) >= n, timeout):
                raise TimeoutError(f"only {len(self.times)} of {n} stamps after {timeout}s")
            return list(self.times)


class CommitFloor:
    """The floor of a durable step: one-record LMDB commits on a raw environment opened
    like treadle's store (``sync=True``, ``metasync=True``), in a fresh folder under ``tmp``.

    Used by ``run.py`` (at the start and the end of a run) and by ``seq_steps`` (between
    its repetitions, in its own process: the paired floor).
    """

    def __init__(self, tmp: str, warm_up: int = 20) -> None:
        import lmdb
        import msgpack

        self.path = tempfile.mkdtemp(prefix="floor-", dir=tmp)
        self.env = lmdb.open(self.path, map_size=64 * 1024 * 1024, max_dbs=2, sync=True, metasync=True)
        self.db = self.env.open_db(b"journal")
        step = {"v": 1, "s": "12", "k": "activity", "n": "noop", "st": "completed", "val": b"\x0c", "a": 1}
        self.record = msgpack.packb({**step, "t0": time.time(), "t1": time.time(), "o": [12]})
        self.seq = 0
        for _ in range(warm_up):  # file growth, first pages
            self.commit()

    def commit(self, records: int = 1) -> float:
        """One durable transaction of ``records`` records; its time in ms."""
        t0 = time.perf_counter()
        with self.env.begin(write=True, db=self.db) as txn:
            for _ in range(records):
                self.seq += 1
                txn.put(b"run-floor\x00" + self.seq.to_bytes(8, "big"), self.record)
        return (time.perf_counter() - t0) * 1000

    def commits(self, count: int, records: int = 1) -> list[float]:
        return [self.commit(records) for _ in range(count)]

    def close(self) -> None:
        self.env.close()
        shutil.rmtree(self.path, ignore_errors=True)


def closed_loop(count: int, threads: int, one: Callable[[], Any], timeout: float = 600.0) -> float:
    """``threads`` starter threads each run ``one()`` until ``count`` calls are done; calls/s."""
    lock = threading.Lock()
    left = [count]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        try:
            barrier.wait(60)
        except threading.BrokenBarrierError:
            return
        while True:
            with lock:
                if left[0] <= 0 or errors:
                    return
                left[0] -= 1
            try:
                one()
            except BaseException as exc:
                errors.append(exc)
                return

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait(60)
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise TimeoutError("a starter thread did not finish in time")
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return count / wall


def metric(name: str, unit: str, samples: Sequence[float], **extra: Any) -> dict[str, Any]:
    return {"metric": name, "unit": unit, "samples": [float(s) for s in samples], **extra}


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def child_main(benches: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """``python CHILD.py NAME PARAMS_JSON``: run one benchmark and emit its result.

    Exits with ``os._exit`` so stray daemon threads (race losers, idle actors)
    never hold the process up after the result is printed.
    """
    name, params = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = benches[name](params)
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        emit({"error": f"{type(exc).__name__}: {exc}"})
        sys.stdout.flush()
        os._exit(1)
    emit(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
