"""Fixtures shared by every test tier."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on a freshly flushed database."""
    conn = redis_server.client()
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# Fixtures defined beside their helpers, registered here for every test module.
from tests.api import client  # noqa: E402, F401
from tests.stack import broker, stack  # noqa: E402, F401
