"""The rendered postgres_exporter sidecar against a real PostgreSQL server: it logs in with the username and
password of the stack's Secret and reports the server, its database's size, transactions and connections; a
wrong password reports pg_up 0."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from psycopg import sql

from tests.component.metrics.sidecar import RunningExporter, rendered_sidecar, running_sidecar
from tests.component.postgres.server import SUPERUSER, PostgresServer, running_postgres
from tests.dashboard import POSTGRES_ROW, exporter_metrics
from tests.support import wait_for
from tradingstack.api import TradingStack
from tradingstack.contract import PostgresExporterEnv, SecretKey
from tradingstack.render.common import POSTGRES_PORT
from tradingstack.render.postgres import secret_name

pytestmark = pytest.mark.component
STACK = TradingStack.model_validate(
    {
        "metadata": {"name": "comp", "namespace": "test"},
        "spec": {"postgres": {"user": SUPERUSER, "database": "orders", "metrics": {"enabled": True}}},
    }
)
DATABASE = STACK.spec.postgres.database
SIDECAR = rendered_sidecar(STACK, "comp-postgres")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server with the stack's database, as the image's entrypoint creates it (POSTGRES_DB)."""
    try:
        with running_postgres() as running:
            with running.connect("postgres") as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            yield running
    except FileNotFoundError as err:
        pytest.fail(f"{err} (hack/install-prereqs.sh)")


@contextmanager
def exporter(server: PostgresServer, password: str, log: Path) -> Iterator[RunningExporter]:
    """The pod's sidecar, given `password` as the Secret's password (the username is the server's role)."""
    name = secret_name(STACK)
    secrets = {(name, SecretKey.USERNAME): SUPERUSER, (name, SecretKey.PASSWORD): password}
    moves = {PostgresExporterEnv.URI: (f"127.0.0.1:{POSTGRES_PORT.number}/", f"127.0.0.1:{server.port}/")}
    with running_sidecar(SIDECAR, secrets, PostgresExporterEnv.LISTEN_ADDRESS, moves, log) as running:
        yield running


def test_the_sidecar_reports_the_server_and_the_stacks_database(server: PostgresServer, tmp_path: Path) -> None:
    with server.connect(DATABASE) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 1000) i")
    with exporter(server, server.password, tmp_path / "exporter.log") as running:
        assert running.value("pg_up") == 1
        assert running.value("pg_database_size_bytes", datname=DATABASE) > 0
        assert running.value("pg_stat_database_xact_commit", datname=DATABASE) >= 2
        assert running.value("pg_stat_database_numbackends", datname=DATABASE) >= 0
        assert exporter_metrics(POSTGRES_ROW) <= set(running.scrape()), "the dashboard reads what the exporter serves"
        with server.connect(DATABASE):  # a client connection of the stack's database is counted
            wait_for(
                lambda: running.value("pg_stat_activity_count", datname=DATABASE, state="idle") >= 1,
                timeout=30,
                interval=0.5,
                what="an idle connection of the stack's database counted",
            )


def test_a_wrong_password_is_reported_as_down(server: PostgresServer, tmp_path: Path) -> None:
    with exporter(server, "not-the-password", tmp_path / "exporter.log") as running:
        assert running.value("pg_up") == 0
        assert "pg_database_size_bytes" not in running.scrape()
