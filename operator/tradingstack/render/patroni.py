"""Patroni: the database pods of a PostgreSQL cluster (`spec.postgres.instances` > 1).

Each pod runs `patroni <config>`, which starts, promotes, demotes and rewinds the PostgreSQL server of its pod.
The leader lock lives in the Kubernetes API: ConfigMaps of the stack's namespace (`<scope>-leader`, `-config`,
`-sync`), not Endpoints, so that the read-write Service can select the leader by the role label Patroni sets on
its pod (`Label.POSTGRES_ROLE`) and no selectorless Service has to be written by the pods. The pods reach the API
server with a ServiceAccount of their own, whose Role holds only what Patroni's Kubernetes DCS calls (see
`POD_RULES`); no other pod of the stack mounts a token.

The configuration file is the same for every pod and JSON (a subset of YAML, which Patroni reads): what differs
per pod (its name and IP) and the credentials come as Patroni's `PATRONI_*` env overrides (`PatroniEnv`), so the
component test runs the very same text on 127.0.0.1 with its own values, the DCS section swapped for etcd.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import Label, Patroni, PatroniEnv, SecretKey
from tradingstack.render.common import (
    PATRONI_PORT,
    POSTGRES_PORT,
    Manifest,
    Port,
    child_name,
    child_service,
    manifest,
    metadata,
    selector_labels,
)

COMPONENT = "postgres"
REPLICAS_SERVICE = "postgres-replicas"
"""Name (after `<stack>-`) of the read-only Service on the replicas."""

CONFIG_DIR = "/etc/patroni"
CONFIG_FILE = "patroni.json"
CONFIG_VOLUME = "patroni"
BIN_DIR = "/usr/lib/postgresql/15/bin"
"""Where Debian's postgresql-15 (and the official images, Debian-based) put the server binaries."""
SOCKET_DIR = "/var/run/postgresql"
PGPASS = "/tmp/pgpass"
"""Patroni writes the replication password file here: the root filesystem is read-only, /tmp is scratch."""

IMAGE_STOP_SIGNAL = signal.SIGINT
"""The postgres image's STOPSIGNAL (images/postgres/Dockerfile), PostgreSQL's fast shutdown, which the kubelet
sends to a container's first process when it stops the pod."""
STOP_COMMAND = ["dumb-init", "--single-child", "--rewrite", f"{IMAGE_STOP_SIGNAL.value}:{signal.SIGTERM.value}"]
"""What runs Patroni: dumb-init as the container's first process turns the image's stop signal into SIGTERM, on which
Patroni stops its server and releases the leader lock, so a replica takes over at once. Patroni as the first process
would fork itself and pass SIGINT on to a child that ignores it: the pod then lived out its grace period, was killed
holding the lock, and came back under the same name as the leader before the lock lapsed."""

TTL_SECONDS = 30
"""The leader lock's lifetime: a leader that has not renewed it for that long loses it to a replica."""
LOOP_WAIT_SECONDS = 10
RETRY_TIMEOUT_SECONDS = 10
"""Patroni's defaults, kept: loop_wait + 2 * retry_timeout <= ttl, so a leader cut off from the API server demotes
itself before its lock expires and a replica can take over."""
MAXIMUM_LAG_ON_FAILOVER = 1024 * 1024
"""A replica further behind than 1 MiB of WAL is never promoted."""

POD_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Pod", "pods", ("list", "watch", "patch")),
    ("ConfigMap", "configmaps", ("get", "list", "watch", "create", "patch")),
)
"""The Role of the Patroni pods, as (kind, plural, verbs) of the core API group: the verbs Patroni 3.0's Kubernetes
DCS calls with `use_endpoints: false` (it lists and watches the cluster's pods and ConfigMaps, patches its own pod's
role label and status, reads, creates and patches the lock ConfigMaps). Nothing deletes: only `patronictl remove`
would, and the pods never run it."""


def scope(stack: TradingStack) -> str:
    """Patroni's cluster name, also the prefix of its ConfigMaps."""
    return child_name(stack, COMPONENT)


LEADER_LOCK_SUFFIX = "leader"
LOCK_SUFFIXES = ("config", LEADER_LOCK_SUFFIX, "failover", "sync")
"""The ConfigMaps Patroni's Kubernetes DCS writes (`<scope>-<suffix>`): the cluster's configuration and system
identifier, the leader lock, a requested switchover, the synchronous standby. Patroni creates them without an owner;
`reconcile.retention.patroni_lock_patches` makes them follow deletionPolicy."""


def lock_config_map_names(stack: TradingStack) -> list[str]:
    return [f"{scope(stack)}-{suffix}" for suffix in LOCK_SUFFIXES]


def leader_lock_name(stack: TradingStack) -> str:
    """The ConfigMap whose annotation `Patroni.LOCK_HOLDER_ANNOTATION` names the member holding the leader lock."""
    return f"{scope(stack)}-{LEADER_LOCK_SUFFIX}"


def lock_selector(stack: TradingStack) -> dict[str, str]:
    """The labels Patroni puts on its ConfigMaps (`kubernetes.labels` and the scope label of `config`)."""
    return {**selector_labels(stack, COMPONENT), Label.POSTGRES_CLUSTER: scope(stack)}


def service_account_name(stack: TradingStack) -> str:
    return child_name(stack, COMPONENT)


def config_map_name(stack: TradingStack) -> str:
    return child_name(stack, "postgres-patroni")


def rest_url(host: str, port: int = PATRONI_PORT.number) -> str:
    """The base URL of a member's REST API (`contract.Patroni`'s paths go after it): its pod IP and port 8008."""
    return f"http://{host}:{port}"


def pod_labels(stack: TradingStack) -> dict[str, str]:
    """What the pods carry on top of the component's labels: the scope Patroni finds its members by."""
    return {Label.POSTGRES_CLUSTER: scope(stack)}


@dataclass(frozen=True)
class Archiving:
    """Continuous WAL archiving (`spec.postgres.pitr`), as `render.postgres` builds it from the pgBackRest settings:
    the server parameters (archive_mode `on`: whichever member leads archives) and the replicas' restore_command,
    with which a replica that fell behind the leader's WAL, or a rewound old leader, reads the segments from the
    repository. `bootstrap`: the command restoring the repository into the data directory, when the cluster is
    to start from it (`spec.postgres.restore`)."""

    parameters: Mapping[str, str]
    restore_command: str
    bootstrap: Sequence[str] | None = None


def command(before: Sequence[str] = ()) -> list[str]:
    """The Patroni container's command; `before`: a command that runs first and then runs Patroni (its arguments)."""
    return [*STOP_COMMAND, *before, "patroni", f"{CONFIG_DIR}/{CONFIG_FILE}"]


def config(stack: TradingStack, pgdata: str, archiving: Archiving | None = None) -> dict[str, Any]:
    """Patroni's configuration, the same for every pod (`PatroniEnv` supplies the rest). The archive settings are
    the pod's own (`postgresql.parameters`), not the cluster-wide ones of `bootstrap.dcs`, which Patroni writes
    once when the cluster is created: a changed pitr spec reaches the members with the rolled pods."""
    archive = dict(archiving.parameters) if archiving else {}
    recovery = {"recovery_conf": {"restore_command": archiving.restore_command}} if archiving else {}
    return {
        "scope": scope(stack),
        "restapi": {"listen": f"0.0.0.0:{PATRONI_PORT.number}"},
        "kubernetes": {
            "use_endpoints": False,
            # The API server through the `kubernetes` Service: bypassing it needs read access to Endpoints in the
            # `default` namespace, a grant outside the stack's namespace.
            "bypass_api_service": False,
            "labels": selector_labels(stack, COMPONENT),
            "scope_label": Label.POSTGRES_CLUSTER,
            "role_label": Label.POSTGRES_ROLE,
        },
        "bootstrap": {"dcs": _dcs(stack), **_bootstrap_method(stack, archiving)},
        "postgresql": {
            "listen": f"0.0.0.0:{POSTGRES_PORT.number}",
            "data_dir": pgdata,
            "bin_dir": BIN_DIR,
            "pgpass": PGPASS,
            # A new replica's base backup starts at once rather than after a spread checkpoint (minutes).
            "basebackup": [{"checkpoint": "fast"}],
            "use_unix_socket": True,
            "use_unix_socket_repl": False,
            "parameters": {
                "unix_socket_directories": SOCKET_DIR,
                "password_encryption": "scram-sha-256",
                **archive,
            },
            **recovery,
            # As the official image: trust on the pod's own socket, a password over the network.
            "pg_hba": [
                "local all all trust",
                "host all all 0.0.0.0/0 scram-sha-256",
                "host replication all 0.0.0.0/0 scram-sha-256",
            ],
        },
    }


RESTORE_METHOD = "pgbackrest"


def _bootstrap_method(stack: TradingStack, archiving: Archiving | None) -> dict[str, Any]:
    """How the first member creates the cluster: initdb and the stack's database, or a restore from the repository
    (Patroni's custom bootstrap, on that member only; the others then copy it as replicas). The restore keeps the
    recovery settings pgBackRest wrote (its archive-get, the target time), and the server promotes at the end of
    the archive or at the target; the stack's database comes with the restored files."""
    if archiving is None or archiving.bootstrap is None:
        return {
            "initdb": [{"encoding": "UTF8"}, {"auth": "scram-sha-256"}],
            # Patroni appends the connection string of the new server: createdb's maintenance database.
            "post_bootstrap": f"createdb {stack.spec.postgres.database} --maintenance-db",
        }
    return {
        "method": RESTORE_METHOD,
        RESTORE_METHOD: {
            "command": shlex.join(archiving.bootstrap),
            "no_params": True,
            "keep_existing_recovery_conf": True,
        },
    }


def _dcs(stack: TradingStack) -> dict[str, Any]:
    """The cluster-wide settings Patroni writes into `<scope>-config` at bootstrap."""
    return {
        "ttl": TTL_SECONDS,
        "loop_wait": LOOP_WAIT_SECONDS,
        "retry_timeout": RETRY_TIMEOUT_SECONDS,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        "synchronous_mode": stack.spec.postgres.synchronous,
        # Not strict: with no replica in sync the leader keeps accepting writes (spec.postgres.synchronous).
        "synchronous_mode_strict": False,
        "postgresql": {
            # A demoted leader that wrote ahead of the new one rejoins by rewinding instead of a new base backup.
            "use_pg_rewind": True,
            "parameters": {"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on"},
        },
    }


def config_files(stack: TradingStack, pgdata: str, archiving: Archiving | None = None) -> dict[str, str]:
    return {CONFIG_FILE: json.dumps(config(stack, pgdata, archiving), indent=2, sort_keys=True) + "\n"}


def config_map(stack: TradingStack, owner: OwnerReference, files: dict[str, str]) -> Manifest:
    """The ConfigMap of `config_files`."""
    meta = metadata(stack, owner, COMPONENT, name=config_map_name(stack))
    return manifest("v1", "ConfigMap", meta, data=files)


def env(secret: str) -> list[dict[str, Any]]:
    """The pod's own name and IP (downward API) and the credentials: the Secret's role is the superuser, as with
    the official image, and replicas connect as it too (it has REPLICATION)."""
    ip = f"$({PatroniEnv.POD_IP})"
    return [
        _field_env(PatroniEnv.NAME, "metadata.name"),
        _field_env(PatroniEnv.NAMESPACE, "metadata.namespace"),
        _field_env(PatroniEnv.POD_IP, "status.podIP"),
        {"name": PatroniEnv.POSTGRES_CONNECT, "value": f"{ip}:{POSTGRES_PORT.number}"},
        {"name": PatroniEnv.RESTAPI_CONNECT, "value": f"{ip}:{PATRONI_PORT.number}"},
        *(
            _secret_env(name, secret, key)
            for name, key in (
                (PatroniEnv.SUPERUSER, SecretKey.USERNAME),
                (PatroniEnv.SUPERUSER_PASSWORD, SecretKey.PASSWORD),
                (PatroniEnv.REPLICATION_USER, SecretKey.USERNAME),
                (PatroniEnv.REPLICATION_PASSWORD, SecretKey.PASSWORD),
            )
        ),
    ]


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def probes() -> dict[str, Any]:
    """On Patroni's REST API: ready while its server runs as leader or replica, alive while Patroni's loop runs (a
    crashed server is Patroni's to restart, not the kubelet's)."""
    return {
        "readinessProbe": {
            "httpGet": {"path": Patroni.READINESS_PATH, "port": PATRONI_PORT.name},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": Patroni.LIVENESS_PATH, "port": PATRONI_PORT.name},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }


def services(stack: TradingStack, owner: OwnerReference, extra_ports: Sequence[Port]) -> list[Manifest]:
    """`<stack>-postgres` on the leader (read-write, what the Secret's dsn names; with `extra_ports`, as with one
    instance), `-replicas` on the others."""
    leader = _role(Patroni.LEADER_ROLE)
    return [
        child_service(stack, owner, COMPONENT, POSTGRES_PORT, extra_selector=leader, extra_ports=extra_ports),
        child_service(
            stack,
            owner,
            COMPONENT,
            POSTGRES_PORT,
            name=child_name(stack, REPLICAS_SERVICE),
            extra_selector=_role(Patroni.REPLICA_ROLE),
        ),
    ]


def _role(role: str) -> dict[str, str]:
    return {Label.POSTGRES_ROLE: role}


def rbac(stack: TradingStack, owner: OwnerReference) -> list[Manifest]:
    """The pods' ServiceAccount, its Role (`POD_RULES`) and the RoleBinding between them."""
    name = service_account_name(stack)
    rules = [{"apiGroups": [""], "resources": [plural], "verbs": list(verbs)} for _, plural, verbs in POD_RULES]
    group = "rbac.authorization.k8s.io"
    return [
        manifest("v1", "ServiceAccount", metadata(stack, owner, COMPONENT), automountServiceAccountToken=False),
        manifest(f"{group}/v1", "Role", metadata(stack, owner, COMPONENT), rules=rules),
        manifest(
            f"{group}/v1",
            "RoleBinding",
            metadata(stack, owner, COMPONENT),
            roleRef={"apiGroup": group, "kind": "Role", "name": name},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": stack.namespace}],
        ),
    ]
