"""Executors side by side: ``python benchmarks/executors.py [--reps N] [--quick] [--json out.json]``.

Three workloads, each on ``threads``, ``processes`` (``ProcessExecutor(workers=2)``)
and ``ray`` (a local Ray, ``num_cpus=2``; skipped if Ray is not installed),
each executor in its own child process with a fresh durable store:

* ``cpu_fanout``: ``ctx.all`` of 8 branches of pure-Python work calibrated to
  ~0.5 s each on one core. Threads are held to one core by the GIL; the
  figure to read is the speed-up over threads (target >= 1.8x for processes
  on 2 cores: 8 x 0.5 s of work cannot go below ~2 s there).
* ``noop_fanout``: ``ctx.all`` of 200 no-op activities; wall time / 200 is
  the per-branch cost, and its excess over threads is the executor's
  per-branch overhead.
* ``noop_seq``: 50 sequential no-op steps; the per-step latency (one durable
  commit each) and its excess over threads.

Warm-up: each child first runs one fan-out of 2 no-ops (starts the process
workers, the Ray workers and their imports); Ray's own start-up is reported
apart. Calibration runs in the parent once, so every executor does the same
work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["threads", "processes", "ray"]
RESULT = "EXEC-RESULT "


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


def noop() -> None:
    return None


def calibrate(seconds: float) -> int:
    """Iterations of ``spin`` that take ``seconds`` on one core here."""
    n = 200_000
    while True:
        t0 = time.perf_counter()
        spin(n)
        took = time.perf_counter() - t0
        if took > 0.1:
            return max(1, int(n * seconds / took))
        n *= 2


def child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    from treadle.runtime import ProcessExecutor, RayExecutor, Runtime, ThreadExecutor, activity, workflow

    cpu = activity(name="bench.spin")(spin)
    nop = activity(name="bench.noop")(noop)

    @workflow(name="bench.cpu_fanout")
    def cpu_fanout(ctx: Any, branches: int, n: int) -> Any:
        return (yield ctx.all([ctx.run(cpu, n) for _ in range(branches)]))

    @workflow(name="bench.noop_fanout")
    def noop_fanout(ctx: Any, branches: int) -> Any:
        return (yield ctx.all([ctx.run(nop) for _ in range(branches)]))

    @workflow(name="bench.noop_seq")
    def noop_seq(ctx: Any, steps: int) -> Any:
        for _ in range(steps):
            yield ctx.run(nop)
        return steps

    out: dict[str, Any] = {"kind": kind}
    if kind == "threads":
        executor: Any = ThreadExecutor()
    elif kind == "processes":
        executor = ProcessExecutor(workers=2)
    else:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        out["ray_init_s"] = time.perf_counter() - t0
        executor = RayExecutor()
    with tempfile.TemporaryDirectory(dir=params.get("tmpdir")) as tmp, Runtime(tmp, executor=executor) as rt:
        t0 = time.perf_counter()
        rt.start(noop_fanout, 2).result(timeout=300)
        out["warmup_s"] = time.perf_counter() - t0

        def timed(wf: Any, *args: Any) -> float:
            t0 = time.perf_counter()
            rt.start(wf, *args).result(timeout=600)
            return time.perf_counter() - t0

        reps = params["reps"]
        out["cpu_fanout_s"] = [timed(cpu_fanout, params["branches"], params["n"]) for _ in range(reps)]
        out["noop_fanout_ms_per_branch"] = [
            1000 * timed(noop_fanout, params["noops"]) / params["noops"] for _ in range(reps)
        ]
        out["noop_seq_ms_per_step"] = [
            1000 * timed(noop_seq, params["steps"]) / params["steps"] for _ in range(reps)
        ]
    if kind == "ray":
        import ray

        ray.shutdown()
    return out


def ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument("--json", help="write every sample here")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated executors to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, raw = args.child.split(":", 1)
        print(RESULT + json.dumps(child(kind, json.loads(raw))), flush=True)
        return 0

    seconds = 0.02 if args.quick else 0.5
    params = {
        "n": calibrate(seconds),
        "branches": 8,
        "noops": 20 if args.quick else 200,
        "steps": 5 if args.quick else 50,
        "reps": 1 if args.quick else args.reps,
        "tmpdir": args.tmpdir,
    }
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for kind in args.kinds.split(","):
        if kind == "ray" and not ray_installed():
            print("ray: not installed (pip install 'treadle[ray]'); skipped")
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--child", f"{kind}:{json.dumps(params)}"],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
        if proc.returncode != 0 or not lines:
            print(f"{kind}: FAILED (exit {proc.returncode})\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            failed = True
            continue
        results[kind] = json.loads(lines[-1][len(RESULT) :])
    print(render(results, params, seconds, args.quick))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"params": params, "results": results}, fh, indent=2)
    return 1 if failed else 0


def render(results: dict[str, dict[str, Any]], params: dict[str, Any], seconds: float, quick: bool) -> str:
    med = statistics.median
    base = results.get("threads")
    lines = [
        f"executors: {params['branches']} CPU branches of ~{seconds} s each (spin {params['n']:,}), "
        f"{params['noops']} no-op branches, {params['steps']} no-op steps; {params['reps']} rep(s); "
        f"nproc {os.cpu_count()}; Python {sys.version.split()[0]}",
        "",
        "| executor | cpu fan-out s (median) | speed-up vs threads | target | no-op branch ms | "
        "overhead vs threads ms | no-op step ms | overhead vs threads ms | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, res in results.items():
        cpu = med(res["cpu_fanout_s"])
        branch = med(res["noop_fanout_ms_per_branch"])
        step = med(res["noop_seq_ms_per_step"])
        speedup = med(base["cpu_fanout_s"]) / cpu if base else float("nan")
        target = ">= 1.8x" if kind == "processes" else ""
        verdict = "n/a" if quick or not target else ("met" if speedup >= 1.8 else "MISSED")
        extra = f" (Ray start {res['ray_init_s']:.1f} s)" if "ray_init_s" in res else ""
        over_branch = branch - med(base["noop_fanout_ms_per_branch"]) if base else float("nan")
        over_step = step - med(base["noop_seq_ms_per_step"]) if base else float("nan")
        lines.append(
            f"| {kind} | {cpu:.2f} | {speedup:.2f}x | {target} {verdict if target else ''} | {branch:.3f} | "
            f"{over_branch:+.3f} | {step:.3f} | {over_step:+.3f} | {res['warmup_s']:.2f}{extra} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
