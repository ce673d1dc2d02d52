"""The PostgreSQL image's entrypoint (images/postgres/docker-entrypoint.sh) with the real server binaries.

It implements the official images' environment contract that the rendered pod relies on: on an empty PGDATA it
initialises the cluster with POSTGRES_USER / POSTGRES_PASSWORD, creates POSTGRES_DB, authenticates TCP clients
by password and execs the server; on an initialised PGDATA it only execs the server.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.component.postgres.server import _as_server_user, _pg_bin, _server_user
from tests.fixtures.cluster import REPO
from tests.support import free_port, wait_for

pytestmark = pytest.mark.component
ENTRYPOINT = REPO / "images" / "postgres" / "docker-entrypoint.sh"
USER = "trading"
DATABASE = "orders"


@pytest.fixture
def volume() -> Iterator[Path]:
    """A directory the server user owns, standing in for the data volume (PGDATA is a subdirectory); outside
    pytest's tmp_path, whose parents only root may enter."""
    directory = Path(tempfile.mkdtemp(prefix="tradingstack-entrypoint-"))
    run_as = _server_user()
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def entrypoint(volume: Path, password: str, login_password: str | None = None) -> Iterator[int]:
    """Runs the entrypoint as the image would (`docker-entrypoint.sh postgres`) with POSTGRES_PASSWORD=password
    and yields the server's port once `login_password` (default: the same) logs in over TCP."""
    run_as = _server_user()
    port = free_port()
    socket_dir = volume / "socket"
    socket_dir.mkdir(exist_ok=True)
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
    env = {
        "PATH": f"{_pg_bin()}{os.pathsep}{os.environ['PATH']}",
        "PGDATA": str(volume / "pgdata"),
        "POSTGRES_USER": USER,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": DATABASE,
        # the image's socket directory is /var/run/postgresql; here a private one, for the server and for psql
        "PGHOST": str(socket_dir),
        "PGOPTIONS": "",
    }
    command = ["env", *(f"{k}={v}" for k, v in env.items()), "sh", str(ENTRYPOINT)]
    command += ["postgres", "-c", f"port={port}", "-c", f"unix_socket_directories={socket_dir}", "-c", "fsync=off"]
    server = subprocess.Popen(
        _as_server_user(run_as, *command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:

        def accepting() -> bool:
            assert server.poll() is None, f"the entrypoint exited {server.returncode}"
            with connect(port, login_password or password):
                return True

        wait_for(accepting, timeout=60, interval=0.2, what="TCP logins", tolerate=(psycopg.OperationalError,))
        yield port
    finally:
        # SIGINT: the fast shutdown the image's STOPSIGNAL asks for, to every process of the session
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=60)
        print(output.decode(errors="replace"))


def connect(port: int, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1", port=port, user=USER, password=password, dbname=DATABASE, autocommit=True, connect_timeout=5
    )


def test_empty_volume_gets_the_database_and_password_logins(volume: Path) -> None:
    password = secrets.token_urlsafe(12)
    with entrypoint(volume, password) as port:
        with connect(port, password) as conn:
            conn.execute("CREATE TABLE marker (v text)")
            conn.execute("INSERT INTO marker VALUES ('kept')")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(port, "wrong-" + password)
    assert not (volume / "pgdata.initialising").exists()

    # A restart keeps the data and never re-initialises: the password in the environment is not consulted.
    with entrypoint(volume, "another-password", login_password=password) as port, connect(port, password) as conn:
        assert conn.execute("SELECT v FROM marker").fetchall() == [("kept",)]


def test_an_interrupted_initialisation_is_done_again(volume: Path) -> None:
    """A pod killed during initdb leaves a half-made staging directory and no PGDATA: the next start starts
    over instead of running a server on a cluster without the database."""
    staging = volume / "pgdata.initialising"
    staging.mkdir()
    (staging / "PG_VERSION").write_text("15\n")
    run_as = _server_user()
    if run_as:
        entry = pwd.getpwnam(run_as)
        for path in (staging, staging / "PG_VERSION"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    password = secrets.token_urlsafe(12)
    with entrypoint(volume, password) as port, connect(port, password) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (DATABASE,)
