"""Fixtures of the crash tier: scenarios whose children never outlive a test.

Every scenario runs a child script (written into ``tmp_path``) with
``treadle.runtime.testing.child_main``; the script's source starts with
``PRELUDE``, which gives it ``counters`` (a cross-process ``FileCounter``),
``MODE`` (the mode the parent started the child in) and ``hold()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from treadle.runtime.testing import Scenario

PRELUDE = '''
import os
import sys
import time

from treadle.runtime import ActivityContext, RunStatus, activity, workflow
from treadle.runtime.testing import FileCounter, child_main

counters = FileCounter.from_env()
MODE = sys.argv[1]


def hold(marker="release", limit=30.0):
    """Block (bounded) until the parent (or the step watcher) creates ``marker``."""
    if not counters.wait_mark(marker, limit):
        raise RuntimeError(f"marker {marker!r} never appeared")


def wait_for(predicate, limit=20.0, what="condition"):
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)
'''

MakeScenario = Callable[..., Scenario]


@pytest.fixture
def make_scenario(tmp_path: Path) -> Iterator[MakeScenario]:
    """``make_scenario(body, name="scenario")``: a Scenario whose script is PRELUDE + body."""
    made: list[Scenario] = []

    def make(body: str, name: str = "scenario") -> Scenario:
        scenario = Scenario(tmp_path / name, "scenario.py", PRELUDE + body)
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.counters.mark("release")
        scenario.close()
