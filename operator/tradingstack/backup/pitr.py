"""The backup tool's pgBackRest subcommands (`contract.pgbackrest.PitrToolCommand`): a verified base backup, the
listing of base backups, and the server's WAL archiving state. Each returns the result the CLI reports.

pgBackRest is run with the `--config` and `--stanza` the Job was rendered with; its secrets (passphrases, S3 keys)
come from the env it reads itself. The archiving state is read over libpq, like the pg_dump commands.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradingstack.backup.database import Database, DatabaseError
from tradingstack.contract import termination
from tradingstack.contract.pgbackrest_info import RawBackup, RawStanza, parse_stanza, stanza_info, verify_problems
from tradingstack.contract.termination import (
    ArchiveStatus,
    PitrBackup,
    PitrBackupResult,
    PitrBackupType,
    PitrListing,
)

_OUTPUT_TAIL = 2000


class PgBackRestError(RuntimeError):
    """A pgBackRest command failed, or its repository did not verify; the message carries pgBackRest's text."""


@dataclass(frozen=True)
class PgBackRest:
    config: str
    stanza: str

    def command(self, *args: str) -> list[str]:
        """The argv `render.pgbackrest.command` builds; this tool runs in its own image and imports no render/."""
        return ["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", *args]

    def run(self, *args: str) -> str:
        """Its stdout (the console log at level info, or the JSON of `--output=json`)."""
        completed = subprocess.run(self.command(*args), capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            # Errors go to stderr, the steps before them to stdout: both say what went wrong.
            output = f"{completed.stdout.strip()}\n{completed.stderr.strip()}".strip()
            raise PgBackRestError(f"pgbackrest {args[-1]} exited {completed.returncode}: {output[-_OUTPUT_TAIL:]}")
        return completed.stdout

    def stanza_state(self) -> RawStanza:
        return parse_stanza(self.run("--output=json", "info"), self.stanza)


def backup(
    tool: PgBackRest, database: Database, backup_type: PitrBackupType, repo: int | None, verify: bool
) -> PitrBackupResult:
    """A backup, `verify` of the repository it went to, then `info` for the new backup and the window."""
    repo_option = [f"--repo={repo}"] if repo else []
    before = {b.label for b in tool.stanza_state().backup}
    tool.run(*repo_option, f"--type={backup_type}", "backup")
    if verify:
        # pgBackRest 2.45 exits 0 on a damaged repository: the report is the only signal.
        problems = verify_problems(tool.run(*repo_option, "verify"))
        if problems:
            raise PgBackRestError(f"verify found a damaged repository: {'; '.join(problems)}")
    after = tool.stanza_state()
    new = [b for b in after.backup if b.label not in before]
    if len(new) != 1:
        raise PgBackRestError(f"backup exited 0 but info lists {len(new)} new backups: {[b.label for b in new]}")
    summary = stanza_info(after)
    return PitrBackupResult(
        backup=listed_backup(new[0]),
        verified=verify,
        recoverable_from=summary.first_recoverable,
        recoverable_to=summary.last_recoverable,
        archive=_archive_after_backup(database),
    )


def _archive_after_backup(database: Database) -> ArchiveStatus | None:
    """The backup is good whatever this says, so a failure to read it is noted, not fatal: the archive-status
    Job reports archiving on its own schedule."""
    try:
        return archive_status(database)
    except DatabaseError as err:
        print(f"archive status not read: {err}", file=sys.stderr, flush=True)
        return None


def listing(tool: PgBackRest, limit: int = termination.MESSAGE_LIMIT) -> tuple[PitrListing, PitrListing]:
    """Every base backup newest first, and the same cut to the newest that fit in `limit` bytes of JSON."""
    stanza = tool.stanza_state()
    summary = stanza_info(stanza)
    backups = sorted((listed_backup(b) for b in stanza.backup if not b.error), key=lambda b: b.stopped, reverse=True)
    complete = PitrListing(
        backups=backups,
        total=len(backups),
        recoverable_from=summary.first_recoverable,
        recoverable_to=summary.last_recoverable,
    )
    cut = complete.model_copy(update={"backups": []})
    for entry in backups:
        longer = cut.model_copy(update={"backups": [*cut.backups, entry]})
        if len(termination.render(longer)) > limit:
            break
        cut = longer
    return complete, cut


def listed_backup(raw: RawBackup) -> PitrBackup:
    return PitrBackup(
        label=raw.label,
        type=raw.type,
        started=_time(raw.timestamp.start),
        stopped=_time(raw.timestamp.stop),
        repo=raw.database.repo_key,
        size_bytes=raw.info.size,
        repo_size_bytes=raw.info.repository.size,
    )


def archive_status(database: Database) -> ArchiveStatus:
    return archive_status_of(database.archiver())


def archive_status_of(row: dict[str, Any]) -> ArchiveStatus:
    """`Database.archiver`'s row as the result, with the lag measured against the server's own `now()`."""
    return ArchiveStatus(**row, lag_seconds=archive_lag(row["oldest_ready_at"], row["observed_at"]))


def archive_lag(oldest_ready: datetime | None, now: datetime) -> float:
    """Seconds the oldest segment not yet archived has waited; 0 when none waits.

    Not `now - last_archived_time`: an idle database completes no segment, so it archives nothing for hours
    and loses nothing if its volume goes; only WAL that exists and is not in the repository is at risk."""
    if oldest_ready is None:
        return 0.0
    return max((now - oldest_ready).total_seconds(), 0.0)


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
