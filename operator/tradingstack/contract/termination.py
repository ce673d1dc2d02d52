"""The backup tool's result as its pod reports it: the container's termination message.

The tool writes one JSON document to `contract.TERMINATION_LOG`; the kubelet copies it into the pod status
(`state.terminated.message`), where the operator (backup health) and the CLI (backup list and restore) read it
without access to the backup volume or to pod logs. On a crash the rendered `FallbackToLogsOnError` policy puts
the log tail there instead, which `parse` reports as a failure carrying that text.
"""

from __future__ import annotations

import json
from datetime import datetime

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


class ToolFailure(ApiModel):
    """A command failed (nothing committed), or the tool crashed and the message is its log tail."""

    error: str
    refused: bool = False
    """A restore refused because the database is not empty (exit status 3)."""


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


TerminationMessage = BackupInfo | BackupListing | RestoreResult | ToolFailure
"""`backup` reports the new backup's BackupInfo (as recorded in status.postgres)."""

_MODELS: tuple[type[TerminationMessage], ...] = (ToolFailure, BackupInfo, BackupListing, RestoreResult)


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
