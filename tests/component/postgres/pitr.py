"""Fixtures of the PITR tests and of bench/bench_pitr.py: a server archiving WAL with pgBackRest, configured by
`render.pgbackrest` (the files and commands are the rendered ones, not a copy), a writer committing numbered rows,
and the loss of the data volume with what a restore then lost."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.component.postgres.s3 import S3Server
from tests.component.postgres.server import SUPERUSER, PostgresCluster, initialized_cluster
from tests.support import wait_for
from tradingstack.contract.pgbackrest import PgBackRestEnv, cipher_pass_env
from tradingstack.render import pgbackrest
from tradingstack.render.pgbackrest import PgBackRestSettings, S3Repo

STANZA_CREATED = "stanza-create command end: completed successfully"
"""What pgBackRest logs once stanza-create succeeded (the sidecar runs it once its server is a primary)."""

ARCHIVE_TIMEOUT_SECONDS = 2
"""Short so that the tests are: the server ships a partly filled WAL segment after this long."""

SERVER_SETTINGS = ("fsync=off",)
"""fsync only matters if the machine crashes; the default full_page_writes and synchronous_commit stay, since
recovery replays the WAL they write."""

WRITER_LIMIT_SECONDS = 30.0
"""A writer nobody stops stops itself."""


@dataclass
class PgBackRest:
    """pgBackRest as the server user, with the settings its configuration file was rendered from."""

    cluster: PostgresCluster
    settings: PgBackRestSettings
    env: dict[str, str]
    server_settings: tuple[str, ...] = SERVER_SETTINGS
    """`name=value` settings every start of the server gets."""

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run to completion; on timeout kill its process group (runuser and pgBackRest under it), then raise."""
        argv = self.cluster.as_server_user(*argv)
        with subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    def ok(self, argv: list[str], timeout: float = 60) -> str:
        completed = self.run(argv, timeout)
        assert completed.returncode == 0, f"{argv[3:]} exited {completed.returncode}: {completed.stdout}"
        return completed.stdout

    @property
    def repo1(self) -> Path:
        """The posix repository (every fixture here has one)."""
        assert self.settings.repo1_path is not None
        return Path(self.settings.repo1_path)

    def info(self) -> str:
        """`pgbackrest info --output=json`, as printed."""
        return self.ok(pgbackrest.info_command(self.settings))

    def with_settings(self, **changes: Any) -> PgBackRest:
        """Another configuration file, rendered from these settings with `changes`."""
        settings = dataclasses.replace(self.settings, **changes)
        Path(settings.config_path).write_text(pgbackrest.config_text(settings))
        return dataclasses.replace(self, settings=settings)

    def start_server(self, *settings: str) -> None:
        """Start the server with pgBackRest's env (archive_command runs in it) and wait for recovery to end."""
        self.cluster.start(*self.server_settings, *settings, env=self.env)
        wait_for(lambda: not _in_recovery(self.cluster), timeout=60, interval=0.2, what="end of recovery")
        # The checkpointer starts before recovery ends and then sleeps for checkpoint_timeout (5 min) without
        # looking at archive_timeout; a reload wakes it (seen on 15.18 with strace: no forced switch otherwise).
        with self.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return self.cluster.server.connect("postgres")


def _in_recovery(cluster: PostgresCluster) -> bool:
    with cluster.server.connect("postgres") as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def _server_dir(cluster: PostgresCluster, name: str) -> str:
    path = cluster.base / name
    path.mkdir(mode=0o750)
    cluster.chown(path)
    return str(path)


def _with_ca_file(cluster: PostgresCluster, s3: S3Server) -> S3Repo:
    """repo2 with its CA file copied where the server user can read it (pytest's tmp_path is root's alone)."""
    if s3.repo.ca_file is None:
        return s3.repo
    ca_file = cluster.base / "s3-ca.pem"
    shutil.copyfile(s3.repo.ca_file, ca_file)
    ca_file.chmod(0o644)
    return dataclasses.replace(s3.repo, ca_file=str(ca_file))


@contextmanager
def archiving_server(
    s3: S3Server | None = None,
    *,
    initdb_args: tuple[str, ...] = ("--wal-segsize=1",),
    server_settings: tuple[str, ...] = SERVER_SETTINGS,
    **changes: Any,
) -> Iterator[PgBackRest]:
    """A fresh server whose WAL goes to a pgBackRest posix repository under its base directory (and to `s3` as
    repo2), encrypted, with async archiving; the stanza exists. 1 MB WAL segments keep repositories at a few MB.
    The benchmark passes the operator's values instead: `changes` replace settings fields, `initdb_args` and
    `server_settings` the cluster's."""
    if shutil.which("pgbackrest") is None:
        pytest.fail("pgbackrest not found (hack/install-prereqs.sh)")
    with initialized_cluster(*initdb_args) as cluster:
        settings = PgBackRestSettings(
            stanza="pitr",
            pg_data=str(cluster.data),
            pg_port=cluster.server.port,
            pg_socket_path=str(cluster.base),
            repo1_path=_server_dir(cluster, "repo"),
            cipher_type="aes-256-cbc",
            spool_path=_server_dir(cluster, "spool"),
            lock_path=_server_dir(cluster, "lock"),
            log_path=_server_dir(cluster, "log"),
            process_max=2,
            archive_timeout_seconds=ARCHIVE_TIMEOUT_SECONDS,
            push_timeout_seconds=10,
            io_timeout_seconds=5,
            config_path=str(cluster.base / "pgbackrest.conf"),
            repo2_s3=_with_ca_file(cluster, s3) if s3 else None,
        )
        settings = dataclasses.replace(settings, **changes)
        Path(settings.config_path).write_text(pgbackrest.config_text(settings))
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.write(pgbackrest.postgres_conf(settings))
        passphrases = {cipher_pass_env(repo): secrets.token_urlsafe(24) for repo in (1, 2)}
        # The role from env, as the pod would take it from the Secret: the file's pg1-user (`postgres`) is no role.
        secret_env = {**passphrases, PgBackRestEnv.PG1_USER: SUPERUSER, **(s3.env() if s3 else {})}
        env = cluster.server.env("postgres", **secret_env)
        tool = PgBackRest(cluster, settings, env, server_settings)
        try:
            tool.start_server()
            tool.ok(pgbackrest.stanza_create_command(settings))
            yield tool
        finally:
            _stop_pgbackrest(tool)


def _config_users(config_path: str) -> list[int]:
    """Processes whose command line names this configuration file: the pgBackRest ones of one test."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"--config={config_path}".encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def _stop_pgbackrest(tool: PgBackRest) -> None:
    """The async archiver outlives the server for a while (and would recreate its spool in a deleted directory):
    stop the server, have pgBackRest terminate its processes, and wait for them to go."""
    if tool.cluster.running():
        tool.cluster.stop("immediate")
    tool.run(pgbackrest.command(tool.settings, "--force", "stop"), timeout=30)
    wait_for(lambda: not _config_users(tool.settings.config_path), timeout=15, interval=0.2, what="pgBackRest to exit")


@dataclass(frozen=True)
class Commit:
    seq: int
    sent: datetime
    """Just before the INSERT went out: the row's commit is later."""
    acknowledged: datetime
    """Just after the server confirmed the commit: the row's commit is earlier."""


@dataclass
class Writer:
    """Commits rows 1, 2, 3, ... into `ticks`, one transaction each, every `interval` seconds, in a thread,
    recording what it sent when and when the server confirmed it. Stops at the first error (the server gone)."""

    conn: psycopg.Connection[tuple[Any, ...]]
    interval: float = 0.01
    limit_seconds: float = WRITER_LIMIT_SECONDS
    commits: list[Commit] = field(default_factory=list)
    error: Exception | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS ticks (seq int PRIMARY KEY, at timestamptz NOT NULL)")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.limit_seconds
        seq = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            seq += 1
            sent = datetime.now(UTC)
            try:
                self.conn.execute("INSERT INTO ticks VALUES (%s, clock_timestamp())", (seq,))
            except psycopg.Error as err:
                self.error = err
                return
            self.commits.append(Commit(seq, sent, datetime.now(UTC)))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_rows(self, count: int) -> None:
        wait_for(lambda: len(self.commits) >= count or self.error, timeout=30, interval=0.05, what=f"{count} rows")
        assert self.error is None, self.error


@dataclass(frozen=True)
class Loss:
    """What a restore to latest lost of a writer's acknowledged commits."""

    rows: int
    seconds: float
    """From the last restored row's acknowledgement to the last acknowledged one: the span of lost commits."""


def loss(commits: list[Commit], restored_rows: int) -> Loss:
    """`restored_rows` of the rows 1, 2, ... survived. The row in flight at the crash may have committed without
    the writer hearing of it, so one more than acknowledged may survive: that is no loss."""
    lost = max(len(commits) - restored_rows, 0)
    if not lost:
        return Loss(0, 0.0)
    last_kept = commits[restored_rows - 1].acknowledged if restored_rows else commits[0].sent
    return Loss(lost, (commits[-1].acknowledged - last_kept).total_seconds())


def lose_data_volume(tool: PgBackRest) -> None:
    """A lost volume: the server crashes (immediate stop: nothing more is flushed or archived), its data
    directory is deleted, and so is the spool (an emptyDir in the pod, gone with it). The repository survives."""
    tool.cluster.stop("immediate")
    shutil.rmtree(tool.cluster.data)
    for child in Path(tool.settings.spool_path).iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def restored_seqs(tool: PgBackRest) -> list[int]:
    with tool.connect() as conn:
        return [int(row[0]) for row in conn.execute("SELECT seq FROM ticks ORDER BY seq")]


@contextmanager
def restored(tool: PgBackRest, target: datetime | None = None, repo: int | None = None) -> Iterator[PgBackRest]:
    """Restore into an empty data directory, start the server, wait until it has promoted; delete it afterwards."""
    try:
        restore_files(tool, target, repo)
        start_restored(tool)
        yield tool
    finally:
        if tool.cluster.running():
            tool.cluster.stop()
        shutil.rmtree(tool.cluster.data, ignore_errors=True)


def restore_files(
    tool: PgBackRest, target: datetime | None = None, repo: int | None = None, timeout: float = 60
) -> None:
    """pgBackRest restore into a new, empty data directory (the server stopped)."""
    data = tool.cluster.data
    data.mkdir(mode=0o700)
    tool.cluster.chown(data)
    tool.ok(pgbackrest.restore_command(tool.settings, target, repo=repo), timeout)


def start_restored(tool: PgBackRest) -> None:
    """Start the restored server and wait until it has replayed the archive and promoted."""
    # archive_mode=off: the restored server would push its new timeline into the shared repository, and the
    # next restore to "latest" would follow that timeline instead of the original one.
    tool.start_server("archive_mode=off")


def ready_segments(tool: PgBackRest) -> int:
    return len(list((tool.cluster.data / "pg_wal" / "archive_status").glob("*.ready")))


def archiver_failures(tool: PgBackRest) -> int:
    with tool.connect() as conn:
        row = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()
    return int(row[0]) if row else 0


def assert_commits_go_on_while_archiving_fails(tool: PgBackRest, writer: Writer) -> None:
    """With the repository unwritable or unreachable: check fails, the archiver records failures, yet the writer
    keeps committing. archive_command failing never blocks commits: the server keeps every unarchived segment in
    pg_wal and retries. On a real volume that is a disk-full risk: a repository unreachable for long enough fills
    the data volume, and then the server stops. `archive_push_queue_max` trades that for a gap in the archive."""
    writer.wait_rows(len(writer.commits) + 100)
    assert tool.run(pgbackrest.check_command(tool.settings)).returncode != 0
    wait_for(lambda: archiver_failures(tool) > 0, timeout=45, interval=0.5, what="an archive failure")
    wait_for(lambda: ready_segments(tool) >= 2, timeout=45, interval=0.5, what="unarchived WAL piling up")
    writer.wait_rows(len(writer.commits) + 100)


def assert_the_archive_catches_up(tool: PgBackRest, writer: Writer) -> None:
    """Once the repository is back, the piled-up WAL goes out (one segment may be in flight) and check passes."""
    wait_for(lambda: ready_segments(tool) <= 1, timeout=45, interval=0.5, what="the archive catching up")
    writer.stop()
    assert writer.error is None
    tool.ok(pgbackrest.check_command(tool.settings))
