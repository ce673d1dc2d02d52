"""A real PostgreSQL server on 127.0.0.1, shared by the component tests and bench/bench_postgres.py.

The server runs as an unprivileged user (postgres refuses root): the current user when not root, otherwise the
`postgres` system user, created with `useradd` on a machine that lacks it. Binaries come from PG_BIN or the
newest /usr/lib/postgresql/*/bin. Durability is off (fsync, full_page_writes, synchronous_commit): the data
is throwaway.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support import free_port

SUPERUSER = "trading"
SERVER_USER = "postgres"


def _pg_bin() -> Path:
    if "PG_BIN" in os.environ:
        return Path(os.environ["PG_BIN"])
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not candidates:
        raise FileNotFoundError("PostgreSQL server binaries not found: install postgresql or set PG_BIN")
    return candidates[-1]


def _server_user() -> str | None:
    """The user to run postgres as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER], check=True
        )
    return SERVER_USER


@dataclass
class PostgresServer:
    bin_dir: Path
    port: int
    password: str
    run_as: str | None

    def env(self, database: str, **overrides: str) -> dict[str, str]:
        """libpq environment for client programs and the backup tool."""
        return {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": SUPERUSER,
            "PGPASSWORD": self.password,
            "PGDATABASE": database,
            **overrides,
        }

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{SUPERUSER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname=database, autocommit=True
        )

    def pgbench_database(self, database: str, scale: int) -> None:
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        subprocess.run(
            [str(self.bin_dir / "pgbench"), "--initialize", "--quiet", f"--scale={scale}", database],
            env=self.env(database),
            check=True,
            capture_output=True,
        )


def _as_server_user(run_as: str | None, *command: str) -> list[str]:
    return ["runuser", "-u", run_as, "--", *command] if run_as else list(command)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb into a temporary directory, start postgres on a free port, stop and delete it afterwards."""
    bin_dir = _pg_bin()
    run_as = _server_user()
    base = Path(tempfile.mkdtemp(prefix="tradingstack-pg-"))
    password = secrets.token_urlsafe(16)
    (base / "pwfile").write_text(password + "\n")
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chown(base / "pwfile", entry.pw_uid, entry.pw_gid)
    data = base / "data"
    subprocess.run(
        _as_server_user(
            run_as,
            str(bin_dir / "initdb"),
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            f"--pwfile={base / 'pwfile'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(bin_dir=bin_dir, port=free_port(), password=password, run_as=run_as)
    # Throwaway data: durability settings off so pgbench initialisation and restores are quick.
    options = f"-h 127.0.0.1 -p {server.port} -k {base} -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), f"--pgdata={data}", f"--log={base / 'server.log'}"]
    subprocess.run(
        _as_server_user(run_as, *pg_ctl, "--wait", f"--options={options}", "start"), check=True, capture_output=True
    )
    try:
        yield server
    finally:
        subprocess.run(
            _as_server_user(run_as, *pg_ctl, "--mode=immediate", "--wait", "stop"), check=False, capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)
