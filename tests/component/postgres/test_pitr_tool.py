"""The backup tool's pgBackRest subcommands against a real server and a real pgBackRest 2.45 (`pitr.py`).

The tool runs as the server user, as pgBackRest must (it reads the data directory and shares the repository
and lock files with the server's archive_command), with the system python3 and this checkout on its path.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.component.postgres.pitr import (
    ARCHIVE_TIMEOUT_SECONDS,
    PgBackRest,
    Writer,
    archiver_failures,
    archiving_server,
    ready_segments,
)
from tests.support import wait_for
from tradingstack.contract import ExitCode, termination
from tradingstack.contract.pgbackrest import PitrToolCommand
from tradingstack.contract.termination import ArchiveStatus, PitrBackupResult, PitrListing, ToolFailure
from tradingstack.render import pgbackrest

pytestmark = pytest.mark.component

OPERATOR_SOURCE = Path(__file__).parents[3] / "operator"
PUSH_SLACK_SECONDS = 3.0
"""On top of archive_timeout: the archiver's wake-up and the async push of a segment."""


@dataclass
class ToolRun:
    returncode: int
    lines: list[str]
    result: termination.TerminationMessage
    stderr: str


def _python(tool: PgBackRest) -> tuple[list[str], dict[str, str]]:
    """An interpreter the server user may run: this one when we are that user, else the system one with this
    checkout and the venv's packages on its path (the venv's interpreter lives under root's home)."""
    if tool.cluster.server.run_as is None:
        return [sys.executable], {}
    site = next(p for p in map(Path, sys.path) if p.name == "site-packages" and str(p).startswith(sys.prefix))
    return ["/usr/bin/python3"], {"PYTHONPATH": f"{OPERATOR_SOURCE}{os.pathsep}{site}"}


def run_tool(tool: PgBackRest, command: str, *args: str) -> ToolRun:
    log = tool.cluster.base / f"termination-{time.monotonic_ns()}"
    log.touch()
    tool.cluster.chown(log)
    python, env = _python(tool)
    argv = [*python, "-m", "tradingstack.backup", command, "--termination-log", str(log)]
    argv += [f"--config={tool.settings.config_path}", f"--stanza={tool.settings.stanza}", *args]
    completed = PgBackRest(tool.cluster, tool.settings, {**tool.env, **env}).run(argv, timeout=120)
    return ToolRun(
        completed.returncode, completed.stdout.splitlines(), termination.parse(log.read_text()), completed.stderr
    )


def _largest_backup_file(repo: Path) -> Path:
    return max((p for p in (repo / "backup").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_pitr_backup_reports_the_backup_and_a_window_holding_the_commits_before_it() -> None:
    with archiving_server() as tool, tool.connect() as conn:
        writer = Writer(conn)
        writer.start()
        writer.wait_rows(50)
        full = run_tool(tool, PitrToolCommand.BACKUP, "--type=full")
        writer.wait_rows(len(writer.commits) + 200)
        between = list(writer.commits)
        diff = run_tool(tool, PitrToolCommand.BACKUP, "--type=diff")
        writer.stop()
        listed = run_tool(tool, PitrToolCommand.INFO)

    assert full.returncode == ExitCode.OK, full.stderr
    assert diff.returncode == ExitCode.OK, diff.stderr
    assert isinstance(full.result, PitrBackupResult)
    assert isinstance(diff.result, PitrBackupResult)
    assert termination.parse(diff.lines[-1]) == diff.result  # stdout and the termination message agree
    assert (full.result.backup.type, diff.result.backup.type) == ("full", "diff")
    assert full.result.backup.label.endswith("F")
    assert diff.result.backup.label.startswith(full.result.backup.label)  # a diff's label names its full
    assert diff.result.verified
    assert diff.result.backup.repo == 1
    # The window reaches from the full backup's end to the diff's: every commit acknowledged in between is in it.
    assert diff.result.recoverable_from == full.result.backup.stopped
    assert diff.result.recoverable_to == diff.result.backup.stopped
    made = [c for c in between if c.sent > full.result.backup.stopped]
    assert len(made) >= 100
    assert diff.result.recoverable_from <= made[0].sent
    assert made[-1].acknowledged <= diff.result.recoverable_to
    assert diff.result.archive is not None
    assert not diff.result.archive.failing
    assert diff.result.archive.archived_count > 0

    assert listed.returncode == ExitCode.OK, listed.stderr
    assert isinstance(listed.result, PitrListing)
    assert [b.label for b in listed.result.backups] == [diff.result.backup.label, full.result.backup.label]
    assert listed.result.total == 2
    assert listed.result.recoverable_to == diff.result.recoverable_to


def test_pitr_backup_fails_when_verify_finds_a_damaged_file() -> None:
    with archiving_server() as tool:
        tool.ok(pgbackrest.backup_command(tool.settings, "full"))
        assert tool.settings.repo1_path is not None
        victim = _largest_backup_file(Path(tool.settings.repo1_path))
        content = bytearray(victim.read_bytes())
        middle = len(content) // 2
        content[middle : middle + 16] = bytes(b ^ 0xFF for b in content[middle : middle + 16])
        victim.write_bytes(bytes(content))
        # An incremental backup does not read the full's files again: the backup passes, verify does not.
        run = run_tool(tool, PitrToolCommand.BACKUP, "--type=incr")

    assert run.returncode == ExitCode.FAILED, run.lines
    assert isinstance(run.result, ToolFailure)
    assert str(victim.relative_to(victim.parents[3])) in run.result.error
    assert "verify found a damaged repository" in run.result.error


def _archive_status(tool: PgBackRest) -> ArchiveStatus:
    run = run_tool(tool, PitrToolCommand.ARCHIVE_STATUS)
    assert run.returncode == ExitCode.OK, run.stderr
    assert isinstance(run.result, ArchiveStatus)
    return run.result


def test_archive_status_reports_failures_and_a_growing_lag_while_commits_go_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with archiving_server() as tool, tool.connect() as conn:
        tool.ok(pgbackrest.check_command(tool.settings))
        assert tool.settings.repo1_path is not None
        repo = Path(tool.settings.repo1_path)
        mode = repo.stat().st_mode
        writer = Writer(conn)
        writer.start()
        writer.wait_rows(100)
        healthy = _archive_status(tool)
        repo.chmod(0)
        try:
            wait_for(lambda: archiver_failures(tool) > 0, timeout=45, interval=0.5, what="an archive failure")
            wait_for(lambda: ready_segments(tool) >= 2, timeout=45, interval=0.5, what="unarchived WAL piling up")
            first = _archive_status(tool)
            rows = len(writer.commits)
            time.sleep(ARCHIVE_TIMEOUT_SECONDS + 1)
            writer.wait_rows(rows + 100)
            second = _archive_status(tool)
        finally:
            repo.chmod(stat.S_IMODE(mode))
        wait_for(lambda: ready_segments(tool) == 0, timeout=45, interval=0.5, what="the archive catching up")
        writer.stop()
        recovered = wait_for_status(tool, lambda s: not s.failing)

    assert not healthy.failing
    assert healthy.lag_seconds <= ARCHIVE_TIMEOUT_SECONDS + PUSH_SLACK_SECONDS
    assert first.failing
    assert first.failed_count > 0
    assert first.ready_count >= 2
    assert first.last_failed_wal is not None
    assert second.failed_count > first.failed_count
    assert second.ready_count >= first.ready_count
    assert second.lag_seconds - first.lag_seconds >= ARCHIVE_TIMEOUT_SECONDS
    assert recovered.lag_seconds <= ARCHIVE_TIMEOUT_SECONDS + PUSH_SLACK_SECONDS
    with capsys.disabled():
        print(
            f"\narchive lag: healthy {healthy.lag_seconds:.2f} s; repository unwritable {first.lag_seconds:.1f} s"
            f" ({first.ready_count} segments, {first.failed_count} failures), then {second.lag_seconds:.1f} s"
            f" ({second.ready_count}, {second.failed_count}); recovered {recovered.lag_seconds:.1f} s"
        )


def wait_for_status(tool: PgBackRest, done: Callable[[ArchiveStatus], bool]) -> ArchiveStatus:
    statuses: list[ArchiveStatus] = []

    def reached() -> bool:
        statuses.append(_archive_status(tool))
        return done(statuses[-1])

    wait_for(reached, timeout=30, interval=0.5, what="the archive status")
    return statuses[-1]
