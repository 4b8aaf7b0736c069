"""structlog loggers that go through the standard library's ``logging``.

A library must not print on its own: events go to ``logging.getLogger
("treadle....")`` and are dropped before any formatting when that logger is
not enabled for the level, so a silent service pays almost nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]

_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.stdlib.add_log_level,
    structlog.processors.format_exc_info,
    structlog.processors.KeyValueRenderer(
        key_order=["event", "run_id", "workflow", "step"], drop_missing=True
    ),
]


def get_logger(name: str) -> Any:
    """A bound structlog logger writing to the stdlib logger ``name``."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
