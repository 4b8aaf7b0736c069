"""Write the golden journals in ``tests/golden/data`` (run from the repository root).

    .venv/bin/python -m tests.golden.make_golden

Each scenario of ``workflows.SCENARIOS`` runs on a fresh store under a
``FakeClock`` until it waits for the signal ``golden.done``; then every
record of that run (runs, journal, signals, timers) is exported, exactly as
stored (sealed bytes, base64), one JSON object per line, to ``NAME.jsonl``.
The run is then finished (``golden.done`` sent) and ``NAME.expect.json``
keeps what the test must see again: the history at export time, the result
and the history at the end.

Golden files are evidence of what an earlier version wrote. Regenerate them
only for a new generation of the format: keep the old files (in a folder of
their own) so that the old journals stay tested.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.golden import workflows
from treadle.runtime import Runtime
from treadle.runtime.testing import FakeClock
from treadle.storage import DATABASES, FORMAT_VERSION, LmdbStore, run_key

DATA = Path(__file__).resolve().parent / "data"
TIMEOUT = 15.0
START = 1_700_000_000.0


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _belongs(db: str, key: bytes, record: dict[str, Any], prefix: bytes) -> bool:
    if db == "timers":
        return run_key(str(record.get("run"))) == prefix
    return key.startswith(prefix)


def export_run(store: LmdbStore, run_id: str) -> list[dict[str, str]]:
    """Every record of ``run_id``, as stored: ``{"db", "key", "value"}`` with base64 bytes."""
    prefix = run_key(run_id)
    lines = []
    for db in DATABASES:
        for key, record in store.scan(db):
            if not _belongs(db, key, record, prefix):
                continue
            raw = store.raw_get(db, key)
            assert raw is not None
            lines.append(
                {
                    "db": db,
                    "key": base64.b64encode(key).decode(),
                    "value": base64.b64encode(raw).decode(),
                }
            )
    return lines


def _settled(rt: Runtime, run_id: str) -> bool:
    """Suspended on ``golden.done`` in the store; nothing running but that wait and its ancestors."""
    record = rt.store.get("runs", run_key(run_id))
    if record is None or record.get("st") != "suspended" or workflows.DONE not in (record.get("waits") or []):
        return False
    history = rt.get(run_id).history()
    waits = [rec.step for rec in history if rec.name == workflows.DONE]
    if len(waits) != 1:
        return False
    parts = waits[0].split(".")
    allowed = {".".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
    return all(rec.status != "running" or rec.step in allowed for rec in history)


def generate(name: str, folder: Path) -> None:
    flow, signals = workflows.SCENARIOS[name]
    run_id = workflows.run_id(name)
    workflows.RELEASE.clear()
    rt = Runtime(str(folder / name), clock=FakeClock(START), durability="fast")
    try:
        handle = rt.start(flow, run_id=run_id)
        for signal, payload, key in signals:
            handle.signal(signal, payload, key=key)
        _wait(lambda: _settled(rt, run_id), f"{name} to wait for {workflows.DONE}")
        lines = export_run(rt.store, run_id)  # type: ignore[arg-type]
        before = workflows.history_rows(handle)
        done = f"done-{name}"
        handle.signal(workflows.DONE, done)
        result = handle.result(timeout=TIMEOUT)
        expect = {
            "scenario": name,
            "run_id": run_id,
            "workflow": rt.registry.workflow(flow).name,
            "format_version": FORMAT_VERSION,
            "done": done,
            "result": workflows.plain(result),
            "history_before": before,
            "history_after": workflows.history_rows(handle),
        }
    finally:
        workflows.RELEASE.set()  # race losers return; their results are dropped
        rt.shutdown()
    (DATA / f"{name}.jsonl").write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    (DATA / f"{name}.expect.json").write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n")


def main(names: list[str]) -> None:
    DATA.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="treadle-golden-"))
    try:
        for name in names or list(workflows.SCENARIOS):
            generate(name, folder)
            print(f"wrote {DATA / name}.jsonl and .expect.json")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
