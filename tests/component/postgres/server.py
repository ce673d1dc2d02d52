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


THROWAWAY = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")
"""Durability settings off so pgbench initialisation and restores are quick."""


@dataclass
class PostgresCluster:
    """A data directory under `base` and the server on it, started and stopped separately: the PITR tests crash
    the server, replace its data directory and start it again. `base` also holds the socket and the log, and
    belongs to the server user, so a test can put the server's other files (a WAL repository) there too."""

    server: PostgresServer
    base: Path

    @property
    def data(self) -> Path:
        return self.base / "data"

    def as_server_user(self, *command: str) -> list[str]:
        return _as_server_user(self.server.run_as, *command)

    def chown(self, path: Path) -> None:
        """Give `path` to the server user (a no-op when not root)."""
        if self.server.run_as:
            entry = pwd.getpwnam(self.server.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg_ctl(self, *args: str, env: dict[str, str] | None = None) -> None:
        pg_ctl = [str(self.server.bin_dir / "pg_ctl"), f"--pgdata={self.data}", f"--log={self.base / 'server.log'}"]
        completed = subprocess.run(
            self.as_server_user(*pg_ctl, *args), check=False, env=env, capture_output=True, text=True
        )
        if completed.returncode != 0:
            log = (self.base / "server.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"pg_ctl {args[-1]} exited {completed.returncode}: {completed.stderr}\n{log}")

    def start(self, *settings: str, env: dict[str, str] | None = None) -> None:
        """Start and wait for it; `settings` are `name=value` without spaces, `env` the server's environment."""
        options = " ".join([f"-h 127.0.0.1 -p {self.server.port} -k {self.base}", *(f"-c {s}" for s in settings)])
        # A restore's recovery may take a while before the server accepts connections.
        self._pg_ctl("--wait", "--timeout=120", f"--options={options}", "start", env=env)

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: nothing is flushed or archived on the way down."""
        self._pg_ctl(f"--mode={mode}", "--wait", "stop")

    def running(self) -> bool:
        status = [str(self.server.bin_dir / "pg_ctl"), f"--pgdata={self.data}", "status"]
        return subprocess.run(self.as_server_user(*status), capture_output=True, check=False).returncode == 0


@contextmanager
def initialized_cluster(*initdb_args: str) -> Iterator[PostgresCluster]:
    """initdb into a temporary directory (not started); stop the server if running and delete it afterwards."""
    bin_dir = _pg_bin()
    run_as = _server_user()
    base = Path(tempfile.mkdtemp(prefix="tradingstack-pg-"))
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(PostgresServer(bin_dir=bin_dir, port=free_port(), password=password, run_as=run_as), base)
    (base / "pwfile").write_text(password + "\n")
    cluster.chown(base)
    cluster.chown(base / "pwfile")
    try:
        subprocess.run(
            cluster.as_server_user(
                str(bin_dir / "initdb"),
                f"--pgdata={cluster.data}",
                f"--username={SUPERUSER}",
                f"--pwfile={base / 'pwfile'}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                *initdb_args,
            ),
            check=True,
            capture_output=True,
        )
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb into a temporary directory, start postgres on a free port, stop and delete it afterwards."""
    with initialized_cluster() as cluster:
        cluster.start(*THROWAWAY)
        yield cluster.server
