"""Command line of the backup tool: `python -m tradingstack.backup {backup,verify,list,prune,restore}` (pg_dump)
and `{pitr-backup,pitr-info,pitr-archive-status}` (pgBackRest, `backup.pitr`).

Exit status: 0 success, 1 failure (nothing committed), 2 usage error, 3 restore refused (the database is not
empty and --force was not given). Results go to stdout as JSON lines, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradingstack.backup import pitr
from tradingstack.backup.database import DUMP_COMPRESSION, Database, DatabaseError, archive_server_version
from tradingstack.backup.store import BackupStore, Manifest, backup_name, sha256_of, to_prune
from tradingstack.contract import TERMINATION_LOG, BackupEnv, ExitCode, PostgresEnv, termination
from tradingstack.contract.pgbackrest import CONFIG_PATH, PitrToolCommand
from tradingstack.contract.termination import BackupListing, FailureReason, ListedBackup, RestoreResult, ToolFailure


class RestoreRefusedError(RuntimeError):
    """The target database holds data and overwriting it was not asked for."""


class VolumeFullError(RuntimeError):
    """The backup volume had no room for the new archive."""


FULL_VOLUME_BYTES = 1 << 20
"""A write refused for lack of space while less than this is free on the backup volume means the volume is full
(rather than, say, the database server's own disk refusing one of pg_dump's queries)."""

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


_PITR_COMMANDS = (PitrToolCommand.BACKUP, PitrToolCommand.INFO, PitrToolCommand.ARCHIVE_STATUS)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    database = Database(
        args.database, maintenance_db=args.maintenance_db, bin_dir=Path(args.pg_bin) if args.pg_bin else None
    )
    pitr_command = args.command_name in _PITR_COMMANDS
    # The pgBackRest commands keep no files of their own: their Jobs mount no backup directory.
    if not pitr_command and not args.dir:
        parser.error(f"--dir (or env {BackupEnv.DIR}) is required by {args.command_name}")
    try:
        if pitr_command:
            return _report(args.termination_log, args.command(args, database))
        return int(args.command(args, BackupStore(Path(args.dir)), database))
    except RestoreRefusedError as err:
        _log(f"restore refused: {err}")
        _write_termination_message(args.termination_log, ToolFailure(error=str(err), refused=True))
        return ExitCode.REFUSED
    except VolumeFullError as err:
        _log(f"{args.command_name} failed: {err}")
        failure = ToolFailure(error=str(err), reason=FailureReason.VOLUME_FULL)
        _write_termination_message(args.termination_log, failure)
        return ExitCode.FAILED
    except (DatabaseError, pitr.PgBackRestError, LookupError, OSError, ValueError) as err:
        _log(f"{args.command_name} failed: {err}")
        _write_termination_message(args.termination_log, ToolFailure(error=str(err)))
        return ExitCode.FAILED


def backup(args: argparse.Namespace, store: BackupStore, database: Database) -> int:
    store.directory.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    name = backup_name(database.name, started)
    # Inner first: a full volume is recognised while the partial archive still takes its room.
    with store.staging(name) as partial, _full_volume_reported(store):
        database.dump(partial, compression=args.compress)
        if args.verify:
            listing = _check_archive(database, partial, restore_check=args.restore_check)
            server_version = archive_server_version(listing)
        else:
            server_version = database.server_version()
        manifest = Manifest(
            time=started,
            name=name,
            database=database.name,
            server_version=server_version,
            size_bytes=partial.stat().st_size,
            checksum=sha256_of(partial),
            compression=args.compress,
            verified=args.verify,
        )
        store.commit(partial, manifest)
    if args.keep_last is not None:
        for removed in _prune(store, args.keep_last):
            _log(f"pruned {removed}")
    # Last, so the termination message reports success only when retention succeeded too.
    info = manifest.info()
    _emit(info.model_dump(mode="json", by_alias=True))
    _write_termination_message(args.termination_log, info)
    return ExitCode.OK


def verify(args: argparse.Namespace, store: BackupStore, database: Database) -> int:
    """Re-check archives and record the outcome in their manifests, so a damaged one stops counting as good."""
    targets = [store.get(name) for name in args.names] if args.names else store.backups()
    failures = 0
    for manifest in targets:
        error = _verification_error(database, store, manifest, restore_check=args.restore_check)
        updated = manifest.model_copy(update={"verified": error is None, "verify_error": error})
        if updated != manifest:
            store.write_manifest(updated)
        _emit({"name": manifest.name, "verified": error is None, **({"error": error} if error else {})})
        failures += error is not None
    return ExitCode.FAILED if failures else ExitCode.OK


def list_backups(args: argparse.Namespace, store: BackupStore, database: Database) -> int:
    backups = store.backups()
    for manifest in backups:
        _emit(manifest.model_dump(mode="json", by_alias=True))
    # The newest that fit in a termination message, for `tradingstack backup list` (reads no pod logs).
    listing = BackupListing(backups=[], total=len(backups))
    for manifest in backups:
        entry = ListedBackup.model_validate(manifest.model_dump(include=set(ListedBackup.model_fields)))
        longer = listing.model_copy(update={"backups": [*listing.backups, entry]})
        if len(termination.render(longer)) > termination.MESSAGE_LIMIT:
            break
        listing = longer
    _write_termination_message(args.termination_log, listing)
    return ExitCode.OK


def prune(args: argparse.Namespace, store: BackupStore, database: Database) -> int:
    for removed in _prune(store, args.keep_last):
        _emit({"pruned": removed})
    return ExitCode.OK


def restore(args: argparse.Namespace, store: BackupStore, database: Database) -> int:
    target = database.name
    exists = database.exists(target)
    # Decided before reading the archive: a bootstrap (--if-empty) on a live database must stay a no-op.
    replace = exists and not database.is_empty(target)
    if replace and args.if_empty:
        _emit({"restored": None, "database": target, "skipped": "database is not empty"})
        return ExitCode.OK
    if replace and not args.force:
        raise RestoreRefusedError(f"database {target} is not empty; pass --force to replace it")
    manifest = store.get(args.source)
    archive = store.archive_path(manifest.name)
    actual = sha256_of(archive)
    if actual != manifest.checksum:
        store.write_manifest(manifest.model_copy(update={"verified": False, "verify_error": "checksum mismatch"}))
        raise ValueError(f"backup {manifest.name}: checksum mismatch ({actual}, manifest {manifest.checksum})")
    if replace:
        database.drop(target)
    if replace or not exists:
        database.create(target)
    database.restore(archive, into=target, jobs=args.jobs)
    result = RestoreResult(restored=manifest.name, database=target)
    _emit(result.model_dump(mode="json"))
    _write_termination_message(args.termination_log, result)
    return ExitCode.OK


def pitr_backup(args: argparse.Namespace, database: Database) -> termination.TerminationMessage:
    return pitr.backup(_pgbackrest(args), database, args.type, args.repo, verify=args.verify)


def pitr_info(args: argparse.Namespace, database: Database) -> termination.TerminationMessage:
    complete, fitting = pitr.listing(_pgbackrest(args))
    # Every backup on stdout (the pod log); the termination message holds the newest that fit.
    _emit(complete.model_dump(mode="json", by_alias=True))
    return fitting


def pitr_archive_status(args: argparse.Namespace, database: Database) -> termination.TerminationMessage:
    """Exits 0 when archiving fails too: the Job reports the state, the operator judges it (`BackupHealthy`)."""
    return pitr.archive_status(database)


def _pgbackrest(args: argparse.Namespace) -> pitr.PgBackRest:
    return pitr.PgBackRest(config=args.config, stanza=args.stanza)


def _report(termination_log: str, result: termination.TerminationMessage) -> int:
    if not isinstance(result, termination.PitrListing):  # pitr_info printed the complete listing itself
        _emit(result.model_dump(mode="json", by_alias=True))
    _write_termination_message(termination_log, result)
    return ExitCode.OK


@contextmanager
def _full_volume_reported(store: BackupStore) -> Iterator[None]:
    """A write refused for lack of room on the backup volume becomes a VolumeFullError. Nothing is deleted to make
    room: the caller's staging block removes the new partial archive only."""
    try:
        yield
    except (DatabaseError, OSError) as err:
        no_space = (isinstance(err, OSError) and err.errno in _NO_SPACE) or any(
            os.strerror(code) in str(err) for code in _NO_SPACE
        )
        free = store.free_bytes() if no_space else None
        if free is None or free >= FULL_VOLUME_BYTES:
            raise
        raise VolumeFullError(
            f"the backup volume {store.directory} is full ({free} bytes free): {err}; the partial archive was"
            " removed and no backup was deleted"
        ) from err


def _prune(store: BackupStore, keep_last: int) -> list[str]:
    """Apply retention and remove stale leftovers; returns what was removed."""
    removed = []
    for manifest in to_prune(store.backups(), keep_last):
        store.delete(manifest.name)
        removed.append(manifest.name)
    for leftover in store.stale_leftovers():
        leftover.unlink(missing_ok=True)
        removed.append(leftover.name)
    return removed


def _verification_error(database: Database, store: BackupStore, manifest: Manifest, restore_check: bool) -> str | None:
    archive = store.archive_path(manifest.name)
    actual = sha256_of(archive)
    if actual != manifest.checksum:
        return f"checksum mismatch: archive {actual}, manifest {manifest.checksum}"
    try:
        _check_archive(database, archive, restore_check=restore_check)
    except DatabaseError as err:
        return str(err)
    return None


def _check_archive(database: Database, archive: Path, restore_check: bool) -> str:
    """Reads the archive back (its table of contents, returned) and optionally restores it into a scratch DB."""
    listing = database.list_archive(archive)
    if restore_check:
        scratch = f"tradingstack_verify_{os.getpid()}"
        database.drop(scratch)
        database.create(scratch)
        try:
            database.restore(archive, into=scratch, jobs=1)
        finally:
            database.drop(scratch)
    return listing


def _write_termination_message(path: str, message: termination.TerminationMessage) -> None:
    # Only an existing writable file: never create one (running as root outside Kubernetes, /dev is writable).
    if path and os.path.isfile(path) and os.access(path, os.W_OK):
        Path(path).write_text(termination.render(message))


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True), flush=True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tradingstack.backup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir",
        default=os.environ.get(BackupEnv.DIR),
        help=f"backup directory of the pg_dump commands (env {BackupEnv.DIR})",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get(PostgresEnv.DATABASE),
        required=PostgresEnv.DATABASE not in os.environ,
        help=f"database to back up or restore (env {PostgresEnv.DATABASE})",
    )
    parser.add_argument(
        "--maintenance-db", default="postgres", help="database used to create/drop databases (default: postgres)"
    )
    parser.add_argument(
        "--pg-bin",
        default=os.environ.get(BackupEnv.PG_BIN),
        help=f"directory of pg_dump/pg_restore (env {BackupEnv.PG_BIN}; default: PATH)",
    )
    commands = parser.add_subparsers(required=True, dest="command_name")
    # Every command leaves its result (or error) as the container's termination message, where the operator and
    # the CLI read it from the pod status without access to logs.
    result = argparse.ArgumentParser(add_help=False)
    result.add_argument(
        "--termination-log",
        default=os.environ.get(BackupEnv.TERMINATION_LOG, TERMINATION_LOG),
        help=f"file that receives the result JSON when it exists (default: {TERMINATION_LOG})",
    )

    run = commands.add_parser("backup", parents=[result], help="dump the database into a new verified archive")
    run.add_argument("--no-verify", dest="verify", action="store_false", help="skip reading the archive back")
    run.add_argument("--restore-check", action="store_true", help="also restore into a scratch database")
    run.add_argument(
        "--compress",
        type=int,
        choices=range(10),
        default=DUMP_COMPRESSION,
        metavar="0-9",
        help=f"pg_dump compression level (default: {DUMP_COMPRESSION})",
    )
    run.add_argument("--keep-last", type=int, help="prune to this many backups after a successful backup")
    run.set_defaults(command=backup)

    check = commands.add_parser(
        "verify", parents=[result], help="check archives (all by default); exit 1 if any is damaged"
    )
    check.add_argument("names", nargs="*", help="backups to check")
    check.add_argument("--restore-check", action="store_true", help="also restore into a scratch database")
    check.set_defaults(command=verify)

    commands.add_parser(
        "list", parents=[result], help="committed backups, newest first, one JSON line each"
    ).set_defaults(command=list_backups)

    retention = commands.add_parser(
        "prune", parents=[result], help="delete old backups; the newest verified one is always kept"
    )
    retention.add_argument("--keep-last", type=int, required=True)
    retention.set_defaults(command=prune)

    back = commands.add_parser("restore", parents=[result], help="restore a backup into the database")
    back.add_argument("--from", dest="source", required=True, help="`latest` (newest verified) or a backup name")
    back.add_argument("--force", action="store_true", help="replace a database that is not empty")
    back.add_argument("--if-empty", action="store_true", help="do nothing (exit 0) when the database is not empty")
    back.add_argument("--jobs", type=int, default=2, help="parallel pg_restore jobs (default: 2)")
    back.set_defaults(command=restore)
    _pitr_parsers(commands, result)
    return parser


def _pitr_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], result: argparse.ArgumentParser
) -> None:
    stanza = argparse.ArgumentParser(add_help=False, parents=[result])
    stanza.add_argument("--config", default=CONFIG_PATH, help=f"pgbackrest.conf (default: {CONFIG_PATH})")
    stanza.add_argument("--stanza", required=True)

    run = commands.add_parser(
        PitrToolCommand.BACKUP, parents=[stanza], help="pgBackRest backup, verify of its repository, then info"
    )
    run.add_argument("--type", choices=("full", "diff", "incr"), required=True)
    run.add_argument("--repo", type=int, help="repository to back up to (default: pgBackRest's, repo1)")
    run.add_argument("--no-verify", dest="verify", action="store_false", help="skip verifying the repository")
    run.set_defaults(command=pitr_backup)

    commands.add_parser(
        PitrToolCommand.INFO, parents=[stanza], help="pgBackRest base backups and the recoverable window"
    ).set_defaults(command=pitr_info)
    commands.add_parser(
        PitrToolCommand.ARCHIVE_STATUS, parents=[stanza], help="the server's WAL archiving: failures, WAL waiting"
    ).set_defaults(command=pitr_archive_status)
