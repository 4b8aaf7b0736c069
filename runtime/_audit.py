"""Store audit: the invariants of RELIABILITY.md, checked on the records of a store.

``audit(store_or_path)`` reads every record of every database and reports
what breaks an invariant:

* ``corrupt`` (I2): a record fails its CRC, its format version or its decoding;
* ``malformed``: a record decodes but lacks the fields its kind needs;
* ``step-key`` / ``run-key`` / ``signal-key`` / ``timer-key`` (I3): a record is
  stored under a key other than the one its own fields give (keys are unique,
  so a step id has at most one outcome only if every record sits at its key);
* ``terminal``: a finished run (completed, failed, cancelled) without its
  result (``res``) or error (``err``);
* ``orphan-journal`` / ``orphan-signal`` / ``orphan-timer`` / ``orphan-child``:
  records of a run whose run record is missing;
* ``orphan-branch``: a step ``S.k`` whose parent ``S`` is missing. A generator
  branch ``S.k`` has no record of its own until it settles (and none at all
  when it was still running as the run ended, say a ``fail_fast`` sibling), so
  a missing ``S.k`` is accepted when the coordinator ``S`` lists branch ``k``
  as a generator;
* ``reservation`` / ``double-consumption``: consumed signals and the
  reservations (``res``) of the top-level steps that consumed them disagree,
  or one signal was consumed by two steps.

A timer of a finished run is harmless (it fires into nothing) and is reported
among the ``warnings``, not the problems.

Audit a store no process writes to (after a kill, after ``shutdown``) for an
exact answer: the databases are read one after the other, so a store that is
being written may show a transient disagreement between them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from treadle.storage import (
    DATABASES,
    JournalCorruptionError,
    LmdbStore,
    Store,
    journal_key,
    run_key,
    signal_index_key,
    signal_key,
    timer_key,
)

from ._records import CANCEL_STEP, FINISHED

__all__ = ["AuditReport", "audit"]

RUN_STATUSES = frozenset({"running", "suspended", "parked"}) | FINISHED
STEP_STATUSES = frozenset({"running", "completed", "failed", "abandoned"})
_RUN_KEY_SIZE = len(run_key(""))
_SEQ_SIZE = 8


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit` found.

    Attributes:
        ok: no problem was found (warnings do not count).
        problems: one line per problem, each starting with its kind in brackets.
        counts: number of problems by kind (``{"corrupt": 1, ...}``).
        warnings: harmless leftovers, such as timers of finished runs.
        records: number of records read per database, corrupt ones included.
    """

    ok: bool
    problems: list[str]
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        head = "store audit: " + ("ok" if self.ok else f"{len(self.problems)} problem(s) {self.counts}")
        lines = [head, *(f"  {line}" for line in self.problems)]
        lines.extend(f"  warning: {line}" for line in self.warnings)
        return "\n".join(lines)


def audit(store_or_path: Store | str | os.PathLike[str]) -> AuditReport:
    """Check every record of a store against the invariants (see the module docstring).

    Args:
        store_or_path: an open store (``rt.store``, a ``MemoryStore``) or the
            folder of an LMDB store, opened read-only (this works while another
            process owns the store).
    """
    if isinstance(store_or_path, (str, os.PathLike)):
        reader = LmdbStore(os.fspath(store_or_path), readonly=True)
        try:
            return _Auditor(reader).run()
        finally:
            reader.close()
    return _Auditor(store_or_path).run()


def _describe_key(key: bytes) -> str:
    return key.hex()


class _Auditor:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.problems: list[str] = []
        self.kinds: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.records: dict[str, int] = {}
        self.runs: dict[bytes, dict[str, Any]] = {}  # run key -> run record
        self.corrupt_runs: set[bytes] = set()
        self.corrupt: set[tuple[str, bytes]] = set()  # (database, key) of every corrupt record
        self.journals: dict[bytes, dict[str, dict[str, Any]]] = {}  # run key -> step -> record
        self.signals: dict[bytes, dict[bytes, dict[str, Any]]] = {}  # run key -> signal key -> record

    # -- helpers ----------------------------------------------------------------------

    def problem(self, kind: str, text: str) -> None:
        self.kinds[kind] += 1
        self.problems.append(f"[{kind}] {text}")

    def run_name(self, prefix: bytes) -> str:
        record = self.runs.get(prefix)
        if record is not None and isinstance(record.get("id"), str):
            return f"run {record['id']!r}"
        return f"run with key {_describe_key(prefix)}"

    def read(self, db: str) -> list[tuple[bytes, dict[str, Any]]]:
        """Every record of ``db``; a corrupt one is reported (naming its run and key) and skipped."""
        corrupt: list[JournalCorruptionError] = []
        rows = list(self.store.scan(db, on_error=corrupt.append))
        self.records[db] = len(rows) + len(corrupt)
        for error in corrupt:
            key = error.key
            self.corrupt.add((db, key))
            if db == "runs":
                self.corrupt_runs.add(key)
                owner = f"run with key {_describe_key(key)}"
            elif db == "timers":
                owner = self.run_name(key[_SEQ_SIZE : _SEQ_SIZE + _RUN_KEY_SIZE])
            else:
                owner = self.run_name(key[:_RUN_KEY_SIZE])
            self.problem("corrupt", f"{owner}: {db} record {key!r}: {error.reason}")
        return rows

    def known_run(self, prefix: bytes) -> bool:
        return prefix in self.runs or prefix in self.corrupt_runs

    # -- the checks -------------------------------------------------------------------

    def run(self) -> AuditReport:
        for db in DATABASES:
            if db not in ("runs", "journal", "signals", "timers"):
                self.read(db)  # a database this audit does not know yet: CRC only
        self.check_runs()
        self.check_journal()
        self.check_signals()
        self.check_branches()
        self.check_reservations()
        self.check_timers()
        return AuditReport(
            ok=not self.problems,
            problems=list(self.problems),
            counts=dict(self.kinds),
            warnings=list(self.warnings),
            records=dict(self.records),
        )

    def check_runs(self) -> None:
        for key, rec in self.read("runs"):
            run_id = rec.get("id")
            if not isinstance(run_id, str):
                self.problem("malformed", f"run record {key!r} has no run id: {sorted(rec)}")
                self.corrupt_runs.add(key)
                continue
            self.runs[key] = rec
            if run_key(run_id) != key:
                self.problem("run-key", f"run {run_id!r} is stored under {key!r}, not {run_key(run_id)!r}")
            status = rec.get("st")
            if status not in RUN_STATUSES:
                self.problem("malformed", f"run {run_id!r} has an unknown status {status!r}")
            elif status == "completed" and not isinstance(rec.get("res"), bytes):
                self.problem("terminal", f"run {run_id!r} is completed but has no result (res)")
            elif status in ("failed", "cancelled") and not (isinstance(rec.get("err"), dict) and rec["err"]):
                self.problem("terminal", f"run {run_id!r} is {status} but has no error (err)")
        for rec in self.runs.values():
            parent = rec.get("parent")
            if parent and not self.known_run(run_key(str(parent[0]))):
                self.problem(
                    "orphan-child", f"run {rec['id']!r} names parent run {parent[0]!r}, which does not exist"
                )

    def check_journal(self) -> None:
        orphans: Counter[bytes] = Counter()
        for key, rec in self.read("journal"):
            prefix = key[:_RUN_KEY_SIZE]
            step = rec.get("s")
            if not isinstance(step, str):
                self.problem("malformed", f"{self.run_name(prefix)}: journal record {key!r} has no step id")
                continue
            if journal_key("", step)[_RUN_KEY_SIZE:] != key[_RUN_KEY_SIZE:]:
                self.problem(
                    "step-key",
                    f"{self.run_name(prefix)}: record of step {step!r} is stored under {key!r}",
                )
            status = rec.get("st")
            if step != CANCEL_STEP and status not in STEP_STATUSES:
                self.problem("malformed", f"{self.run_name(prefix)}: step {step!r} has status {status!r}")
            if not self.known_run(prefix):
                orphans[prefix] += 1
                continue
            if prefix in self.runs:
                self.journals.setdefault(prefix, {})[step] = rec
        for prefix, count in sorted(orphans.items()):
            self.problem(
                "orphan-journal",
                f"{count} journal record(s) under run key {_describe_key(prefix)}, which has no run record",
            )

    def check_signals(self) -> None:
        orphans: Counter[bytes] = Counter()
        index: list[tuple[bytes, dict[str, Any]]] = []
        for key, rec in self.read("signals"):
            prefix = key[:_RUN_KEY_SIZE]
            if not self.known_run(prefix):
                orphans[prefix] += 1
                continue
            if prefix not in self.runs:
                continue
            run_id = self.runs[prefix]["id"]
            tag = key[_RUN_KEY_SIZE : _RUN_KEY_SIZE + 1]
            name = rec.get("name")
            if not isinstance(name, str):
                self.problem("malformed", f"run {run_id!r}: signals record {key!r} has no name")
                continue
            if tag == b"K":
                index.append((key, rec))
                continue
            seq = int.from_bytes(key[-_SEQ_SIZE:], "big")
            if signal_key(run_id, name, seq) != key:
                self.problem("signal-key", f"run {run_id!r}: signal {name!r} is stored under {key!r}")
                continue
            self.signals.setdefault(prefix, {})[key] = rec
        for key, rec in index:
            prefix = key[:_RUN_KEY_SIZE]
            run_id = self.runs[prefix]["id"]
            name, pointer = rec["name"], rec.get("seq")
            target = (
                self.signals.get(prefix, {}).get(signal_key(run_id, name, pointer))
                if isinstance(pointer, int)
                else None
            )
            if target is None:
                self.problem(
                    "signal-key", f"run {run_id!r}: key index of signal {name!r} points at missing #{pointer}"
                )
            elif not isinstance(target.get("key"), str) or (
                signal_index_key(run_id, name, target["key"]) != key
            ):
                self.problem(
                    "signal-key",
                    f"run {run_id!r}: key index {key!r} of signal {name!r} #{pointer} does not match its key",
                )
        for prefix, count in sorted(orphans.items()):
            self.problem(
                "orphan-signal",
                f"{count} signal record(s) under run key {_describe_key(prefix)}, which has no run record",
            )

    def check_branches(self) -> None:
        for prefix, journal in self.journals.items():
            run_id = self.runs[prefix]["id"]
            for step in sorted(journal):
                if step.startswith("@"):
                    continue
                parent, dot, _ = step.rpartition(".")
                if not dot or parent in journal:
                    continue
                grand, _, branch = parent.rpartition(".")
                if grand and _is_generator_branch(journal.get(grand), branch):
                    continue  # a generator branch that has not settled (or never will)
                self.problem(
                    "orphan-branch", f"run {run_id!r}: step {step!r} has no record of its parent {parent!r}"
                )

    def check_reservations(self) -> None:
        for prefix, signals in self.signals.items():
            run_id = self.runs[prefix]["id"]
            journal = self.journals.get(prefix, {})
            by_pair: dict[tuple[str, int], dict[str, Any]] = {
                (rec["name"], int.from_bytes(key[-_SEQ_SIZE:], "big")): rec for key, rec in signals.items()
            }
            # a consumed signal names the step that consumed it, and that step holds it
            for (name, seq), rec in sorted(by_pair.items()):
                if not rec.get("consumed"):
                    continue
                by = rec.get("by")
                holder = journal.get(by) if isinstance(by, str) else None
                if holder is None:
                    if isinstance(by, str) and ("journal", journal_key(run_id, by)) in self.corrupt:
                        continue  # reported as corrupt already
                    self.problem(
                        "reservation",
                        f"run {run_id!r}: signal {name!r} #{seq} was consumed by step {by!r}, "
                        "which has no record",
                    )
                elif holder.get("st") != "completed":
                    self.problem(
                        "reservation",
                        f"run {run_id!r}: signal {name!r} #{seq} was consumed by step {by!r}, "
                        f"which is {holder.get('st')!r}",
                    )
                elif not _holds(journal, str(by), name, seq):
                    self.problem(
                        "reservation",
                        f"run {run_id!r}: signal {name!r} #{seq} was consumed by step {by!r}, "
                        "whose record does not reserve it",
                    )
        # a completed top-level step that holds a reservation consumed that signal, alone
        for prefix, journal in self.journals.items():
            run_id = self.runs[prefix]["id"]
            signals = self.signals.get(prefix, {})
            holders: dict[tuple[str, int], list[str]] = {}
            for step, rec in sorted(journal.items()):
                if "." in step or step.startswith("@") or rec.get("st") != "completed":
                    continue
                for pair in rec.get("res") or ():
                    name, seq = str(pair[0]), int(pair[1])
                    holders.setdefault((name, seq), []).append(step)
                    sig = signals.get(signal_key(run_id, name, seq))
                    if sig is None:
                        if ("signals", signal_key(run_id, name, seq)) in self.corrupt:
                            continue  # reported as corrupt already
                        self.problem(
                            "reservation",
                            f"run {run_id!r}: step {step!r} consumed signal {name!r} #{seq}, "
                            "which is not stored",
                        )
                    elif not sig.get("consumed") or sig.get("by") != step:
                        self.problem(
                            "reservation",
                            f"run {run_id!r}: step {step!r} consumed signal {name!r} #{seq}, but the signal "
                            f"says consumed={sig.get('consumed')!r} by={sig.get('by')!r}",
                        )
            for (name, seq), steps in sorted(holders.items()):
                if len(steps) > 1:
                    self.problem(
                        "double-consumption",
                        f"run {run_id!r}: signal {name!r} #{seq} was consumed by steps {steps}",
                    )

    def check_timers(self) -> None:
        for key, rec in self.read("timers"):
            run_id, step, due = rec.get("run"), rec.get("step"), rec.get("due")
            if not (isinstance(run_id, str) and isinstance(step, str) and isinstance(due, (int, float))):
                self.problem("malformed", f"timer record {key!r} lacks run, step or due: {rec!r}")
                continue
            if timer_key(float(due), run_id, step) != key:
                self.problem("timer-key", f"timer of run {run_id!r} step {step!r} is stored under {key!r}")
            prefix = run_key(run_id)
            if prefix in self.corrupt_runs:
                continue
            run = self.runs.get(prefix)
            if run is None:
                self.problem(
                    "orphan-timer", f"timer of step {step!r} names run {run_id!r}, which does not exist"
                )
            elif run.get("st") in FINISHED:
                self.warnings.append(
                    f"[stale-timer] run {run_id!r} is {run.get('st')} but step {step!r} has a timer"
                )


def _is_generator_branch(coordinator: dict[str, Any] | None, branch: str) -> bool:
    """Whether the coordinator record lists ``branch`` (its key, as text) as a generator branch."""
    if coordinator is None:
        return False
    for row in coordinator.get("lay") or ():
        if str(row[0]) == branch:
            return bool(row[1] == "branch")
    return False


def _holds(journal: dict[str, dict[str, Any]], step: str, name: str, seq: int) -> bool:
    """Whether ``step``'s record, or a record in its subtree, lists the reservation ``[name, seq]``."""
    prefix = step + "."
    for other, rec in journal.items():
        if other != step and not other.startswith(prefix):
            continue
        for pair in rec.get("res") or ():
            if str(pair[0]) == name and int(pair[1]) == seq:
                return True
    return False
