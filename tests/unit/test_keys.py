"""The key schema: LMDB's 511-byte limit, distinctness, prefixes and ordering."""

from __future__ import annotations

import pytest

from treadle.storage import (
    MAX_KEY,
    journal_key,
    journal_prefix,
    run_key,
    signal_index_key,
    signal_key,
    signal_prefix,
    step_key,
    timer_key,
)

LONG = "r" * 10_000
LONG_UNICODE = "é✓" * 5_000  # 25,000 UTF-8 bytes
SHORTS = ["a", "order-42", "3.1.0", "payment"]


def _all_keys(text: str) -> list[bytes]:
    return [
        run_key(text),
        journal_prefix(text),
        journal_key(text, text),
        signal_prefix(text),
        signal_prefix(text, text),
        signal_key(text, text, 2**64 - 1),
        signal_index_key(text, text, text),
        timer_key(1_900_000_000.5, text, text),
    ]


@pytest.mark.parametrize("text", ["", "x", "a\x00b", LONG, LONG_UNICODE, "\x00" * 10_000])
def test_every_key_fits_lmdb(text: str) -> None:
    """Every key function yields <= 511 bytes (MAX_KEY) even for 10,000-character ids and names."""
    assert MAX_KEY == 511
    for key in _all_keys(text):
        assert isinstance(key, bytes)
        assert len(key) <= MAX_KEY


def test_long_and_short_parts_mix_within_limit() -> None:
    """Each part is bounded on its own: any mix of long run id, step, name and key stays <= 511."""
    for run in ("r", LONG):
        for part in ("p", LONG, LONG_UNICODE):
            assert len(journal_key(run, part)) <= MAX_KEY
            assert len(signal_key(run, part, 7)) <= MAX_KEY
            assert len(signal_index_key(run, part, LONG)) <= MAX_KEY
            assert len(signal_index_key(run, LONG, part)) <= MAX_KEY
            assert len(timer_key(0.0, run, part)) <= MAX_KEY


def test_run_key_is_fixed_length() -> None:
    """Run ids hash to a fixed 16 bytes."""
    assert {len(run_key(r)) for r in ["", "a", LONG, LONG_UNICODE]} == {16}


def test_different_ids_give_different_keys() -> None:
    """Distinct run ids, step ids, names and keys give distinct keys, also when long (hashed)."""
    long_a, long_b = LONG + "a", LONG + "b"
    runs = ["a", "b", "order-42", long_a, long_b]
    assert len({run_key(r) for r in runs}) == len(runs)
    steps = ["0", "1", "1.0", "10", "a" * 160, "a" * 161, long_a, long_b, "x\x00y", "x\x00z"]
    assert len({journal_key("run", s) for s in steps}) == len(steps)
    assert len({signal_key("run", s, 0) for s in steps}) == len(steps)
    assert len({signal_index_key("run", "sig", s) for s in steps}) == len(steps)
    assert len({signal_index_key("run", s, "k") for s in steps}) == len(steps)
    assert len({timer_key(5.0, "run", s) for s in steps}) == len(steps)
    assert journal_key("run-1", "0") != journal_key("run-2", "0")
    assert signal_key(long_a, "s", 0) != signal_key(long_b, "s", 0)
    assert timer_key(5.0, "run-1", "0") != timer_key(5.0, "run-2", "0")


def test_keys_are_deterministic() -> None:
    """The same input always yields the same key (they are found again after a restart)."""
    assert _all_keys(LONG) == _all_keys(LONG)
    assert journal_key("order-42", "3.1") == journal_key("order-42", "3.1")


@pytest.mark.parametrize("run", ["order-42", LONG])
def test_journal_keys_of_a_run_share_its_prefix(run: str) -> None:
    """Every journal key of a run starts with journal_prefix(run); another run's keys do not."""
    prefix = journal_prefix(run)
    other = journal_prefix(run + "-other")
    for step in ["0", "1.2.3", "payment", LONG, LONG_UNICODE]:
        key = journal_key(run, step)
        assert key.startswith(prefix)
        assert not key.startswith(other)
        assert step_key(prefix, step) == key
        assert not journal_key(run + "-other", step).startswith(prefix)


@pytest.mark.parametrize("name", ["approve", LONG])
def test_signal_keys_sort_by_sequence(name: str) -> None:
    """Signal keys of one run and name sort (bytewise, as LMDB does) by their sequence number."""
    seqs = [0, 1, 2, 9, 10, 255, 256, 65_535, 65_536, 2**32, 2**63, 2**64 - 1]
    keys = [signal_key("run", name, seq) for seq in seqs]
    assert sorted(keys) == keys


def test_signal_keys_fall_under_their_prefixes() -> None:
    """signal_prefix(run, name) covers exactly that name's signals; signal_prefix(run) all of the run's."""
    for name in ["a", "ab", LONG]:
        key = signal_key("run", name, 3)
        assert key.startswith(signal_prefix("run", name))
        assert key.startswith(signal_prefix("run"))
        assert not key.startswith(signal_prefix("other-run"))
    # a name that extends another name is not caught by the shorter name's prefix
    assert not signal_key("run", "ab", 0).startswith(signal_prefix("run", "a"))
    assert not signal_key("run", LONG + "x", 0).startswith(signal_prefix("run", LONG))


def test_timer_keys_sort_by_due_time() -> None:
    """Timer keys sort by due time first, whatever the run and step."""
    dues = [0.0, 0.000001, 1.0, 59.5, 1_700_000_000.0, 1_700_000_000.25, 4_000_000_000.0]
    keys = [timer_key(due, f"run-{len(dues) - i}", "z" * (i + 1)) for i, due in enumerate(dues)]
    assert sorted(keys) == keys


def test_negative_due_clamps_to_zero() -> None:
    """A due time before the epoch sorts first instead of failing."""
    assert timer_key(-5.0, "run", "1") == timer_key(0.0, "run", "1")


def test_far_future_due_still_gives_a_key() -> None:
    """Any finite deadline parse_duration accepts (ctx.sleep(1e300)) gives a key that sorts last."""
    far = timer_key(1e300, "run", "1")
    assert len(far) <= MAX_KEY
    assert far > timer_key(4_000_000_000.0, "run", "1")
