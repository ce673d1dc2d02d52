"""What `pgbackrest info --output=json` says about one stanza, read into typed models: the last full and the last
differential backup, and the window a point-in-time restore can reach.

The raw models mirror the part of pgBackRest's output used here and ignore the rest (it grows between releases).
Times in the output are Unix seconds. The archive's newest segment carries no time, so the end of the window is
a lower bound: the newest backup's stop time, with `archived_past_last_backup` saying whether WAL goes further
(when the server archives steadily it does, to within its archive_timeout of the present).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class RawArchiveRange(_Raw):
    start: str | None = None
    stop: str | None = None


class RawTimestamps(_Raw):
    start: int
    stop: int


class RawRepoSize(_Raw):
    size: int
    delta: int | None = None


class RawBackupInfo(_Raw):
    size: int
    """Of the database files backed up (uncompressed)."""
    delta: int | None = None
    repository: RawRepoSize
    """Of what the backup stored in the repository (compressed, only the changed files)."""


class RawDatabaseRef(_Raw):
    id: int
    repo_key: int = Field(alias="repo-key")


class RawBackup(_Raw):
    label: str
    type: Literal["full", "diff", "incr"]
    timestamp: RawTimestamps
    archive: RawArchiveRange
    info: RawBackupInfo
    database: RawDatabaseRef
    error: bool = False


class RawArchive(_Raw):
    id: str
    min: str | None = None
    max: str | None = None
    database: RawDatabaseRef


class RawStatus(_Raw):
    code: int
    message: str


class RawStanza(_Raw):
    name: str
    status: RawStatus
    backup: list[RawBackup] = []
    archive: list[RawArchive] = []


_INFO = TypeAdapter(list[RawStanza])


class BackupSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    """Pass to `restore --set` to restore this backup rather than the one pgBackRest chooses."""
    stopped: datetime
    """The backup is consistent from here: the earliest time a restore from it can stop at."""
    size_bytes: int
    """Database size at the backup."""
    repo_size_bytes: int
    """What it takes in the repository."""


class StanzaInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    stanza: str
    ok: bool
    """pgBackRest's own status (code 0); otherwise `message` says why (e.g. no valid backups)."""
    message: str
    last_full: BackupSummary | None
    last_diff: BackupSummary | None
    first_recoverable: datetime | None
    """The oldest backup's stop time, if the archive still holds the WAL from its start on."""
    last_recoverable: datetime | None
    """A lower bound: the newest backup's stop time (see the module docstring)."""
    wal_max: str | None
    """The newest archived WAL segment."""
    archived_past_last_backup: bool


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _summary(backup: RawBackup | None) -> BackupSummary | None:
    if backup is None:
        return None
    return BackupSummary(
        label=backup.label,
        stopped=_time(backup.timestamp.stop),
        size_bytes=backup.info.size,
        repo_size_bytes=backup.info.repository.size,
    )


def _segment_key(segment: str) -> tuple[int, str]:
    """Segments order by timeline, then by name within it (fixed-width hex: text order is numeric order)."""
    return int(segment[:8], 16), segment[8:]


def _last(backups: list[RawBackup], kind: str) -> RawBackup | None:
    chosen = [b for b in backups if b.type == kind]
    return max(chosen, key=lambda b: b.timestamp.stop) if chosen else None


def _first_recoverable(backups: list[RawBackup], archives: list[RawArchive]) -> datetime | None:
    """The oldest backup whose first WAL segment is still archived (expiry removes WAL older than retention)."""
    mins = [a.min for a in archives if a.min]
    if not mins:
        return None
    archive_min = min(mins, key=_segment_key)
    covered = [b for b in backups if b.archive.start and _segment_key(b.archive.start) >= _segment_key(archive_min)]
    return _time(min(b.timestamp.stop for b in covered)) if covered else None


def stanza_info(stanza: RawStanza) -> StanzaInfo:
    backups = [b for b in stanza.backup if not b.error]
    newest = max(backups, key=lambda b: b.timestamp.stop) if backups else None
    maxes = [a.max for a in stanza.archive if a.max]
    wal_max = max(maxes, key=_segment_key) if maxes else None
    past = bool(
        newest and newest.archive.stop and wal_max and _segment_key(wal_max) > _segment_key(newest.archive.stop)
    )
    return StanzaInfo(
        stanza=stanza.name,
        ok=stanza.status.code == 0,
        message=stanza.status.message,
        last_full=_summary(_last(backups, "full")),
        last_diff=_summary(_last(backups, "diff")),
        first_recoverable=_first_recoverable(backups, stanza.archive),
        last_recoverable=_time(newest.timestamp.stop) if newest else None,
        wal_max=wal_max,
        archived_past_last_backup=past,
    )


def parse_stanza(document: str | bytes | list[Any], stanza: str) -> RawStanza:
    """`pgbackrest info --output=json` (text, or already decoded) for one stanza; KeyError if it is absent."""
    stanzas = _INFO.validate_json(document) if isinstance(document, str | bytes) else _INFO.validate_python(document)
    for entry in stanzas:
        if entry.name == stanza:
            return entry
    raise KeyError(stanza)


def parse_info(document: str | bytes | list[Any], stanza: str) -> StanzaInfo:
    """`parse_stanza`, summarised."""
    return stanza_info(parse_stanza(document, stanza))


def verify_problems(report: str) -> list[str]:
    """The lines of a `pgbackrest verify` report (console output at level info) that name a problem; none when
    the repository verified. pgBackRest 2.45 exits 0 either way, so this report is the only signal."""
    lines = [line.split("INFO: ", 1)[-1].strip() for line in report.splitlines()]
    if "status: error" not in lines:
        return []
    return [line for line in lines if "invalid" in line or "missing" in line] or ["status: error"]
