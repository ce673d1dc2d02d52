"""The TradingStack spec: what a user asks for.

Every field has a docstring (it becomes the CRD description and the README reference). Rules the API server
can enforce itself are CEL `x-kubernetes-validations` or schema patterns; the rest (IANA time zones, cron field
values, references between fields) are checked here and reported by the operator as a Degraded condition.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, Field, field_validator, model_validator

from tradingstack.api.base import (
    DNS1035_LABEL,
    FIVE_FIELD_CRON,
    QUANTITY,
    ApiModel,
    canonical_quantity,
    cel,
    validations,
)
from tradingstack.contract import CANARY_SUFFIX, Probe

DEFAULT_RESTART_ORDER = (
    "rl-training",
    "ai-engine",
    "portfolio",
    "risk-safety",
    "monitoring-health",
    "execution",
)
"""Dependency order of the seed's services: consumers first, order execution last."""

RESERVED_SERVICE_NAMES = (
    "redis",
    "redis-sentinel",
    "redis-master",
    "postgres",
    "postgres-backup",
    "postgres-restore",
    "postgres-backup-list",
    "gateway",
)
"""Child objects of the data stores and gateway use these names; a service may not take them."""

# Env var names that hold credentials: a plain `value` for one of these is refused (use secretKeyRef).
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|DSN)", re.I)


def _check_cron(value: str) -> str:
    try:
        CronSim(value, datetime(2000, 1, 1))
    except CronSimError as err:
        raise ValueError(f"invalid cron expression {value!r}: {err}") from err
    return value


def _check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone {value!r}") from err
    if value not in available_timezones() and value != "UTC":
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


def check_cidr(value: str) -> str:
    """`value` if it is a network with its prefix length and no host bits (what an ipBlock takes), else ValueError."""
    # strict: a CIDR with host bits set (10.0.0.7/24) is refused rather than silently widened or narrowed.
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"invalid CIDR {value!r}: {err}") from err
    if "/" not in value:
        raise ValueError(f"invalid CIDR {value!r}: give the prefix length, e.g. {value}/32")
    return value


Cidr = Annotated[str, Field(min_length=1, max_length=43), AfterValidator(check_cidr)]
"""An IPv4 or IPv6 network with its prefix length, host bits zero."""
SecretName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
ServiceName = Annotated[str, Field(pattern=DNS1035_LABEL, min_length=1, max_length=24)]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=32), AfterValidator(canonical_quantity)]
"""Rendered in the API server's canonical form (`canonical_quantity`)."""
Cron = Annotated[str, Field(pattern=FIVE_FIELD_CRON, max_length=100), AfterValidator(_check_cron)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_check_time_zone)]
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = (
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
"""An image reference as the container runtimes parse it: [registry[:port]/]path[:tag][@sha256:digest]."""
Image = Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_REFERENCE)]


RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
_KNOWN_RESOURCES = validations(
    cel(
        "self.all(name, name in [" + ", ".join(f"'{n}'" for n in RESOURCE_NAMES) + "])",
        "unknown resource name; use " + ", ".join(RESOURCE_NAMES),
    )
)


class Resources(ApiModel):
    """CPU and memory for one container, as Kubernetes quantities."""

    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi"},
        max_length=len(RESOURCE_NAMES),
        json_schema_extra=_KNOWN_RESOURCES,
    )
    """Guaranteed resources (keys `cpu`, `memory`, `ephemeral-storage`; cpu and memory required). Default: 100m
    CPU, 128Mi memory."""

    limits: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "1", "memory": "512Mi"},
        max_length=len(RESOURCE_NAMES),
        json_schema_extra=_KNOWN_RESOURCES,
    )
    """Upper bounds (keys `cpu`, `memory`, `ephemeral-storage`; memory required). Default: 1 CPU, 512Mi memory."""

    @field_validator("requests", "limits")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(RESOURCE_NAMES))
        if unknown:
            raise ValueError(f"unknown resource name(s) {', '.join(unknown)}; use cpu, memory, ephemeral-storage")
        return value

    @model_validator(mode="after")
    def _scheduling_needs(self) -> Resources:
        # Requests decide where pods fit; a memory limit keeps one pod from starving its node. A CPU limit is
        # optional: it throttles rather than protects.
        missing = sorted({"cpu", "memory"} - set(self.requests))
        if missing:
            raise ValueError(f"requests: must set {' and '.join(missing)}")
        if "memory" not in self.limits:
            raise ValueError("limits: must set memory")
        return self


class SecretKeySelector(ApiModel):
    """A key of a Secret in the stack's namespace."""

    name: SecretName
    """Name of the Secret."""

    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret."""


class ConfigMapKeySelector(ApiModel):
    """A key of a ConfigMap in the stack's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """Name of the ConfigMap."""

    key: str = Field(min_length=1, max_length=253)
    """Key inside the ConfigMap."""


class EnvVarSource(ApiModel):
    """Where a variable's value comes from; exactly one of the fields."""

    secret_key_ref: SecretKeySelector | None = None
    """Take the value from a Secret (the only way to pass credentials)."""

    config_map_key_ref: ConfigMapKeySelector | None = None
    """Take the value from a ConfigMap."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "set exactly one of secretKeyRef, configMapKeyRef",
            )
        )
    }

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef")
        return self


class EnvVar(ApiModel):
    """An environment variable: a plain value, or a reference (credentials only by secretKeyRef)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    """Variable name."""

    value: str | None = Field(default=None, max_length=4096)
    """Plain value. Refused for names that look like credentials (PASSWORD, TOKEN, API_KEY, ...)."""

    value_from: EnvVarSource | None = None
    """Reference to a Secret or ConfigMap key."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.value) != has(self.valueFrom)", "set exactly one of value, valueFrom")
        )
    }

    @model_validator(mode="after")
    def _value_or_reference(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value, valueFrom")
        if self.value is not None and _SECRET_NAME.search(self.name):
            raise ValueError(f"{self.name} looks like a credential: pass it with valueFrom.secretKeyRef, not inline")
        return self


HTTP_PATH = r"^/[!-~]*$"
"""Printable ASCII without spaces: the API server (RE2) and the models (Python) agree on what it accepts."""


class HealthSpec(ApiModel):
    """How the service's health contract endpoints map to Kubernetes probes."""

    path: str = Field(default=Probe.HEALTH, pattern=HTTP_PATH, max_length=256)
    """Full health document (JSON), read by the operator for status. Default: /health."""

    live_path: str = Field(default=Probe.LIVE, pattern=HTTP_PATH, max_length=256)
    """Liveness: the process answers; never depends on dependencies. Default: /health/live."""

    ready_path: str = Field(default=Probe.READY, pattern=HTTP_PATH, max_length=256)
    """Readiness: 200 when HEALTHY (or DEGRADED if degradedIsReady), 503 otherwise. Default: /health/ready."""

    startup_seconds: int = Field(default=60, ge=5, le=3600)
    """Time a slow start (model loading) may take before liveness applies. Default: 60."""

    degraded_is_ready: bool = True
    """Keep serving traffic while DEGRADED (a dependency is down but the service copes). Default: true."""


class RouteSpec(ApiModel):
    """Gateway route to the service."""

    enabled: bool = True
    """Route gateway traffic to this service. Default: true."""

    path_prefix: str | None = Field(default=None, pattern=r"^/([A-Za-z0-9._~-]+/)*$", max_length=128)
    """URL prefix on the gateway, ending in '/'. Default: /api/<service name>/."""


class EgressPort(ApiModel):
    """One destination port of an egress allow."""

    port: int = Field(ge=1, le=65535)
    """Destination port number."""

    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """Protocol. Default: TCP."""


class EgressSpec(ApiModel):
    """An allowed destination outside the stack and the cluster, e.g. an exchange's API."""

    cidr: Cidr
    """Destination network, e.g. `203.0.113.0/24` (use /32 for one address)."""

    except_: list[Cidr] = Field(default_factory=list, alias="except", max_length=20)
    """Networks inside `cidr` that stay denied."""

    ports: list[EgressPort] = Field(min_length=1, max_length=20)
    """Destination ports (at least one: an allow of every port is refused)."""

    @model_validator(mode="after")
    def _exceptions_inside(self) -> EgressSpec:
        network = ipaddress.ip_network(self.cidr)
        for excluded in self.except_:
            inner = ipaddress.ip_network(excluded)
            if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
                raise ValueError(f"except {excluded} is not inside cidr {self.cidr}")
        return self


class RolloutSpec(ApiModel):
    """How a changed pod template is rolled out: one canary pod first, health-gated, rolled back by itself."""

    bake_seconds: int = Field(default=60, ge=0, le=3600)
    """How long the first new pod (the canary) must stay Ready and report HEALTHY in its health document before
    the rest of the service is rolled out; a non-HEALTHY answer starts the count again. Default: 60."""

    deadline_seconds: int = Field(default=600, ge=30, le=7200)
    """How long the canary has to become Ready and HEALTHY; a canary that is not by then (or that is UNHEALTHY or
    crash-loops at any time) is removed and its revision not tried again until the spec changes. Default: 600."""


CANARY_SUFFIX_RULE = cel(
    f"!self.endsWith('{CANARY_SUFFIX}')",
    f"name must not end in {CANARY_SUFFIX}: service b's canary Deployment is <stack>-b{CANARY_SUFFIX}",
)
"""Kept apart from the reserved component names: the canary of a service takes the name `<service>-canary`."""


class ServiceSpec(ApiModel):
    """One trading microservice: a Deployment, a Service, probes and a gateway route."""

    name: ServiceName = Field(
        json_schema_extra=validations(
            cel(
                "!(self in [" + ", ".join(f"'{n}'" for n in RESERVED_SERVICE_NAMES) + "])",
                "name is reserved for a component of the stack: " + ", ".join(RESERVED_SERVICE_NAMES),
            ),
            cel(
                "![" + ", ".join(f"'-{n}'" for n in RESERVED_SERVICE_NAMES) + "].exists(s, self.endsWith(s))",
                "name must not end in -<component> (" + ", ".join(RESERVED_SERVICE_NAMES) + "): "
                "stack a with service b-redis would take the name of stack a-b's Redis",
            ),
            CANARY_SUFFIX_RULE,
        )
    )
    """Service name (DNS-1035 label, at most 24 characters, unique in the stack; not one of the reserved
    component names redis, redis-sentinel, redis-master, postgres, postgres-backup, postgres-restore,
    postgres-backup-list, gateway, nor ending in `-` and one of them, which would collide with another stack's
    component)."""

    image: Image
    """Container image of the service."""

    port: int = Field(ge=1024, le=65535)
    """HTTP port the service listens on (unprivileged, >= 1024); also serves the health endpoints."""

    replicas: int = Field(default=1, ge=0, le=100)
    """Number of pods. Default: 1. A PodDisruptionBudget is rendered when above 1."""

    env: list[EnvVar] = Field(default_factory=list, max_length=100)
    """Environment variables. Credentials only via valueFrom.secretKeyRef."""

    resources: Resources = Field(default_factory=Resources)
    """CPU and memory requests and limits."""

    health: HealthSpec = Field(default_factory=HealthSpec)
    """Health contract endpoints and probe mapping."""

    route: RouteSpec = Field(default_factory=RouteSpec)
    """Gateway route."""

    uses: list[Literal["redis", "postgres"]] = Field(default_factory=list, max_length=2)
    """Data stores the service connects to; the operator injects their connection settings as env vars."""

    egress: list[EgressSpec] = Field(default_factory=list, max_length=20)
    """Destinations outside the cluster the service may connect to (NetworkPolicy egress allows); nothing else
    outside the stack is reachable. Cut while the stack is halted, for haltable services."""

    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    """Health-gated rollout of a changed pod template (canary, bake, automatic rollback)."""

    haltable: bool = False
    """Stopped by the kill switch: while the stack is halted (`spec.halt`), scaled to zero (each pod gets its
    normal termination grace period, so it can cancel open orders on SIGTERM) and its pods' egress cut by the
    NetworkPolicy `<stack>-halt`; e.g. order execution. Default: false."""

    disruptive: bool = True
    """A rollout of a changed pod template starts only while maintenance is open (`spec.maintenance`: inside a
    window, outside every freeze, or overridden with `tradingstack apply-now`); until then the new revision is
    listed in status.maintenance.pending and the Deployment keeps its template. A rollout that has started goes
    on when the window closes. False: rollouts start at once. Default: true."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_SERVICE_NAMES:
            raise ValueError(f"{value!r} is reserved for a component of the stack")
        if any(value.endswith(f"-{reserved}") for reserved in RESERVED_SERVICE_NAMES):
            raise ValueError(f"{value!r} ends in -<component>, which would collide with another stack's component")
        if value.endswith(CANARY_SUFFIX):
            raise ValueError(f"{value!r} ends in {CANARY_SUFFIX}, which would collide with a service's canary")
        return value

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        names = [v.name for v in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate env var(s) {', '.join(duplicates)}")
        return value

    @property
    def route_prefix(self) -> str:
        return self.route.path_prefix or f"/api/{self.name}/"


class StorageSpec(ApiModel):
    """A persistent volume claim."""

    size: Quantity = "1Gi"
    """Requested size. Immutable once the stack exists, also by leaving it out (which means the default)."""

    storage_class_name: str | None = Field(default=None, max_length=253)
    """Storage class; the cluster default when unset."""


REDIS_IMAGE = "ghcr.io/quantumtrader/tradingstack-redis:0.1.0"
"""The project's Redis image (images/redis): Redis, Sentinel and redis_exporter from Debian."""
POSTGRES_IMAGE = "ghcr.io/quantumtrader/tradingstack-postgres:0.1.0-pg15"
"""The project's PostgreSQL image (images/postgres): PostgreSQL 15 and postgres_exporter from Debian."""


def _exporter_resources() -> Resources:
    # An exporter only turns INFO or a few catalogue queries into text: a small fixed budget.
    return Resources(requests={"cpu": "10m", "memory": "32Mi"}, limits={"cpu": "200m", "memory": "128Mi"})


class RedisMetricsSpec(ApiModel):
    """An opt-in redis_exporter sidecar in each Redis server pod (not in the sentinels), serving Prometheus metrics
    of its server on the port `metrics` (9121, path /metrics) of the pod and of the Service `<stack>-redis`."""

    enabled: bool = False
    """Run the exporter. Changing it rolls the Redis pods. Default: false."""

    image: Image = REDIS_IMAGE
    """Exporter image: any image with Debian's `prometheus-redis-exporter` (redis_exporter, configured by
    environment) on PATH. Default: the project's Redis image, also when `redis.image` is another one (e.g. the
    official redis)."""

    resources: Resources = Field(default_factory=_exporter_resources)
    """Resources of the exporter container. Default: 10m CPU, 32Mi memory; limits 200m CPU, 128Mi memory."""


class PostgresMetricsSpec(ApiModel):
    """An opt-in postgres_exporter sidecar in the PostgreSQL pod, serving Prometheus metrics of the server on the
    port `metrics` (9187, path /metrics) of the pod and of the Service `<stack>-postgres`."""

    enabled: bool = False
    """Run the exporter. Changing it restarts the PostgreSQL pod. Default: false."""

    image: Image = POSTGRES_IMAGE
    """Exporter image: any image with Debian's `prometheus-postgres-exporter` (postgres_exporter, configured by
    environment) on PATH. Default: the project's PostgreSQL image, also when `postgres.image` is another one
    (e.g. the official postgres)."""

    resources: Resources = Field(default_factory=_exporter_resources)
    """Resources of the exporter container. Default: 10m CPU, 32Mi memory; limits 200m CPU, 128Mi memory."""


class RedisSpec(ApiModel):
    """Redis with Sentinel: one master, replicas, and sentinels that fail over."""

    enabled: bool = True
    """Deploy Redis. Default: true."""

    image: Image = REDIS_IMAGE
    """Redis image (also runs the sentinels): any image with redis-server, redis-sentinel, redis-cli and sh on
    PATH (the pods run the operator's own start scripts), e.g. the official redis:7.4. Default: the project's
    image (images/redis, Redis from Debian)."""

    replicas: int = Field(default=3, ge=1, le=9)
    """Redis pods (one master, the rest replicas). Default: 3."""

    existing_secret: SecretName | None = None
    """A Secret of yours, in the stack's namespace, holding the Redis and Sentinel password under the key
    `password`: used instead of the generated `<stack>-redis`, and never changed or deleted by the operator.
    Without it the operator generates `<stack>-redis` once; an object of that name it did not create is a
    NameConflict, never taken as the password."""

    sentinels: int = Field(default=3, ge=1, le=9)
    """Sentinel processes (odd numbers avoid split votes). Default: 3."""

    quorum: int = Field(default=2, ge=1, le=9)
    """Sentinels that must agree the master is down. At most `sentinels`. Default: 2."""

    master_name: str = Field(default="tradingstack", pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    """Name of the monitored master in Sentinel. Default: tradingstack."""

    down_after_milliseconds: int = Field(default=5000, ge=2000, le=600000)
    """Time without answers before a sentinel considers the master down. At least 2000: lower values caused
    spurious second failovers that lost writes. Default: 5000."""

    failover_timeout_milliseconds: int = Field(default=60000, ge=1000, le=3600000)
    """Sentinel failover-timeout. Default: 60000."""

    parallel_syncs: int = Field(default=1, ge=1, le=8)
    """Replicas resynchronised at once after a failover. Default: 1."""

    min_replicas_to_write: int = Field(default=1, ge=0, le=8)
    """The master refuses writes unless this many replicas are connected (limits loss on a split). Less than
    `replicas`. Default: 1."""

    min_replicas_max_lag_seconds: int = Field(default=10, ge=1, le=3600)
    """Replica lag, in seconds, still counted as connected for minReplicasToWrite. Default: 10."""

    storage: StorageSpec = Field(default_factory=StorageSpec)
    """Persistent volume of each Redis pod."""

    resources: Resources = Field(default_factory=Resources)
    """Resources of each Redis container."""

    metrics: RedisMetricsSpec = Field(default_factory=RedisMetricsSpec)
    """Prometheus metrics of the Redis servers (an exporter sidecar; off by default)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "(has(self.quorum) ? self.quorum : 2) <= (has(self.sentinels) ? self.sentinels : 3)",
                "quorum must be <= sentinels (quorum defaults to 2, sentinels to 3)",
                fieldPath=".quorum",
            ),
            cel(
                "(has(self.minReplicasToWrite) ? self.minReplicasToWrite : 1)"
                " < (has(self.replicas) ? self.replicas : 3)"
                " || (has(self.minReplicasToWrite) && self.minReplicasToWrite == 0)",
                "minReplicasToWrite must be less than replicas (or 0)",
                fieldPath=".minReplicasToWrite",
            ),
        )
    }

    @model_validator(mode="after")
    def _consistent(self) -> RedisSpec:
        if self.quorum > self.sentinels:
            raise ValueError(f"quorum: must be <= sentinels ({self.sentinels})")
        if self.min_replicas_to_write and self.min_replicas_to_write >= self.replicas:
            raise ValueError(f"minReplicasToWrite: must be less than replicas ({self.replicas}) or 0")
        return self


class BackupSpec(ApiModel):
    """Scheduled pg_dump backups to a volume, with retention and verification."""

    enabled: bool = True
    """Run scheduled backups. Default: true."""

    schedule: Cron = "0 2 * * *"
    """Five-field cron schedule. Default: 0 2 * * *."""

    time_zone: TimeZone = "UTC"
    """IANA time zone of the schedule. Default: UTC."""

    keep_last: int = Field(default=7, ge=1, le=365)
    """Backups kept; the newest verified backup is never deleted. Default: 7."""

    verify: bool = True
    """Check each archive (readable, checksum matches). Default: true."""

    verify_restore: bool = False
    """Also restore each backup into a scratch database to prove it. Default: false."""

    storage: StorageSpec = Field(default_factory=lambda: StorageSpec(size="20Gi"))
    """Volume holding the archives. Kept on stack deletion unless deletionPolicy is Delete."""


class RestoreSpec(ApiModel):
    """Bootstrap a new database from a backup."""

    from_: str = Field(
        default="latest", alias="from", pattern=r"^(latest|[A-Za-z0-9][A-Za-z0-9._-]*)$", min_length=1, max_length=128
    )
    """`latest`, or the name of a pg_dump backup (see `tradingstack backup list`). With `pitr.enabled`, `latest`
    means the pgBackRest repository: the newest base backup, then every archived WAL segment (or up to
    `targetTime`); a named backup is still a pg_dump archive of the backup volume. Default: latest."""

    target_time: datetime | None = None
    """Recover to this moment (RFC 3339 date-time with a time zone, e.g. 2026-12-01T09:30:00Z): the last commit
    before it is the restored state, then the server promotes itself. Needs `pitr.enabled` and `from: latest`.
    Unset: recover to the end of the archive."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.targetTime) || !has(self.from) || self.from == 'latest'",
                "targetTime recovers from the pgBackRest repository: from must be latest",
            )
        )
    }

    @field_validator("target_time")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("targetTime needs a time zone (e.g. Z)")
        return value

    @model_validator(mode="after")
    def _latest_only(self) -> RestoreSpec:
        if self.target_time is not None and self.from_ != "latest":
            raise ValueError("targetTime recovers from the pgBackRest repository: from must be latest")
        return self


S3_HOST = r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?\.)*[A-Za-z]([-A-Za-z0-9]*[A-Za-z0-9])?$"
"""A DNS name whose last label starts with a letter, so never an IP address: pgBackRest 2.45 matches the server
certificate against DNS names only."""


class SecretKeyRef(ApiModel):
    """One key of a Secret of yours in the stack's namespace."""

    name: SecretName
    """The Secret's name."""

    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", min_length=1, max_length=253)
    """The key within it."""


class PitrS3Spec(ApiModel):
    """repo2: an S3-compatible bucket, a copy of every backup and WAL segment off the cluster."""

    endpoint: str = Field(pattern=S3_HOST, max_length=253)
    """The S3 server's host name, without scheme or port (e.g. s3.eu-west-1.amazonaws.com). An IP address is
    refused: pgBackRest checks the certificate by DNS name only."""

    port: int = Field(default=443, ge=1, le=65535)
    """The S3 server's HTTPS port. Default: 443."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """The bucket (it must exist)."""

    region: str = Field(default="us-east-1", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    """The region signed into requests (any value a self-hosted server accepts). Default: us-east-1."""

    path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9._/-]*$", max_length=512)
    """The repository's directory in the bucket. Default: /pgbackrest/<namespace>/<stack>, so stacks sharing a
    bucket never share a repository; a stack re-created under the same name finds its repository again."""

    uri_style: Literal["host", "path"] = "host"
    """`host` (bucket.endpoint, AWS) or `path` (endpoint/bucket, most self-hosted servers). Default: host."""

    verify_tls: bool = True
    """Check the server's certificate. Default: true."""

    ca_secret: SecretKeyRef | None = None
    """The CA that signed the server's certificate (PEM), when it is not a public one. Unset: the system CAs."""

    access_key_id: SecretKeyRef
    """The access key id."""

    secret_access_key: SecretKeyRef
    """The secret access key."""

    egress: list[EgressSpec] = Field(default_factory=list, max_length=20)
    """The networks and ports the S3 server answers on, as the NetworkPolicies need them (every pod of a stack is
    under a default deny): the PostgreSQL pod (archive-push, restore) and the backup Jobs may connect there.
    Without an entry they cannot reach the bucket. Default: none."""


class PitrSpec(ApiModel):
    """Point-in-time recovery with pgBackRest: WAL archived continuously, full and differential base backups on
    schedules, restore to any moment of the archive. Needs pgBackRest 2.45 (PostgreSQL 15) in `postgres.image`
    and in the backup image (both of the project's images have it). The pg_dump backups (`backup`) stay as the
    portable copy."""

    enabled: bool = False
    """Archive WAL and take pgBackRest backups. Enabling it restarts the PostgreSQL pod (archive_mode needs a
    restart). Needs `volume` or `s3`. Default: false."""

    archive_timeout_seconds: int = Field(default=60, ge=10, le=3600)
    """The server ships a partly filled WAL segment after this long: the recovery point objective when the data
    volume is lost while writes are steady. Each shipped segment takes 16 MiB of repository before compression.
    Default: 60."""

    full_schedule: Cron = "0 1 * * 0"
    """Five-field cron schedule of full backups. Default: 0 1 * * 0 (Sundays at 01:00)."""

    diff_schedule: Cron | None = "0 1 * * 1-6"
    """Schedule of differential backups (changes since the last full one), or null for none. Default:
    0 1 * * 1-6 (the other days at 01:00)."""

    time_zone: TimeZone = "UTC"
    """IANA time zone of both schedules. Default: UTC."""

    retention_full: int = Field(default=2, ge=1, le=100)
    """Full backups kept in each repository; pgBackRest expires older ones, their differential backups and the
    WAL only they need. The recoverable window starts at the oldest kept full backup. Default: 2."""

    volume: bool = True
    """repo1: a posix repository in the directory `pgbackrest` of the backup volume (`backup.storage`, shared
    with the pg_dump archives: size it for both, the base backups kept by `retentionFull` and the WAL between
    them). The backup Jobs, the pg_dump ones included, then run on the database pod's node (the volume is
    ReadWriteOnce and the database pod mounts it too). Default: true."""

    s3: PitrS3Spec | None = None
    """repo2: an S3 bucket. Unset: none."""

    encrypt: bool = True
    """Encrypt the repositories (aes-256-cbc) with a passphrase the operator generates once into the Secret
    `<stack>-pgbackrest` (key `cipher-pass`), kept like the other generated Secrets and never rotated: losing
    it loses the backups. Cannot change while pitr is enabled (the API server refuses it). Default: true."""

    process_max: int = Field(default=2, ge=1, le=16)
    """pgBackRest processes of a backup (`process-max`, also that of async WAL archiving and of verify): each
    reads, checksums and compresses its share of the files. The database pod's `pgbackrest` sidecar, where a
    backup Job's processes read the data directory, gets this many CPUs as its limit. A full backup of pgbench
    scale 70 (1 GB) on 2 shared cores took 6.8 s with 2 against 12.1 s with 1. pgBackRest's guide advises at
    most a quarter of the node's CPUs for backups, which run while the database serves. Default: 2."""

    restore_process_max: int = Field(default=4, ge=1, le=32)
    """pgBackRest processes of a restore (the init container of `restore`, with the server container's
    resources): the database is down then, and each process also waits on the sync of the files it writes, so
    more processes than CPUs still help. On 2 shared cores, 4 wrote pgbench scale 70 (1 GB) back in 3.0 to
    3.7 s against 4.0 to 5.3 s with 2; 8 did no better than 4. Default: 4."""

    compress_type: Literal["lz4", "zst", "gz", "none"] = "lz4"
    """Compression of base backups and archived WAL (`compress-type`, at pgBackRest's default level). A full
    backup of pgbench scale 70 (1 GB) on 2 shared cores, 2 processes: `lz4` the fastest (121 MB); `zst` about
    1.2 times lz4's time for 51 MB; `gz`, pgBackRest's own default, 4 to 5 times lz4's time (61 MB); `none`
    about twice lz4's time, writing every byte (1 GB). A change applies to files written afterwards (a
    repository may hold several types). Default: lz4."""

    archive_push_queue_max: Quantity = "4Gi"
    """WAL waiting to be shipped past which pgBackRest gives up on it (drops it and reports success), so that
    an unreachable repository cannot fill the data volume and stop the database. The price is a gap in the
    archive: no point-in-time recovery across it until the next full backup. Keep it well below the data
    volume's free space. Default: 4Gi."""

    archive_lag_threshold_seconds: int = Field(default=300, ge=30, le=86400)
    """The archive is reported lagging (the BackupHealthy condition) when the newest archived WAL is older than
    this while the server writes. Default: 300."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.enabled) || !self.enabled || !has(self.volume) || self.volume || has(self.s3)",
                "pitr needs a repository: volume, s3 or both",
            )
        )
    }

    @model_validator(mode="after")
    def _a_repository(self) -> PitrSpec:
        if self.enabled and not self.volume and self.s3 is None:
            raise ValueError("pitr needs a repository: volume, s3 or both")
        return self


_CLUSTER = "(has(self.instances) && self.instances > 1)"
_PITR = "(has(self.pitr) && has(self.pitr.enabled) && self.pitr.enabled)"
PITR_CLUSTER_REPOSITORY = (
    "pitr with instances above 1 needs volume: false and s3: every member archives, and the backup volume "
    "(ReadWriteOnce) follows one pod"
)


class PostgresSpec(ApiModel):
    """PostgreSQL: one primary (or a Patroni cluster of `instances`) with persistent volumes, generated credentials
    and backups."""

    enabled: bool = True
    """Deploy PostgreSQL. Default: true."""

    image: Image = POSTGRES_IMAGE
    """PostgreSQL image on the official postgres images' environment contract (PGDATA, POSTGRES_USER,
    POSTGRES_PASSWORD, POSTGRES_DB) with pg_isready on PATH. Its major version must be the backup image's
    (15). With `pitr.enabled` it must also have `pgbackrest` (2.45, e.g. Debian bookworm's), `psql` and `sh` on
    PATH: the server archives with it and the pgbackrest sidecar and restore init container run it; the official
    postgres images lack it. With `instances` above 1 it must have `patroni` (3.0, e.g. Debian bookworm's) on
    PATH and the server binaries in /usr/lib/postgresql/15/bin. Default: the project's image (images/postgres,
    PostgreSQL 15, pgBackRest 2.45 and Patroni 3.0 from Debian)."""

    database: str = Field(default="trading", pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)
    """Database created for the services. Default: trading."""

    user: str = Field(default="trading", pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)
    """Role the services connect as; its password is generated into a Secret. Default: trading."""

    existing_secret: SecretName | None = None
    """A Secret of yours, in the stack's namespace, with the keys `username` (the role above), `password` and
    `dsn` (`postgresql://user:password@host:5432/database`): used instead of the generated `<stack>-postgres`,
    and never changed or deleted by the operator. Without it the operator generates `<stack>-postgres` once; an
    object of that name it did not create is a NameConflict, never taken as the credentials."""

    storage: StorageSpec = Field(default_factory=lambda: StorageSpec(size="10Gi"))
    """Data volume."""

    resources: Resources = Field(default_factory=Resources)
    """Resources of the PostgreSQL container."""

    backup: BackupSpec = Field(default_factory=BackupSpec)
    """Backup schedule, retention and verification."""

    restore: RestoreSpec | None = None
    """Bootstrap the database from a backup when it is first created."""

    metrics: PostgresMetricsSpec = Field(default_factory=PostgresMetricsSpec)
    """Prometheus metrics of the server (an exporter sidecar; off by default)."""

    pitr: PitrSpec = Field(default_factory=PitrSpec)
    """Point-in-time recovery with pgBackRest (off by default). With `instances` above 1 the leader archives and
    the backup Jobs back up the leader through the read-write Service; after a failover the new leader archives
    on its new timeline, and a member pushes what its server left unarchived before Patroni starts it. That needs
    an S3 repository only (`volume: false`). A `restore` from the repository bootstraps the first member (Patroni's
    custom bootstrap); the others copy it as replicas."""

    instances: int = Field(default=1, ge=1, le=5)
    """Database pods. 1: one PostgreSQL server, as always. 2 to 5: a Patroni cluster: one leader and streaming
    replicas, the leader lock kept in ConfigMaps of the stack's namespace (`<stack>-postgres-leader`, `-config`,
    `-sync`), automatic failover when the leader is lost (within about `ttl` 30 s), the Service `<stack>-postgres`
    (and the Secret's `dsn`) on the leader and `<stack>-postgres-replicas` on the replicas (read-only). Replicas
    connect with the Secret's credentials (the stack's role is the server's superuser). With more than 1: `pitr`
    with an S3 repository only; a `restore` from a pg_dump backup runs as today, through the Service on the leader.
    Changing 1 to more on an existing stack restarts the pod under Patroni, which adopts an existing data directory
    as the leader's (Patroni's takeover of a running cluster; not yet exercised on real pods). Default: 1."""

    synchronous: bool = False
    """Patroni's synchronous_mode (needs `instances` of 2 or more): a commit is acknowledged only once a replica
    has it too, so an acknowledged commit survives the loss of the leader; commits wait for the replica's round
    trip. When no replica is in sync the leader goes on alone (not synchronous_mode_strict, which would stop all
    writes until a replica is back): availability is kept, and for that time a commit lives on the leader only.
    Default: false."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.restore) || !has(self.restore.targetTime) || "
                "(has(self.pitr) && has(self.pitr.enabled) && self.pitr.enabled)",
                "restore.targetTime needs pitr.enabled",
            ),
            cel(
                "!has(self.synchronous) || !self.synchronous || (has(self.instances) && self.instances >= 2)",
                "synchronous needs instances of 2 or more",
            ),
            cel(
                f"!{_CLUSTER} || !{_PITR} || (has(self.pitr.volume) && !self.pitr.volume)",
                PITR_CLUSTER_REPOSITORY,
            ),
        )
    }

    @model_validator(mode="after")
    def _pitr_restore(self) -> PostgresSpec:
        if self.restore is not None and self.restore.target_time is not None and not self.pitr.enabled:
            raise ValueError("restore.targetTime needs pitr.enabled")
        return self

    @model_validator(mode="after")
    def _cluster(self) -> PostgresSpec:
        if self.synchronous and self.instances < 2:
            raise ValueError("synchronous needs instances of 2 or more")
        if self.instances > 1 and self.pitr.enabled and self.pitr.volume:
            raise ValueError(PITR_CLUSTER_REPOSITORY)
        return self

    @property
    def patroni(self) -> bool:
        """The database runs as a Patroni cluster (more than one instance)."""
        return self.instances > 1

    @property
    def restores_from_pgbackrest(self) -> bool:
        """The bootstrap restore reads the pgBackRest repository (rather than a pg_dump archive)."""
        return self.pitr.enabled and self.restore is not None and self.restore.from_ == "latest"


class RateLimitSpec(ApiModel):
    """Per-client-address request rate limit of the gateway."""

    requests_per_second: int = Field(default=50, ge=1, le=100000)
    """Sustained rate per client address. Default: 50."""

    burst: int = Field(default=100, ge=0, le=100000)
    """Requests above the rate accepted at once before 429. Default: 100."""


class GatewaySpec(ApiModel):
    """The NGINX gateway in front of the services."""

    enabled: bool = True
    """Deploy the gateway. Default: true."""

    image: Image = "ghcr.io/quantumtrader/tradingstack-nginx:0.1.0"
    """NGINX image with `nginx` on PATH and the limit_req module; runs as uid 101 with the rendered
    configuration, e.g. nginxinc/nginx-unprivileged. Default: the project's image (images/nginx)."""

    replicas: int = Field(default=2, ge=0, le=20)
    """Gateway pods. Default: 2."""

    port: int = Field(default=8080, ge=1024, le=65535)
    """Port NGINX listens on. Default: 8080."""

    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    """Rate limit applied to every route."""

    resources: Resources = Field(default_factory=Resources)
    """Resources of the gateway container."""


class RestartsSpec(ApiModel):
    """Daily rolling restarts carried out by the operator, one service at a time."""

    enabled: bool = True
    """Carry out scheduled restarts. Default: true."""

    schedule: Cron = "30 4 * * *"
    """Five-field cron schedule in timeZone. Default: 30 4 * * *."""

    time_zone: TimeZone = "UTC"
    """IANA time zone of the schedule (DST handled: a run happens once a day). Default: UTC."""

    window_minutes: int = Field(default=60, ge=1, le=1440)
    """How long after the scheduled time a missed run may still start (one catch-up at most). Default: 60."""

    order: list[ServiceName] = Field(default_factory=list, max_length=50)
    """Order of restarts. Services not listed follow in the default dependency order, then by name."""

    exclude: list[ServiceName] = Field(default_factory=list, max_length=50)
    """Services never restarted by the schedule."""

    skip_when_degraded: bool = True
    """Skip (with an Event) a run that would start while the stack is Degraded. Default: true."""

    suspend_until: datetime | None = None
    """No scheduled run starts before this time (RFC 3339)."""

    service_ready_timeout_seconds: int = Field(default=600, ge=30, le=7200)
    """How long one service may take to roll out and become ready before the run stops as Failed."""


MAX_MAINTENANCE_WINDOWS = 20
"""At most this many windows: each is a cron iteration per planning step, and CEL's cost is bounded by it."""
MAX_FREEZES = 50
"""At most this many freezes (bounds the CEL cost of the end > start rule and each step's search)."""


def _utc(moment: datetime) -> datetime:
    """A naive datetime (RFC 3339 without an offset) is taken as UTC, as everywhere in the operator."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class MaintenanceWindow(ApiModel):
    """A recurring change window: opens at each time of `schedule` in `timeZone` and stays open for
    `durationMinutes` of real time (a window crossing a DST change still lasts that many minutes)."""

    schedule: Cron
    """Five-field cron schedule of the opening time, read on the wall clock of timeZone (DST as for the restarts:
    a time skipped by spring-forward opens at the end of the gap, a repeated one opens once)."""

    duration_minutes: int = Field(ge=1, le=1440)
    """How long each window stays open, in minutes of real time (1 to 1440): open from the opening time
    included to opening + duration excluded."""

    time_zone: TimeZone = "UTC"
    """IANA time zone of the schedule. Default: UTC."""


class Freeze(ApiModel):
    """An absolute period in which nothing disruptive starts (a change freeze), with the reason people see."""

    start: datetime
    """When the freeze begins (RFC 3339; included)."""

    end: datetime
    """When the freeze ends (RFC 3339; excluded). Later than start."""

    reason: str = Field(min_length=1, max_length=256)
    """Why (shown in status, Events and skipped-run messages), e.g. `year-end close`."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(cel("self.end > self.start", "end must be later than start"))
    }

    @model_validator(mode="after")
    def _end_after_start(self) -> Freeze:
        if _utc(self.end) <= _utc(self.start):
            raise ValueError("end: must be later than start")
        return self


class MaintenanceSpec(ApiModel):
    """When disruptive actions may start: inside a window and outside every freeze. Without windows maintenance
    is open at all times except during freezes. Gates the daily restarts (not yet rollouts or data-store
    template changes)."""

    windows: list[MaintenanceWindow] = Field(default_factory=list, max_length=MAX_MAINTENANCE_WINDOWS)
    """Recurring windows; maintenance is open while any one is. Empty (the default): always open unless frozen."""

    freezes: list[Freeze] = Field(default_factory=list, max_length=MAX_FREEZES)
    """Absolute periods in which maintenance is closed, windows or not."""


class HaltSpec(ApiModel):
    """The kill switch: present means halted (`tradingstack halt`); removing it resumes (`tradingstack resume`)."""

    reason: str = Field(min_length=1, max_length=1024)
    """Why the stack is halted; shown in status.halt, the Halted condition and the Halted Event."""

    requested_by: str | None = Field(default=None, max_length=256)
    """Who halted it: `tradingstack halt` sets `--requested-by`, else the caller's user name as the API server
    knows it, else the kubeconfig user, else $USER."""


STORAGE_DEFAULTS = {
    ("redis", "storage"): "1Gi",
    ("postgres", "storage"): "10Gi",
    ("postgres", "backup", "storage"): "20Gi",
}
"""Each volume's size when the spec leaves it out (the models' defaults; a drift test compares them)."""


def _effective(root: str, path: tuple[str, ...], default: str) -> str:
    """CEL for the size a volume has: the spec's value, or the default when it (or a parent) is left out, so that
    removing `size` and then setting another value is still a change of size."""
    steps = [root + "".join(f".{p}" for p in path[: i + 1]) for i in range(len(path))] + [
        root + "".join(f".{p}" for p in path) + ".size"
    ]
    present = " && ".join(f"has({step})" for step in steps)
    return f"({present} ? {steps[-1]} : '{default}')"


def _pitr_on(root: str) -> str:
    """CEL: pitr is enabled in `root` (self or oldSelf)."""
    return f"(has({root}.postgres) && has({root}.postgres.pitr) && has({root}.postgres.pitr.enabled) && " \
        f"{root}.postgres.pitr.enabled)"  # fmt: skip


def _tls_on(root: str) -> str:
    """CEL: `tls.enabled` in `root` (default false)."""
    return f"(has({root}.tls) && has({root}.tls.enabled) && {root}.tls.enabled)"


def _postgres_on(root: str) -> str:
    """CEL: `postgres.enabled` in `root` (default true)."""
    return f"(!has({root}.postgres) || !has({root}.postgres.enabled) || {root}.postgres.enabled)"


def _secret_issuer(root: str) -> str:
    """CEL: `tls.issuer` in `root` is `secret` (default generated)."""
    return f"(has({root}.tls) && has({root}.tls.issuer) && {root}.tls.issuer == 'secret')"


def _redis_on(root: str) -> str:
    """CEL: `redis.enabled` in `root` (default true)."""
    return f"(!has({root}.redis) || !has({root}.redis.enabled) || {root}.redis.enabled)"


def _encrypts(root: str) -> str:
    """CEL: the effective `encrypt` of `root`'s pitr (default true)."""
    return f"(has({root}.postgres.pitr.encrypt) ? {root}.postgres.pitr.encrypt : true)"


class TlsSpec(ApiModel):
    """Encryption in transit (opt-in): PostgreSQL serves TLS only (`hostssl`, plain TCP refused except from the
    pod itself) and the services get `sslmode=verify-full` with the stack's CA; the Redis servers and the sentinels
    serve TLS only (no plaintext port; replication and the sentinels' links over TLS too) and their clients verify
    them against the stack's CA and by host name, authenticating with the password as before. Not yet a Patroni
    cluster (`postgres.instances` 1 only).

    Each server kind serves its own certificate from its own Secret, mounted only into its own pods (a Redis pod
    never holds PostgreSQL's private key, nor the reverse); the clients get the CA certificates alone. PostgreSQL's
    names the PostgreSQL Service (`<stack>-postgres`, `.<namespace>`, `.svc`, `.svc.<cluster domain>`). Redis'
    (served by the Redis servers and the sentinels) names `*.<stack>-redis.<namespace>.svc.<cluster domain>`,
    `*.<stack>-redis-sentinel.<namespace>.svc.<cluster domain>` (the pods, as the sentinels announce them) and the
    Services `<stack>-redis` and `<stack>-redis-master` by the same four names."""

    enabled: bool = False
    """Serve TLS. Enabling or disabling it restarts the servers and the services that use them; with Redis enabled
    it is fixed once the stack exists (TLS and plaintext Redis pods cannot reach each other during the roll), so
    create a new stack and restore its database from a backup. Default: false."""

    issuer: Literal["generated", "secret"] = "generated"
    """`generated`: the operator makes a CA per stack (kept in the Secret `<stack>-tls-ca`, created once, kept like
    the other generated Secrets) and issues PostgreSQL's certificate into `<stack>-postgres-tls` and Redis' into
    `<stack>-redis-tls`, each renewed before it expires. `secret`: your Secrets `postgresSecretName` and
    `redisSecretName` (with cert-manager, one Certificate per server kind; each Certificate's Secret fits).
    Default: generated."""

    postgres_secret_name: SecretName | None = None
    """With issuer `secret` and PostgreSQL enabled (then required): PostgreSQL's Secret, of the stack's namespace,
    with the keys `tls.crt` (the server certificate, its chain after it), `tls.key` and `ca.crt` (the CA its
    clients trust), as cert-manager writes them. Its certificate must name the PostgreSQL Service's names listed
    under `tls`. Mounted only into the PostgreSQL pod (the clients get `ca.crt` alone). Renewing it (cert-manager
    does) restarts PostgreSQL."""

    redis_secret_name: SecretName | None = None
    """With issuer `secret` and Redis enabled (then required): the Redis servers' and sentinels' Secret, with the
    same keys, another than `postgresSecretName`. Its certificate must name the Redis names listed under `tls`.
    Mounted only into the Redis and Sentinel pods. Renewing it restarts them, one pod at a time."""

    validity_days: int = Field(default=90, ge=7, le=3650)
    """With issuer `generated`: how long an issued server certificate (each kind's) is valid. The CA is valid ten
    years.
    Default: 90."""

    renew_before_days: int = Field(default=30, ge=1, le=3649)
    """With issuer `generated`: a server certificate is issued anew (same CA, new key) when fewer days than this
    remain; only the servers using it (PostgreSQL; or the Redis servers and the sentinels) restart to load it, held
    like any change of theirs until maintenance is open. Less than validityDays. Default: 30."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.postgresSecretName) || !has(self.redisSecretName) || "
                "self.postgresSecretName != self.redisSecretName",
                "postgresSecretName and redisSecretName must differ: each server kind holds only its own key",
            ),
            cel(
                "(has(self.renewBeforeDays) ? self.renewBeforeDays : 30) < "
                "(has(self.validityDays) ? self.validityDays : 90)",
                "renewBeforeDays must be less than validityDays",
            ),
        )
    }

    @model_validator(mode="after")
    def _consistent(self) -> TlsSpec:
        if self.postgres_secret_name is not None and self.postgres_secret_name == self.redis_secret_name:
            raise ValueError(
                "postgresSecretName and redisSecretName must differ: each server kind holds only its own key"
            )
        if self.renew_before_days >= self.validity_days:
            raise ValueError("renewBeforeDays must be less than validityDays")
        return self

    @property
    def generated(self) -> bool:
        """The operator issues the certificates itself."""
        return self.enabled and self.issuer == "generated"


class TradingStackSpec(ApiModel):
    """A Quantum Trader stack: services, Redis Sentinel, PostgreSQL with backups, gateway, daily restarts."""

    services: list[ServiceSpec] = Field(
        default_factory=list,
        max_length=50,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The trading microservices."""

    redis: RedisSpec = Field(default_factory=RedisSpec)
    """Redis with Sentinel."""

    postgres: PostgresSpec = Field(default_factory=PostgresSpec)
    """PostgreSQL with backups."""

    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    """NGINX gateway."""

    restarts: RestartsSpec = Field(default_factory=RestartsSpec)
    """Daily restarts."""

    maintenance: MaintenanceSpec = Field(default_factory=MaintenanceSpec)
    """Change windows and freezes: when disruptive actions (for now the daily restarts) may start."""

    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to volumes and backups when the stack is deleted. Retain keeps them. Default: Retain."""

    halt: HaltSpec | None = None
    """Kill switch. While set, every service with `haltable: true` is scaled to zero and its egress is cut; the
    data stores, the gateway and the other services keep running; restart runs are held. Unset: not halted."""

    tls: TlsSpec = Field(default_factory=TlsSpec)
    """Encryption in transit (off by default): PostgreSQL accepts TLS connections only (plain TCP from its own pod
    aside), the services connect with `sslmode=verify-full` and the stack's CA; Redis and Sentinel listen with TLS
    only and their clients verify the stack's CA and the host name. Needs `postgres.instances` 1."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            *(
                cel(
                    f"{_effective('self', path, default)} == {_effective('oldSelf', path, default)}",
                    f"{'.'.join(path)}.size is immutable (volume claim templates cannot change); "
                    f"leaving it out means {default}",
                )
                for path, default in STORAGE_DEFAULTS.items()
            ),
            cel(
                f"!{_pitr_on('oldSelf')} || !{_pitr_on('self')} || {_encrypts('self')} == {_encrypts('oldSelf')}",
                "postgres.pitr.encrypt cannot change while pitr is enabled: the repositories' backups and WAL are "
                "encrypted (or not) for good",
            ),
            cel(
                f"!{_redis_on('self')} || !{_redis_on('oldSelf')} || {_tls_on('self')} == {_tls_on('oldSelf')}",
                "tls.enabled cannot change while Redis runs: during the roll TLS and plaintext servers and sentinels "
                "cannot reach each other (no quorum, no safe failover); create a new stack with the other setting "
                "and restore its database from a backup",
            ),
            cel(
                "!has(self.tls) || !has(self.tls.enabled) || !self.tls.enabled || !has(self.postgres) || "
                "!has(self.postgres.instances) || self.postgres.instances == 1",
                "tls needs postgres.instances 1 (not yet with a Patroni cluster)",
            ),
            cel(
                f"!{_secret_issuer('self')} || !{_postgres_on('self')} || has(self.tls.postgresSecretName)",
                "tls.issuer secret needs tls.postgresSecretName while postgres is enabled",
            ),
            cel(
                f"!{_secret_issuer('self')} || !{_redis_on('self')} || has(self.tls.redisSecretName)",
                "tls.issuer secret needs tls.redisSecretName while redis is enabled",
            ),
            cel(
                "!has(self.postgres) || !has(self.postgres.restore) || (has(oldSelf.postgres) && "
                "has(oldSelf.postgres.restore) && self.postgres.restore == oldSelf.postgres.restore)",
                "postgres.restore bootstraps a new stack only and cannot be added or changed later; "
                "restore a running stack with `tradingstack backup restore`",
            ),
        )
    }

    @model_validator(mode="after")
    def _references(self) -> TradingStackSpec:
        names = [s.name for s in self.services]
        problems: list[str] = []
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"services: duplicate name {dup!r}")
        prefixes = [s.route_prefix for s in self.services if s.route.enabled]
        for dup in sorted({p for p in prefixes if prefixes.count(p) > 1}):
            problems.append(f"services: route pathPrefix {dup!r} is used twice")
        for index, service in enumerate(self.services):
            if "redis" in service.uses and not self.redis.enabled:
                problems.append(f"services[{index}].uses: redis is used but redis.enabled is false")
            if "postgres" in service.uses and not self.postgres.enabled:
                problems.append(f"services[{index}].uses: postgres is used but postgres.enabled is false")
        if self.tls.enabled and self.postgres.instances > 1:
            problems.append("tls: needs postgres.instances 1 (not yet with a Patroni cluster)")
        if self.tls.issuer == "secret":
            if self.postgres.enabled and self.tls.postgres_secret_name is None:
                problems.append("tls.issuer secret needs tls.postgresSecretName while postgres is enabled")
            if self.redis.enabled and self.tls.redis_secret_name is None:
                problems.append("tls.issuer secret needs tls.redisSecretName while redis is enabled")
        for field in ("order", "exclude"):
            for name in getattr(self.restarts, field):
                if name not in names:
                    problems.append(f"restarts.{field}: {name!r} is not a service of this stack")
        if problems:
            raise ValueError("; ".join(problems))
        return self
