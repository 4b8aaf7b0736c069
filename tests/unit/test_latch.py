"""Latch: the one-shot flag start() and result() wait on (threading.Event without a Condition)."""

from __future__ import annotations

import threading

from treadle.runtime._messages import Latch, Pending


def test_wait_times_out_while_unset_and_returns_at_once_once_set() -> None:
    latch = Latch()
    assert not latch.is_set()
    assert latch.wait(0.01) is False
    assert latch.wait(0) is False
    latch.set()
    latch.set()  # a second set is harmless
    assert latch.is_set()
    assert latch.wait(0) is True
    assert latch.wait(None) is True


def test_set_wakes_every_thread_waiting() -> None:
    latch = Latch()
    waiting = threading.Barrier(5)
    woken: list[bool] = []

    def waiter() -> None:
        waiting.wait(10)
        woken.append(latch.wait(10))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    waiting.wait(10)
    latch.set()
    for thread in threads:
        thread.join(10)
    assert woken == [True, True, True, True]


def _race_two_sets_against_two_waits() -> tuple[list[BaseException], list[bool], Latch]:
    latch = Latch()
    go = threading.Barrier(4)
    results: list[bool] = []
    errors: list[BaseException] = []

    def setter() -> None:
        go.wait(10)
        try:
            latch.set()
        except BaseException as exc:  # a double release must never escape
            errors.append(exc)

    def waiter() -> None:
        go.wait(10)
        results.append(latch.wait(10))

    threads = [threading.Thread(target=f) for f in (setter, setter, waiter, waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return errors, results, latch


def test_racing_sets_and_waits_never_raise_or_lose_the_wake_up() -> None:
    for _ in range(200):
        errors, results, latch = _race_two_sets_against_two_waits()
        assert errors == [] and results == [True, True] and latch.wait(0)


def test_pending_returns_its_value_or_raises_its_error() -> None:
    ok, failed, silent = Pending(), Pending(), Pending()
    ok.done(None, ("created", None, None))
    failed.done(OSError("disk"))
    assert ok.wait(1) == ("created", None, None)
    try:
        failed.wait(1)
    except OSError as exc:
        assert str(exc) == "disk"
    else:
        raise AssertionError("the error was not raised")
    try:
        silent.wait(0.01)
    except TimeoutError:
        pass
    else:
        raise AssertionError("an unanswered pending did not time out")
