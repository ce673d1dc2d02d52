"""Fixtures for the backup tool tests: a real PostgreSQL server, a pgbench database, the tool as a subprocess."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.component.postgres.patroni_harness import cluster_factory, etcd  # noqa: F401 - fixtures
from tests.component.postgres.server import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with running_postgres() as server:
            yield server
    except FileNotFoundError as err:
        pytest.fail(f"{err} (hack/install-prereqs.sh)")


@dataclass
class BackupTool:
    """Runs `python -m tradingstack.backup` against one database and one backup directory."""

    server: PostgresServer
    database: str
    directory: Path

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tradingstack.backup", "--dir", str(self.directory), *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.server.env(self.database, **env),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The tool running in the background (output to pipes), for a test that injects a fault meanwhile."""
        return subprocess.Popen(
            self.argv(*args),
            env=self.server.env(self.database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ok(self, *args: str, **env: str) -> list[dict[str, Any]]:
        """Run, insist on success, return the JSON lines printed."""
        completed = self.run(*args, **env)
        assert completed.returncode == 0, f"{args} exited {completed.returncode}: {completed.stderr}"
        return [json.loads(line) for line in completed.stdout.splitlines()]

    def names(self) -> list[str]:
        return [entry["name"] for entry in self.ok("list")]


@pytest.fixture
def bench_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh pgbench database (scale 2, about 200k account rows), dropped afterwards."""
    database = f"bench_{secrets.token_hex(4)}"
    postgres_server.pgbench_database(database, scale=2)
    yield database
    with postgres_server.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


@pytest.fixture
def tool(postgres_server: PostgresServer, bench_db: str, tmp_path: Path) -> BackupTool:
    return BackupTool(postgres_server, bench_db, tmp_path / "backups")


def table_fingerprints(server: PostgresServer, database: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of all rows in a stable order, per table of the public schema."""
    with server.connect(database) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        ]
        fingerprints = {}
        for table in tables:
            query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {} t")
            row = conn.execute(query.format(sql.Identifier(table))).fetchone()
            assert row is not None
            fingerprints[table] = (int(row[0]), str(row[1]))
    return fingerprints
