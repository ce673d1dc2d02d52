"""The rendered pgBackRest TLS design with real processes: the database side runs the sidecar's rendered script
(stanza-create, reload, `pgbackrest server` with the generated certificates), and a backup Job's configuration
(`pg1-host` over TLS with the client certificate) takes full and differential backups through it; the server is
then lost and restored from them.

The rendered settings are those of a stack named like the fixture's stanza; only the paths (temporary
directories instead of the pod's mounts), the ports and the host (`localhost`, a DNS SAN of the certificate made
by the same builder as the Secret) are rewritten.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.component.postgres.pitr import STANZA_CREATED, PgBackRest, Writer, archiving_server, restored_seqs
from tests.component.postgres.server import SUPERUSER
from tests.support import free_port, wait_for
from tradingstack.api import TradingStack
from tradingstack.contract.pgbackrest import CLIENT_CN, TlsFile
from tradingstack.contract.pgbackrest_info import parse_info
from tradingstack.render import pgbackrest, pitr
from tradingstack.render.pgbackrest import PgBackRestSettings, TlsFiles
from tradingstack.render.pgbackrest_tls import TlsKeys, tls_files

pytestmark = pytest.mark.component

HOST = "localhost"
"""What the Jobs' `pg1-host` is rewritten to; the test's certificate carries it as its DNS SAN."""


def _stack() -> TradingStack:
    """A stack whose stanza is the fixture's (`pitr`), with the default pitr settings."""
    return TradingStack.model_validate(
        {
            "metadata": {"name": "pitr", "namespace": "trading", "uid": "u"},
            "spec": {"postgres": {"pitr": {"enabled": True}}},
        }
    )


def _keys() -> TlsKeys:
    return TlsKeys(*(ec.generate_private_key(ec.SECP256R1()) for _ in range(3)))


def _write_tls(directory: Path, files: dict[str, str], server_user: str | None) -> None:
    """As the pod's projected volume has them: root's, readable by the server user's group only (0440)."""
    directory.mkdir(mode=0o755)
    gid = pwd.getpwnam(server_user).pw_gid if server_user else os.getgid()
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        os.chown(path, os.getuid(), gid)
        path.chmod(0o440 if server_user else 0o600)


def _tls(directory: Path, cert: str, key: str) -> TlsFiles:
    return TlsFiles(str(directory / TlsFile.CA), str(directory / cert), str(directory / key))


def _sides(tool: PgBackRest, tls_dir: Path, port: int) -> tuple[PgBackRestSettings, PgBackRestSettings]:
    """The rendered database-side and Job-side settings, on the fixture's paths."""
    stack = _stack()
    rendered_db = pitr.settings(stack, "/pgdata", "/backups")
    rendered_job = pitr.settings(stack, "/pgdata", "/backups", pg_host="pitr-postgres.trading.svc.cluster.local")
    assert rendered_db.tls_server is not None and rendered_job.pg_host is not None
    assert rendered_db.tls_server.auth == ((CLIENT_CN, tool.settings.stanza),)
    base = tool.cluster.base
    server = dataclasses.replace(
        rendered_db.tls_server, files=_tls(tls_dir, TlsFile.SERVER_CERT, TlsFile.SERVER_KEY), port=port
    )
    # The rendered process options too: process-max through the TLS server, the restore's own in [global:restore].
    processes = {name: getattr(rendered_db, name) for name in ("process_max", "restore_process_max", "compress_type")}
    db = dataclasses.replace(tool.settings, tls_server=server, config_path=str(base / "db.conf"), **processes)
    client = dataclasses.replace(
        rendered_job.pg_host, host=HOST, port=port, files=_tls(tls_dir, TlsFile.CLIENT_CERT, TlsFile.CLIENT_KEY)
    )
    job_lock = base / "job-lock"
    job_lock.mkdir(mode=0o750)
    tool.cluster.chown(job_lock)
    job = dataclasses.replace(
        tool.settings, pg_host=client, lock_path=str(job_lock), config_path=str(base / "job.conf"), **processes
    )
    for side in (db, job):
        Path(side.config_path).write_text(pgbackrest.config_text(side))
    return db, job


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def sidecar(tool: PgBackRest, db: PgBackRestSettings) -> Iterator[subprocess.Popen[str]]:
    """The rendered sidecar script as the server user; killed (its process group) afterwards."""
    script = tool.cluster.base / "pgbackrest-sidecar.sh"
    script.write_text(pitr.sidecar_script(db))
    log = (tool.cluster.base / "sidecar.log").open("w")
    env = {**tool.env, "PGUSER": SUPERUSER}
    process = subprocess.Popen(
        tool.cluster.as_server_user("sh", str(script)),
        env=env,
        stdout=log,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        assert db.tls_server is not None
        port = db.tls_server.port
        wait_for(lambda: _listening(port) or process.poll() is not None, timeout=60, interval=0.2, what="TLS server")
        assert process.poll() is None, (tool.cluster.base / "sidecar.log").read_text()
        # The server listens at once; the stanza is created beside it once the server is a primary.
        wait_for(lambda: STANZA_CREATED in (tool.cluster.base / "sidecar.log").read_text(), timeout=60,
                 interval=0.2, what="the sidecar's stanza-create")  # fmt: skip
        yield process
    finally:
        os.killpg(process.pid, 9)
        process.wait()
        log.close()


def test_backup_jobs_back_up_through_the_tls_server_and_the_backups_restore() -> None:
    with archiving_server() as tool, tool.connect() as conn:
        writer = Writer(conn)
        writer.start()
        writer.wait_rows(50)
        tls_dir = tool.cluster.base / "tls"
        _write_tls(tls_dir, tls_files([HOST], CLIENT_CN, _keys(), datetime.now(UTC)), tool.cluster.server.run_as)
        db, job_settings = _sides(tool, tls_dir, free_port())
        job = PgBackRest(tool.cluster, job_settings, tool.env)
        with sidecar(tool, db):
            started = time.monotonic()
            job.ok(pgbackrest.backup_command(job_settings, "full"), timeout=120)
            full_seconds = time.monotonic() - started
            writer.wait_rows(len(writer.commits) + 100)
            # Acknowledged before the diff started, so before its consistent point: in the backup for sure.
            before_diff = len(writer.commits)
            started = time.monotonic()
            job.ok(pgbackrest.backup_command(job_settings, "diff"), timeout=120)
            diff_seconds = time.monotonic() - started
            info = parse_info(job.info(), job_settings.stanza)
            assert info.ok and info.last_full is not None and info.last_diff is not None, info
            _assert_a_foreign_client_is_refused(tool, job_settings)
        writer.stop()
        tool.cluster.stop("immediate")
        shutil.rmtree(tool.cluster.data)
        seqs = _restore_as_the_init_container(tool, db)
        # No gaps, and every row acknowledged before the diff began (later ones as far as the archive got).
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= before_diff
        print(
            f"TLS backups: full {full_seconds:.1f} s ({info.last_full.size_bytes} bytes), diff {diff_seconds:.1f} s; "
            f"{before_diff} rows before the diff, {len(writer.commits)} before the crash, {len(seqs)} restored"
        )


def _restore_as_the_init_container(tool: PgBackRest, db: PgBackRestSettings) -> list[int]:
    """The rendered restore script on the lost (absent) data directory, then the server; run again on the
    restored directory, the script leaves it alone. Returns the restored rows."""
    script = tool.cluster.base / "pgbackrest-restore.sh"
    script.write_text(pitr.restore_script(_stack(), db))
    restore = tool.cluster.as_server_user("sh", str(script), str(tool.cluster.data))
    first = subprocess.run(restore, env=tool.env, capture_output=True, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    # The restore's own process-max ([global:restore]), not the backups'.
    assert f"--process-max={db.restore_process_max} " in first.stdout + first.stderr, first.stdout + first.stderr
    # archive_mode=off: the restored server must not push a new timeline into the fixture's repository.
    tool.start_server("archive_mode=off")
    try:
        again = subprocess.run(restore, env=tool.env, capture_output=True, text=True, check=False, timeout=60)
        assert again.returncode == 0 and "nothing to restore" in again.stderr, again.stderr
        return restored_seqs(tool)
    finally:
        tool.cluster.stop()


def _assert_a_foreign_client_is_refused(tool: PgBackRest, job: PgBackRestSettings) -> None:
    """A client certificate of another CA gets nothing from the server (the design's only access control
    besides the NetworkPolicy)."""
    foreign_dir = tool.cluster.base / "foreign-tls"
    files = tls_files([HOST], CLIENT_CN, _keys(), datetime.now(UTC))
    real_ca = Path(job.pg_host.files.ca_file).read_text() if job.pg_host else ""
    _write_tls(foreign_dir, {**files, TlsFile.CA: real_ca}, tool.cluster.server.run_as)
    assert job.pg_host is not None
    foreign_host = dataclasses.replace(job.pg_host, files=_tls(foreign_dir, TlsFile.CLIENT_CERT, TlsFile.CLIENT_KEY))
    foreign = dataclasses.replace(job, pg_host=foreign_host, config_path=str(tool.cluster.base / "foreign.conf"))
    Path(foreign.config_path).write_text(pgbackrest.config_text(foreign))
    completed = PgBackRest(tool.cluster, foreign, tool.env).run(pgbackrest.backup_command(foreign, "incr"), timeout=60)
    assert completed.returncode != 0, completed.stdout
    # pgBackRest 2.45 says: "TLS error [1:167773208] tlsv1 alert unknown ca".
    assert "unknown ca" in completed.stdout + completed.stderr, completed.stdout
