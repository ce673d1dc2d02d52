"""Point-in-time recovery with pgBackRest in the rendered stack (`spec.postgres.pitr`): the configuration
ConfigMap, the pgBackRest pieces of the PostgreSQL pod (env, volumes, the `pgbackrest` sidecar and the restore
init container) and the names of the generated Secrets. `render.postgres` assembles them into the pod and the
backup CronJobs; this module knows nothing of the pod around them, only what it is given.

Two configuration files come from one set of settings (`render.pgbackrest`):
- the database pod's: the repositories, async archive-push with its spool, and the TLS server
  (`pgbackrest server` in the sidecar) that the backup Jobs reach through the `<stack>-postgres` Service;
- the backup Jobs': the same repositories, and `pg1-host` (the database pod over TLS, with the client
  certificate of `<stack>-pgbackrest-tls`). A Job is the "repository host": it writes the backup into the
  repositories and reads the data directory through the TLS server.

repo1 lives in the directory `pgbackrest` of the backup volume, which is mounted whole rather than by subPath:
the kubelet creates a missing subPath directory owned by root, where the postgres user could not write.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources as package_files
from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.api.base import quantity_bytes
from tradingstack.api.spec import Resources
from tradingstack.contract.pgbackrest import (
    CIPHER_PASS_KEY,
    CLIENT_CN,
    CONFIG_PATH,
    LOCK_PATH,
    SPOOL_PATH,
    TLS_DIR,
    PgBackRestEnv,
    TlsFile,
    cipher_pass_env,
)
from tradingstack.render import pgbackrest
from tradingstack.render.common import (
    PGBACKREST_PORT,
    POSTGRES_PORT,
    Manifest,
    child_name,
    container_security_context,
    manifest,
    metadata,
    resources,
    scratch_volume,
)
from tradingstack.render.pgbackrest import PgBackRestSettings, PgHost, S3Repo, TlsFiles, TlsServer

CONFIG_DIR = CONFIG_PATH.rsplit("/", 1)[0]
DB_CONFIG = "pgbackrest.conf"
JOB_CONFIG = "pgbackrest-job.conf"
SIDECAR_SCRIPT = "pgbackrest-sidecar.sh"
RESTORE_SCRIPT = "pgbackrest-restore.sh"
PENDING_SCRIPT = "pgbackrest-pending.sh"
PENDING_IO_TIMEOUT_SECONDS = 10
"""How long the pending push waits on a silent repository before the member starts without it."""
SCRIPTS_DIR = "/opt/pgbackrest"
"""The scripts, mounted apart from the configuration (a ConfigMap key lands at one place per volume)."""
S3_CA_NAME = "s3-ca.crt"
S3_CA_FILE = f"{CONFIG_DIR}/{S3_CA_NAME}"
REPO1_DIR = "pgbackrest"
"""repo1's directory on the backup volume."""
SOCKET_DIR = "/var/run/postgresql"

SPOOL_LIMIT = "512Mi"
"""The spool is an emptyDir, not a directory of the data volume: it holds the async archiver's status files and
the WAL prefetched by archive-get during recovery (archive-get-queue-max, 128 MiB by default), never WAL that
exists nowhere else (archive-push leaves it in pg_wal until it is shipped). Losing it with the pod only costs a
second check of segments already shipped."""

SIDECAR_NAME = "pgbackrest"
RESTORE_INIT_NAME = "pgbackrest-restore"
SIDECAR_REQUESTS = {"cpu": "50m", "memory": "64Mi"}
SIDECAR_MEMORY_LIMIT = "256Mi"
"""The TLS server idles between backups; during one it reads, checksums and compresses the data directory with
`pitr.processMax` processes (a remote read's filters run where the file is), one CPU each: its CPU limit."""

_PLACEHOLDER = re.compile(r"@[A-Z_]+@")

CONFIG_VOLUME = "pgbackrest-config"
SCRIPTS_VOLUME = "pgbackrest-scripts"
SPOOL_VOLUME = "pgbackrest-spool"


def config_map_name(stack: TradingStack) -> str:
    return child_name(stack, "postgres-pgbackrest")


def tls_secret_name(stack: TradingStack) -> str:
    """The operator-generated certificates of the TLS server and the Jobs (`render.pgbackrest_tls`)."""
    return child_name(stack, "pgbackrest-tls")


def cipher_secret_name(stack: TradingStack) -> str:
    """The operator-generated repositories' passphrase (key `CIPHER_PASS_KEY`)."""
    return child_name(stack, "pgbackrest")


def server_names(stack: TradingStack, service_host: str) -> list[str]:
    """DNS SANs of the TLS server's certificate: the Service's full name (what the Jobs connect to) first."""
    short = child_name(stack, "postgres")
    return [service_host, short, f"{short}.{stack.namespace}", f"{short}.{stack.namespace}.svc"]


def _tls(cert: str, key: str) -> TlsFiles:
    return TlsFiles(ca_file=f"{TLS_DIR}/{TlsFile.CA}", cert_file=f"{TLS_DIR}/{cert}", key_file=f"{TLS_DIR}/{key}")


def _s3(stack: TradingStack) -> S3Repo | None:
    pitr = stack.spec.postgres.pitr
    if pitr.s3 is None:
        return None
    s3 = pitr.s3
    return S3Repo(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        region=s3.region,
        path=s3.path or f"/pgbackrest/{stack.namespace}/{stack.name}",
        port=s3.port,
        uri_style=s3.uri_style,
        verify_tls=s3.verify_tls,
        ca_file=S3_CA_FILE if s3.ca_secret else None,
        retention_full=pitr.retention_full,
    )


def settings(stack: TradingStack, pg_data: str, backup_mount: str, pg_host: str | None = None) -> PgBackRestSettings:
    """The database pod's settings, or with `pg_host` (the Service's DNS name) the backup Jobs'."""
    spec = stack.spec.postgres
    pitr = spec.pitr
    roles: dict[str, Any] = (
        {"pg_host": PgHost(pg_host, PGBACKREST_PORT.number, _tls(TlsFile.CLIENT_CERT, TlsFile.CLIENT_KEY))}
        if pg_host
        else {
            "tls_server": TlsServer(
                _tls(TlsFile.SERVER_CERT, TlsFile.SERVER_KEY), PGBACKREST_PORT.number, ((CLIENT_CN, stack.name),)
            )
        }
    )
    return PgBackRestSettings(
        stanza=stack.name,
        pg_data=pg_data,
        pg_port=POSTGRES_PORT.number,
        pg_socket_path=SOCKET_DIR,
        pg_user=spec.user,
        repo1_path=f"{backup_mount}/{REPO1_DIR}" if pitr.volume else None,
        retention_full=pitr.retention_full,
        repo2_s3=_s3(stack),
        cipher_type="aes-256-cbc" if pitr.encrypt else "none",
        spool_path=SPOOL_PATH,
        lock_path=LOCK_PATH,
        archive_timeout_seconds=pitr.archive_timeout_seconds,
        process_max=pitr.process_max,
        restore_process_max=pitr.restore_process_max,
        compress_type=pitr.compress_type,
        # In bytes: pgBackRest's size suffixes are not Kubernetes'.
        archive_push_queue_max=str(quantity_bytes(pitr.archive_push_queue_max)),
        config_path=CONFIG_PATH,
        **roles,
    )


def _script(name: str, commands: dict[str, list[str]]) -> str:
    text = (package_files.files("tradingstack.render") / "pgbackrest_files" / name).read_text(encoding="utf-8")
    for placeholder, argv in commands.items():
        text = text.replace(f"@{placeholder}@", shlex.join(argv))
    if _PLACEHOLDER.search(text):
        raise ValueError(f"{name}: a placeholder was left unfilled")
    return text


def sidecar_script(s: PgBackRestSettings) -> str:
    """The sidecar's POSIX sh script: `pgbackrest server`, and beside it stanza-create and a reload once the server
    is a primary."""
    return _script(
        SIDECAR_SCRIPT,
        {
            "STANZA_CREATE": pgbackrest.stanza_create_command(s),
            "PSQL": [f"--host={s.pg_socket_path}", f"--port={s.pg_port}", "--dbname=postgres"],
            "SERVER": pgbackrest.server_command(s),
        },
    )


def restore_script(stack: TradingStack, s: PgBackRestSettings) -> str:
    """The restore init container's script, with the spec's target time (if any). `--delta`: a restore that
    was cut short is finished over the files already there (on an empty directory pgBackRest ignores it)."""
    restore = stack.spec.postgres.restore
    target = restore.target_time if restore is not None else None
    return _script(RESTORE_SCRIPT, {"RESTORE": pgbackrest.restore_command(s, target, delta=True)})


def pending_script(s: PgBackRestSettings) -> str:
    """The script a Patroni member runs before Patroni: it pushes, one at a time, the WAL segments its server
    finished but never archived (`pg_wal/archive_status/*.ready`), then runs its arguments."""
    push = pgbackrest.command(s, "--no-archive-async", f"--io-timeout={PENDING_IO_TIMEOUT_SECONDS}", "archive-push")
    return _script(PENDING_SCRIPT, {"ARCHIVE_PUSH": push})


def pending_command(pg_data: str) -> list[str]:
    """What goes before the Patroni member's own command (`pending_script`'s arguments follow)."""
    return ["sh", f"{SCRIPTS_DIR}/{PENDING_SCRIPT}", pg_data]


def config_files(stack: TradingStack, db: PgBackRestSettings, job: PgBackRestSettings) -> dict[str, str]:
    """Every file of the ConfigMap by name; the restore script only when the spec restores from pgBackRest, the
    pending push only for a Patroni cluster."""
    files = {
        DB_CONFIG: pgbackrest.config_text(db),
        JOB_CONFIG: pgbackrest.config_text(job),
        SIDECAR_SCRIPT: sidecar_script(db),
    }
    if stack.spec.postgres.restores_from_pgbackrest:
        files[RESTORE_SCRIPT] = restore_script(stack, db)
    if stack.spec.postgres.patroni:
        files[PENDING_SCRIPT] = pending_script(db)
    return dict(sorted(files.items()))


def config_map(stack: TradingStack, owner: OwnerReference, component: str, files: dict[str, str]) -> Manifest:
    return manifest("v1", "ConfigMap", metadata(stack, owner, component, name=config_map_name(stack)), data=files)


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def env(stack: TradingStack, postgres_secret: str) -> list[dict[str, Any]]:
    """pgBackRest's secrets, for every container that runs it: the role from the stack's postgres Secret, the
    passphrase of each repository, the S3 keys."""
    pitr = stack.spec.postgres.pitr
    repos = ([1] if pitr.volume else []) + ([2] if pitr.s3 else [])
    variables = [_secret_env(PgBackRestEnv.PG1_USER, postgres_secret, "username")]
    if pitr.encrypt:
        variables += [_secret_env(cipher_pass_env(r), cipher_secret_name(stack), CIPHER_PASS_KEY) for r in repos]
    if pitr.s3 is not None:
        variables += [
            _secret_env(PgBackRestEnv.REPO2_S3_KEY, pitr.s3.access_key_id.name, pitr.s3.access_key_id.key),
            _secret_env(
                PgBackRestEnv.REPO2_S3_KEY_SECRET, pitr.s3.secret_access_key.name, pitr.s3.secret_access_key.key
            ),
        ]
    return variables


def config_volume(stack: TradingStack, job: bool) -> dict[str, Any]:
    """pgbackrest.conf (the Jobs' variant or the database pod's), the TLS files of that side only (the client's
    or the server's certificate and key) and the S3 CA, in one directory. Mode 0440: pgBackRest refuses a key
    file that others may read; the files belong to root and the pod's fsGroup, which the postgres user is in."""
    config_key, tls = (JOB_CONFIG, _CLIENT_FILES) if job else (DB_CONFIG, _SERVER_FILES)
    items = [{"key": f, "path": f"{TLS_DIR.rsplit('/', 1)[-1]}/{f}"} for f in (TlsFile.CA, *tls)]
    sources: list[dict[str, Any]] = [
        {"configMap": {"name": config_map_name(stack), "items": [{"key": config_key, "path": DB_CONFIG}]}},
        {"secret": {"name": tls_secret_name(stack), "items": items}},
    ]
    s3 = stack.spec.postgres.pitr.s3
    if s3 is not None and s3.ca_secret is not None:
        ca = s3.ca_secret
        sources.append({"secret": {"name": ca.name, "items": [{"key": ca.key, "path": S3_CA_NAME}]}})
    return {"name": CONFIG_VOLUME, "projected": {"defaultMode": 0o440, "sources": sources}}


_SERVER_FILES = (TlsFile.SERVER_CERT, TlsFile.SERVER_KEY)
_CLIENT_FILES = (TlsFile.CLIENT_CERT, TlsFile.CLIENT_KEY)


def pod_volumes(stack: TradingStack) -> list[dict[str, Any]]:
    """The database pod's pgBackRest volumes (the backup volume itself comes from `render.postgres`)."""
    return [
        config_volume(stack, job=False),
        {"name": SCRIPTS_VOLUME, "configMap": {"name": config_map_name(stack), "defaultMode": 0o444}},
        scratch_volume(SPOOL_VOLUME, SPOOL_LIMIT),
    ]


def mounts() -> list[dict[str, Any]]:
    """Mounts of every pgBackRest container of the database pod (the lock path is under its /tmp)."""
    return [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": SPOOL_VOLUME, "mountPath": SPOOL_PATH},
    ]


def scripts_mount() -> dict[str, Any]:
    return {"name": SCRIPTS_VOLUME, "mountPath": SCRIPTS_DIR, "readOnly": True}


def sidecar_resources(stack: TradingStack) -> Resources:
    cpus = str(stack.spec.postgres.pitr.process_max)
    return Resources(requests=SIDECAR_REQUESTS, limits={"cpu": cpus, "memory": SIDECAR_MEMORY_LIMIT})


def sidecar(stack: TradingStack, postgres_secret: str, shared_mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The `pgbackrest` container: stanza-create and the reload once the server is up, then the TLS server.
    `shared_mounts`: the directories it shares with the server container (data, socket, lock, backups).

    No readiness probe: the pod's readiness is the database's. While a repository is unreachable the script
    retries stanza-create, and a probe on the TLS port would take the database out of its Service meanwhile;
    a backup Job started then fails and the next one runs."""
    return {
        "name": SIDECAR_NAME,
        "image": stack.spec.postgres.image,
        "command": ["sh", f"{SCRIPTS_DIR}/{SIDECAR_SCRIPT}"],
        "ports": [PGBACKREST_PORT.container_port()],
        # psql logs in as the role pgBackRest uses (trust on the local socket).
        "env": [*env(stack, postgres_secret), _secret_env("PGUSER", postgres_secret, "username")],
        "resources": resources(sidecar_resources(stack)),
        "securityContext": container_security_context(),
        "volumeMounts": [*(dict(m) for m in shared_mounts), scripts_mount()],
    }


def restore_script_command(pg_data: str) -> list[str]:
    """Runs `restore_script` on `pg_data`: the single server's init container, or a Patroni cluster's bootstrap."""
    return ["sh", f"{SCRIPTS_DIR}/{RESTORE_SCRIPT}", pg_data]


def restore_init_container(
    stack: TradingStack, pg_data: str, postgres_secret: str, shared_mounts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The init container restoring an empty data volume from the repository, when the spec asks for it. Not for a
    Patroni cluster, whose first member restores as its bootstrap (`render.patroni.Archiving.bootstrap`):
    every member restoring on its own would promote each onto a timeline of its own."""
    spec = stack.spec.postgres
    if not spec.restores_from_pgbackrest or spec.patroni:
        return []
    return [
        {
            "name": RESTORE_INIT_NAME,
            "image": spec.image,
            "command": restore_script_command(pg_data),
            "env": env(stack, postgres_secret),
            # A restore reads and writes the whole database: the server container's resources.
            "resources": resources(spec.resources),
            "securityContext": container_security_context(),
            "volumeMounts": [*(dict(m) for m in shared_mounts), scripts_mount()],
        }
    ]
