"""Fixtures of the adapter tests: a worker serving two gated tools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from errand import Worker

from .scenario import Gates


@pytest.fixture
def gates(start_worker: Callable[..., Worker]) -> Iterator[Gates]:
    """Gated `research` and `lookup` tools, served by a worker; every gate opens at the end."""
    g = Gates()
    start_worker(g.research, g.lookup, max_concurrency=4)
    yield g
    g.open_all()
