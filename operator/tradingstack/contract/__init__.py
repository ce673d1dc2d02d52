"""Every name two processes must agree on, in one place: the operator, the pods it renders, the backup tool, the
service library (demo-service) and the chart import these instead of repeating string literals on each side.

- env names injected into containers, with the module that injects them and the process that reads them;
- probe and health paths of the health contract;
- labels and annotations on stacks and their children;
- exit codes of the backup tool and the CLI;
- Secret keys of the generated credentials.

The backup tool's termination message (its result as the Job's pod reports it) is modelled in
`tradingstack.contract.termination`. This module is a leaf: it imports nothing from the project but the API group.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Final

from tradingstack import API_GROUP


def format_flag(value: bool) -> str:
    """How a boolean travels in an env var (`true`/`false`)."""
    return "true" if value else "false"


def parse_flag(value: str) -> bool:
    """The reading side of `format_flag`; also accepts the usual spellings a person types (1, yes, on)."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def format_switchover_request(now: datetime, to: str | None) -> str:
    """The value of `Annotation.SWITCHOVER` asking at `now` for a switchover (to the member `to`)."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}/{to}" if to else stamp


def parse_switchover_request(value: str) -> tuple[datetime | None, str | None]:
    """When a switchover was asked for (None: not a time) and to which member (None: any)."""
    stamp, _, to = value.strip().partition("/")
    try:
        at: datetime | None = datetime.fromisoformat(stamp)
    except ValueError:
        at = None
    return at, to or None


class ServiceEnv:
    """Env of a trading service container: injected by `render.services`, read by the service library
    (`demo_service.config`). The names below the line are service settings the operator does not inject."""

    SERVICE_NAME: Final = "SERVICE_NAME"
    PORT: Final = "PORT"
    DEGRADED_IS_READY: Final = "HEALTH_DEGRADED_IS_READY"
    """`spec.services[].health.degradedIsReady` as `true`/`false`: is the service ready while DEGRADED."""
    HEALTH_PATH: Final = "HEALTH_PATH"
    LIVE_PATH: Final = "HEALTH_LIVE_PATH"
    READY_PATH: Final = "HEALTH_READY_PATH"
    """The paths of `spec.services[].health`: the service serves the endpoints where the probes ask."""
    POD_NAME: Final = "POD_NAME"
    POD_NAMESPACE: Final = "POD_NAMESPACE"

    VERSION: Final = "VERSION"
    HOST: Final = "HOST"
    CRITICAL_DEPENDENCIES: Final = "CRITICAL_DEPENDENCIES"
    CHECK_TIMEOUT_SECONDS: Final = "HEALTH_CHECK_TIMEOUT_SECONDS"
    CIRCUIT_FAILURE_THRESHOLD: Final = "CIRCUIT_FAILURE_THRESHOLD"
    CIRCUIT_COOLDOWN_SECONDS: Final = "CIRCUIT_COOLDOWN_SECONDS"
    LOG_LEVEL: Final = "LOG_LEVEL"


class RedisEnv:
    """Redis connection env: injected by `render.redis` into services that use Redis and into the Redis and
    Sentinel pods; read by the service library, `redisclient` and the rendered shell scripts."""

    SENTINELS: Final = "REDIS_SENTINELS"
    """Comma-separated `host:port` of every sentinel."""
    MASTER_NAME: Final = "REDIS_MASTER_NAME"
    PASSWORD: Final = "REDIS_PASSWORD"  # noqa: S105 - the name of a variable, not a password
    URL: Final = "REDIS_URL"
    """A direct Redis URL; the operator never injects it (tests and single-server setups do)."""
    TLS_CA_FILE: Final = "REDIS_TLS_CA_FILE"
    """With `spec.tls`: the CA file the sentinels and servers are verified with; set means "connect with TLS".
    Read by `redisclient.SentinelRedisClient.from_env`, the service library and the rendered scripts' redis-cli."""


class RedisScriptEnv:
    """Env of the Redis and Sentinel containers, read by the scripts in `render/redis_files`."""

    CLI_AUTH: Final = "REDISCLI_AUTH"
    CONFIG_DIR: Final = "REDIS_CONFIG_DIR"
    SENTINEL_WAIT_SECONDS: Final = "REDIS_SENTINEL_WAIT_SECONDS"
    ANNOUNCE_HOST: Final = "REDIS_ANNOUNCE_HOST"
    PORT: Final = "REDIS_PORT"
    DATA_DIR: Final = "REDIS_DATA_DIR"
    RUN_DIR: Final = "REDIS_RUN_DIR"
    PRESTOP_WAIT_SECONDS: Final = "REDIS_PRESTOP_WAIT_SECONDS"
    FAILOVER_WAIT_SECONDS: Final = "REDIS_FAILOVER_WAIT_SECONDS"
    SENTINEL_ANNOUNCE_HOST: Final = "SENTINEL_ANNOUNCE_HOST"
    SENTINEL_PORT: Final = "SENTINEL_PORT"
    SENTINEL_DIR: Final = "SENTINEL_DIR"
    BOOTSTRAP_MASTER: Final = "REDIS_BOOTSTRAP_MASTER"
    TLS_CERT_FILE: Final = "REDIS_TLS_CERT_FILE"
    """With `spec.tls`: the server certificate (and its key, below) the Redis server or sentinel serves."""
    TLS_KEY_FILE: Final = "REDIS_TLS_KEY_FILE"


class PostgresEnv:
    """Connection env (libpq's names plus a URL): injected by `render.postgres` into services that use Postgres
    and into the backup tool's pods; read by libpq, the service library and the backup tool."""

    HOST: Final = "PGHOST"
    PORT: Final = "PGPORT"
    DATABASE: Final = "PGDATABASE"
    USER: Final = "PGUSER"
    PASSWORD: Final = "PGPASSWORD"  # noqa: S105 - the name of a variable, not a password
    URL: Final = "DATABASE_URL"
    SECRET_URL: Final = "TRADINGSTACK_POSTGRES_DSN"  # noqa: S105 - the name of a variable
    """With `spec.tls`: the Secret's `dsn` as is, which the kubelet expands into `URL` with the TLS query after it
    (`$(TRADINGSTACK_POSTGRES_DSN)?sslmode=verify-full&...`); not read by anything else."""


class PatroniEnv:
    """Patroni's documented environment overrides of its configuration file: injected by `render.patroni` into the
    database pods of a Patroni cluster (`spec.postgres.instances` > 1), read by Patroni (and, with the pod's own
    values, by the component test that runs the rendered configuration)."""

    NAME: Final = "PATRONI_NAME"
    POD_IP: Final = "PATRONI_KUBERNETES_POD_IP"
    NAMESPACE: Final = "PATRONI_KUBERNETES_NAMESPACE"
    POSTGRES_CONNECT: Final = "PATRONI_POSTGRESQL_CONNECT_ADDRESS"
    RESTAPI_CONNECT: Final = "PATRONI_RESTAPI_CONNECT_ADDRESS"
    SUPERUSER: Final = "PATRONI_SUPERUSER_USERNAME"
    SUPERUSER_PASSWORD: Final = "PATRONI_SUPERUSER_PASSWORD"  # noqa: S105 - a variable's name
    REPLICATION_USER: Final = "PATRONI_REPLICATION_USERNAME"
    REPLICATION_PASSWORD: Final = "PATRONI_REPLICATION_PASSWORD"  # noqa: S105 - a variable's name


class Patroni:
    """What Patroni 3.0 (Debian bookworm's) answers and writes: its REST API paths and the values of the role label
    it sets on its pods (`Label.POSTGRES_ROLE`), which the database Services select."""

    READINESS_PATH: Final = "/readiness"
    """200 on the leader and on a replica whose server runs; 503 otherwise."""
    LIVENESS_PATH: Final = "/liveness"
    """200 while Patroni's main loop runs (not the server: Patroni restarts that itself)."""
    CLUSTER_PATH: Final = "/cluster"
    """GET: every member of the cluster as the DCS knows it, on any member (`contract.patroni_cluster` parses it)."""
    SWITCHOVER_PATH: Final = "/switchover"
    """POST `{"leader": ..., "candidate": ...}` on any member: a planned switchover, answered once it is done (200)
    or refused (412: no healthy candidate, 503: the DCS could not be written)."""
    RESTART_PATH: Final = "/restart"
    """POST on a member: Patroni restarts that member's PostgreSQL server, answered once it runs again (200)."""
    LEADER_ROLE: Final = "master"
    """Patroni 3.0's label value on the leader (4.0 renamed it `primary`)."""
    REPLICA_ROLE: Final = "replica"
    LOCK_HOLDER_ANNOTATION: Final = "leader"
    """On the leader lock ConfigMap (`render.patroni.leader_lock_name`): the member holding the lock. It stays when
    the lock lapses (Patroni compares `renewTime` + `ttl` with its clock) and changes when another member takes it."""


class BackupEnv:
    """Env of the backup tool (`python -m tradingstack.backup`), injected by `render.postgres`."""

    DIR: Final = "BACKUP_DIR"
    TERMINATION_LOG: Final = "TERMINATION_LOG"
    PG_BIN: Final = "PG_BIN"


class RedisExporterEnv:
    """Env of the Redis metrics sidecar (`spec.redis.metrics`), injected by `render.redis` and read by
    redis_exporter (its own names: the exporter is configured by env only, so its image needs no arguments)."""

    ADDRESS: Final = "REDIS_ADDR"
    """`redis://127.0.0.1:<port>`: the server of the same pod."""
    PASSWORD: Final = "REDIS_PASSWORD"  # noqa: S105 - the name of a variable, not a password
    LISTEN_ADDRESS: Final = "REDIS_EXPORTER_WEB_LISTEN_ADDRESS"
    TLS_CA_CERT_FILE: Final = "REDIS_EXPORTER_TLS_CA_CERT_FILE"
    SKIP_TLS_VERIFICATION: Final = "REDIS_EXPORTER_SKIP_TLS_VERIFICATION"
    """With `spec.tls` (`rediss://127.0.0.1`): the exporter, written in Go, checks the certificate's names against
    the address it dials, and a certificate for the pods' DNS names does not name 127.0.0.1."""


class PostgresExporterEnv:
    """Env of the PostgreSQL metrics sidecar (`spec.postgres.metrics`), injected by `render.postgres` and read by
    postgres_exporter, which joins them into `postgresql://<user>:<password>@<uri>` (percent-encoding both)."""

    URI: Final = "DATA_SOURCE_URI"
    """`127.0.0.1:<port>/<database>?sslmode=disable`: the server of the same pod."""
    USER: Final = "DATA_SOURCE_USER"
    PASSWORD: Final = "DATA_SOURCE_PASS"  # noqa: S105 - the name of a variable, not a password
    LISTEN_ADDRESS: Final = "PG_EXPORTER_WEB_LISTEN_ADDRESS"


class OperatorEnv:
    """Env of the operator's own container: set by the chart (templates/deployment.yaml), read by `cli.py`."""

    DNS_CIDRS: Final = "TRADINGSTACK_DNS_CIDRS"
    """Comma-separated CIDRs where the cluster DNS answers (port 53), for the stacks' NetworkPolicies; unset or
    empty: the kube-dns pods in kube-system (`render.common.Cluster`)."""


class Exporter:
    """The metrics sidecars' programs (the Debian packages' names, installed in images/redis and images/postgres)
    and the paths they serve; the chart's ServiceMonitor and the e2e scrape `METRICS_PATH`."""

    REDIS_COMMAND: Final = "prometheus-redis-exporter"
    POSTGRES_COMMAND: Final = "prometheus-postgres-exporter"
    METRICS_PATH: Final = "/metrics"
    LANDING_PATH: Final = "/"
    """Answered by the exporter itself without asking the data store: the sidecar's readiness probe."""


class Probe:
    """Paths of the health contract (defaults of `spec.services[].health`) and of the gateway."""

    HEALTH: Final = "/health"
    LIVE: Final = "/health/live"
    READY: Final = "/health/ready"
    GATEWAY: Final = "/healthz"
    """Answered by NGINX itself."""


TERMINATION_LOG: Final = "/dev/termination-log"
"""Where the backup tool writes its result; the kubelet copies it into the pod status."""


class ExitCode(IntEnum):
    """Exit statuses of the backup tool and the `tradingstack` CLI; a restore Job fails at once on REFUSED."""

    OK = 0
    FAILED = 1
    """Nothing was committed."""
    INVALID = 2
    """Bad input (usage, spec): fix it, retrying does not help."""
    REFUSED = 3
    """A restore refused because the database is not empty and --force was not given."""
    LEADERSHIP_LOST = 4
    """`tradingstack run --leader-election` could not renew its Lease in time and stopped reconciling."""


class Label:
    """Labels on a stack's children and on the operator's pods."""

    NAME: Final = "app.kubernetes.io/name"
    INSTANCE: Final = "app.kubernetes.io/instance"
    COMPONENT: Final = "app.kubernetes.io/component"
    PART_OF: Final = "app.kubernetes.io/part-of"
    MANAGED_BY: Final = "app.kubernetes.io/managed-by"
    STACK: Final = f"{API_GROUP}/stack"
    """The stack name on every child: the operator lists, watches and prunes children by it."""
    REDIS_ROLE: Final = f"{API_GROUP}/redis-role"
    """`master` on the pod the sentinels agree is the master (the `<stack>-redis-master` Service selects it)."""
    POSTGRES_CLUSTER: Final = f"{API_GROUP}/postgres-cluster"
    """The Patroni scope (`<stack>-postgres`) on a Patroni cluster's pods and on the ConfigMaps Patroni writes: how
    Patroni finds its members (its `scope_label`)."""
    POSTGRES_ROLE: Final = f"{API_GROUP}/postgres-role"
    """Set by Patroni on its pods (`Patroni.LEADER_ROLE`, `Patroni.REPLICA_ROLE`; its `role_label`)."""
    JOB_NAME: Final = "batch.kubernetes.io/job-name"
    """Set by the Job controller on a Job's pods."""
    CANARY: Final = f"{API_GROUP}/canary"
    """`true` on a service's canary Deployment and its pods (a health-gated rollout, `reconcile.rollout`)."""


CANARY_SUFFIX: Final = "-canary"
"""Appended to a service's Deployment name and to the `Label.NAME` of its canary pods, so that neither the main
Deployment's selector nor the Service (both `Label.NAME: <service>`) matches them."""


MASTER_ROLE: Final = "master"
"""Value of `Label.REDIS_ROLE` on the master."""
PART_OF: Final = "quantum-trader"
MANAGED_BY: Final = "tradingstack-operator"
OPERATOR_APP_NAME: Final = "tradingstack-operator"
"""`app.kubernetes.io/name` of the operator's pods (fixed in the chart): the NetworkPolicies admit them."""


class Annotation:
    """Annotations the operator reads or writes."""

    RETAIN: Final = f"{API_GROUP}/retain"
    """On objects that hold data (claims, generated Secrets): they outlive the stack under deletionPolicy Retain."""
    CONFIG_HASH: Final = f"{API_GROUP}/config-hash"
    """On a pod template: hash of the configuration its pods run, so a changed config rolls exactly those pods."""
    APPLIED_HASH: Final = f"{API_GROUP}/applied-hash"
    """Hash of the rendered object last applied: a resync of an unchanged stack sends no write."""
    RESTARTED_AT: Final = f"{API_GROUP}/restartedAt"
    """On a service's pod template: the id of the restart run that last restarted its pods."""
    RESTART_NOW: Final = f"{API_GROUP}/restart-now"
    """On a TradingStack: each new value starts one restart run (`tradingstack restart`)."""
    APPLY_NOW: Final = f"{API_GROUP}/apply-now"
    """On a TradingStack: `<RFC 3339 UTC time>/<reason>` (`tradingstack apply-now`); for 60 minutes after that time
    maintenance counts as open. Written by `ops.apply_now`, parsed by `schedule.maintenance.parse_override`."""
    SWITCHOVER: Final = f"{API_GROUP}/switchover"
    """On a TradingStack: each new value asks for one switchover of the Patroni cluster's leader,
    `<RFC 3339 UTC time>` or `<RFC 3339 UTC time>/<member pod>` (`tradingstack postgres switchover [--to POD]`).
    Written by `format_switchover_request`, read by `parse_switchover_request`."""
    BACKUP: Final = f"{API_GROUP}/backup"
    """On restore Jobs: the backup being restored."""
    TLS_REVISION: Final = f"{API_GROUP}/tls-revision"
    """On the PostgreSQL, Redis and Sentinel pod templates (`spec.tls`): the hash of the server certificate of
    their kind (PostgreSQL's, or Redis' for the servers and the sentinels) they should serve, so that a renewed
    certificate restarts the servers of that kind only, which read it at start."""
    PGBACKREST_TLS_REVISION: Final = f"{API_GROUP}/pgbackrest-tls-revision"
    """On the PostgreSQL pod template (pitr): the hash of the pgBackRest TLS server's certificate it should serve,
    so that a renewed certificate restarts the database pod, whose `pgbackrest server` reads it at start."""
    REVISION: Final = f"{API_GROUP}/revision"
    """On a service's Deployment (and its canary's pod template): the short hash of the rendered pod template, the
    restart stamp excluded; what a health-gated rollout compares."""


class SecretKey:
    """Keys of the Secrets the operator generates once per stack."""

    PASSWORD: Final = "password"  # noqa: S105 - the name of a key, not a password
    USERNAME: Final = "username"
    DSN: Final = "dsn"
