"""The backup directory: manifests, atomic commits, listing and the retention rule. No database access."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from tradingstack.api import BackupInfo

ARCHIVE_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
STALE_SECONDS = 3600
"""Leftovers (partial files, archives without a manifest) younger than this may belong to a running backup,
so prune leaves them alone."""

_HASH_CHUNK = 1 << 20


class Manifest(BackupInfo):
    """Everything known about one backup; the BackupInfo fields are what the operator reports in status."""

    database: str
    """Database that was dumped."""

    server_version: str
    """PostgreSQL server version at backup time."""

    format: Literal["custom"] = "custom"
    """pg_dump archive format."""

    compression: int
    """pg_dump compression level (0-9)."""

    verify_error: str | None = None
    """Why the last verification failed, if it did."""

    def info(self) -> BackupInfo:
        return BackupInfo.model_validate(self.model_dump(include=set(BackupInfo.model_fields)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as archive:
        while chunk := archive.read(_HASH_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def backup_name(database: str, at: datetime) -> str:
    """`<database>-<UTC time to the millisecond>Z`: sorts by time and is a valid `restore.from` value."""
    return f"{database}-{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class BackupStore:
    directory: Path

    def archive_path(self, name: str) -> Path:
        return self.directory / f"{name}{ARCHIVE_SUFFIX}"

    def manifest_path(self, name: str) -> Path:
        return self.directory / f"{name}{MANIFEST_SUFFIX}"

    def partial_path(self, name: str) -> Path:
        # Hidden and suffixed: never matches the listing pattern, even if left behind by a killed process.
        return self.directory / f".{name}{ARCHIVE_SUFFIX}{PARTIAL_SUFFIX}"

    def backups(self) -> list[Manifest]:
        """Committed backups (manifest and archive both present), newest first."""
        found = []
        for manifest_path in self.directory.glob(f"*{MANIFEST_SUFFIX}"):
            try:
                manifest = Manifest.model_validate_json(manifest_path.read_text())
            except ValueError as err:
                raise ValueError(f"{manifest_path}: unreadable manifest: {err}") from err
            if self.archive_path(manifest.name).is_file():
                found.append(manifest)
        return sorted(found, key=lambda m: (m.time, m.name), reverse=True)

    def get(self, name: str) -> Manifest:
        """A backup by name, or `latest`: the newest verified one."""
        backups = self.backups()
        if name == "latest":
            newest = newest_verified(backups)
            if newest is None:
                raise LookupError(f"no verified backup in {self.directory}")
            return newest
        for manifest in backups:
            if manifest.name == name:
                return manifest
        raise LookupError(f"no backup named {name!r} in {self.directory}")

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A partial file for a new archive; removed if the block fails, so a failure leaves no trace."""
        if self.manifest_path(name).exists() or self.archive_path(name).exists():
            raise FileExistsError(f"backup {name} already exists")
        partial = self.partial_path(name)
        try:
            yield partial
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def commit(self, partial: Path, manifest: Manifest) -> None:
        """Publish a backup: archive first, then the manifest, each by an atomic rename after fsync.

        If the manifest cannot be written (a full volume), the archive goes back to its partial name and the
        manifest is removed, so the staging block removes it: no half-committed backup is left behind."""
        _fsync(partial)
        archive = self.archive_path(manifest.name)
        partial.rename(archive)
        try:
            self.write_manifest(manifest)
        except BaseException:
            self.manifest_path(manifest.name).unlink(missing_ok=True)
            archive.rename(partial)
            raise

    def write_manifest(self, manifest: Manifest) -> None:
        target = self.manifest_path(manifest.name)
        temporary = target.with_name(f".{target.name}{PARTIAL_SUFFIX}")
        try:
            temporary.write_text(manifest.model_dump_json(by_alias=True, indent=2) + "\n")
            _fsync(temporary)
            temporary.rename(target)
        finally:
            temporary.unlink(missing_ok=True)  # gone after the rename; a failed write leaves no trace
        _fsync(self.directory)

    def free_bytes(self) -> int:
        """Room left on the backup volume for this (unprivileged) process."""
        stats = os.statvfs(self.directory)
        return stats.f_bavail * stats.f_frsize

    def delete(self, name: str) -> None:
        # Manifest first: once it is gone the backup no longer exists, whatever happens to the archive.
        self.manifest_path(name).unlink(missing_ok=True)
        self.archive_path(name).unlink(missing_ok=True)

    def stale_leftovers(self, now: float | None = None) -> list[Path]:
        """Partial files and manifest-less archives old enough not to belong to a running backup."""
        cutoff = (time.time() if now is None else now) - STALE_SECONDS
        committed = {m.name for m in self.backups()}
        leftovers = [p for p in self.directory.glob(f".*{PARTIAL_SUFFIX}")]
        leftovers += [
            p for p in self.directory.glob(f"*{ARCHIVE_SUFFIX}") if p.name[: -len(ARCHIVE_SUFFIX)] not in committed
        ]
        return sorted(p for p in leftovers if p.stat().st_mtime < cutoff)


def newest_verified(backups: list[Manifest]) -> Manifest | None:
    return next((m for m in sorted(backups, key=lambda m: (m.time, m.name), reverse=True) if m.verified), None)


def to_prune(backups: list[Manifest], keep_last: int) -> list[Manifest]:
    """Backups beyond the newest `keep_last`, except the newest verified one, which is always kept."""
    ordered = sorted(backups, key=lambda m: (m.time, m.name), reverse=True)
    keep = {m.name for m in ordered[:keep_last]}
    newest = newest_verified(ordered)
    if newest is not None:
        keep.add(newest.name)
    return [m for m in ordered if m.name not in keep]


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
