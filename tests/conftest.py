"""Fixtures shared by every tier: a Runtime on a fresh store, bounded shutdown, counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Box, Counter
from treadle.runtime import Runtime


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def box(store_path: Path) -> Iterator[Box]:
    holder = Box(store_path)
    yield holder
    holder.close()


@pytest.fixture
def rt(box: Box) -> Runtime:
    return box.open()


@pytest.fixture
def counter() -> Counter:
    return Counter()
