"""DBOS side of the benchmarks (the peer), written the way DBOS documents it.

Run by ``run.py`` as ``python _dbos_bench.py NAME PARAMS_JSON``, one process
per benchmark (DBOS is a process-wide singleton). DBOS uses an embedded
SQLite system database in a fresh folder under ``params["tmp"]`` (the same
filesystem as treadle's store and the floor). DBOS leaves SQLite's defaults:
rollback journal (``journal_mode=delete``) and ``synchronous=FULL``, so every
commit is fsynced, which is comparable to treadle's ``durability="sync"``;
each result reports the pragmas actually in force.

Idioms: sequential steps are plain ``@DBOS.step()`` calls in a
``@DBOS.workflow()``; parallel steps are ``asyncio.gather`` over async steps
in an async workflow; a race is ``asyncio.wait(..., FIRST_COMPLETED)``;
recovery is what ``DBOS.launch()`` does for pending workflows of this
executor and application version.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from _common import Stamps, child_main, closed_loop, metric
from dbos import DBOS

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT_TIMEOUT = 600.0

STAMPS = Stamps()
GATE = Stamps()
FOREVER = threading.Event()


@DBOS.step()
def stamp(i: int) -> int:
    STAMPS.hit()
    return i


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.step()
async def anoop(i: int) -> int:
    return i


@DBOS.step()
def gate(i: int) -> int:
    GATE.hit()
    if os.environ.get("BENCH_GATE") == "block":
        FOREVER.wait(3600)  # the builder process is SIGKILLed while this waits
    return i


@DBOS.workflow()
def seq_wf(n: int) -> int:
    for i in range(n):
        stamp(i)
    return n


@DBOS.workflow()
async def fan_wf(n: int) -> int:
    results = await asyncio.gather(*[anoop(i) for i in range(n)])
    return len(results)


@DBOS.workflow()
async def race_wf() -> int:
    tasks = [asyncio.ensure_future(anoop(i)) for i in range(2)]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return int(next(iter(done)).result())


@DBOS.workflow()
async def three_wf() -> list[int]:
    return list(await asyncio.gather(anoop(0), anoop(1), anoop(2)))


@DBOS.workflow()
def long_wf(steps: int) -> int:
    for i in range(steps - 1):
        noop(i)
    return gate(steps - 1)


# -- helpers ------------------------------------------------------------------------------


def _launch(path: str) -> dict[str, Any]:
    """Configure and launch DBOS on a SQLite file in ``path``; the pragmas in force."""
    DBOS(
        config={
            "name": "treadle-bench",
            "system_database_url": f"sqlite:///{os.path.join(path, 'dbos.sqlite')}",
            "log_level": "ERROR",
        }
    )
    DBOS.launch()
    return _pragmas()


def _pragmas() -> dict[str, Any]:
    import sqlalchemy as sa
    from dbos._dbos import _get_dbos_instance

    with _get_dbos_instance()._sys_db.engine.connect() as conn:
        return {
            "synchronous": conn.execute(sa.text("PRAGMA synchronous")).scalar(),
            "journal_mode": conn.execute(sa.text("PRAGMA journal_mode")).scalar(),
        }


def _new_dir(params: dict[str, Any], label: str) -> str:
    return tempfile.mkdtemp(prefix=f"dbos-{label}-", dir=params["tmp"])


def _info(pragmas: dict[str, Any]) -> dict[str, Any]:
    import dbos

    return {"dbos_version": getattr(dbos, "__version__", None) or _version(), **pragmas}


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


def _result(metrics: list[dict[str, Any]], pragmas: dict[str, Any], **info: Any) -> dict[str, Any]:
    return {"metrics": metrics, "info": {**_info(pragmas), **info}}


# -- benchmarks -----------------------------------------------------------------------------


def bench_seq_steps(params: dict[str, Any]) -> dict[str, Any]:
    steps, reps = params["steps"], params["reps"]
    pragmas = _launch(_new_dir(params, "seq"))
    DBOS.start_workflow(seq_wf, min(steps, 20)).get_result()  # warm-up
    gaps: list[float] = []
    per_step: list[float] = []
    for _ in range(reps):
        STAMPS.clear()
        t0 = time.perf_counter()
        DBOS.start_workflow(seq_wf, steps).get_result()
        per_step.append((time.perf_counter() - t0) * 1000 / steps)
        stamps = STAMPS.wait_count(steps, 10)
        gaps.extend((b - a) * 1000 for a, b in itertools.pairwise(stamps))
    return _result([metric("step gap", "ms", gaps), metric("wall / steps", "ms", per_step)], pragmas)


def bench_fanout(params: dict[str, Any]) -> dict[str, Any]:
    pragmas = _launch(_new_dir(params, "fanout"))
    out = []
    for n, reps in zip(params["sizes"], params["reps_per_size"], strict=True):
        if reps <= 0:
            continue
        walls = []
        for _ in range(reps):
            t0 = time.perf_counter()
            got = DBOS.start_workflow(fan_wf, n).get_result()
            walls.append((time.perf_counter() - t0) * 1000)
            assert got == n, got
        out.append(metric(f"all of {n}", "ms", walls, size=n))
    return _result(out, pragmas)


def bench_race(params: dict[str, Any]) -> dict[str, Any]:
    pragmas = _launch(_new_dir(params, "race"))
    DBOS.start_workflow(race_wf).get_result()  # warm-up
    times = []
    for _ in range(params["reps"] * params["per_rep"]):
        t0 = time.perf_counter()
        DBOS.start_workflow(race_wf).get_result()
        times.append((time.perf_counter() - t0) * 1000)
    return _result([metric("race of 2", "ms", times)], pragmas)


def bench_throughput(params: dict[str, Any]) -> dict[str, Any]:
    pragmas = _launch(_new_dir(params, "throughput"))
    DBOS.start_workflow(three_wf).get_result()  # warm-up

    def one() -> None:
        DBOS.start_workflow(three_wf).get_result()

    rates = [closed_loop(params["count"], params["threads"], one) for _ in range(params["reps"])]
    return _result([metric("3-branch workflows", "wf/s", rates, higher_is_better=True)], pragmas)


def build_long(params: dict[str, Any]) -> dict[str, Any]:
    """Grandchild: start ``runs`` workflows that block in their last step, print READY, get SIGKILLed."""
    _launch(params["path"])
    t0 = time.perf_counter()
    for _ in range(params["runs"]):
        DBOS.start_workflow(long_wf, params["steps"])
    GATE.wait_count(params["runs"], RESULT_TIMEOUT)
    sys.stdout.write(f"READY {time.perf_counter() - t0:.3f}\n")
    sys.stdout.flush()
    FOREVER.wait(RESULT_TIMEOUT)
    return {"error": "build_long was not killed"}


def measure_restart(params: dict[str, Any]) -> dict[str, Any]:
    """Grandchild: launch DBOS on a copy of the killed database; first and last re-dispatched gate step."""
    runs = params["runs"]
    t_call = time.perf_counter()
    pragmas = _launch(params["path"])
    t_ret = time.perf_counter()
    stamps = GATE.wait_count(runs, RESULT_TIMEOUT)
    return {
        "open": (t_ret - t_call) * 1000,
        "first": (stamps[0] - t_ret) * 1000,
        "all": (max(stamps) - t_ret) * 1000,
        "pragmas": pragmas,
    }


def bench_recover(params: dict[str, Any]) -> dict[str, Any]:
    runs, steps, reps = params["runs"], params["steps"], params["reps"]
    source = _new_dir(params, "recover-src")
    env = {**os.environ, "BENCH_GATE": "block"}
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_dbos_bench.py"),
            "build_long",
            json.dumps({"path": source, "runs": runs, "steps": steps}),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(RESULT_TIMEOUT)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if not lines or not lines[0].startswith("READY"):
        raise RuntimeError(f"DBOS builder did not get ready: {lines!r}")
    built = float(lines[0].split()[1])
    firsts, opens, alls = [], [], []
    pragmas: dict[str, Any] = {}
    env = {k: v for k, v in os.environ.items() if k != "BENCH_GATE"}
    for _ in range(reps):
        path = _new_dir(params, "recover")
        shutil.rmtree(path)
        shutil.copytree(source, path)
        out = subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "_dbos_bench.py"),
                "measure_restart",
                json.dumps({"path": path, "runs": runs}),
            ],
            stdout=subprocess.PIPE,
            text=True,
            timeout=RESULT_TIMEOUT,
            env=env,
            check=False,
        )
        got = None
        for line in out.stdout.splitlines():
            if line.startswith("BENCH-RESULT "):
                got = json.loads(line[len("BENCH-RESULT ") :])
        if got is None or "error" in got:
            raise RuntimeError(f"DBOS restart measurement failed: {got!r}")
        firsts.append(got["first"])
        opens.append(got["open"])
        alls.append(got["all"])
        pragmas = got["pragmas"]
        shutil.rmtree(path, ignore_errors=True)
    return _result(
        [
            metric("first re-dispatch", "ms", firsts),
            metric("Runtime() open", "ms", opens),
            metric("first, from Runtime() call", "ms", [o + f for o, f in zip(opens, firsts, strict=True)]),
            metric(f"all {runs} re-dispatched", "ms", alls),
        ],
        pragmas,
        runs=runs,
        steps=steps,
        build_seconds=built,
    )


BENCHES = {
    "seq_steps": bench_seq_steps,
    "fanout": bench_fanout,
    "race": bench_race,
    "throughput": bench_throughput,
    "recover": bench_recover,
    "build_long": build_long,
    "measure_restart": measure_restart,
}

if __name__ == "__main__":
    # A race loser finishing after its workflow logs an ownership conflict (DBOS and asyncio loggers).
    logging.getLogger("dbos").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    child_main(BENCHES)
