"""Names the operator's rendered PostgreSQL pods and pgBackRest agree on: where the configuration, the posix
repository and the async spool live in the container, and the env pgBackRest reads its secrets from.

pgBackRest reads any option from an env var `PGBACKREST_<OPTION>` (dashes as underscores, upper case). The
secrets below travel that way, from a Secret, so that the rendered pgbackrest.conf (a ConfigMap) holds none.
`render.pgbackrest` writes the paths into the configuration and the commands; the pod mounts volumes there.
"""

from __future__ import annotations

from typing import Final

CONFIG_PATH: Final = "/etc/pgbackrest/pgbackrest.conf"
"""pgBackRest's default; the rendered commands still pass it (`--config`) so a test can point elsewhere."""

REPO1_PATH: Final = "/var/lib/pgbackrest"
"""The builder's default posix repository (repo1): never on the data volume, so that losing PGDATA keeps it.
The rendered stack puts it in a directory of the backup volume instead (`render.pitr.REPO1_DIR`)."""

SPOOL_PATH: Final = "/var/spool/pgbackrest"
"""Async archiving's queue (archive-async): status files and prefetched WAL only (an emptyDir in the pod, see
`render.pitr.SPOOL_LIMIT`)."""

TLS_DIR: Final = "/etc/pgbackrest/tls"
"""The Secret `<stack>-pgbackrest-tls`, mounted: the TLS server's and the backup Jobs' certificates."""

LOCK_PATH: Final = "/tmp/pgbackrest"  # pgBackRest's default; an emptyDir in the pod
"""Lock files of running commands; must be shared by every pgBackRest process of one pod."""


class TlsFile:
    """Keys of the TLS Secret, which are also the file names under `TLS_DIR` (PEM)."""

    CA: Final = "ca.crt"
    SERVER_CERT: Final = "server.crt"
    SERVER_KEY: Final = "server.key"
    CLIENT_CERT: Final = "client.crt"
    CLIENT_KEY: Final = "client.key"


CLIENT_CN: Final = "pgbackrest-client"
"""CN of the backup Jobs' client certificate; the TLS server's `tls-server-auth` serves it the stack's stanza."""

CIPHER_PASS_KEY: Final = "cipher-pass"  # noqa: S105 - a key's name, not a secret
"""Key of the generated Secret `<stack>-pgbackrest` holding the repositories' passphrase."""


class PgBackRestEnv:
    """Secret env of the postgres container (archive-push runs as its archive_command, so the server's own env)
    and of the backup/restore Jobs; read by pgBackRest itself. Names are fixed by pgBackRest's option names."""

    PG1_USER: Final = "PGBACKREST_PG1_USER"
    """The role pgBackRest connects as over the local socket (overrides pg1-user of the file): the generated
    superuser's name, which lives in the stack's Secret rather than in the rendered configuration."""
    REPO1_CIPHER_PASS: Final = "PGBACKREST_REPO1_CIPHER_PASS"  # noqa: S105 - names of variables, not secrets
    REPO2_CIPHER_PASS: Final = "PGBACKREST_REPO2_CIPHER_PASS"  # noqa: S105
    REPO2_S3_KEY: Final = "PGBACKREST_REPO2_S3_KEY"
    REPO2_S3_KEY_SECRET: Final = "PGBACKREST_REPO2_S3_KEY_SECRET"  # noqa: S105


def cipher_pass_env(repo: int) -> str:
    """The env var holding repository `repo`'s passphrase (`PGBACKREST_REPO<n>_CIPHER_PASS`)."""
    return {1: PgBackRestEnv.REPO1_CIPHER_PASS, 2: PgBackRestEnv.REPO2_CIPHER_PASS}[repo]


class PitrToolCommand:
    """Subcommands of the backup tool (`python -m tradingstack.backup`) for pgBackRest, rendered into the backup
    CronJobs and on-demand Jobs by `render` and carried out by `backup.cli`. Each takes `--config` (the rendered
    pgbackrest.conf of the Job's pod) and `--stanza`, and writes its result as JSON to the termination message."""

    BACKUP: Final = "pitr-backup"
    """`--type=full|diff|incr`: a backup, then verify and info; the result names the backup and the window."""
    INFO: Final = "pitr-info"
    """The base backups and the recoverable window (`tradingstack backup list`)."""
    ARCHIVE_STATUS: Final = "pitr-archive-status"
    """The server's WAL archiving state (last archived segment and time, failures, segments waiting)."""
