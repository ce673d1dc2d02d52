"""Secrets the operator generates once per stack (never from the CR, never re-rendered afterwards).

The random values come from the caller (`new_password`, and with pitr `new_tls_keys` and the time `now`), so
this stays pure and testable; the reconciler creates these objects only when they do not exist yet. The one
exception is the certificates' data: `reconcile.tls` issues the TLS certificates (`spec.tls`' servers', pitr's
pgBackRest TLS) anew before they expire and patches them in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import SecretKey
from tradingstack.contract.pgbackrest import CIPHER_PASS_KEY, CLIENT_CN
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.render import pitr, postgres, redis, tls
from tradingstack.render.certificates import Authority
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    Manifest,
    apply_deletion_policy,
    manifest,
    metadata,
    retained_annotations,
)
from tradingstack.render.pgbackrest_tls import TlsKeys, tls_files


def _secret(stack: TradingStack, owner: OwnerReference, component: str, name: str, data: dict[str, str]) -> Manifest:
    meta = metadata(stack, owner, component, name=name, annotations=retained_annotations())
    secret = manifest("v1", "Secret", meta, type="Opaque", stringData=data)
    return apply_deletion_policy(secret, stack.spec.deletion_policy)


def _generates_redis(stack: TradingStack) -> bool:
    return stack.spec.redis.enabled and stack.spec.redis.existing_secret is None


def _generates_postgres(stack: TradingStack) -> bool:
    return stack.spec.postgres.enabled and stack.spec.postgres.existing_secret is None


def _pitr(stack: TradingStack) -> bool:
    return stack.spec.postgres.enabled and stack.spec.postgres.pitr.enabled


def generates_pgbackrest_tls(stack: TradingStack) -> bool:
    """The stack has the pgBackRest TLS server (pitr): its Secret `pitr.tls_secret_name` exists."""
    return _pitr(stack)


def pgbackrest_server_names(stack: TradingStack, domain: str) -> list[str]:
    """The DNS names of the pgBackRest TLS server's certificate."""
    return pitr.server_names(stack, postgres.host(stack, domain))


def _generates_cipher_pass(stack: TradingStack) -> bool:
    return _pitr(stack) and stack.spec.postgres.pitr.encrypt


def generated_secret_names(stack: TradingStack) -> list[str]:
    """The Secrets `generated_secrets` creates for this stack."""
    names = [redis.redis_secret_name(stack)] if _generates_redis(stack) else []
    names += [postgres.secret_name(stack)] if _generates_postgres(stack) else []
    names += [pitr.cipher_secret_name(stack)] if _generates_cipher_pass(stack) else []
    names += [pitr.tls_secret_name(stack)] if _pitr(stack) else []
    if tls.generated(stack):
        names += [tls.ca_secret_name(stack), *(tls.secret_name(stack, kind) for kind in tls.served_kinds(stack))]
    return names


def referenced_secret_keys(stack: TradingStack) -> dict[str, tuple[str, ...]]:
    """The users' Secrets the stack's pods read (`existingSecret`), with the keys each must have."""
    keys: dict[str, tuple[str, ...]] = {}
    if stack.spec.redis.enabled and stack.spec.redis.existing_secret:
        keys[stack.spec.redis.existing_secret] = (SecretKey.PASSWORD,)
    if stack.spec.postgres.enabled and stack.spec.postgres.existing_secret:
        name = stack.spec.postgres.existing_secret
        keys[name] = tuple(dict.fromkeys(keys.get(name, ()) + postgres.POSTGRES_SECRET_KEYS))
    if tls.enabled(stack) and not tls.generated(stack):
        for kind in tls.served_kinds(stack):
            keys[tls.secret_name(stack, kind)] = (TlsSecretKey.CERT, TlsSecretKey.KEY, TlsSecretKey.CA)
    s3 = stack.spec.postgres.pitr.s3
    if _pitr(stack) and s3 is not None:
        for ref in (s3.access_key_id, s3.secret_access_key, *([s3.ca_secret] if s3.ca_secret else [])):
            keys[ref.name] = tuple(dict.fromkeys((*keys.get(ref.name, ()), ref.key)))
    return keys


def generated_secrets(
    stack: TradingStack,
    owner: OwnerReference,
    new_password: Callable[[], str],
    domain: str = DEFAULT_CLUSTER_DOMAIN,
    new_tls_keys: Callable[[], TlsKeys] | None = None,
    now: datetime | None = None,
) -> list[Manifest]:
    """With pitr, `new_tls_keys` and `now` are required: the certificates' keys and start of validity."""
    secrets: list[Manifest] = []
    if _generates_redis(stack):
        secrets.append(
            _secret(stack, owner, "redis", redis.redis_secret_name(stack), {SecretKey.PASSWORD: new_password()})
        )
    if _generates_postgres(stack):
        password = new_password()
        data = {
            SecretKey.USERNAME: stack.spec.postgres.user,
            SecretKey.PASSWORD: password,
            SecretKey.DSN: postgres.dsn(stack, password, domain),
        }
        secrets.append(_secret(stack, owner, "postgres", postgres.secret_name(stack), data))
    if _generates_cipher_pass(stack):
        passphrase = {CIPHER_PASS_KEY: new_password()}
        secrets.append(_secret(stack, owner, "postgres", pitr.cipher_secret_name(stack), passphrase))
    if _pitr(stack):
        if new_tls_keys is None or now is None:
            raise ValueError("pitr's TLS Secret needs new_tls_keys and now")
        files = tls_files(pgbackrest_server_names(stack, domain), CLIENT_CN, new_tls_keys(), now)
        secrets.append(_secret(stack, owner, "postgres", pitr.tls_secret_name(stack), files))
    return secrets


def tls_ca_secret(stack: TradingStack, owner: OwnerReference, ca: Authority) -> Manifest:
    """With `spec.tls` issued by the operator: the CA Secret (the live CA, or a new one when there is none yet:
    `reconcile.tls` decides)."""
    return _secret(stack, owner, tls.COMPONENT, tls.ca_secret_name(stack), tls.ca_files(ca))


def tls_server_secret(
    stack: TradingStack,
    owner: OwnerReference,
    kind: tls.ServerKind,
    ca: Authority,
    server_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> Manifest:
    """With `spec.tls` issued by the operator: the TLS Secret of the servers of `kind`, signed by `ca`."""
    files = tls.server_files(stack, kind, ca, server_key, now, domain)
    return _secret(stack, owner, tls.COMPONENT, tls.secret_name(stack, kind), files)
