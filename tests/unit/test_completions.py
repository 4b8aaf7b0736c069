"""Completions: how handle.result() learns that a run ended without polling the store."""

from __future__ import annotations

from treadle.runtime._run_actor import Completions


def test_a_watch_made_while_a_run_is_unfinished_is_always_woken() -> None:
    """result() skips its first store read only while the run is unfinished; the end of the
    run must then set every event watched before (no lost wake-up), and clear the mark."""
    completions = Completions()
    completions.expect("r1")
    early = completions.watch("r1")
    assert completions.unfinished("r1")
    completions.notify("r1")
    assert early.is_set()
    assert not completions.unfinished("r1")
    late = completions.watch("r1")  # after the end: not marked, so result() reads the store
    assert not late.is_set()
    completions.unwatch("r1", late)


def test_a_run_whose_creation_failed_is_not_awaited() -> None:
    """A run created here whose record never became durable is forgotten: result() reads."""
    completions = Completions()
    completions.expect("r2")
    completions.forget("r2")
    assert not completions.unfinished("r2")
    assert not completions.unfinished("never-created")


def test_the_end_hands_watchers_the_terminal_record_only_when_given() -> None:
    """result() uses the record a watch carries instead of reading the store; a notify
    without one (the record is not known durable) must leave it unset, so result() reads."""
    completions = Completions()
    completions.expect("r3")
    with_record, without = completions.watch("r3"), completions.watch("r4")
    record = {"st": "completed", "res": None}
    completions.notify("r3", record)
    completions.notify("r4")
    assert with_record.is_set() and with_record.record is record
    assert without.is_set() and without.record is None
