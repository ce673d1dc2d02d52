"""Point-in-time recovery with a real server and a real pgBackRest 2.45, configured by `render.pgbackrest`.

One scenario serves the restore and verify tests: a writer commits a numbered row every ~10 ms while a full and
a differential backup are taken, then the server crashes (immediate stop: nothing more is flushed or archived)
and its data directory and spool are deleted, as when a volume is lost. What survives is the repository.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.component.postgres.pitr import (
    ARCHIVE_TIMEOUT_SECONDS,
    Commit,
    PgBackRest,
    Writer,
    archiving_server,
    assert_commits_go_on_while_archiving_fails,
    assert_the_archive_catches_up,
    lose_data_volume,
    loss,
    restored,
    restored_seqs,
)
from tradingstack.contract.pgbackrest_info import parse_info, verify_problems
from tradingstack.render import pgbackrest, pitr

pytestmark = pytest.mark.component

RECORD_INFO = "RECORD_PGBACKREST_INFO"
"""Set to a path to keep the scenario's `pgbackrest info` JSON (the unit tests' fixture was recorded so)."""

PUSH_SLACK_SECONDS = 3.0
"""On top of archive_timeout: the archiver's wake-up and the async push of the last segment before the crash."""


@dataclass
class Scenario:
    tool: PgBackRest
    commits: list[Commit]
    full_done: datetime
    diff_started: datetime
    info: str


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with archiving_server() as tool, tool.connect() as conn:
        writer = Writer(conn)
        writer.start()
        writer.wait_rows(50)
        tool.ok(pgbackrest.backup_command(tool.settings, "full"))
        full_done = datetime.now().astimezone()
        writer.wait_rows(len(writer.commits) + 200)
        diff_started = datetime.now().astimezone()
        tool.ok(pgbackrest.backup_command(tool.settings, "diff"))
        # Several archive_timeout periods after the last backup's own WAL switch, so that what is lost at the
        # crash is bounded by archive_timeout, not by the time since that backup.
        writer.wait_rows(len(writer.commits) + 500)
        lose_data_volume(tool)
        writer.stop()
        info = tool.info()
        if RECORD_INFO in os.environ:
            Path(os.environ[RECORD_INFO]).write_text(info)
        yield Scenario(tool, writer.commits, full_done, diff_started, info)


def test_restore_to_latest_loses_at_most_the_unarchived_tail(
    scenario: Scenario, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with restored(scenario.tool) as tool:
        seqs = restored_seqs(tool)
    last = len(seqs)
    acknowledged = len(scenario.commits)
    # The row in flight at the crash may have committed without the writer hearing of it.
    assert seqs == list(range(1, last + 1))
    assert last <= acknowledged + 1
    assert last > 0
    lost = loss(scenario.commits, last)
    record_property("rows_lost", lost.rows)
    record_property("rpo_seconds", lost.seconds)
    with capsys.disabled():
        print(f"\nRPO: {lost.rows} of {acknowledged} acknowledged rows lost, {lost.seconds:.2f} s of commits")
    assert lost.seconds <= ARCHIVE_TIMEOUT_SECONDS + PUSH_SLACK_SECONDS


def test_restore_to_a_time_between_two_commits_keeps_exactly_the_earlier_ones(scenario: Scenario) -> None:
    # Between the backups: pgBackRest must choose the full one (the differential ends after the target).
    # pgBackRest 2.45 picks the newest backup whose stop time, in whole seconds, is not after the target: a target
    # in the second the differential stopped would pick it and stop before it is consistent. So stay before the
    # second the differential started in.
    diff_second = scenario.diff_started.replace(microsecond=0)
    between = [c for c in scenario.commits if scenario.full_done < c.sent and c.acknowledged < diff_second]
    assert len(between) > 10
    before = between[len(between) // 2]
    after = scenario.commits[before.seq]  # seq is 1-based: the next commit
    assert after.seq == before.seq + 1
    # The writer waits ~10 ms between a commit's acknowledgement and the next row: the target lies in that gap.
    target = before.acknowledged + (after.sent - before.acknowledged) / 2
    with restored(scenario.tool, target) as tool:
        seqs = restored_seqs(tool)
        with tool.connect() as conn:
            row = conn.execute("SELECT max(at) FROM ticks").fetchone()
    assert seqs == list(range(1, before.seq + 1))
    assert row is not None
    assert row[0] < target


def _copy_repo(tool: PgBackRest, name: str) -> PgBackRest:
    """The same repository under another path, with its own configuration file, to damage without harm."""
    copy = tool.cluster.base / name
    shutil.copytree(tool.repo1, copy)
    shutil.chown(copy, tool.cluster.server.run_as or os.getuid())
    for path in copy.rglob("*"):
        shutil.chown(path, tool.cluster.server.run_as or os.getuid())
    return tool.with_settings(repo1_path=str(copy), config_path=str(tool.cluster.base / f"{name}.conf"))


def _largest_backup_file(repo: Path) -> Path:
    return max((p for p in (repo / "backup").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_verify_passes_on_the_repository_and_fails_after_one_file_is_damaged(scenario: Scenario) -> None:
    good = scenario.tool.ok(pgbackrest.verify_command(scenario.tool.settings))
    assert verify_problems(good) == []
    damaged = _copy_repo(scenario.tool, "repo-damaged")
    victim = _largest_backup_file(damaged.repo1)
    content = bytearray(victim.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 16] = bytes(b ^ 0xFF for b in content[middle : middle + 16])
    victim.write_bytes(bytes(content))
    completed = damaged.run(pgbackrest.verify_command(damaged.settings))
    # pgBackRest 2.45 exits 0 on a damaged repository: its report is what says so.
    problems = verify_problems(completed.stdout)
    assert any(str(victim.relative_to(victim.parents[3])) in line for line in problems), completed.stdout
    assert victim.name.split(".")[0] in completed.stdout


def test_info_of_the_scenario_parses(scenario: Scenario) -> None:
    info = parse_info(scenario.info, scenario.tool.settings.stanza)
    assert info.last_full is not None
    assert info.last_diff is not None
    assert info.last_full.label < info.last_diff.label
    assert info.first_recoverable is not None
    assert info.last_recoverable is not None
    assert info.first_recoverable <= scenario.full_done
    assert info.last_recoverable >= scenario.diff_started - timedelta(seconds=1)


def test_commits_go_on_while_the_repository_is_unwritable() -> None:
    """See `assert_commits_go_on_while_archiving_fails` for the disk-full risk this implies."""
    with archiving_server() as tool, tool.connect() as conn:
        tool.ok(pgbackrest.check_command(tool.settings))
        repo = tool.repo1
        mode = repo.stat().st_mode
        repo.chmod(0)
        writer = Writer(conn)
        writer.start()
        try:
            assert_commits_go_on_while_archiving_fails(tool, writer)
        finally:
            repo.chmod(stat.S_IMODE(mode))
        assert_the_archive_catches_up(tool, writer)


def _in_repository(tool: PgBackRest, segment: str) -> bool:
    target = tool.cluster.base / "fetched"
    found = tool.run(pgbackrest.command(tool.settings, "archive-get", segment, str(target))).returncode == 0
    target.unlink(missing_ok=True)
    return found


def test_the_pending_push_archives_what_a_crashed_leader_left_before_its_member_starts() -> None:
    """The WAL a Patroni leader finished but never archived (its archiver stuck, then the server crashed) is in
    no repository: a standby with archive_mode `on` does not archive it. The member's pending push
    (`pitr.pending_script`, before Patroni) ships those segments, marks them done, and runs its command; a
    restore to latest then has every acknowledged row."""
    with archiving_server() as tool:
        with tool.connect() as conn:
            tool.ok(pgbackrest.backup_command(tool.settings, "full"), timeout=120)
            writer = Writer(conn)
            writer.start()
            writer.wait_rows(100)
            # The archiver stops shipping, as on a leader whose archive_command is slow or failing when it is lost.
            conn.execute("ALTER SYSTEM SET archive_command = 'false'")
            conn.execute("SELECT pg_reload_conf()")
            for _ in range(3):
                writer.wait_rows(len(writer.commits) + 100)
                conn.execute("SELECT pg_switch_wal()")
            writer.stop()
            # Rows committed after a switch sit in the unfinished segment, which no archiver ships before the crash
            # (the archive_timeout bound); closing it after the writer stops makes every acknowledged row pending.
            conn.execute("SELECT pg_switch_wal()")
        acknowledged = len(writer.commits)
        tool.cluster.stop("immediate")
        status = tool.cluster.data / "pg_wal" / "archive_status"
        pending = sorted(p.name.removesuffix(".ready") for p in status.glob("*.ready"))
        missing = [segment for segment in pending if not _in_repository(tool, segment)]
        assert missing, f"nothing left unarchived to push: pending {pending}"

        script = tool.cluster.base / pitr.PENDING_SCRIPT
        script.write_text(pitr.pending_script(tool.settings))
        marker = tool.cluster.base / "started"
        argv = tool.cluster.as_server_user("sh", str(script), str(tool.cluster.data), "touch", str(marker))
        completed = subprocess.run(argv, env=tool.env, capture_output=True, text=True, timeout=120, check=False)
        assert completed.returncode == 0 and marker.exists(), completed.stderr
        assert not list(status.glob("*.ready")), completed.stderr
        assert all(_in_repository(tool, segment) for segment in missing), completed.stderr

        shutil.rmtree(tool.cluster.data)
        with restored(tool):
            seqs = restored_seqs(tool)
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= acknowledged, (len(seqs), acknowledged)
        print(f"pending push: {len(missing)} of {len(pending)} ready segments were in no repository; restored "
              f"{len(seqs)} rows of {acknowledged} acknowledged")  # fmt: skip
