"""Golden journals: records an earlier treadle wrote, loaded as they are and replayed (STYLE.md 13).

``data/NAME.jsonl`` holds every record of one run exactly as it was stored
(sealed bytes, base64) while the run waited for the signal ``golden.done``;
``data/NAME.expect.json`` what that run showed then and after the signal.
Loading the records into a fresh store and sending the signal must replay
every recorded step (no activity runs again) and end with the recorded
result and history. A change of the record format, the codec or the step-id
scheme breaks these tests: that is their purpose. See ``make_golden.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.golden import workflows
from tests.support import WAIT, Box
from treadle.runtime import RunStatus
from treadle.runtime.testing import audit
from treadle.storage import LmdbStore, journal_key, open_record, run_key, seal

DATA = Path(__file__).resolve().parent / "data"
NAMES = sorted(workflows.SCENARIOS)
REGENERATE = (
    "if the change is intended, keep reading the old records, and add a new generation of golden "
    "files (python -m tests.golden.make_golden) next to these ones"
)


def _records(name: str) -> list[tuple[str, bytes, bytes]]:
    rows = []
    for line in (DATA / f"{name}.jsonl").read_text().splitlines():
        item = json.loads(line)
        rows.append((item["db"], base64.b64decode(item["key"]), base64.b64decode(item["value"])))
    return rows


def _expect(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.expect.json").read_text())
    return data


def _load(name: str, path: Path) -> None:
    store = LmdbStore(str(path), durability="fast")
    try:
        for db, key, raw in _records(name):
            store.raw_put(db, key, raw)
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _released() -> None:
    # A broken replay would run race losers again: never let them hold the test.
    workflows.RELEASE.set()


def test_every_scenario_has_its_golden_files_and_they_stay_small() -> None:
    files = sorted(path.name for path in DATA.iterdir())
    assert files == sorted([f"{name}.jsonl" for name in NAMES] + [f"{name}.expect.json" for name in NAMES])
    assert sum(path.stat().st_size for path in DATA.iterdir()) < 50 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_records_decode_and_reencode_byte_for_byte(name: str) -> None:
    """Every stored record passes its CRC and format check and re-seals to the same bytes;
    every key is the one this version computes from the record (run id, step id)."""
    run_id = _expect(name)["run_id"]
    rows = _records(name)
    assert {db for db, _, _ in rows} >= {"runs", "journal"}
    for db, key, raw in rows:
        record = open_record(raw, db, key)
        assert seal(record) == raw, f"{name}: {db} record {record} is encoded differently now; {REGENERATE}"
        if db == "runs":
            assert (record["id"], key) == (run_id, run_key(run_id))
        elif db == "journal":
            assert key == journal_key(run_id, record["s"]), (
                f"{name}: step {record['s']!r} has another key now (the step-id or key scheme "
                f"changed); {REGENERATE}"
            )
        else:
            assert key.startswith(run_key(run_id)), (db, key)


@pytest.mark.parametrize("name", NAMES)
def test_replay_returns_the_recorded_result_without_running_activities(name: str, tmp_path: Path) -> None:
    expect = _expect(name)
    box = Box(tmp_path / "store")
    _load(name, box.path)
    report = audit(str(box.path))
    assert report.ok, str(report)
    workflows.reset_calls()
    try:
        rt = box.open()
        handle = rt.get(expect["run_id"])
        assert handle.status() == RunStatus.SUSPENDED
        assert workflows.history_rows(handle) == expect["history_before"]
        handle.signal(workflows.DONE, expect["done"])
        assert workflows.plain(handle.result(timeout=WAIT)) == expect["result"]
        assert workflows.calls() == 0, f"replay ran activities again: {dict(workflows.CALLS)}"
        assert workflows.history_rows(handle) == expect["history_after"]
    finally:
        box.close()
    report = audit(str(box.path))
    assert report.ok, str(report)
