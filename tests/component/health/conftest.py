"""Real Redis and PostgreSQL servers on 127.0.0.1 for the health contract tests.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user (setpriv execs it,
so the process we signal is postgres itself).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.component.health.processes import RedisServer, free_port, stop, wait_for

PG_SUPERUSER = "trading"
PG_SERVER_USER = "postgres"


def _pg_bin() -> Path:
    if "PG_BIN" in os.environ:
        return Path(os.environ["PG_BIN"])
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not candidates:
        pytest.fail("PostgreSQL server binaries not found: install postgresql (hack/install-prereqs.sh) or set PG_BIN")
    return candidates[-1]


@dataclass
class PostgresServer:
    port: int
    password: str

    def url(self, password: str | None = None) -> str:
        return f"postgresql://{PG_SUPERUSER}:{password or self.password}@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    run_as: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="tradingstack-health-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(PG_SERVER_USER)
        run_as = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--"]
        os.chown(directory, account.pw_uid, account.pw_gid)
    server = PostgresServer(free_port(), secrets.token_urlsafe(16))
    password_file = directory / "password"
    password_file.write_text(server.password)
    if run_as:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    bin_dir = _pg_bin()
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            PG_SUPERUSER,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [
            *run_as,
            str(bin_dir / "postgres"),
            "-D",
            str(directory / "data"),
            "-p",
            str(server.port),
            "-k",
            str(directory),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"postgres exited {process.returncode}")
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    try:
        wait_for(answers, f"postgres on port {server.port}")
        yield server
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), secrets.token_urlsafe(16), tmp_path)
    server.start()
    yield server
    server.stop()
