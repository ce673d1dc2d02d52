"""pgBackRest for point-in-time recovery: its configuration file, the server settings that ship WAL to it, and
the commands of the stanza, backup, check, verify, info and restore steps.

Pure: `PgBackRestSettings` in, text, settings and argv lists out. Secrets never appear here: the passphrases
and S3 keys are read by pgBackRest from the env named in `contract.pgbackrest.PgBackRestEnv`.

Every command passes `--config` and `--stanza` explicitly, including the archive_command the server runs, so
that what is rendered is all a process needs (no reliance on pgBackRest's default path or a PGBACKREST_STANZA).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tradingstack.contract.pgbackrest import CONFIG_PATH, LOCK_PATH, REPO1_PATH, SPOOL_PATH

CipherType = Literal["none", "aes-256-cbc"]
BackupType = Literal["full", "diff", "incr"]

_STANZA = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class S3Repo:
    """repo2: an S3-compatible bucket. The key and secret come from env (`PgBackRestEnv.REPO2_S3_KEY*`)."""

    endpoint: str
    """Host name only, the port is `port`. pgBackRest 2.45 checks the server certificate against this name and
    matches DNS names only: an IP address endpoint fails TLS verification even with an IP SAN."""
    bucket: str
    region: str
    path: str = "/pgbackrest"
    port: int = 443
    uri_style: Literal["host", "path"] = "host"
    """`path` for servers without virtual-host buckets (most self-hosted ones)."""
    verify_tls: bool = True
    ca_file: str | None = None
    retention_full: int = 2


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a certificate and its key, as files the process reads (PEM)."""

    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class TlsServer:
    """`pgbackrest server` on the database host: remote commands (a backup run elsewhere) reach pg_data through
    it. Only clients with a certificate signed by `files.ca_file` and a CN in `auth` are served."""

    files: TlsFiles
    port: int
    auth: tuple[tuple[str, str], ...]
    """(client certificate CN, stanza) pairs for `tls-server-auth`: what each client may use."""
    address: str = "*"


@dataclass(frozen=True)
class PgHost:
    """How a repository host (a backup Job's pod) reaches the database host's `TlsServer` (`pg1-host`)."""

    host: str
    """Must be a DNS name of the server certificate."""
    port: int
    files: TlsFiles
    """The CA the server's certificate is checked against, and this client's certificate and key."""


@dataclass(frozen=True)
class PgBackRestSettings:
    """Everything the rendered configuration and commands depend on."""

    stanza: str
    pg_data: str
    pg_port: int = 5432
    pg_socket_path: str = "/var/run/postgresql"
    pg_user: str = "postgres"
    repo1_path: str | None = REPO1_PATH
    """None: no posix repository (repo2 alone)."""
    retention_full: int = 2
    """Full backups kept in repo1; older ones and the WAL only they need are expired after each backup."""
    repo2_s3: S3Repo | None = None
    cipher_type: CipherType = "none"
    """Applies to every repository; each one's passphrase comes from `contract.pgbackrest.cipher_pass_env`."""
    archive_async: bool = True
    """archive-push returns once WAL is queued in the spool; a background process ships it in batches."""
    spool_path: str = SPOOL_PATH
    lock_path: str = LOCK_PATH
    log_path: str | None = None
    """None: console logging only (the async archiver's own log is then lost; its errors still reach the
    server through the spool)."""
    process_max: int = 1
    restore_process_max: int | None = None
    """process-max of the restore command alone (`[global:restore]`), when it differs: the database is down
    then, and each process also waits on the sync of the files it writes. None: `process_max`."""
    archive_timeout_seconds: int = 60
    """The server's archive_timeout: a partly filled WAL segment is shipped after this long, which bounds the
    recovery point objective of a lost data volume when writes are steady. Not right after a start, though: on
    15.18 the checkpointer, started before recovery ends, sleeps for checkpoint_timeout before it first applies
    archive_timeout; a reload (`SELECT pg_reload_conf()`) or a checkpoint once the server is up wakes it."""
    push_timeout_seconds: int = 60
    """pgBackRest's own archive-timeout: how long archive-push and check wait for WAL to reach the repository."""
    io_timeout_seconds: int = 60
    """pgBackRest's io-timeout: how long a repository request is retried, an unreachable S3 endpoint included."""
    archive_push_queue_max: str | None = None
    """e.g. `1GiB`: past this much unshipped WAL, archive-push reports success and drops it, so an unreachable
    repository cannot fill the data volume. The price is a gap in the archive: no PITR across it."""
    compress_type: Literal["none", "gz", "lz4", "zst"] = "lz4"
    config_path: str = CONFIG_PATH
    tls_server: TlsServer | None = None
    """The database host's configuration: also serve remote commands over TLS (`server_command`)."""
    pg_host: PgHost | None = None
    """A repository host's configuration: pg_data is on another host, reached through its `TlsServer`."""

    def __post_init__(self) -> None:
        if not _STANZA.fullmatch(self.stanza):
            raise ValueError(f"stanza {self.stanza!r}: letters, digits, '-' and '_' only")
        for value in _config_values(self):
            if "\n" in value or "\r" in value:
                raise ValueError(f"a configuration value spans lines: {value!r}")
        if self.repo1_path is None and self.repo2_s3 is None:
            raise ValueError("at least one repository: repo1_path or repo2_s3")
        paths = (self.pg_data, self.repo1_path or "/", self.spool_path, self.lock_path, self.config_path)
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path")
        restore = 1 if self.restore_process_max is None else self.restore_process_max
        counts = (self.process_max, restore, self.retention_full)
        if min(*counts, self.archive_timeout_seconds, self.push_timeout_seconds, self.io_timeout_seconds) < 1:
            raise ValueError("process_max, restore_process_max, retention_full and the timeouts must be at least 1")


def _flag(value: bool) -> str:
    return "y" if value else "n"


def _repo1(s: PgBackRestSettings) -> list[tuple[str, str]]:
    if s.repo1_path is None:
        return []
    options = [("repo1-type", "posix"), ("repo1-path", s.repo1_path), ("repo1-retention-full", str(s.retention_full))]
    if s.cipher_type != "none":
        options.append(("repo1-cipher-type", s.cipher_type))
    return options


def _repo2(s: PgBackRestSettings) -> list[tuple[str, str]]:
    repo = s.repo2_s3
    if repo is None:
        return []
    options = [
        ("repo2-type", "s3"),
        ("repo2-path", repo.path),
        ("repo2-s3-endpoint", repo.endpoint),
        ("repo2-s3-bucket", repo.bucket),
        ("repo2-s3-region", repo.region),
        ("repo2-s3-uri-style", repo.uri_style),
        ("repo2-storage-port", str(repo.port)),
        ("repo2-storage-verify-tls", _flag(repo.verify_tls)),
        ("repo2-retention-full", str(repo.retention_full)),
    ]
    if repo.ca_file is not None:
        options.append(("repo2-storage-ca-file", repo.ca_file))
    if s.cipher_type != "none":
        options.append(("repo2-cipher-type", s.cipher_type))
    return options


def _process(s: PgBackRestSettings) -> list[tuple[str, str]]:
    options = [
        ("process-max", str(s.process_max)),
        ("compress-type", s.compress_type),
        ("archive-async", _flag(s.archive_async)),
        ("spool-path", s.spool_path),
        ("lock-path", s.lock_path),
        ("archive-timeout", str(s.push_timeout_seconds)),
        ("io-timeout", str(s.io_timeout_seconds)),
        # An immediate checkpoint: a backup starts now instead of at the next scheduled checkpoint.
        ("start-fast", "y"),
        ("log-level-console", "info"),
    ]
    if s.archive_push_queue_max is not None:
        options.append(("archive-push-queue-max", s.archive_push_queue_max))
    if s.log_path is None:
        options.append(("log-level-file", "off"))
    else:
        options += [("log-path", s.log_path), ("log-level-file", "detail")]
    return options


def _tls_server(s: PgBackRestSettings) -> list[tuple[str, str]]:
    server = s.tls_server
    if server is None:
        return []
    return [
        ("tls-server-address", server.address),
        ("tls-server-port", str(server.port)),
        ("tls-server-ca-file", server.files.ca_file),
        ("tls-server-cert-file", server.files.cert_file),
        ("tls-server-key-file", server.files.key_file),
        # One entry per client: a repeated option is how pgBackRest takes a list.
        *(("tls-server-auth", f"{cn}={stanza}") for cn, stanza in server.auth),
    ]


def _pg_host(s: PgBackRestSettings) -> list[tuple[str, str]]:
    remote = s.pg_host
    if remote is None:
        return []
    return [
        ("pg1-host", remote.host),
        ("pg1-host-type", "tls"),
        ("pg1-host-port", str(remote.port)),
        ("pg1-host-ca-file", remote.files.ca_file),
        ("pg1-host-cert-file", remote.files.cert_file),
        ("pg1-host-key-file", remote.files.key_file),
    ]


def _stanza(s: PgBackRestSettings) -> list[tuple[str, str]]:
    return [
        *_pg_host(s),
        ("pg1-path", s.pg_data),
        ("pg1-port", str(s.pg_port)),
        ("pg1-socket-path", s.pg_socket_path),
        ("pg1-user", s.pg_user),
    ]


def _global(s: PgBackRestSettings) -> list[tuple[str, str]]:
    return [*_repo1(s), *_repo2(s), *_process(s), *_tls_server(s)]


def _restore(s: PgBackRestSettings) -> list[tuple[str, str]]:
    return [] if s.restore_process_max is None else [("process-max", str(s.restore_process_max))]


def _config_values(s: PgBackRestSettings) -> list[str]:
    return [value for _, value in [*_global(s), *_restore(s), *_stanza(s)]]


def config_text(s: PgBackRestSettings) -> str:
    """pgbackrest.conf: repositories and process options in [global], the restore command's own in
    [global:restore], the server in the stanza's section."""
    lines = ["[global]", *(f"{k}={v}" for k, v in _global(s))]
    if restore := _restore(s):
        lines += ["", "[global:restore]", *(f"{k}={v}" for k, v in restore)]
    lines += ["", f"[{s.stanza}]", *(f"{k}={v}" for k, v in _stanza(s))]
    return "\n".join(lines) + "\n"


def command(s: PgBackRestSettings, *args: str) -> list[str]:
    """Any pgBackRest command with this configuration and stanza (`args`: options, then the command's name)."""
    return ["pgbackrest", f"--config={s.config_path}", f"--stanza={s.stanza}", *args]


def archive_command(s: PgBackRestSettings) -> str:
    """The server runs this through the shell for each finished WAL segment (%p: its path)."""
    return shlex.join(command(s, "archive-push")) + " %p"


def archive_get_command(s: PgBackRestSettings) -> str:
    """A standby's restore_command: the segment %f from the repository into %p, when streaming cannot supply it."""
    return shlex.join(command(s, "archive-get")) + ' %f "%p"'


def postgres_settings(s: PgBackRestSettings) -> dict[str, str]:
    """Server settings for continuous archiving; archive_mode needs a restart, the others a reload.

    archive_mode `on`, also for the members of a Patroni cluster: with `always` a standby would push the WAL it
    receives into the same repository, which pgBackRest's backup refuses (`archive-mode-check`: a standby's copy
    of a segment may differ from the primary's). `render.pitr.pending_script` covers what `on` leaves open."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command(s),
        "archive_timeout": f"{s.archive_timeout_seconds}s",
    }


def postgres_conf(s: PgBackRestSettings) -> str:
    """`postgres_settings` as postgresql.conf lines (single quotes doubled inside values)."""
    quoted = {name: value.replace("'", "''") for name, value in postgres_settings(s).items()}
    return "".join(f"{name} = '{value}'\n" for name, value in quoted.items())


def postgres_args(s: PgBackRestSettings) -> list[str]:
    """`postgres_settings` as server arguments (`-c name=value`), for a container's args (no shell)."""
    return [arg for name, value in postgres_settings(s).items() for arg in ("-c", f"{name}={value}")]


def stanza_create_command(s: PgBackRestSettings) -> list[str]:
    """Once per stanza, with the server running; repeating it on an existing, matching stanza is harmless."""
    return command(s, "stanza-create")


def server_command(s: PgBackRestSettings) -> list[str]:
    """The TLS server of `s.tls_server`, in the foreground. No `--stanza`: the command refuses one (the stanzas
    it serves are those of `tls-server-auth`)."""
    if s.tls_server is None:
        raise ValueError("server_command needs tls_server settings")
    return ["pgbackrest", f"--config={s.config_path}", "server"]


def check_command(s: PgBackRestSettings) -> list[str]:
    """Switches WAL and waits (push_timeout_seconds) for it to reach every repository: fails if archiving is broken."""
    return command(s, "check")


def backup_command(s: PgBackRestSettings, backup_type: BackupType, repo: int | None = None) -> list[str]:
    """A backup into one repository (repo1 unless told); pgBackRest expires per retention afterwards."""
    return command(s, *([f"--repo={repo}"] if repo else []), f"--type={backup_type}", "backup")


def verify_command(s: PgBackRestSettings, repo: int | None = None) -> list[str]:
    """Reads back every backup file and archived WAL segment and checks their checksums."""
    return command(s, *([f"--repo={repo}"] if repo else []), "verify")


def info_command(s: PgBackRestSettings) -> list[str]:
    """Backups and WAL ranges as JSON, for `contract.pgbackrest_info.parse_info`."""
    return command(s, "--output=json", "info")


def format_target_time(target: datetime) -> str:
    """A recovery target in the form both pgBackRest (to choose the backup) and the server parse."""
    if target.tzinfo is None:
        raise ValueError("a recovery target needs a time zone")
    return target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def restore_command(
    s: PgBackRestSettings,
    target: datetime | None = None,
    *,
    delta: bool = False,
    repo: int | None = None,
    backup_set: str | None = None,
) -> list[str]:
    """Restore into pg_data (empty, or with `delta` a stale copy to overwrite), then replay archived WAL: to the
    end of the archive, or to the last commit before `target`, after which the server promotes itself. Without
    `repo`, pgBackRest takes the first repository holding a suitable backup.

    Without `backup_set` (a label from `contract.pgbackrest_info`), 2.45 picks the newest backup whose stop time
    in whole seconds is not after `target`; a target within the second a backup stopped can pick a backup that is
    not yet consistent there, and the restored server then refuses to start. Name the set for such targets."""
    options = [*([f"--repo={repo}"] if repo else []), *([f"--set={backup_set}"] if backup_set else [])]
    if delta:
        options.append("--delta")
    if target is not None:
        options += ["--type=time", f"--target={format_target_time(target)}", "--target-action=promote"]
    return command(s, *options, "restore")
