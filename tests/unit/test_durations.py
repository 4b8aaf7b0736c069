"""parse_duration: the one way durations (sleep, timeouts, Retry intervals) are read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from treadle.runtime import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (0.25, 0.25),
        (1e-9, 1e-9),
        (timedelta(0), 0.0),
        (timedelta(minutes=1, milliseconds=500), 60.5),
        ("0s", 0.0),
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("0.5m", 30.0),
        ("1000ms", 1.0),
    ],
)
def test_accepted_durations(value: Any, seconds: float) -> None:
    """int/float seconds >= 0, timedelta, and '<number><ms|s|m|h|d>' strings give float seconds."""
    result = parse_duration(value, "timeout")
    assert result == pytest.approx(seconds)
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.001,
        timedelta(seconds=-1),
        float("nan"),
        float("inf"),
        float("-inf"),
        True,
        False,
        None,
        "5 s",
        "5x",
        "",
        "s",
        "-5s",
        "5",
        "1e3s",
        ".5s",
        "5S",
        "5sec",
        "nan s",
        [],
        [5],
        {"seconds": 5},
        b"5s",
        object(),
    ],
)
def test_refused_durations_name_the_parameter(value: Any) -> None:
    """Negative, NaN, infinite, bool, None, malformed strings and other types: ValueError naming the param."""
    with pytest.raises(ValueError, match=r"ctx\.sleep: duration"):
        parse_duration(value, "ctx.sleep: duration")


def test_error_message_shows_the_value() -> None:
    """The message shows the offending value so the caller can find it."""
    with pytest.raises(ValueError, match=r"'5 s'"):
        parse_duration("5 s", "timeout")
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-3, "timeout")


def test_int_too_large_for_a_float_is_a_value_error() -> None:
    """An int beyond float range is an infinite duration: ValueError naming the parameter."""
    with pytest.raises(ValueError, match="timeout"):
        parse_duration(10**400, "timeout")
