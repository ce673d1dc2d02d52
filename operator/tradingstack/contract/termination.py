"""The backup tool's result as its pod reports it: the container's termination message.

The tool writes one JSON document to `contract.TERMINATION_LOG`; the kubelet copies it into the pod status
(`state.terminated.message`), where the operator (backup health) and the CLI (backup list and restore) read it
without access to the backup volume or to pod logs. On a crash the rendered `FallbackToLogsOnError` policy puts
the log tail there instead, which `parse` reports as a failure carrying that text.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

MESSAGE_LIMIT = 4096
"""The kubelet keeps at most this many bytes of a termination message."""


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields rejected: the same rules as the API models (`tradingstack.api.base`),
    since `BackupInfo` is also part of the TradingStack status."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_attribute_docstrings=True
    )


class BackupInfo(ApiModel):
    """One backup archive."""

    time: datetime
    """When the backup was taken."""

    name: str
    """Backup name (use with restore.from)."""

    size_bytes: int
    """Archive size."""

    checksum: str
    """sha256 of the archive."""

    verified: bool
    """The archive was verified after it was written."""


class FailureReason(StrEnum):
    """Why a command failed, when the tool can tell: written by the tool, read by the operator, which makes it the
    `BackupHealthy` condition's reason (`reconcile.backup_health`)."""

    VOLUME_FULL = "BackupVolumeFull"
    """The backup volume had no room for the new archive (ENOSPC or EDQUOT): the partial archive was removed and
    nothing else was deleted (the tool never frees room by removing backups)."""


class ToolFailure(ApiModel):
    """A command failed (nothing committed), or the tool crashed and the message is its log tail."""

    error: str
    refused: bool = False
    """A restore refused because the database is not empty (exit status 3)."""
    reason: FailureReason | None = None
    """The cause, when the tool recognised one; None for any other failure."""


class ListedBackup(ApiModel):
    """One backup in a listing: what `tradingstack backup list` prints."""

    name: str
    time: datetime
    size_bytes: int
    verified: bool


class BackupListing(ApiModel):
    """Result of `list`: the newest backups that fit in a termination message, and how many there are."""

    backups: list[ListedBackup]
    total: int


class RestoreResult(ApiModel):
    """Result of `restore`."""

    restored: str
    """Name of the backup restored."""
    database: str


PitrBackupType = Literal["full", "diff", "incr"]


class ArchiveStatus(ApiModel):
    """Result of `pitr-archive-status`: the server's WAL archiving (`pg_stat_archiver`) and the WAL segments
    waiting for archive_command (`.ready` files in pg_wal/archive_status). Times are the server's clock."""

    observed_at: datetime
    """The server's `now()` when this was read: the clock `lag_seconds` is measured against."""
    archived_count: int
    last_archived_wal: str | None = None
    last_archived_at: datetime | None = None
    failed_count: int
    """Failed archive_command runs since the statistics were last reset (the server retries each segment)."""
    last_failed_wal: str | None = None
    last_failed_at: datetime | None = None
    ready_count: int
    """Segments written and not yet archived."""
    oldest_ready_at: datetime | None = None
    """Modification time of the oldest of them: when it was completed and began to wait."""
    lag_seconds: float
    """How long the oldest waiting segment has waited (0 when none waits): the WAL a lost volume would lose."""

    @property
    def failing(self) -> bool:
        """The last archive_command failure came after the last success (or nothing has been archived yet)."""
        if self.last_failed_at is None:
            return False
        return self.last_archived_at is None or self.last_failed_at > self.last_archived_at


class PitrBackup(ApiModel):
    """One pgBackRest base backup."""

    label: str
    """pgBackRest's backup label (`restore --set`)."""
    type: PitrBackupType
    started: datetime
    stopped: datetime
    """Consistent from here: the earliest time a restore from it can stop at."""
    repo: int
    size_bytes: int
    """Database size at the backup."""
    repo_size_bytes: int
    """What it takes in the repository (compressed; a diff or incr only its changes)."""


class PitrBackupResult(ApiModel):
    """Result of `pitr-backup`: the new backup, verified, and the repository's recoverable window after it."""

    backup: PitrBackup
    verified: bool
    """`pgbackrest verify` found no damaged or missing file in the repository."""
    recoverable_from: datetime | None = None
    recoverable_to: datetime | None = None
    """A lower bound: the newest backup's stop time (`contract.pgbackrest_info`)."""
    archive: ArchiveStatus | None = None
    """The server's archiving right after the backup; None when it could not be read (the backup still counts)."""


class PitrListing(ApiModel):
    """Result of `pitr-info`: the newest base backups that fit in a termination message, and the window."""

    backups: list[PitrBackup]
    total: int
    # No defaults: always written, so that an empty listing is not read as a pg_dump `BackupListing`.
    recoverable_from: datetime | None
    recoverable_to: datetime | None


TerminationMessage = (
    BackupInfo | BackupListing | RestoreResult | PitrBackupResult | ArchiveStatus | PitrListing | ToolFailure
)
"""`backup` reports the new backup's BackupInfo (as recorded in status.postgres)."""

# Unknown fields are rejected, so each document validates as exactly one of these, whatever the order.
_MODELS: tuple[type[TerminationMessage], ...] = (
    ToolFailure,
    BackupInfo,
    BackupListing,
    RestoreResult,
    PitrBackupResult,
    ArchiveStatus,
    PitrListing,
)


def render(message: TerminationMessage) -> str:
    """The JSON the tool writes (defaults left out: a failure is `{"error": ...}` unless it is a refusal)."""
    return json.dumps(message.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=True)


def parse(text: str) -> TerminationMessage:
    """The tool's result; text that is not one (a crashed pod's log tail) is a failure with that text."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return ToolFailure(error=text.strip())
    for model in _MODELS:
        try:
            return model.model_validate(document)
        except ValidationError:
            continue
    return ToolFailure(error=text.strip())
