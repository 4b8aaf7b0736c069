"""quality_checks: sequential build steps, then four parallel quality gates, in a loop until a target score.

The pattern (a convergence loop)::

    while iteration < max_iterations and score < target:
        iteration += 1
        tests = yield ctx.run(write_tests, feature, iteration)      # sequential steps...
        code = yield ctx.run(implement, feature, tests, iteration)
        yield ctx.run(run_tests, code)
        gates = yield ctx.run_all({                                 # ...then the gates in parallel
            "coverage": ctx.run(coverage, code), "lint": ctx.run(lint, code),
            "types": ctx.run(typecheck, code), "security": ctx.run(security_scan, code),
        })
        score = yield ctx.run(score_gates, gates)

Semantics shown:

* ordinary Python control flow (``while``, ``if``) drives the steps; each
  iteration's operations are new steps with their own ids, so a crash in
  iteration 3 replays iterations 1-2 from the journal without re-running a
  single activity and carries on where it stopped;
* the four gates run concurrently (each in its own branch actor; a barrier
  that needs all four at once proves it) and the loop goes on only when all
  four are checkpointed;
* ``ctx.set_state`` publishes progress that ``handle.state()`` reads while
  the run is going (here: the iteration and the last score).

The gates' scores depend only on the iteration number, so the run converges
deterministically: 3 iterations to reach the target of 90.

Run: ``.venv/bin/python examples/quality_checks.py [--store PATH]``
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Generator
from typing import Any

from _support import check, parse_args, say, store_folder

from treadle.runtime import Context, Operation, Runtime, activity, workflow

calls: collections.Counter[str] = collections.Counter()
_calls_lock = threading.Lock()


def count_call(name: str) -> None:
    with _calls_lock:
        calls[name] += 1


# All four gates of an iteration must be running at the same moment to pass this barrier
# (it resets itself for the next iteration); a sequential run would break it after 5 s.
gates_together = threading.Barrier(4, timeout=5)


@activity(name="ex_quality.write_tests")
def write_tests(feature: str, iteration: int) -> list[str]:
    count_call("write_tests")
    return [f"test_{feature}_{n}" for n in range(2 + 2 * iteration)]


@activity(name="ex_quality.implement")
def implement(feature: str, tests: list[str], iteration: int) -> dict[str, Any]:
    count_call("implement")
    return {"feature": feature, "revision": iteration, "tests": len(tests)}


@activity(name="ex_quality.run_tests")
def run_tests(code: dict[str, Any]) -> int:
    count_call("run_tests")
    return code["tests"]


def _gate(name: str, base: int, step: int) -> Any:
    """One quality gate: its score grows with each revision of the code."""

    @activity(name=f"ex_quality.{name}")
    def gate(code: dict[str, Any]) -> int:
        count_call(name)
        gates_together.wait()  # proof that the four gates run in parallel
        time.sleep(0.05)  # simulated analysis
        return min(100, base + step * code["revision"])

    return gate


coverage = _gate("coverage", 55, 15)
lint = _gate("lint", 80, 10)
typecheck = _gate("typecheck", 60, 12)
security_scan = _gate("security_scan", 90, 5)


@activity(name="ex_quality.score_gates")
def score_gates(gates: dict[str, int]) -> int:
    count_call("score_gates")
    return min(gates.values())  # the weakest gate decides


@workflow(name="ex_quality.develop_feature")
def develop_feature(
    ctx: Context, feature: str, target: int, max_iterations: int
) -> Generator[Operation, Any, dict[str, Any]]:
    iteration, score, scores = 0, 0, []
    while iteration < max_iterations and score < target:
        iteration += 1
        tests = yield ctx.run(write_tests, feature, iteration)
        code = yield ctx.run(implement, feature, tests, iteration)
        yield ctx.run(run_tests, code)
        gates = yield ctx.run_all(
            {
                "coverage": ctx.run(coverage, code),
                "lint": ctx.run(lint, code),
                "types": ctx.run(typecheck, code),
                "security": ctx.run(security_scan, code),
            }
        )
        score = yield ctx.run(score_gates, gates)
        scores.append({"iteration": iteration, "gates": gates, "score": score})
        yield ctx.set_state({"iteration": iteration, "score": score})
    return {"converged": score >= target, "iterations": iteration, "score": score, "scores": scores}


def main() -> None:
    args = parse_args(__doc__ or "")
    target = 90
    with store_folder(args.store, "quality") as path, Runtime(path) as rt:
        say(f"Developing feature 'login' until every quality gate scores >= {target} (at most 5 iterations)")
        handle = rt.start(develop_feature, "login", target, 5, run_id="feature-login")
        result = handle.result(timeout=30)
        for entry in result["scores"]:
            gates = "  ".join(f"{name}={value:>3}" for name, value in entry["gates"].items())
            say(f"  iteration {entry['iteration']}: {gates}  -> score {entry['score']}")
        gate_steps = [r.step for r in handle.history() if r.kind == "run_all"]
        say(f"Each iteration's gates are their own step: {gate_steps}; state: {handle.state()}")
        say(f"Result: converged={result['converged']} after {result['iterations']} iterations")

        check(result["converged"] and result["score"] >= target, f"reaches the target, got {result['score']}")
        check(result["iterations"] == 3, f"converges in 3 iterations, got {result['iterations']}")
        check(len(gate_steps) == 3, f"one run_all step per iteration, got {gate_steps}")
        for name in (
            "write_tests",
            "implement",
            "run_tests",
            "coverage",
            "lint",
            "typecheck",
            "security_scan",
        ):
            check(calls[name] == 3, f"{name} ran once per iteration, got {calls[name]}")
        check(handle.state() == {"iteration": 3, "score": result["score"]}, f"state: {handle.state()}")
        say("OK: the loop converged; every gate ran once per iteration, in parallel")


if __name__ == "__main__":
    main()
