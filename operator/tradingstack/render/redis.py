"""Redis with Sentinel: a StatefulSet of Redis servers and a separate StatefulSet of sentinels.

Why sentinels run in their own StatefulSet rather than as a sidecar of each Redis pod:

- `spec.redis.sentinels` may differ from `spec.redis.replicas` (e.g. 2 Redis + 3 sentinels, so that losing
  one node never costs both a data copy and the sentinel majority); a sidecar ties the two counts together.
- Killing, evicting or rolling the master pod must not also remove one of the voters that has to agree it
  is down: with sidecars, losing the master pod of a 3-pod stack leaves 2 of 3 sentinels, one more failure
  and no failover is possible at all.
- A sentinel restart (config change of down-after, quorum, ...) then never restarts a Redis server, and the
  sentinels stay tiny (no volume, small resources).

Roles are never taken from the pod ordinal alone: `redis-start.sh` asks the sentinels for the current master
and only starts as master when no sentinel knows one and it is ordinal 0. The answer of the sentinel with the
newest configuration epoch wins, not the majority: right after a failover the sentinels that have not heard
of it yet (hello messages travel every 2 s) still name the old master. A server the sentinels name as master
while failing it over (o_down) waits for the outcome instead of starting as a second master. A master's
preStop hook asks the sentinels to fail over before it stops. `min-replicas-to-write` makes a master that lost
its replicas refuse writes, but only once it has not heard from them for `min-replicas-max-lag` seconds:
writes taken in that window by a master on the wrong side of a partition are lost in the failover, which is
why clients confirm writes with `WAIT` (`SentinelRedisClient.write_confirmed`).

The configs and scripts are parameterised by environment variables (announce host, ports, directories,
sentinel addresses), so the very same ConfigMap text runs in a pod and in the component tests on 127.0.0.1.
The password lives only in the Secret `<stack>-redis` (created by the operator) and reaches the processes
through `REDIS_PASSWORD`/`REDISCLI_AUTH`; the start scripts write it into the runtime config (mode 0600).

With `spec.tls` (`tls_files`) the servers and sentinels listen with TLS only (`port 0`, `tls-port` on the same
port number), replicate and talk to each other over TLS (`tls-replication yes`), and every redis-cli of the
scripts and probes speaks TLS with the stack's CA. Clients authenticate with the password, not a certificate
(`tls-auth-clients no`): the services get the CA file alone, never a key. The scripts' source files carry their
TLS-only lines commented out with the `#tls# ` prefix, so that without TLS the ConfigMap stays byte for byte
what it was (no pod restarts on upgrade); `script_text` keeps or drops them.
"""

from __future__ import annotations

import math
import re
from importlib import resources as package_files
from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.api.spec import RedisSpec, Resources
from tradingstack.contract import (
    MASTER_ROLE,
    Exporter,
    Label,
    RedisEnv,
    RedisExporterEnv,
    RedisScriptEnv,
    SecretKey,
    format_flag,
)
from tradingstack.contract.tls import REDIS_CA_FILE, SERVER_DIR, TlsSecretKey
from tradingstack.render import tls
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    NONROOT_UID,
    REDIS_METRICS_PORT,
    REDIS_PORT,
    SENTINEL_PORT,
    Manifest,
    Port,
    child_name,
    child_service,
    container_security_context,
    exporter_container,
    manifest,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    resources,
    scratch_volume,
    service_host,
    spread_and_anti_affinity,
    statefulset,
)

REDIS_COMPONENT = "redis"
SENTINEL_COMPONENT = "redis-sentinel"

REDIS_SECRET_KEYS = (SecretKey.PASSWORD,)
"""Keys of the Secret `redis_secret_name(stack)`, which the operator generates once (random values)."""

CONFIG_DIR = "/config"
DATA_DIR = "/data"
REDIS_RUN_DIR = "/run/redis"
SENTINEL_DIR = "/run/sentinel"
SENTINEL_WAIT_SECONDS = 30
"""How long a start script waits for a sentinel (or the master's DNS name) before bootstrapping."""
MAX_FAILOVER_WAIT_SECONDS = 120
"""Cap on how long a restarted master the sentinels are failing over waits for the outcome (its startup probe
allows 300 s, which must also cover loading the append-only file)."""
PRESTOP_WAIT_SECONDS = 20
"""How long a stopping master waits for the sentinels to promote another server."""

SCRIPT_FILES = ("redis-lib.sh", "redis-start.sh", "redis-prestop.sh", "sentinel-start.sh")
REDIS_FILES = ("redis.conf", "redis-lib.sh", "redis-start.sh", "redis-prestop.sh")
SENTINEL_FILES = ("sentinel.conf", "redis-lib.sh", "sentinel-start.sh")

# Sentinels only run a few commands a second: a fixed small budget rather than a copy of the Redis resources.
SENTINEL_RESOURCES = Resources(requests={"cpu": "50m", "memory": "32Mi"}, limits={"cpu": "250m", "memory": "64Mi"})


def redis_secret_name(stack: TradingStack) -> str:
    """The Secret holding the Redis (and Sentinel) password under the key `password`."""
    return stack.spec.redis.existing_secret or child_name(stack, REDIS_COMPONENT)


def master_service_name(stack: TradingStack) -> str:
    """The Service selecting the pod labelled master (`Label.REDIS_ROLE`)."""
    return f"{child_name(stack, REDIS_COMPONENT)}-master"


def redis_pod_host(stack: TradingStack, pod_name: str, domain: str) -> str:
    """Stable DNS name of a Redis pod, as the sentinels announce it."""
    return service_host(stack, REDIS_COMPONENT, domain, pod=pod_name)


def sentinel_addresses(stack: TradingStack, domain: str) -> list[str]:
    """`host:port` of every sentinel pod."""
    name = child_name(stack, SENTINEL_COMPONENT)
    return [
        f"{service_host(stack, SENTINEL_COMPONENT, domain, pod=f'{name}-{ordinal}')}:{SENTINEL_PORT.number}"
        for ordinal in range(stack.spec.redis.sentinels)
    ]


def _password_env(name: str, stack: TradingStack) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": redis_secret_name(stack), "key": SecretKey.PASSWORD}}}


def connection_env(stack: TradingStack, domain: str, ca_file: str = REDIS_CA_FILE) -> list[dict[str, Any]]:
    """Env vars injected into the services that use Redis: where the sentinels are, how to authenticate and, with
    `spec.tls`, the CA file to verify them with (`ca_file`: where the pod has it mounted)."""
    env = [
        {"name": RedisEnv.SENTINELS, "value": ",".join(sentinel_addresses(stack, domain))},
        {"name": RedisEnv.MASTER_NAME, "value": stack.spec.redis.master_name},
        _password_env(RedisEnv.PASSWORD, stack),
    ]
    return env + ([{"name": RedisEnv.TLS_CA_FILE, "value": ca_file}] if tls.redis_enabled(stack) else [])


TLS_PREFIX = "#tls# "
"""Starts the lines of the scripts' source files that only a stack with `spec.tls` runs."""
_CLI_CALL = re.compile(r"\btimeout 2 redis-cli ")
TLS_CLI = f'timeout 2 redis-cli --tls --cacert "${RedisEnv.TLS_CA_FILE}" '
"""Every redis-cli call of the scripts, with `spec.tls`: TLS, the server verified against the stack's CA (redis-cli
checks the chain, not the name)."""

_TLS_SERVER = [
    # No plaintext port at all: clients, replicas and sentinels reach the same port number over TLS.
    "port 0",
    "tls-port @PORT@",
    "tls-replication yes",
    # Clients authenticate with the password (requirepass), not with a certificate of their own.
    "tls-auth-clients no",
    'tls-protocols "TLSv1.2 TLSv1.3"',
]
"""Replaces `port @PORT@` of the configs with `spec.tls`; the files' paths are appended by the start scripts
(`tls_config` of redis-lib.sh) from the env of `tls_files`."""


def script_text(text: str, tls_on: bool) -> str:
    """A script's source as the ConfigMap carries it: without TLS its `#tls# ` lines dropped (the text is then what
    it was before TLS existed); with TLS those lines un-commented and every redis-cli call with `TLS_CLI`."""
    lines = text.splitlines(keepends=True)
    if not tls_on:
        return "".join(line for line in lines if not line.startswith(TLS_PREFIX))
    text = "".join(line.removeprefix(TLS_PREFIX) for line in lines)
    return _CLI_CALL.sub(TLS_CLI, text)


def _with_tls(lines: list[str], tls_on: bool) -> list[str]:
    if not tls_on:
        return lines
    index = lines.index("port @PORT@")
    return [*lines[:index], *_TLS_SERVER, *lines[index + 1 :]]


def redis_conf(spec: RedisSpec, tls_on: bool = False) -> str:
    """redis.conf; `@...@` placeholders are filled in by redis-start.sh, which also appends auth and role."""
    return "\n".join(
        _with_tls(
            [
                "# Rendered by the TradingStack operator from spec.redis.",
                "port @PORT@",
                "dir @DATA_DIR@",
                "replica-announce-ip @ANNOUNCE_HOST@",
                "replica-announce-port @PORT@",
                "appendonly yes",
                "appendfsync everysec",
                # A replica promoted after a failover resynchronises the others at once instead of after 5 s.
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
                "replica-read-only yes",
                f"min-replicas-to-write {spec.min_replicas_to_write}",
                f"min-replicas-max-lag {spec.min_replicas_max_lag_seconds}",
                "",
            ],
            tls_on,
        )
    )


def sentinel_conf(spec: RedisSpec, tls_on: bool = False) -> str:
    """sentinel.conf; `@...@` placeholders are filled in by sentinel-start.sh, which also appends auth. With TLS
    (`tls-replication yes`) a sentinel also talks TLS to the servers and to the other sentinels."""
    name = spec.master_name
    return "\n".join(
        _with_tls(
            [
                "# Rendered by the TradingStack operator from spec.redis.",
                "port @PORT@",
                "dir @DIR@",
                "sentinel announce-ip @ANNOUNCE_HOST@",
                "sentinel announce-port @PORT@",
                # Pod IPs change on every restart; the pods' DNS names do not.
                "sentinel resolve-hostnames yes",
                "sentinel announce-hostnames yes",
                f"sentinel monitor {name} @MASTER_HOST@ @MASTER_PORT@ {spec.quorum}",
                f"sentinel down-after-milliseconds {name} {spec.down_after_milliseconds}",
                f"sentinel failover-timeout {name} {spec.failover_timeout_milliseconds}",
                f"sentinel parallel-syncs {name} {spec.parallel_syncs}",
                "",
            ],
            tls_on,
        )
    )


def config_files(spec: RedisSpec, tls_on: bool = False) -> dict[str, str]:
    """Every file of the ConfigMap by name: the two configs and the POSIX sh scripts (`tls_on`: `spec.tls`)."""
    scripts = package_files.files("tradingstack.render") / "redis_files"
    files = {name: script_text((scripts / name).read_text(encoding="utf-8"), tls_on) for name in SCRIPT_FILES}
    configs = {"redis.conf": redis_conf(spec, tls_on), "sentinel.conf": sentinel_conf(spec, tls_on)}
    return dict(sorted({**files, **configs}.items()))


def tls_files(stack: TradingStack, directory: str = SERVER_DIR) -> list[dict[str, Any]]:
    """With `spec.tls`: where a server or sentinel finds the mounted Secret's files (`directory` is a parameter so
    that a test runs the scripts with its own files)."""
    if not tls.redis_enabled(stack):
        return []
    return [
        {"name": RedisScriptEnv.TLS_CERT_FILE, "value": f"{directory}/{TlsSecretKey.CERT}"},
        {"name": RedisScriptEnv.TLS_KEY_FILE, "value": f"{directory}/{TlsSecretKey.KEY}"},
    ]


def failover_wait_seconds(spec: RedisSpec) -> int:
    """A failover not done within failover-timeout is aborted by Sentinel: waiting longer gains nothing."""
    return min(math.ceil(spec.failover_timeout_milliseconds / 1000), MAX_FAILOVER_WAIT_SECONDS)


def _shared_env(stack: TradingStack, domain: str) -> list[dict[str, Any]]:
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": RedisScriptEnv.CONFIG_DIR, "value": CONFIG_DIR},
        {"name": RedisScriptEnv.SENTINEL_WAIT_SECONDS, "value": str(SENTINEL_WAIT_SECONDS)},
        *connection_env(stack, domain, ca_file=f"{SERVER_DIR}/{TlsSecretKey.CA}"),
        _password_env(RedisScriptEnv.CLI_AUTH, stack),
        *tls_files(stack),
    ]


def _ping_probe(port_variable: str, period: int, failures: int, tls_on: bool) -> dict[str, Any]:
    cli = f'redis-cli --tls --cacert "${RedisEnv.TLS_CA_FILE}"' if tls_on else "redis-cli"
    return {
        "exec": {"command": ["sh", "-c", f'{cli} -p "${port_variable}" ping | grep -q PONG']},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def _config_volume(stack: TradingStack, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": "config",
        "configMap": {"name": child_name(stack, "redis-config"), "items": [{"key": n, "path": n} for n in names]},
    }


def _pod_spec(
    stack: TradingStack, component: str, containers: list[dict[str, Any]], volumes: list[dict[str, Any]]
) -> Any:
    volumes = [*volumes, tls.secret_volume(stack, tls.REDIS)] if tls.redis_enabled(stack) else volumes
    return {
        "securityContext": pod_security_context(fs_group=NONROOT_UID),
        "affinity": spread_and_anti_affinity(stack, component),
        "automountServiceAccountToken": False,
        # Service links would inject e.g. REDIS_PORT=tcp://... into the scripts' environment.
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": volumes,
    }


def _files(files: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: files[name] for name in names}


# The statefulset builder's keyword arguments shared by Redis and the sentinels.
_PARALLEL_ROLLING: dict[str, Any] = {
    # Roles come from the sentinels, not from start order: no reason to start pods one by one.
    "podManagementPolicy": "Parallel",
    "updateStrategy": {"type": "RollingUpdate"},
}


def metrics_ports(stack: TradingStack) -> list[Port]:
    """The exporter's port of the Redis server pods, when `spec.redis.metrics` is enabled."""
    return [REDIS_METRICS_PORT] if stack.spec.redis.metrics.enabled else []


def _exporter(stack: TradingStack) -> list[dict[str, Any]]:
    """The redis_exporter sidecar, asking the server of its own pod with the server's password."""
    metrics = stack.spec.redis.metrics
    if not metrics.enabled:
        return []
    # With TLS the server of the pod, over loopback: no host to verify (see `RedisExporterEnv`).
    scheme = "rediss" if tls.redis_enabled(stack) else "redis"
    env = [
        {"name": RedisExporterEnv.ADDRESS, "value": f"{scheme}://127.0.0.1:{REDIS_PORT.number}"},
        _password_env(RedisExporterEnv.PASSWORD, stack),
        {"name": RedisExporterEnv.LISTEN_ADDRESS, "value": f":{REDIS_METRICS_PORT.number}"},
    ]
    if tls.redis_enabled(stack):
        env.append({"name": RedisExporterEnv.SKIP_TLS_VERIFICATION, "value": format_flag(True)})
    return [exporter_container(metrics.image, Exporter.REDIS_COMMAND, REDIS_METRICS_PORT, env, metrics.resources)]


def _redis_statefulset(stack: TradingStack, owner: OwnerReference, files: dict[str, str], domain: str) -> Manifest:
    spec = stack.spec.redis
    tls_on = tls.redis_enabled(stack)
    container = {
        "name": "redis",
        "image": spec.image,
        "command": ["sh", f"{CONFIG_DIR}/redis-start.sh"],
        "ports": [REDIS_PORT.container_port()],
        "env": [
            *_shared_env(stack, domain),
            {
                "name": RedisScriptEnv.ANNOUNCE_HOST,
                "value": redis_pod_host(stack, "$(POD_NAME)", domain),
            },
            {"name": RedisScriptEnv.PORT, "value": str(REDIS_PORT.number)},
            {"name": RedisScriptEnv.DATA_DIR, "value": DATA_DIR},
            {"name": RedisScriptEnv.RUN_DIR, "value": REDIS_RUN_DIR},
            {"name": RedisScriptEnv.PRESTOP_WAIT_SECONDS, "value": str(PRESTOP_WAIT_SECONDS)},
            {"name": RedisScriptEnv.FAILOVER_WAIT_SECONDS, "value": str(failover_wait_seconds(spec))},
        ],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", f"{CONFIG_DIR}/redis-prestop.sh"]}}},
        # Loading a large append-only file may take a while; liveness applies only once it answers.
        "startupProbe": _ping_probe(RedisScriptEnv.PORT, period=5, failures=60, tls_on=tls_on),
        "livenessProbe": _ping_probe(RedisScriptEnv.PORT, period=10, failures=3, tls_on=tls_on),
        "readinessProbe": _ping_probe(RedisScriptEnv.PORT, period=5, failures=2, tls_on=tls_on),
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "run", "mountPath": REDIS_RUN_DIR},
            *([tls.secret_mount()] if tls_on else []),
        ],
    }
    pod_spec = _pod_spec(
        stack,
        REDIS_COMPONENT,
        [container, *_exporter(stack)],
        [_config_volume(stack, REDIS_FILES), scratch_volume("run", "16Mi")],
    )
    pod_spec["terminationGracePeriodSeconds"] = PRESTOP_WAIT_SECONDS + 10
    return statefulset(
        stack,
        owner,
        REDIS_COMPONENT,
        spec.replicas,
        pod_spec,
        config=_files(files, REDIS_FILES),
        data=spec.storage,
        **_PARALLEL_ROLLING,
    )


def _sentinel_statefulset(stack: TradingStack, owner: OwnerReference, files: dict[str, str], domain: str) -> Manifest:
    spec = stack.spec.redis
    tls_on = tls.redis_enabled(stack)
    first_redis_pod = child_name(stack, REDIS_COMPONENT) + "-0"
    container = {
        "name": "sentinel",
        "image": spec.image,
        "command": ["sh", f"{CONFIG_DIR}/sentinel-start.sh"],
        "ports": [SENTINEL_PORT.container_port()],
        "env": [
            *_shared_env(stack, domain),
            {
                "name": RedisScriptEnv.SENTINEL_ANNOUNCE_HOST,
                "value": service_host(stack, SENTINEL_COMPONENT, domain, pod="$(POD_NAME)"),
            },
            {"name": RedisScriptEnv.SENTINEL_PORT, "value": str(SENTINEL_PORT.number)},
            {"name": RedisScriptEnv.SENTINEL_DIR, "value": SENTINEL_DIR},
            {
                "name": RedisScriptEnv.BOOTSTRAP_MASTER,
                "value": f"{redis_pod_host(stack, first_redis_pod, domain)}:{REDIS_PORT.number}",
            },
        ],
        # A sentinel listens only once its start script has found the master to monitor, which may take longer
        # than liveness allows while the servers start: liveness applies only once it answers.
        "startupProbe": _ping_probe(RedisScriptEnv.SENTINEL_PORT, period=5, failures=60, tls_on=tls_on),
        "livenessProbe": _ping_probe(RedisScriptEnv.SENTINEL_PORT, period=10, failures=3, tls_on=tls_on),
        "readinessProbe": _ping_probe(RedisScriptEnv.SENTINEL_PORT, period=5, failures=2, tls_on=tls_on),
        "resources": resources(SENTINEL_RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "run", "mountPath": SENTINEL_DIR},
            *([tls.secret_mount()] if tls_on else []),
        ],
    }
    pod_spec = _pod_spec(
        stack,
        SENTINEL_COMPONENT,
        [container],
        [_config_volume(stack, SENTINEL_FILES), scratch_volume("run", "16Mi")],
    )
    return statefulset(
        stack,
        owner,
        SENTINEL_COMPONENT,
        spec.sentinels,
        pod_spec,
        config=_files(files, SENTINEL_FILES),
        **_PARALLEL_ROLLING,
    )


def render_redis(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[Manifest]:
    """ConfigMap, Services, StatefulSets and PodDisruptionBudgets of Redis and its sentinels."""
    files = config_files(stack.spec.redis, tls.redis_enabled(stack))
    config_map_name = child_name(stack, "redis-config")
    return [
        manifest("v1", "ConfigMap", metadata(stack, owner, REDIS_COMPONENT, name=config_map_name), data=files),
        child_service(stack, owner, REDIS_COMPONENT, REDIS_PORT, headless=True, extra_ports=metrics_ports(stack)),
        child_service(
            stack,
            owner,
            REDIS_COMPONENT,
            REDIS_PORT,
            name=master_service_name(stack),
            extra_selector={Label.REDIS_ROLE: MASTER_ROLE},
        ),
        child_service(stack, owner, SENTINEL_COMPONENT, SENTINEL_PORT, headless=True),
        _redis_statefulset(stack, owner, files, domain),
        _sentinel_statefulset(stack, owner, files, domain),
        pod_disruption_budget(stack, owner, REDIS_COMPONENT),
        pod_disruption_budget(stack, owner, SENTINEL_COMPONENT),
    ]
