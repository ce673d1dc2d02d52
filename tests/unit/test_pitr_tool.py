"""The backup tool's pgBackRest side without a server: its result models, the lag, the listing, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tradingstack.backup import cli, pitr
from tradingstack.backup.database import Database, DatabaseError
from tradingstack.contract import termination
from tradingstack.contract.termination import (
    ArchiveStatus,
    BackupListing,
    PitrBackup,
    PitrBackupResult,
    PitrBackupType,
    PitrListing,
    ToolFailure,
)

RECORDED = (Path(__file__).parent / "golden" / "pgbackrest-info.json").read_text()
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def archive(**changes: Any) -> ArchiveStatus:
    fields: dict[str, Any] = {
        "observed_at": T0,
        "archived_count": 10,
        "last_archived_wal": "00000001000000000000000A",
        "last_archived_at": T0 - timedelta(seconds=5),
        "failed_count": 0,
        "ready_count": 0,
        "lag_seconds": 0.0,
    }
    return ArchiveStatus(**(fields | changes))


def backup(label: str = "20261204-110000F", kind: PitrBackupType = "full", stopped: datetime = T0) -> PitrBackup:
    return PitrBackup(
        label=label,
        type=kind,
        started=stopped - timedelta(minutes=1),
        stopped=stopped,
        repo=1,
        size_bytes=30_000_000,
        repo_size_bytes=4_000_000,
    )


@pytest.mark.parametrize(
    "message",
    [
        PitrBackupResult(backup=backup(), verified=True, recoverable_from=T0, recoverable_to=T0, archive=archive()),
        PitrBackupResult(backup=backup(kind="incr"), verified=False),
        archive(failed_count=3, last_failed_wal="00000001000000000000000B", last_failed_at=T0, ready_count=2),
        PitrListing(backups=[backup()], total=1, recoverable_from=T0, recoverable_to=T0),
        PitrListing(backups=[], total=0, recoverable_from=None, recoverable_to=None),
    ],
)
def test_each_pitr_result_reads_back_as_itself(message: termination.TerminationMessage) -> None:
    assert termination.parse(termination.render(message)) == message


def test_an_empty_pitr_listing_is_not_taken_for_a_pg_dump_listing() -> None:
    empty = termination.parse(termination.render(BackupListing(backups=[], total=0)))
    assert isinstance(empty, BackupListing)
    pitr_empty = termination.parse(
        termination.render(PitrListing(backups=[], total=0, recoverable_from=None, recoverable_to=None))
    )
    assert isinstance(pitr_empty, PitrListing)


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({}, False),
        ({"failed_count": 1, "last_failed_at": T0 - timedelta(seconds=60)}, False),  # recovered since
        ({"failed_count": 1, "last_failed_at": T0 - timedelta(seconds=1)}, True),
        ({"archived_count": 0, "last_archived_at": None, "failed_count": 1, "last_failed_at": T0}, True),
    ],
)
def test_archiving_fails_when_the_last_failure_follows_the_last_success(changes: dict[str, Any], failing: bool) -> None:
    assert archive(**changes).failing is failing


def test_the_lag_is_the_oldest_waiting_segments_age_on_the_given_clock() -> None:
    assert pitr.archive_lag(None, T0) == 0.0
    assert pitr.archive_lag(T0 - timedelta(seconds=90.5), T0) == 90.5
    # A segment stamped a little after the server's now() (clock granularity) has not waited yet.
    assert pitr.archive_lag(T0 + timedelta(seconds=1), T0) == 0.0


def test_the_archiver_row_becomes_the_status_with_its_lag() -> None:
    row = {
        "observed_at": T0,
        "archived_count": 7,
        "last_archived_wal": "000000010000000000000007",
        "last_archived_at": T0 - timedelta(minutes=10),
        "failed_count": 4,
        "last_failed_wal": "000000010000000000000008",
        "last_failed_at": T0 - timedelta(seconds=3),
        "ready_count": 3,
        "oldest_ready_at": T0 - timedelta(minutes=9),
    }
    status = pitr.archive_status_of(row)
    assert status.lag_seconds == 540.0
    assert status.failing
    assert status.ready_count == 3


class RecordedPgBackRest(pitr.PgBackRest):
    """pgBackRest replaced by the recorded `info` (a full and a diff backup), taking note of the commands."""

    def __init__(self, infos: list[str], verify_report: str = "") -> None:
        super().__init__(config="/c/pgbackrest.conf", stanza="pitr")
        object.__setattr__(self, "infos", infos)
        object.__setattr__(self, "verify_report", verify_report)
        object.__setattr__(self, "commands", [])

    def run(self, *args: str) -> str:
        self.commands.append(self.command(*args))  # type: ignore[attr-defined]
        if args[-1] == "info":
            return self.infos.pop(0)  # type: ignore[attr-defined, no-any-return]
        if args[-1] == "verify":
            return self.verify_report  # type: ignore[attr-defined, no-any-return]
        return ""


def _without_diff() -> str:
    document = json.loads(RECORDED)
    document[0]["backup"] = [b for b in document[0]["backup"] if b["type"] == "full"]
    return json.dumps(document)


class NoServer(Database):
    def archiver(self) -> dict[str, Any]:
        raise DatabaseError("connection refused")


def test_a_backup_reports_the_one_new_backup_and_the_window_after_it() -> None:
    tool = RecordedPgBackRest([_without_diff(), RECORDED])
    result = pitr.backup(tool, NoServer("postgres"), "diff", repo=None, verify=True)
    diff = json.loads(RECORDED)[0]["backup"][1]
    assert result.backup.label == diff["label"]
    assert result.backup.type == "diff"
    assert result.backup.stopped == datetime.fromtimestamp(diff["timestamp"]["stop"], UTC)
    assert result.recoverable_to == result.backup.stopped
    assert result.verified
    assert result.archive is None  # the server unreachable: the backup still counts
    assert [argv[3:] for argv in tool.commands] == [  # type: ignore[attr-defined]
        ["--output=json", "info"],
        ["--type=diff", "backup"],
        ["verify"],
        ["--output=json", "info"],
    ]
    assert tool.commands[0][:3] == ["pgbackrest", "--config=/c/pgbackrest.conf", "--stanza=pitr"]  # type: ignore[attr-defined]


def test_a_damaged_repository_fails_the_backup_naming_the_file() -> None:
    report = (
        "INFO: verify command begin\n"
        "INFO: invalid checksum '20261204-100000F/pg_data/base/5/1259.lz4'\n"
        "INFO: stanza: pitr\nstatus: error\n"
    )
    tool = RecordedPgBackRest([_without_diff(), RECORDED], verify_report=report)
    with pytest.raises(pitr.PgBackRestError, match="pg_data/base/5/1259"):
        pitr.backup(tool, NoServer("postgres"), "diff", repo=2, verify=True)
    assert tool.commands[2][3:] == ["--repo=2", "verify"]  # type: ignore[attr-defined]


def test_the_listing_is_newest_first_and_cut_to_the_message_limit() -> None:
    complete, cut = pitr.listing(RecordedPgBackRest([RECORDED]))
    assert [b.type for b in complete.backups] == ["diff", "full"]
    assert complete.total == 2
    assert cut == complete
    _, one = pitr.listing(RecordedPgBackRest([RECORDED]), limit=len(termination.render(complete)) - 1)
    assert [b.type for b in one.backups] == ["diff"]
    assert one.total == 2


def test_the_pitr_commands_need_no_backup_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKUP_DIR", raising=False)
    args = cli._parser().parse_args(["--database=app", "pitr-backup", "--type=incr", "--stanza=app", "--repo=2"])
    assert (args.type, args.repo, args.stanza, args.verify, args.dir) == ("incr", 2, "app", True, None)
    assert args.config == "/etc/pgbackrest/pgbackrest.conf"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--database=app", "list"])
    assert exited.value.code == 2


def test_a_failed_pitr_command_writes_a_tool_failure(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.touch()
    # pgBackRest fails on a configuration file that does not exist (or is not installed): a failure either way.
    code = cli.main(["--database=app", "pitr-info", f"--termination-log={log}", "--config=/nonexistent", "--stanza=x"])
    assert code == 1
    assert isinstance(termination.parse(log.read_text()), ToolFailure)
