"""PostgreSQL: StatefulSet, Service, backup volume, backup CronJob and restore Jobs, and the connection env.

Credentials live in the Secret `<stack>-postgres` (keys `username`, `password`, `dsn`), created once by the
operator with a random password: renderers only reference it, so a re-render never rotates the password.
Backups are taken by the backup tool (`python -m tradingstack.backup`) in its own image, whose pg_dump major
matches the server's; each run writes its result as JSON to the pod's termination message, which is how the
operator learns about backups without reading the backup volume.

With `spec.postgres.instances` > 1 the StatefulSet's pods run Patroni instead (`render.patroni`: its
configuration, the leader and replica Services, the pods' ServiceAccount and Role); one instance renders exactly
the single server.

With `spec.postgres.pitr`, `render.pitr` supplies the pgBackRest parts assembled here: the server's archive
settings, env and mounts, the `pgbackrest` sidecar, the restore init container, and the backup tool's pgBackRest
CronJobs (`PITR_FULL`, `PITR_DIFF`, `PITR_ARCHIVE`), whose pods carry the backup component's labels.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.api.spec import Resources
from tradingstack.contract import (
    TERMINATION_LOG,
    Annotation,
    BackupEnv,
    ExitCode,
    Exporter,
    PostgresEnv,
    PostgresExporterEnv,
    SecretKey,
)
from tradingstack.contract.pgbackrest import PitrToolCommand
from tradingstack.render import patroni, pgbackrest, pitr, tls
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    PATRONI_PORT,
    PGBACKREST_PORT,
    POSTGRES_METRICS_PORT,
    POSTGRES_PORT,
    Manifest,
    Port,
    child_name,
    child_service,
    claim_spec,
    container_security_context,
    exporter_container,
    labels,
    manifest,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    resources,
    retained_annotations,
    scratch_volume,
    selector_labels,
    service_host,
    spread_and_anti_affinity,
    statefulset,
)

COMPONENT = "postgres"
BACKUP_COMPONENT = "postgres-backup"
RESTORE_COMPONENT = "postgres-restore"
LIST_COMPONENT = "postgres-backup-list"
POSTGRES_UID = 999
"""uid and gid of the `postgres` user in the official image; the data and backup volumes belong to it."""

BACKUP_IMAGE = "ghcr.io/quantumtrader/tradingstack-backup:0.1.0-pg15"
"""Backup tool image (images/backup), built FROM the default server image so pg_dump matches its major."""

POSTGRES_SECRET_KEYS = (SecretKey.USERNAME, SecretKey.PASSWORD, SecretKey.DSN)
"""Keys of the Secret `secret_name(stack)`; the operator generates it once, see `dsn()` for the last one."""

DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{DATA_MOUNT}/pgdata"
"""A subdirectory: initdb refuses a non-empty directory, and a fresh volume's root may hold lost+found."""

BACKUP_MOUNT = "/backups"
BACKUP_HISTORY = 3
"""Finished backup Jobs kept per outcome: enough for the operator to see the last results."""

BACKUP_DEADLINE_SECONDS = 6 * 3600
"""A hung dump is killed: with concurrencyPolicy Forbid it would otherwise block every later backup."""

BACKUP_STARTING_DEADLINE_SECONDS = 6 * 3600
"""A run missed while the CronJob controller was away still starts up to 6 h late; older misses are skipped
(without a deadline the controller gives up on a CronJob that missed more than 100 schedules)."""

RUN_LIMIT = "16Mi"
"""The server's socket and lock files."""
TMP_LIMIT = "256Mi"
"""Scratch space: sorts and dumps go to the data and backup volumes, not here."""

ON_DEMAND_TTL_SECONDS = 7 * 24 * 3600
"""On-demand restore Jobs stay a week for inspection, then garbage collection removes them."""

PITR_FULL = "postgres-pitr-full"
PITR_DIFF = "postgres-pitr-diff"
PITR_ARCHIVE = "postgres-pitr-archive"
"""Names (after `<stack>-`) of the pgBackRest CronJobs: full and differential backups, archive status."""
ARCHIVE_STATUS_SCHEDULE = "*/5 * * * *"
"""The archive's state between backups: a failing or lagging archive shows within five minutes."""
ARCHIVE_STATUS_DEADLINE_SECONDS = 240
"""A status run that hangs ends before the next one is due."""

TOOL_COMMAND = ["python3", "-m", "tradingstack.backup"]
TOOL_RESOURCES = Resources()
"""The backup tool mostly waits on pg_dump's output; the API defaults (100m/128Mi .. 1 CPU/512Mi) suffice."""


def secret_name(stack: TradingStack) -> str:
    """The Secret with `POSTGRES_SECRET_KEYS`: the user's `existingSecret`, or the one the operator generates."""
    return stack.spec.postgres.existing_secret or child_name(stack, COMPONENT)


def host(stack: TradingStack, domain: str) -> str:
    return service_host(stack, COMPONENT, domain)


def dsn(stack: TradingStack, password: str, domain: str) -> str:
    """The `dsn` key of the Secret: `postgresql://<user>:<password, percent-encoded>@<host>:5432/<database>`."""
    spec = stack.spec.postgres
    address = f"{host(stack, domain)}:{POSTGRES_PORT.number}"
    return f"postgresql://{spec.user}:{quote(password, safe='')}@{address}/{spec.database}"


def connection_env(stack: TradingStack, domain: str) -> list[dict[str, Any]]:
    """libpq variables plus DATABASE_URL for a container that connects to the stack's PostgreSQL. With `spec.tls`
    the URL is the Secret's `dsn` with `sslmode=verify-full` and the CA file in its query (the kubelet expands
    `$(...)` from the variable defined before it); the container needs `tls.client_mounts` too."""
    if not tls.postgres_enabled(stack):
        return [*_libpq_env(stack, domain), _secret_env(stack, PostgresEnv.URL, SecretKey.DSN)]
    return [
        *_libpq_env(stack, domain),
        _secret_env(stack, PostgresEnv.SECRET_URL, SecretKey.DSN),
        {"name": PostgresEnv.URL, "value": f"$({PostgresEnv.SECRET_URL})?{tls.dsn_query()}"},
    ]


def render_postgres(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[Manifest]:
    extra_ports = [*metrics_ports(stack), *pitr_ports(stack)]
    manifests = [
        *_services(stack, owner, extra_ports),
        _statefulset(stack, owner, domain),
        _backup_volume(stack, owner),
    ]
    if stack.spec.postgres.patroni:
        manifests += [
            patroni.config_map(stack, owner, _patroni_files(stack, domain)),
            *patroni.rbac(stack, owner),
            pod_disruption_budget(stack, owner, COMPONENT),
        ]
    backup = stack.spec.postgres.backup
    if backup.enabled:
        manifests.append(_backup_cronjob(stack, owner, domain))
    if tls.postgres_enabled(stack):
        manifests.append(tls.hba_config_map(stack, owner))
    if stack.spec.postgres.pitr.enabled:
        manifests += [
            pitr.config_map(stack, owner, COMPONENT, _pitr_files(stack, domain)),
            *_pitr_cronjobs(stack, owner, domain),
        ]
    restore = stack.spec.postgres.restore
    # A restore from the pgBackRest repository is the database pod's init container (a Patroni cluster's bootstrap),
    # not a Job.
    if restore is not None and not stack.spec.postgres.restores_from_pgbackrest:
        # Idempotent: on a database that already holds data the Job succeeds without touching it.
        manifests.append(_restore_job(stack, owner, restore.from_, ["--if-empty"], domain))
    return manifests


def _services(stack: TradingStack, owner: OwnerReference, extra_ports: list[Port]) -> list[Manifest]:
    if stack.spec.postgres.patroni:
        return patroni.services(stack, owner, extra_ports)
    return [child_service(stack, owner, COMPONENT, POSTGRES_PORT, extra_ports=extra_ports)]


def render_restore_job(
    stack: TradingStack, owner: OwnerReference, backup: str, force: bool, domain: str = DEFAULT_CLUSTER_DOMAIN
) -> Manifest:
    """An on-demand restore (`tradingstack backup restore`): create it, do not apply it (it has generateName).

    Without `force` the Job fails with exit status 3 when the database is not empty."""
    return _on_demand(_restore_job(stack, owner, backup, ["--force"] if force else [], domain))


def render_list_job(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> Manifest:
    """An on-demand `list` of the backup volume (`tradingstack backup list`); its result is the termination
    message of its pod. Create it, do not apply it (it has generateName)."""
    pod = _tool_pod(stack, LIST_COMPONENT, ["list"], domain)
    job = manifest("batch/v1", "Job", metadata(stack, owner, LIST_COMPONENT), spec={"backoffLimit": 0, "template": pod})
    return _on_demand(job)


def _on_demand(job: Manifest) -> Manifest:
    job["metadata"]["generateName"] = f"{job['metadata'].pop('name')}-"
    job["spec"]["ttlSecondsAfterFinished"] = ON_DEMAND_TTL_SECONDS
    return job


def _libpq_env(stack: TradingStack, domain: str) -> list[dict[str, Any]]:
    return [
        {"name": PostgresEnv.HOST, "value": host(stack, domain)},
        {"name": PostgresEnv.PORT, "value": str(POSTGRES_PORT.number)},
        {"name": PostgresEnv.DATABASE, "value": stack.spec.postgres.database},
        _secret_env(stack, PostgresEnv.USER, SecretKey.USERNAME),
        _secret_env(stack, PostgresEnv.PASSWORD, SecretKey.PASSWORD),
        *tls.client_env(stack),
    ]


def _secret_env(stack: TradingStack, name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(stack), "key": key}}}


def _pg_isready(stack: TradingStack) -> list[str]:
    spec = stack.spec.postgres
    return [
        "pg_isready",
        "--host=127.0.0.1",
        f"--port={POSTGRES_PORT.number}",
        f"--username={spec.user}",
        f"--dbname={spec.database}",
    ]


def pitr_ports(stack: TradingStack) -> list[Port]:
    """The pgBackRest TLS server's port of the PostgreSQL pod, when `spec.postgres.pitr` is enabled."""
    return [PGBACKREST_PORT] if stack.spec.postgres.pitr.enabled else []


def _pitr_settings(stack: TradingStack, domain: str, job: bool) -> pgbackrest.PgBackRestSettings:
    return pitr.settings(stack, PGDATA, BACKUP_MOUNT, host(stack, domain) if job else None)


def _pitr_files(stack: TradingStack, domain: str) -> dict[str, str]:
    return pitr.config_files(stack, _pitr_settings(stack, domain, False), _pitr_settings(stack, domain, True))


def _pgbackrest_env(stack: TradingStack) -> list[dict[str, Any]]:
    """pgBackRest's secrets for the server container, which runs archive-push (and archive-get) itself."""
    return pitr.env(stack, secret_name(stack)) if stack.spec.postgres.pitr.enabled else []


def _pgbackrest_mounts(stack: TradingStack) -> list[dict[str, Any]]:
    """What every pgBackRest container of the database pod shares: the data, socket, lock and repo1 paths."""
    spec = stack.spec.postgres.pitr
    if not spec.enabled:
        return []
    repo1 = [{"name": "backups", "mountPath": BACKUP_MOUNT}] if spec.volume else []
    return [*pitr.mounts(), *repo1]


def _server_args(stack: TradingStack, domain: str) -> dict[str, Any]:
    """With pitr: `postgres` with the archive settings; with tls: with the TLS settings (the image's CMD
    otherwise)."""
    pitr_args = (
        pgbackrest.postgres_args(_pitr_settings(stack, domain, False)) if stack.spec.postgres.pitr.enabled else []
    )
    tls_args = tls.server_args(stack)
    if not pitr_args and not tls_args:
        return {}
    return {"args": ["postgres", *pitr_args, *tls_args]}


def _patroni_archiving(stack: TradingStack, domain: str) -> patroni.Archiving | None:
    """With pitr, the leader archives (and the replicas read WAL back) through the pod's pgBackRest."""
    if not stack.spec.postgres.pitr.enabled:
        return None
    settings = _pitr_settings(stack, domain, False)
    return patroni.Archiving(
        parameters=pgbackrest.postgres_settings(settings),
        restore_command=pgbackrest.archive_get_command(settings),
        bootstrap=pitr.restore_script_command(PGDATA) if stack.spec.postgres.restores_from_pgbackrest else None,
    )


def _patroni_files(stack: TradingStack, domain: str) -> dict[str, str]:
    return patroni.config_files(stack, PGDATA, _patroni_archiving(stack, domain))


def _patroni_container(stack: TradingStack) -> dict[str, Any]:
    """The server container of a Patroni cluster: Patroni runs the server, the probes ask Patroni. With pitr the
    server it runs archives through pgBackRest, whose env and mounts it then needs, as the single server does,
    and the WAL a lost leader left unarchived is pushed before Patroni starts (`pitr.pending_script`)."""
    spec = stack.spec.postgres
    config = {"name": patroni.CONFIG_VOLUME, "mountPath": patroni.CONFIG_DIR, "readOnly": True}
    archiving = spec.pitr.enabled
    return {
        "name": "postgres",
        "image": spec.image,
        "command": patroni.command(pitr.pending_command(PGDATA) if archiving else ()),
        "ports": [POSTGRES_PORT.container_port(), PATRONI_PORT.container_port()],
        "env": [*patroni.env(secret_name(stack)), *_pgbackrest_env(stack)],
        **patroni.probes(),
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            *_server_mounts(),
            config,
            *_pgbackrest_mounts(stack),
            *([pitr.scripts_mount()] if archiving else []),
        ],
    }


def _postgres_container(stack: TradingStack, domain: str) -> dict[str, Any]:
    """The server container: how Postgres starts, its env, probes and mounts. With pitr the server runs
    archive-push itself (archive_command), so pgBackRest's env and mounts are the server's too."""
    spec = stack.spec.postgres
    return {
        "name": "postgres",
        "image": spec.image,
        **_server_args(stack, domain),
        "ports": [POSTGRES_PORT.container_port()],
        "env": [
            {"name": "POSTGRES_DB", "value": spec.database},
            _secret_env(stack, "POSTGRES_USER", "username"),
            _secret_env(stack, "POSTGRES_PASSWORD", "password"),
            {"name": "PGDATA", "value": PGDATA},
            *_pgbackrest_env(stack),
        ],
        "readinessProbe": {"exec": {"command": _pg_isready(stack)}, "periodSeconds": 5, "timeoutSeconds": 5},
        # A TCP check, not pg_isready: during crash recovery the server rejects connections for a long time,
        # and killing it then would restart the recovery.
        "livenessProbe": {
            "tcpSocket": {"port": "postgres"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [*_server_mounts(), *_pgbackrest_mounts(stack), *tls.server_mounts(stack)],
    }


def _server_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "data", "mountPath": DATA_MOUNT},
        {"name": "run", "mountPath": "/var/run/postgresql"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def metrics_ports(stack: TradingStack) -> list[Port]:
    """The exporter's port of the PostgreSQL pod, when `spec.postgres.metrics` is enabled."""
    return [POSTGRES_METRICS_PORT] if stack.spec.postgres.metrics.enabled else []


def _exporter(stack: TradingStack) -> list[dict[str, Any]]:
    """The postgres_exporter sidecar, logging in to the server of its own pod as the stack's role."""
    spec = stack.spec.postgres
    if not spec.metrics.enabled:
        return []
    env = [
        {
            "name": PostgresExporterEnv.URI,
            # The pod's server over TCP, as pg_isready asks it; no TLS between containers of one pod.
            "value": f"127.0.0.1:{POSTGRES_PORT.number}/{spec.database}?sslmode=disable",
        },
        _secret_env(stack, PostgresExporterEnv.USER, SecretKey.USERNAME),
        _secret_env(stack, PostgresExporterEnv.PASSWORD, SecretKey.PASSWORD),
        {"name": PostgresExporterEnv.LISTEN_ADDRESS, "value": f":{POSTGRES_METRICS_PORT.number}"},
    ]
    return [
        exporter_container(
            spec.metrics.image, Exporter.POSTGRES_COMMAND, POSTGRES_METRICS_PORT, env, spec.metrics.resources
        )
    ]


def _pitr_pod(stack: TradingStack) -> dict[str, Any]:
    """The database pod's pgBackRest parts: the sidecar, the restore init container, their volumes."""
    spec = stack.spec.postgres.pitr
    if not spec.enabled:
        return {"containers": [], "volumes": []}
    shared = [*_server_mounts(), *_pgbackrest_mounts(stack)]
    backups = [{"name": "backups", "persistentVolumeClaim": {"claimName": _backup_claim(stack)}}] if spec.volume else []
    pod: dict[str, Any] = {
        "containers": [pitr.sidecar(stack, secret_name(stack), shared)],
        "volumes": [*pitr.pod_volumes(stack), *backups],
    }
    if init := pitr.restore_init_container(stack, PGDATA, secret_name(stack), shared):
        pod["initContainers"] = init
    return pod


def _statefulset(stack: TradingStack, owner: OwnerReference, domain: str) -> Manifest:
    if stack.spec.postgres.patroni:
        return _patroni_statefulset(stack, owner, domain)
    pitr_pod = _pitr_pod(stack)
    pod_spec = {
        "securityContext": {
            **pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
            "fsGroupChangePolicy": "OnRootMismatch",
        },
        # Time for a fast shutdown (checkpoint) before SIGKILL.
        "terminationGracePeriodSeconds": 60,
        "automountServiceAccountToken": False,
        **({"initContainers": pitr_pod["initContainers"]} if "initContainers" in pitr_pod else {}),
        "containers": [_postgres_container(stack, domain), *_exporter(stack), *pitr_pod["containers"]],
        "volumes": [
            scratch_volume("run", RUN_LIMIT),
            scratch_volume("tmp", TMP_LIMIT),
            *pitr_pod["volumes"],
            *tls.server_volumes(stack),
        ],
    }
    # The pgBackRest files and pg_hba.conf roll the pod when they change (the server reads them at start only).
    files = {
        **(_pitr_files(stack, domain) if stack.spec.postgres.pitr.enabled else {}),
        **(tls.hba_files() if tls.postgres_enabled(stack) else {}),
    }
    config = files or None
    return statefulset(stack, owner, COMPONENT, 1, pod_spec, config=config, data=stack.spec.postgres.storage)


def _patroni_statefulset(stack: TradingStack, owner: OwnerReference, domain: str) -> Manifest:
    """`spec.postgres.instances` Patroni pods, spread over nodes, with the only API token of the stack's pods.
    With pitr each pod has the `pgbackrest` sidecar: the backup Jobs reach the leader's through the read-write
    Service, and a replica's is ready for the day it is promoted."""
    spec = stack.spec.postgres
    pitr_pod = _pitr_pod(stack)
    pod_spec = {
        "securityContext": {
            **pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
            "fsGroupChangePolicy": "OnRootMismatch",
        },
        "terminationGracePeriodSeconds": 60,
        "serviceAccountName": patroni.service_account_name(stack),
        # Patroni keeps the leader lock in the API server (`patroni.POD_RULES`).
        "automountServiceAccountToken": True,
        "affinity": spread_and_anti_affinity(stack, COMPONENT),
        "containers": [_patroni_container(stack), *_exporter(stack), *pitr_pod["containers"]],
        "volumes": [
            scratch_volume("run", RUN_LIMIT),
            scratch_volume("tmp", TMP_LIMIT),
            {"name": patroni.CONFIG_VOLUME, "configMap": {"name": patroni.config_map_name(stack)}},
            *pitr_pod["volumes"],
        ],
    }
    return statefulset(
        stack,
        owner,
        COMPONENT,
        spec.instances,
        pod_spec,
        config={
            **_patroni_files(stack, domain),
            **(_pitr_files(stack, domain) if spec.pitr.enabled else {}),
        },
        data=spec.storage,
        pod_labels=patroni.pod_labels(stack),
        # A new pod template reaches the members as the operator deletes their pods, the replicas first and the
        # leader after a switchover (`reconcile.switchover.plan_postgres_rollout`), not highest ordinal first.
        updateStrategy={"type": "OnDelete"},
    )


def _backup_volume(stack: TradingStack, owner: OwnerReference) -> Manifest:
    return manifest(
        "v1",
        "PersistentVolumeClaim",
        metadata(stack, owner, BACKUP_COMPONENT, name=_backup_claim(stack), annotations=retained_annotations()),
        spec=claim_spec(stack.spec.postgres.backup.storage),
    )


def _backup_claim(stack: TradingStack) -> str:
    return child_name(stack, "postgres-backups")


def _tool_pod(stack: TradingStack, component: str, args: list[str], domain: str) -> dict[str, Any]:
    """Pod template running the backup tool with the backup volume and the database credentials."""
    tool = {
        "name": "backup-tool",
        "image": BACKUP_IMAGE,
        "command": TOOL_COMMAND,
        "args": args,
        "env": [*_libpq_env(stack, domain), {"name": BackupEnv.DIR, "value": BACKUP_MOUNT}],
        "resources": resources(TOOL_RESOURCES),
        "securityContext": container_security_context(),
        # The tool writes its JSON result there; on a crash the log tail is the next best message.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "backups", "mountPath": BACKUP_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
            *tls.client_mounts(stack, [tls.POSTGRES]),
        ],
    }
    return {
        "metadata": {"labels": labels(stack, component)},
        "spec": {
            "securityContext": pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
            # Never: each attempt is a new pod, so a failed attempt's termination message is kept.
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            **_beside_database(stack),
            "containers": [tool],
            "volumes": [
                {"name": "backups", "persistentVolumeClaim": {"claimName": _backup_claim(stack)}},
                scratch_volume("tmp", TMP_LIMIT),
                *tls.client_volumes(stack, [tls.POSTGRES]),
            ],
        },
    }


def _beside_database(stack: TradingStack) -> dict[str, Any]:
    """With repo1 on the backup volume the database pod mounts it too; the volume is ReadWriteOnce, so a Job
    mounting it must run on the same node (required: elsewhere its pod would never start)."""
    spec = stack.spec.postgres.pitr
    if not (spec.enabled and spec.volume):
        return {}
    term = {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector_labels(stack, COMPONENT)},
    }
    return {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}


def _pitr_tool_pod(stack: TradingStack, args: list[str], domain: str) -> dict[str, Any]:
    """The backup tool with the Jobs' pgbackrest.conf (the repositories, and the database pod over TLS)."""
    s = _pitr_settings(stack, domain, True)
    pod = _tool_pod(stack, BACKUP_COMPONENT, [*args, f"--config={s.config_path}", f"--stanza={s.stanza}"], domain)
    tool = pod["spec"]["containers"][0]
    tool["env"] += pitr.env(stack, secret_name(stack))
    tool["volumeMounts"] += [{"name": pitr.CONFIG_VOLUME, "mountPath": pitr.CONFIG_DIR, "readOnly": True}]
    pod["spec"]["volumes"].append(pitr.config_volume(stack, job=True))
    return pod


def _backup_cronjob(stack: TradingStack, owner: OwnerReference, domain: str) -> Manifest:
    backup = stack.spec.postgres.backup
    args = ["backup", f"--keep-last={backup.keep_last}"]
    if not backup.verify:
        args.append("--no-verify")
    if backup.verify_restore:
        args.append("--restore-check")
    pod = _tool_pod(stack, BACKUP_COMPONENT, args, domain)
    return _cronjob(stack, owner, child_name(stack, BACKUP_COMPONENT), (backup.schedule, backup.time_zone), pod)


def _pitr_cronjobs(stack: TradingStack, owner: OwnerReference, domain: str) -> list[Manifest]:
    """Full and differential backups on their schedules, and the archive's status every few minutes. All run
    with concurrencyPolicy Forbid each; pgBackRest's own lock keeps a full and a diff from overlapping."""
    spec = stack.spec.postgres.pitr
    runs = [(PITR_FULL, spec.full_schedule, "full")] + (
        [(PITR_DIFF, spec.diff_schedule, "diff")] if spec.diff_schedule else []
    )
    cronjobs = [
        _cronjob(
            stack,
            owner,
            child_name(stack, name),
            (schedule, spec.time_zone),
            _pitr_tool_pod(stack, [PitrToolCommand.BACKUP, f"--type={backup_type}"], domain),
        )
        for name, schedule, backup_type in runs
    ]
    status_pod = _pitr_tool_pod(stack, [PitrToolCommand.ARCHIVE_STATUS], domain)
    status = _cronjob(
        stack, owner, child_name(stack, PITR_ARCHIVE), (ARCHIVE_STATUS_SCHEDULE, spec.time_zone), status_pod,
        deadline=ARCHIVE_STATUS_DEADLINE_SECONDS,
    )  # fmt: skip
    return [*cronjobs, status]


def _cronjob(
    stack: TradingStack,
    owner: OwnerReference,
    name: str,
    when: tuple[str, str],
    pod: dict[str, Any],
    deadline: int = BACKUP_DEADLINE_SECONDS,
) -> Manifest:
    """A CronJob of the backup tool; `when`: (schedule, time zone)."""
    schedule, time_zone = when
    return manifest(
        "batch/v1",
        "CronJob",
        metadata(stack, owner, BACKUP_COMPONENT, name=name),
        spec={
            "schedule": schedule,
            "timeZone": time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": min(BACKUP_STARTING_DEADLINE_SECONDS, deadline),
            "successfulJobsHistoryLimit": BACKUP_HISTORY,
            "failedJobsHistoryLimit": BACKUP_HISTORY,
            "jobTemplate": {
                "metadata": {"labels": labels(stack, BACKUP_COMPONENT)},
                "spec": {"backoffLimit": 1, "activeDeadlineSeconds": deadline, "template": pod},
            },
        },
    )


def _restore_job(stack: TradingStack, owner: OwnerReference, backup: str, mode: list[str], domain: str) -> Manifest:
    pod = _tool_pod(stack, RESTORE_COMPONENT, ["restore", f"--from={backup}", *mode], domain)
    pod["spec"]["initContainers"] = [
        {
            "name": "wait-for-postgres",
            "image": BACKUP_IMAGE,
            "command": ["sh", "-c", "until pg_isready --timeout=5; do sleep 2; done"],
            "env": _libpq_env(stack, domain),
            "resources": resources(TOOL_RESOURCES),
            "securityContext": container_security_context(),
            **({"volumeMounts": tls.client_mounts(stack, [tls.POSTGRES])} if tls.postgres_enabled(stack) else {}),
        }
    ]
    return manifest(
        "batch/v1",
        "Job",
        metadata(stack, owner, RESTORE_COMPONENT, annotations={Annotation.BACKUP: backup}),
        spec={
            "backoffLimit": 2,
            # A refusal (the database is not empty) will not change on a retry: fail the Job at once.
            "podFailurePolicy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [int(ExitCode.REFUSED)]}}]
            },
            "template": pod,
        },
    )
