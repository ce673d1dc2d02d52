"""Real Redis and PostgreSQL servers on 127.0.0.1 for the health contract tests (PostgreSQL is the component
tests' shared server, tests/component/postgres/server.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.health.processes import RedisServer
from tests.component.postgres.server import PostgresServer, running_postgres
from tests.support import free_port


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), secrets.token_urlsafe(16), tmp_path)
    server.start()
    yield server
    server.stop()
