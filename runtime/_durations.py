"""Durations: seconds, ``timedelta`` or ``"250ms"``/``"5s"``/``"2m"``/``"1h"``/``"1d"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

__all__ = ["Duration", "parse_duration", "parse_optional_duration"]

Duration = int | float | timedelta | str

_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any, param: str) -> float:
    """Seconds in ``value``.

    Raises:
        ValueError: negative, NaN, infinite, unparsable, or not a duration type
            (the message names ``param``).
    """
    if isinstance(value, bool):
        raise ValueError(f"{param} must be a duration (seconds, timedelta or '5s'), got bool {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{param} must be a finite duration, got an int too large for a float") from None
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        match = _PATTERN.match(value.strip())
        if match is None:
            raise ValueError(f"{param} must look like '250ms', '5s', '2m', '1h' or '1d', got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f"{param} must be a duration (seconds, timedelta or '5s'), got {type(value).__name__} {value!r}"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{param} must be a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{param} must not be negative, got {value!r}")
    return seconds


def parse_optional_duration(value: Any, param: str) -> float | None:
    return None if value is None else parse_duration(value, param)
