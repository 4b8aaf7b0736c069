"""audit(): the store checker of the reliability suite, on stores crafted record by record.

Each test plants one kind of damage (RELIABILITY.md I2, I3, terminal records,
orphans, signal reservations, stale timers) in an otherwise clean store and
checks that the audit names it, and only it.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from treadle.runtime.testing import AuditReport, audit
from treadle.storage import (
    FORMAT_VERSION,
    LmdbStore,
    MemoryStore,
    Op,
    journal_key,
    pack,
    run_key,
    seal,
    signal_index_key,
    signal_key,
    timer_key,
)

T0 = 1_700_000_000.0
NONE = pack(None)


def run_rec(run_id: str, st: str = "completed", **extra: Any) -> Op:
    record: dict[str, Any] = {
        "v": 1,
        "id": run_id,
        "wf": "audit.flow",
        "args": pack([]),
        "st": st,
        "created": T0,
        "up": T0,
        "parent": None,
    }
    if st == "completed":
        record["res"] = pack("done")
    elif st in ("failed", "cancelled"):
        record["err"] = {"t": "builtins.ValueError", "m": "no"}
    record.update(extra)
    return Op("runs", run_key(run_id), record)


def step_rec(run_id: str, step: str, kind: str = "activity", st: str = "completed", **extra: Any) -> Op:
    record: dict[str, Any] = {
        "v": 1,
        "s": step,
        "k": kind,
        "n": "audit.act" if kind == "activity" else None,
        "st": st,
        "t0": T0,
        "o": [int(part) if part.isdigit() else 0 for part in step.split(".")],
        "a": 1,
    }
    if st == "completed":
        record["t1"] = T0 + 1
        record["val"] = NONE
    record.update(extra)
    return Op("journal", journal_key(run_id, step), record)


def signal_rec(run_id: str, name: str, seq: int, consumed: bool = False, by: str | None = None) -> Op:
    record: dict[str, Any] = {
        "v": 1,
        "name": name,
        "p": pack(seq),
        "key": None,
        "consumed": consumed,
        "sent": T0,
    }
    if by is not None:
        record["by"] = by
    return Op("signals", signal_key(run_id, name, seq), record)


def timer_rec(run_id: str, step: str, due: float = T0 + 60) -> Op:
    return Op("timers", timer_key(due, run_id, step), {"run": run_id, "step": step, "due": due})


def clean_ops() -> list[Op]:
    """A store with every kind of record, all consistent.

    r1: completed; an ``all`` at step 1 with an activity branch and a generator
    branch whose own record is missing (allowed); a signal consumed by the
    top-level race at step 2 through its branch 2.0; a keyed signal still buffered.
    r2: suspended on a sleep with its timer; r3: a child run of r1.
    """
    lay = [[0, "activity", "audit.act"], [1, "branch", None]]
    return [
        run_rec("r1"),
        step_rec("r1", "0"),
        step_rec("r1", "1", kind="all", lay=lay),
        step_rec("r1", "1.0"),
        step_rec("r1", "1.1.0"),
        step_rec("r1", "1.1.1"),
        step_rec("r1", "2", kind="race", res=[["go", 1]], lay=[[0, "signal", "go"], [1, "sleep", None]]),
        step_rec("r1", "2.0", kind="signal", res=[["go", 1]]),
        step_rec("r1", "2.1", kind="sleep", st="abandoned"),
        signal_rec("r1", "go", 1, consumed=True, by="2"),
        Op(
            "signals",
            signal_key("r1", "late", 2),
            {"v": 1, "name": "late", "p": NONE, "key": "k-1", "consumed": False, "sent": T0},
        ),
        Op("signals", signal_index_key("r1", "late", "k-1"), {"v": 1, "name": "late", "seq": 2}),
        run_rec("r2", st="suspended"),
        step_rec("r2", "0", kind="sleep", st="running", dl=T0 + 60),
        timer_rec("r2", "0"),
        run_rec("r3", parent=["r1", "3"]),
        step_rec("r1", "3", kind="child", child="r3"),
    ]


def store_with(ops: list[Op]) -> MemoryStore:
    store = MemoryStore()
    store.apply(ops)
    return store


def only(report: AuditReport, kind: str, count: int = 1) -> list[str]:
    """The problems of ``kind``, after checking they are the only ones and there are ``count``."""
    assert not report.ok, str(report)
    assert report.counts == {kind: count}, str(report)
    return report.problems


def test_clean_store_passes_and_counts_records() -> None:
    report = audit(store_with(clean_ops()))
    assert report.ok, str(report)
    assert report.problems == [] and report.counts == {} and report.warnings == []
    assert report.records == {"runs": 3, "journal": 10, "signals": 3, "timers": 1}
    assert str(report).startswith("store audit: ok")


def test_empty_store_passes() -> None:
    report = audit(MemoryStore())
    assert report.ok and report.records == {"runs": 0, "journal": 0, "signals": 0, "timers": 0}


def _flip_bit(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[-2] ^= 0x10
    return bytes(damaged)


def _truncate_payload(data: bytes) -> bytes:
    """Cut the msgpack payload short and re-seal it with a matching CRC: only decoding can tell."""
    payload = data[5:-3]
    return struct.pack(">BI", FORMAT_VERSION, zlib.crc32(payload)) + payload


def _bump_version(data: bytes) -> bytes:
    return bytes([FORMAT_VERSION + 98]) + data[1:]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_bit, "CRC mismatch"),
        (_truncate_payload, "undecodable payload"),
        (_bump_version, "unknown format"),
    ],
    ids=["flipped-bit", "truncated-msgpack", "unknown-version"],
)
def test_corrupt_journal_record_is_reported_with_run_and_key(damage: Any, reason: str) -> None:
    """I2: every record is CRC- and format-checked; the problem names the run and the key."""
    store = store_with(clean_ops())
    key = journal_key("r1", "1.0")
    store.raw("journal")[key] = damage(store.raw("journal")[key])
    (line,) = only(audit(store), "corrupt")
    assert line.startswith("[corrupt] run 'r1': journal record ")
    assert repr(key) in line and reason in line


def test_corrupt_records_in_every_database_are_all_reported() -> None:
    """One corrupt record does not hide the others: the audit goes on past it."""
    store = store_with(clean_ops())
    for db, key in [
        ("journal", journal_key("r2", "0")),
        ("signals", signal_key("r1", "go", 1)),
        ("timers", timer_key(T0 + 60, "r2", "0")),
    ]:
        store.raw(db)[key] = _flip_bit(store.raw(db)[key])
    report = audit(store)
    lines = only(report, "corrupt", 3)
    assert sum("run 'r2'" in line for line in lines) == 2
    assert any("run 'r1': signals record" in line for line in lines)


def test_corrupt_run_record_is_reported_and_its_journal_is_not_an_orphan() -> None:
    store = store_with(clean_ops())
    store.raw("runs")[run_key("r2")] = _bump_version(store.raw("runs")[run_key("r2")])
    (line,) = only(audit(store), "corrupt")
    assert f"run with key {run_key('r2').hex()}" in line and "unknown format version" in line


def test_step_stored_under_another_steps_key_is_reported() -> None:
    """I3: one outcome per step id holds only if every record sits at the key of its own step id."""
    ops = clean_ops()
    ops.append(Op("journal", journal_key("r1", "4"), {**step_rec("r1", "0").record, "s": "0"}))  # type: ignore[dict-item]
    (line,) = only(audit(store_with(ops)), "step-key")
    assert "step '0'" in line and repr(journal_key("r1", "4")) in line


def test_run_stored_under_another_runs_key_is_reported() -> None:
    ops = clean_ops()
    ops.append(Op("runs", run_key("r9"), run_rec("r8").record))
    (line,) = only(audit(store_with(ops)), "run-key")
    assert "'r8'" in line


@pytest.mark.parametrize(("status", "drop"), [("completed", "res"), ("failed", "err"), ("cancelled", "err")])
def test_finished_run_without_result_or_error_is_reported(status: str, drop: str) -> None:
    op = run_rec("r4", st=status)
    assert op.record is not None
    record = {k: v for k, v in op.record.items() if k != drop}
    (line,) = only(audit(store_with([*clean_ops(), Op("runs", op.key, record)])), "terminal")
    assert "'r4'" in line and f"({drop})" in line


def test_unknown_run_status_and_missing_run_id_are_malformed() -> None:
    ops = [*clean_ops(), run_rec("r5", st="zombie"), Op("runs", run_key("r6"), {"v": 1, "st": "running"})]
    lines = only(audit(store_with(ops)), "malformed", 2)
    assert any("'zombie'" in line for line in lines)
    assert any("has no run id" in line for line in lines)


def test_records_of_a_missing_run_are_orphans() -> None:
    ops = [
        *clean_ops(),
        step_rec("ghost", "0"),
        step_rec("ghost", "1"),
        signal_rec("ghost", "go", 1),
        timer_rec("ghost", "1"),
    ]
    report = audit(store_with(ops))
    assert report.counts == {"orphan-journal": 1, "orphan-signal": 1, "orphan-timer": 1}, str(report)
    journal_line = next(line for line in report.problems if line.startswith("[orphan-journal]"))
    assert "2 journal record(s)" in journal_line and run_key("ghost").hex() in journal_line
    assert any("'ghost'" in line for line in report.problems if line.startswith("[orphan-timer]"))


def test_child_run_of_a_missing_parent_is_an_orphan() -> None:
    (line,) = only(audit(store_with([*clean_ops(), run_rec("c1", parent=["nobody", "0"])])), "orphan-child")
    assert "'c1'" in line and "'nobody'" in line


def test_branch_without_its_coordinator_is_an_orphan() -> None:
    ops = [*clean_ops(), step_rec("r1", "5.0")]
    (line,) = only(audit(store_with(ops)), "orphan-branch")
    assert "step '5.0'" in line and "parent '5'" in line


def test_missing_generator_branch_record_is_allowed_but_not_a_missing_activity_branch() -> None:
    """A generator branch S.k has no record until it settles: its steps S.k.j are no orphans.
    A missing S.k that the coordinator's layout lists as an activity (or does not list) is one."""
    lay = [[0, "branch", None], [1, "activity", "audit.act"]]
    ops = [
        *clean_ops(),
        step_rec("r2", "1", kind="all", st="running", lay=lay),
        step_rec("r2", "1.0.0"),  # generator branch 1.0 still running: fine
        step_rec("r2", "1.1.0"),  # 1.1 is an activity: it cannot have steps of its own
        step_rec("r2", "1.2.0"),  # 1.2 is not in the layout at all
    ]
    lines = only(audit(store_with(ops)), "orphan-branch", 2)
    assert ["1.1.0" in lines[0], "1.2.0" in lines[1]] == [True, True]


def test_consumed_signal_whose_step_is_missing_or_does_not_hold_it() -> None:
    ops = [
        *clean_ops(),
        signal_rec("r1", "go", 3, consumed=True, by="9"),  # no step 9
        signal_rec("r1", "go", 4, consumed=True, by="0"),  # step 0 holds no reservation
        step_rec("r1", "6", st="failed", err={"t": "x", "m": "y"}),
        signal_rec("r1", "go", 5, consumed=True, by="6"),  # step 6 failed: it consumed nothing
    ]
    lines = only(audit(store_with(ops)), "reservation", 3)
    assert any("#3" in line and "which has no record" in line for line in lines)
    assert any("#4" in line and "does not reserve it" in line for line in lines)
    assert any("#5" in line and "'failed'" in line for line in lines)


def test_completed_top_level_step_holding_an_unconsumed_signal_is_reported() -> None:
    """The consumption is written in the same transaction as the step that used the signal."""
    ops = [*clean_ops(), step_rec("r1", "7", kind="signal", res=[["late", 2]])]
    (line,) = only(audit(store_with(ops)), "reservation")
    assert "step '7'" in line and "'late' #2" in line and "consumed=False" in line


def test_one_signal_consumed_by_two_steps_is_reported() -> None:
    ops = [*clean_ops(), step_rec("r1", "8", kind="signal", res=[["go", 1]])]
    report = audit(store_with(ops))
    assert report.counts == {"reservation": 1, "double-consumption": 1}, str(report)
    double = next(line for line in report.problems if line.startswith("[double-consumption]"))
    assert "['2', '8']" in double


def test_a_branch_that_took_a_signal_its_race_released_is_not_a_double_consumption() -> None:
    """A losing branch's record may list a signal its coordinator released; a later step consumes it."""
    ops = [
        *clean_ops(),
        step_rec("r1", "9", kind="all", lay=[[0, "signal", "late"]], st="failed", err={"t": "x", "m": "y"}),
        step_rec("r1", "9.0", kind="signal", res=[["late", 2]]),
    ]
    assert audit(store_with(ops)).ok


def test_signal_key_index_must_point_at_its_signal() -> None:
    ops = [
        *clean_ops(),
        Op("signals", signal_index_key("r1", "late", "k-2"), {"v": 1, "name": "late", "seq": 2}),
    ]
    ops.append(Op("signals", signal_index_key("r1", "late", "k-3"), {"v": 1, "name": "late", "seq": 7}))
    lines = only(audit(store_with(ops)), "signal-key", 2)
    assert any("does not match its key" in line for line in lines)
    assert any("points at missing #7" in line for line in lines)


def test_timer_of_a_finished_run_is_a_warning_not_a_problem() -> None:
    ops = [*clean_ops(), timer_rec("r1", "2.1")]
    report = audit(store_with(ops))
    assert report.ok, str(report)
    assert report.warnings == ["[stale-timer] run 'r1' is completed but step '2.1' has a timer"]
    assert "warning: [stale-timer]" in str(report)


def test_timer_stored_under_a_key_that_does_not_match_its_due_time() -> None:
    ops = [
        *clean_ops(),
        Op("timers", timer_key(T0 + 5, "r2", "0"), {"run": "r2", "step": "0", "due": T0 + 6}),
    ]
    (line,) = only(audit(store_with(ops)), "timer-key")
    assert "'r2'" in line


def test_report_is_frozen() -> None:
    report = audit(MemoryStore())
    with pytest.raises(AttributeError):
        report.ok = False  # type: ignore[misc]


def test_audit_by_path_opens_the_store_read_only(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    store = LmdbStore(path, durability="fast")
    try:
        store.apply(clean_ops())
        store.raw_put("journal", journal_key("r1", "0"), _flip_bit(seal(step_rec("r1", "0").record or {})))
    finally:
        store.close()
    report = audit(path)
    (line,) = only(report, "corrupt")
    assert "run 'r1'" in line
    # the audit took no ownership: a writer opens the store right after
    LmdbStore(path).close()


@pytest.mark.crash
def test_audit_by_path_works_while_another_process_owns_the_store(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    store = LmdbStore(path, durability="fast")
    try:
        store.apply(clean_ops())
        code = (
            "from treadle.runtime.testing import audit\n"
            f"report = audit({path!r})\n"
            "print(report.ok, sorted(report.records.items()))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        store.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True [('journal', 10), ('runs', 3), ('signals', 3), ('timers', 1)]"
