"""The database side of backups: pg_dump / pg_restore runs and the few SQL statements a restore needs.

Connection settings come from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), which
both psycopg and the PostgreSQL client programs read, so the password never appears on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

DUMP_COMPRESSION = 1
"""zlib level 1: faster than pg_dump's default level (measured 269 against 190 MB/s, and in
docs/benchmarks/postgres.md 40% less client CPU) for archives only slightly larger."""

_STDERR_TAIL = 2000


class DatabaseError(RuntimeError):
    """A client program or SQL statement failed; the message carries the program's own error text."""


@dataclass(frozen=True)
class Database:
    name: str
    maintenance_db: str = "postgres"
    """Database to connect to for CREATE/DROP DATABASE (one cannot drop the database one is connected to)."""

    bin_dir: Path | None = None
    """Directory of pg_dump/pg_restore; PATH when unset."""

    def program(self, name: str) -> str:
        if self.bin_dir is not None:
            return str(self.bin_dir / name)
        found = shutil.which(name)
        if found is None:
            raise DatabaseError(f"{name} not found on PATH (set --pg-bin or PG_BIN)")
        return found

    def server_version(self) -> str:
        with _connect(self.name) as conn:
            return str(conn.info.parameter_status("server_version") or "unknown")

    def dump(self, archive: Path, compression: int = DUMP_COMPRESSION) -> None:
        self._run(
            self.program("pg_dump"),
            "--format=custom",
            f"--compress={compression}",
            f"--file={archive}",
            f"--dbname={self.name}",
        )

    def list_archive(self, archive: Path) -> str:
        """Read the archive's table of contents (returned): fails on a truncated or foreign file."""
        return self._run(self.program("pg_restore"), "--list", str(archive))

    def restore(self, archive: Path, into: str, jobs: int) -> None:
        self._run(
            self.program("pg_restore"),
            "--exit-on-error",
            "--no-owner",
            f"--jobs={jobs}",
            f"--dbname={into}",
            str(archive),
        )

    def exists(self, name: str) -> bool:
        with self._maintenance() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def is_empty(self, name: str) -> bool:
        """No relation, function or schema of its own outside the system schemas and `public`."""
        query = """
            SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
                 + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
                 + (SELECT count(*) FROM pg_namespace
                     WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND nspname NOT LIKE 'pg\\_%')
        """
        with _connect(name) as conn:
            row = conn.execute(query).fetchone()
        return row is not None and row[0] == 0

    def create(self, name: str) -> None:
        from psycopg import sql  # noqa: PLC0415 - see _connect

        with self._maintenance() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop(self, name: str) -> None:
        """Drop, disconnecting its sessions (PostgreSQL 13+): a forced restore must not wait for clients."""
        from psycopg import sql  # noqa: PLC0415 - see _connect

        with self._maintenance() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def archiver(self) -> dict[str, Any]:
        """One row: `pg_stat_archiver`, the `.ready` segments (count, oldest modification time) and the server's
        `now()`, read in one statement so that all three describe the same moment by the same clock.
        `pg_ls_archive_statusdir` needs superuser or pg_monitor (the stack's role is the image's superuser)."""
        from psycopg.rows import dict_row  # noqa: PLC0415 - see _connect

        with _connect(self.name) as conn, conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(_ARCHIVER_QUERY).fetchone()
        if row is None:
            raise DatabaseError("pg_stat_archiver returned no row")
        return row

    def _maintenance(self) -> AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]:
        return _connect(self.maintenance_db)

    @staticmethod
    def _run(*command: str) -> str:
        # Messages in English whatever the image's locale: the tool reads them (a full volume, the server version).
        env = {**os.environ, "LC_ALL": "C"}
        completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if completed.returncode != 0:
            program = Path(command[0]).name
            raise DatabaseError(f"{program} exited {completed.returncode}: {completed.stderr.strip()[-_STDERR_TAIL:]}")
        return completed.stdout


_ARCHIVER_QUERY = """
    SELECT now() AS observed_at, a.archived_count, a.last_archived_wal, a.last_archived_time AS last_archived_at,
           a.failed_count, a.last_failed_wal, a.last_failed_time AS last_failed_at, r.ready_count, r.oldest_ready_at
      FROM pg_stat_archiver a,
           (SELECT count(*) AS ready_count, min(modification) AS oldest_ready_at
              FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') r
"""


@contextmanager
def _connect(database: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection (CREATE/DROP DATABASE refuse transactions); errors become DatabaseError.

    psycopg is imported here, not at the top: it takes about 0.1 s, and a verified backup (the CronJob's
    command) never connects (the server version comes from the archive's header), so it starts dumping sooner."""
    import psycopg  # noqa: PLC0415

    try:
        with psycopg.connect(dbname=database, autocommit=True, connect_timeout=10) as conn:
            yield conn
    except psycopg.Error as err:
        raise DatabaseError(str(err).strip()) from err


def archive_server_version(listing: str) -> str:
    """The server version recorded in an archive's table of contents (`pg_restore --list`)."""
    for line in listing.splitlines():
        if "Dumped from database version:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"
