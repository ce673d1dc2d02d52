"""The stack's TLS (`spec.tls`): the certificates, the servers' settings and the clients'.

- One server certificate per server kind (`SERVER_KINDS`: PostgreSQL; Redis with its sentinels), each in its own
  Secret `secret_name(stack, kind)` mounted only into that kind's pods, so that a Redis pod never holds
  PostgreSQL's private key nor the reverse: the user's (`issuer: secret`, e.g. a cert-manager Certificate's per
  server) or `<stack>-postgres-tls` and `<stack>-redis-tls`, issued by the operator from the stack's own CA,
  which it keeps in `<stack>-tls-ca` (`tls.crt`, `tls.key`: a CA Secret as cert-manager's CA issuer reads it).
  All are generated like the other Secrets (created when missing, kept under Retain); `reconcile.tls` issues each
  server certificate anew before it expires, with the same CA, so the clients' CA files never change. Each
  certificate names every host a client of that kind dials (`server_names`).
- PostgreSQL (`server_args`) accepts TCP connections only with TLS (`hostssl`) except from its own pod (the
  exporter and the probes on 127.0.0.1); the local socket stays `trust`, as the image's initdb sets it.
- The clients (the services that use PostgreSQL or Redis, and the backup tool) get the CA files alone mounted
  (`client_volumes`: `ca.crt` of the Secret of each kind they use, never a key); PostgreSQL's get
  `PGSSLMODE=verify-full`, `PGSSLROOTCERT` and a `DATABASE_URL` with both in its query. The Redis side (configs,
  scripts, the clients' `REDIS_TLS_CA_FILE`) is rendered by `render.redis`.

Pure: keys and time come from the caller.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract.tls import (
    CLIENT_DIR,
    POSTGRES_CA_FILE,
    REDIS_CA_FILE,
    SERVER_DIR,
    VERIFY_FULL,
    LibpqTlsEnv,
    TlsSecretKey,
)
from tradingstack.render.certificates import Authority, authority, leaf, pem, pem_key
from tradingstack.render.common import Manifest, child_name, manifest, metadata

COMPONENT = "tls"
CA_VALIDITY = timedelta(days=3650)
"""The stack's CA: ten years, since the clients trust it and the server certificates are renewed under it."""

ServerKind = Literal["postgres", "redis"]
POSTGRES: Final[ServerKind] = "postgres"
"""The PostgreSQL server (`<stack>-postgres`)."""
REDIS: Final[ServerKind] = "redis"
"""The Redis servers and the sentinels (`<stack>-redis`, `<stack>-redis-sentinel`): one certificate for both, since
the sentinels and the servers dial each other and the clients dial both."""
SERVER_KINDS: Final[tuple[ServerKind, ...]] = (POSTGRES, REDIS)
"""Each kind serves its own certificate from its own Secret."""

SERVER_VOLUME = "tls"
CLIENT_VOLUME = "tls-ca"
HBA_VOLUME = "postgres-hba"
HBA_DIR = "/etc/tradingstack/postgres"
HBA_FILE = "pg_hba.conf"
SECRET_FILE_MODE = 0o440
"""Owned by root, group fsGroup: PostgreSQL accepts a root-owned key readable by its group (u=rw,g=r or less)."""


def enabled(stack: TradingStack) -> bool:
    """The stack has servers that serve TLS (PostgreSQL, Redis or both): its certificates exist."""
    return stack.spec.tls.enabled and (stack.spec.postgres.enabled or stack.spec.redis.enabled)


def postgres_enabled(stack: TradingStack) -> bool:
    """The stack's PostgreSQL serves TLS."""
    return stack.spec.tls.enabled and stack.spec.postgres.enabled


def redis_enabled(stack: TradingStack) -> bool:
    """The stack's Redis servers and sentinels serve TLS only."""
    return stack.spec.tls.enabled and stack.spec.redis.enabled


def serves(stack: TradingStack, kind: ServerKind) -> bool:
    """The stack's servers of `kind` serve TLS."""
    return postgres_enabled(stack) if kind == POSTGRES else redis_enabled(stack)


def served_kinds(stack: TradingStack, uses: Collection[str] = SERVER_KINDS) -> list[ServerKind]:
    """The kinds among `uses` (default: all) whose servers serve TLS, in `SERVER_KINDS` order."""
    return [kind for kind in SERVER_KINDS if kind in uses and serves(stack, kind)]


def client_needs_ca(stack: TradingStack, uses: Collection[str]) -> bool:
    """A service that `uses` these data stores connects to one that serves TLS: it gets the CA files."""
    return bool(served_kinds(stack, uses))


def generated(stack: TradingStack) -> bool:
    """The operator issues the certificates (rather than reading the user's Secret)."""
    return enabled(stack) and stack.spec.tls.generated


def secret_name(stack: TradingStack, kind: ServerKind) -> str:
    """The TLS Secret of the servers of `kind` (keys `TlsSecretKey`): the user's `postgresSecretName` or
    `redisSecretName`, or `<stack>-<kind>-tls`, which the operator issues."""
    spec = stack.spec.tls
    users = spec.postgres_secret_name if kind == POSTGRES else spec.redis_secret_name
    return users if spec.issuer == "secret" and users else child_name(stack, f"{kind}-tls")


def ca_secret_name(stack: TradingStack) -> str:
    """The operator's CA of the stack (`issuer: generated`)."""
    return child_name(stack, "tls-ca")


def hba_config_map_name(stack: TradingStack) -> str:
    return child_name(stack, "postgres-hba")


def _service_names(stack: TradingStack, component: str, domain: str) -> list[str]:
    """Every name of a Service a client may use, the full one first."""
    short = child_name(stack, component)
    return [
        f"{short}.{stack.namespace}.svc.{domain}",
        short,
        f"{short}.{stack.namespace}",
        f"{short}.{stack.namespace}.svc",
    ]


def redis_server_names(stack: TradingStack, domain: str) -> list[str]:
    """What the Redis clients dial: a pod of the Redis or the Sentinel StatefulSet by its stable DNS name (what the
    sentinels announce and report, and the injected sentinel addresses), matched by a wildcard so that scaling
    needs no new certificate; and the Services `<stack>-redis`, `<stack>-redis-master` by every name."""
    return [
        f"*.{child_name(stack, 'redis')}.{stack.namespace}.svc.{domain}",
        f"*.{child_name(stack, 'redis-sentinel')}.{stack.namespace}.svc.{domain}",
        *_service_names(stack, "redis", domain),
        *_service_names(stack, "redis-master", domain),
    ]


def postgres_server_names(stack: TradingStack, domain: str) -> list[str]:
    """Every name of the PostgreSQL Service a client may use, the full one (the injected PGHOST) first."""
    return _service_names(stack, "postgres", domain)


def server_names(stack: TradingStack, kind: ServerKind, domain: str) -> list[str]:
    """DNS SANs of the certificate of `kind`: `postgres_server_names` or `redis_server_names`."""
    return postgres_server_names(stack, domain) if kind == POSTGRES else redis_server_names(stack, domain)


def new_authority(stack: TradingStack, key: ec.EllipticCurvePrivateKey, now: datetime) -> Authority:
    return authority(f"{stack.namespace}/{stack.name} CA", key, now, CA_VALIDITY)


def ca_files(ca: Authority) -> dict[str, str]:
    """The CA Secret's data: its certificate and key."""
    return {TlsSecretKey.CERT: pem(ca.certificate), TlsSecretKey.KEY: pem_key(ca.key)}


def server_files(
    stack: TradingStack,
    kind: ServerKind,
    ca: Authority,
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
    domain: str,
) -> dict[str, str]:
    """The Secret's data of the servers of `kind`: a certificate for `server_names` valid `validityDays` from
    `now`, its key and the CA's certificate. The serial is the issue time in microseconds and the kind: unique
    under the stack's CA, though both kinds are issued in the same pass."""
    names = server_names(stack, kind, domain)
    validity = timedelta(days=stack.spec.tls.validity_days)
    serial = int(now.timestamp() * 1_000_000) * len(SERVER_KINDS) + SERVER_KINDS.index(kind)
    server = leaf(ca, names[0], key, ExtendedKeyUsageOID.SERVER_AUTH, serial, now, validity, names)
    return {TlsSecretKey.CERT: pem(server), TlsSecretKey.KEY: pem_key(key), TlsSecretKey.CA: pem(ca.certificate)}


def hba_conf() -> str:
    """Who may connect how: the local socket as initdb sets it (trust), the pod itself over TCP with a password
    (the exporter, pg_isready), everyone else with TLS and a password only."""
    return "\n".join(
        [
            "# Rendered by the TradingStack operator (spec.tls): plain TCP only from the pod itself.",
            "local all all trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
            "hostssl all all 0.0.0.0/0 scram-sha-256",
            "hostssl all all ::/0 scram-sha-256",
            "",
        ]
    )


def hba_files() -> dict[str, str]:
    return {HBA_FILE: hba_conf()}


def hba_config_map(stack: TradingStack, owner: OwnerReference) -> Manifest:
    meta = metadata(stack, owner, "postgres", name=hba_config_map_name(stack))
    return manifest("v1", "ConfigMap", meta, data=hba_files())


def server_args(stack: TradingStack, directory: str = SERVER_DIR, hba_dir: str = HBA_DIR) -> list[str]:
    """`postgres` settings (`-c`) that turn TLS on with the mounted files; the directories are parameters so that a
    test runs the same settings from its own files."""
    if not postgres_enabled(stack):
        return []
    settings = {
        "ssl": "on",
        "ssl_cert_file": f"{directory}/{TlsSecretKey.CERT}",
        "ssl_key_file": f"{directory}/{TlsSecretKey.KEY}",
        "ssl_min_protocol_version": "TLSv1.2",
        "hba_file": f"{hba_dir}/{HBA_FILE}",
    }
    return [arg for option, value in settings.items() for arg in ("-c", f"{option}={value}")]


def secret_volume(stack: TradingStack, kind: ServerKind) -> dict[str, Any]:
    """The TLS Secret of `kind` whole (certificate, key, CA), for a pod that serves it."""
    secret = {"secretName": secret_name(stack, kind), "defaultMode": SECRET_FILE_MODE}
    return {"name": SERVER_VOLUME, "secret": secret}


def secret_mount() -> dict[str, Any]:
    return {"name": SERVER_VOLUME, "mountPath": SERVER_DIR, "readOnly": True}


def server_volumes(stack: TradingStack) -> list[dict[str, Any]]:
    """The PostgreSQL pod's: the Secret and pg_hba.conf."""
    if not postgres_enabled(stack):
        return []
    return [secret_volume(stack, POSTGRES), {"name": HBA_VOLUME, "configMap": {"name": hba_config_map_name(stack)}}]


def server_mounts(stack: TradingStack) -> list[dict[str, Any]]:
    if not postgres_enabled(stack):
        return []
    return [secret_mount(), {"name": HBA_VOLUME, "mountPath": HBA_DIR, "readOnly": True}]


def client_ca_file(kind: ServerKind) -> str:
    """Where a client finds the CA that verifies the servers of `kind`."""
    return POSTGRES_CA_FILE if kind == POSTGRES else REDIS_CA_FILE


def client_volumes(stack: TradingStack, uses: Collection[str]) -> list[dict[str, Any]]:
    """For a pod that connects to the data stores it `uses`: the CA certificate alone (never a server's key) of
    the TLS Secret of each kind among them that serves TLS, at `client_ca_file`."""
    sources = [
        {
            "secret": {
                "name": secret_name(stack, kind),
                "items": [{"key": TlsSecretKey.CA, "path": client_ca_file(kind).removeprefix(f"{CLIENT_DIR}/")}],
            }
        }
        for kind in served_kinds(stack, uses)
    ]
    return [{"name": CLIENT_VOLUME, "projected": {"sources": sources}}] if sources else []


def client_mounts(stack: TradingStack, uses: Collection[str]) -> list[dict[str, Any]]:
    mount = {"name": CLIENT_VOLUME, "mountPath": CLIENT_DIR, "readOnly": True}
    return [mount] if client_needs_ca(stack, uses) else []


def client_env(stack: TradingStack) -> list[dict[str, Any]]:
    """libpq's TLS defaults for a client container."""
    if not postgres_enabled(stack):
        return []
    return [
        {"name": LibpqTlsEnv.SSLMODE, "value": VERIFY_FULL},
        {"name": LibpqTlsEnv.SSLROOTCERT, "value": POSTGRES_CA_FILE},
    ]


def dsn_query() -> str:
    """What the clients' DATABASE_URL carries after `?`."""
    return f"sslmode={VERIFY_FULL}&sslrootcert={POSTGRES_CA_FILE}"


def secret_text(secret: Mapping[str, Any] | None, key: str) -> str | None:
    """A value of a Secret as read from the API server (`data`, base64) or as rendered (`stringData`)."""
    if secret is None:
        return None
    if (text := (secret.get("stringData") or {}).get(key)) is not None:
        return str(text)
    encoded = (secret.get("data") or {}).get(key)
    return None if encoded is None else base64.b64decode(encoded).decode()
