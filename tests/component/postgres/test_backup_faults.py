"""The backup tool under faults, with a real PostgreSQL and real filesystems (issue 21):

- the PostgreSQL server killed (SIGKILL, every process of it, as a pod kill does) while pg_dump is writing the
  archive: the backup fails cleanly, leaves nothing retention or `restore --from latest` could take as good, and
  the next backup, once the server is back, succeeds and verifies;
- a full backup volume (a size-limited tmpfs): the backup fails with the reason `BackupVolumeFull`, nothing that
  was there is deleted, and the operator's backup health turns False with that reason.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.component.postgres.conftest import BackupTool
from tests.component.postgres.server import THROWAWAY, PostgresCluster, initialized_cluster
from tests.fixtures.reliability import Reliability
from tradingstack.backup.store import BackupStore, Manifest
from tradingstack.components.observe import JobRun
from tradingstack.contract import termination
from tradingstack.reconcile.backup_health import backup_health

pytestmark = pytest.mark.component

MID_DATA_BYTES = 1 << 20
"""The kill lands once the partial archive holds at least this much: past its header and table of contents."""
KILLS = int(os.environ.get("TRADINGSTACK_CHAOS_BACKUP_KILLS", "1"))
"""Backups killed in a row (`make chaos` runs more)."""


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _child_named(pid: int, name: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in _children(pid):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    return child
            except OSError:
                continue
        time.sleep(0.001)
    raise AssertionError(f"no {name} process under {pid} within {timeout} s")


def _partials(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.partial"))


def _kill_server(cluster: PostgresCluster) -> None:
    """SIGKILL the postmaster and every backend at once, as losing the pod does."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().splitlines()[0])
    for pid in [postmaster, *_children(postmaster)]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while cluster.running() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def killable_server() -> Iterator[PostgresCluster]:
    """A server of this test's own (the shared one must survive), with one database of incompressible rows."""
    with initialized_cluster() as cluster:
        cluster.start(*THROWAWAY)
        with cluster.server.connect("postgres") as conn:
            conn.execute("CREATE DATABASE trades")
        with cluster.server.connect("trades") as conn:
            # About 22 MB of hex text: an archive of several MB even compressed, so pg_dump is mid-data for long.
            conn.execute(
                "CREATE TABLE fills AS SELECT i AS id, md5(i::text) AS a, md5((i * 7)::text) AS b"
                " FROM generate_series(1, 300000) AS i"
            )
        yield cluster


def _backup_with_the_server_killed(tool: BackupTool, cluster: PostgresCluster, at_bytes: int) -> tuple[int, str]:
    """Runs a backup and SIGKILLs the server once the partial archive holds `at_bytes`; its exit status and
    termination message. pg_dump runs in 2 ms slices (SIGSTOP/SIGCONT) meanwhile, so the kill lands in the data
    deterministically rather than racing the dump's end."""
    termination_log = tool.directory.parent / "termination-log"
    termination_log.write_text("")
    running = tool.start("backup", "--keep-last", "1", "--termination-log", str(termination_log))
    pg_dump = _child_named(running.pid, "pg_dump")
    os.kill(pg_dump, signal.SIGSTOP)
    while not ((partial := _partials(tool.directory)) and partial[0].stat().st_size >= at_bytes):
        assert running.poll() is None, "the backup ended before the kill"
        os.kill(pg_dump, signal.SIGCONT)
        time.sleep(0.002)
        os.kill(pg_dump, signal.SIGSTOP)
    _kill_server(cluster)
    os.kill(pg_dump, signal.SIGCONT)
    stdout, stderr = running.communicate(timeout=120)
    assert stdout == "", f"the backup completed: all its data had left the server before the kill ({stderr})"
    return running.returncode, termination_log.read_text()


def test_postgres_killed_mid_dump_fails_cleanly_and_the_next_backup_succeeds(
    killable_server: PostgresCluster, tmp_path: Path, reliability: Reliability
) -> None:
    tool = BackupTool(killable_server.server, "trades", tmp_path / "backups")
    [good] = tool.ok("backup")
    # Each round kills at another point of the data, from 1 MiB to a third of the archive: later, what is left
    # may already sit in the socket buffers (several MB on loopback), and pg_dump then completes a good archive.
    step = (good["sizeBytes"] // 3 - MID_DATA_BYTES) // max(1, KILLS - 1)
    for round_ in range(KILLS):
        files_before = _files(tool.directory)

        status, message = _backup_with_the_server_killed(tool, killable_server, MID_DATA_BYTES + round_ * step)

        assert status == 1, message
        failure = termination.parse(message)
        assert isinstance(failure, termination.ToolFailure), failure
        assert failure.reason is None
        assert failure.error.startswith("pg_dump exited 1:"), failure.error
        assert "server closed the connection unexpectedly" in failure.error, failure.error
        # No partial archive, nothing pruned: the good archive and its manifest are exactly as they were.
        assert _files(tool.directory) == files_before
        assert tool.names() == [good["name"]]
        assert tool.ok("prune", "--keep-last", "1") == []
        assert BackupStore(tool.directory).get("latest").name == good["name"]  # what `restore --from latest` takes

        killable_server.start(*THROWAWAY)  # crash recovery
        [after] = tool.ok("backup", "--keep-last", "1")
        assert after["verified"] is True
        assert tool.names() == [after["name"]]  # retention removed the old one once a newer good one existed
        assert tool.ok("verify") == [{"name": after["name"], "verified": True}]
        good = after
    reliability.record(
        "Postgres killed during a backup",
        runs=f"{KILLS} backups of a {good['sizeBytes'] // 1024} KiB archive (real postgres, real backup tool)",
        faults="SIGKILL of every server process while pg_dump writes the table data (1 MiB to 1/3 of the archive)",
        checked="exit 1 with pg_dump's error as the termination message; the backup directory byte-identical (no"
        " partial, the last good archive kept by prune and taken by `restore --from latest`); the next backup after"
        " crash recovery succeeds and verifies",
        result=f"{KILLS} of {KILLS} failed cleanly and were followed by a verified backup; 0 good archives lost",
    )


# A full backup volume ------------------------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mounts a tmpfs of the given size (bytes, rounded up to pages) as a backup volume; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        target = tmp_path / f"volume-{len(mounted)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            if subprocess.run(["umount", str(target)], check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", str(target)], check=False)


def test_full_backup_volume_fails_with_its_reason_deletes_nothing_and_turns_backup_healthy_false(
    tool: BackupTool, small_volume: Callable[[int], Path], tmp_path: Path, reliability: Reliability
) -> None:
    measured = tool.ok("backup")[0]["sizeBytes"]
    # Room for one archive and a half: the first backup fits, the second runs out in the middle of its dump.
    tool.directory = small_volume(measured * 3 // 2 + 16384) / "backups"
    [good] = tool.ok("backup")
    files_before = _files(tool.directory)
    termination_log = tmp_path / "termination-log"
    termination_log.touch()

    completed = tool.run("backup", "--keep-last", "1", "--termination-log", str(termination_log))

    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == ""
    failure = termination.parse(termination_log.read_text())
    assert isinstance(failure, termination.ToolFailure), failure
    assert failure.reason == termination.FailureReason.VOLUME_FULL
    assert json.loads(termination_log.read_text())["reason"] == "BackupVolumeFull"
    assert "No space left on device" in failure.error and "no backup was deleted" in failure.error
    assert _files(tool.directory) == files_before  # the good archive as it was, the partial one removed
    assert tool.names() == [good["name"]]

    # The operator's side of the contract: the Job's result as backup health judges it.
    finished = datetime.now(UTC)
    runs = [
        JobRun("backup-1", (), True, finished, None, termination.parse(json.dumps(good))),
        JobRun("backup-2", (), False, finished, "BackoffLimitExceeded", failure),
    ]
    health = backup_health(runs, "0 2 * * *", "UTC", finished)
    assert (health.status, health.reason) == ("False", "BackupVolumeFull")
    assert good["name"] in health.message and "No space left on device" in health.message
    reliability.record(
        "a full backup volume",
        runs=f"1 backup onto a tmpfs with room for 1.5 archives of {measured // 1024} KiB, one good archive on it",
        faults="pg_dump's write refused (No space left on device) in the middle of the archive",
        checked="exit 1, termination message reason BackupVolumeFull; the volume byte-identical (partial removed,"
        " nothing deleted); BackupHealthy from that message",
        result="BackupVolumeFull; 0 files deleted; BackupHealthy False, reason BackupVolumeFull, naming the newest"
        " good backup and what to do",
    )


def test_a_manifest_that_does_not_fit_takes_its_archive_back_out(small_volume: Callable[[int], Path]) -> None:
    store = BackupStore(small_volume(64 * 1024))
    name = "trades-20261207T020000.000Z"
    at = datetime(2026, 12, 7, 2, tzinfo=UTC)
    manifest = Manifest(time=at, name=name, database="trades", server_version="15", size_bytes=0,
                        checksum="sha256:0", compression=1, verified=True)  # fmt: skip
    with pytest.raises(OSError, match="No space left on device"), store.staging(name) as partial:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT)
        try:  # the archive takes every byte there is
            while os.write(descriptor, b"\0" * 4096):
                pass
        except OSError as err:
            assert err.errno == errno.ENOSPC
        finally:
            os.close(descriptor)
        assert store.free_bytes() == 0
        store.commit(partial, manifest)
    assert list(store.directory.iterdir()) == []
    assert store.backups() == []
