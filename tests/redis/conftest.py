from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

from cloudkit_trio.testing import LocalRedis

# coredis leaves the anyio memory streams of a connection that failed to open (a Redis
# that is down) for the garbage collector, which warns about them: expected here, where
# Redis is killed on purpose, and nothing of ours.
_COREDIS_LEFTOVERS = r"ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/redis/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(_COREDIS_LEFTOVERS))


@pytest.fixture(autouse=True)
def _collect_coredis_leftovers() -> Iterator[None]:
    """Collect them before the next test, so they are never blamed on another module."""
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ResourceWarning)
        gc.collect()


@pytest.fixture
def redis_server() -> Iterator[LocalRedis]:
    """A fresh, empty Redis server on 127.0.0.1, stopped after the test."""
    with LocalRedis() as server:
        yield server
