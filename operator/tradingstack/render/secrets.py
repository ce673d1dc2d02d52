"""Secrets the operator generates once per stack (never from the CR, never re-rendered afterwards).

The random values come from the caller (`new_password`), so this stays pure and testable; the reconciler
creates these objects only when they do not exist yet and never updates them.
"""

from __future__ import annotations

from collections.abc import Callable

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import SecretKey
from tradingstack.render import postgres, redis
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    Manifest,
    apply_deletion_policy,
    manifest,
    metadata,
    retained_annotations,
)


def _secret(stack: TradingStack, owner: OwnerReference, component: str, name: str, data: dict[str, str]) -> Manifest:
    meta = metadata(stack, owner, component, name=name, annotations=retained_annotations())
    secret = manifest("v1", "Secret", meta, type="Opaque", stringData=data)
    return apply_deletion_policy(secret, stack.spec.deletion_policy)


def _generates_redis(stack: TradingStack) -> bool:
    return stack.spec.redis.enabled and stack.spec.redis.existing_secret is None


def _generates_postgres(stack: TradingStack) -> bool:
    return stack.spec.postgres.enabled and stack.spec.postgres.existing_secret is None


def generated_secret_names(stack: TradingStack) -> list[str]:
    """The Secrets `generated_secrets` creates for this stack."""
    names = [redis.redis_secret_name(stack)] if _generates_redis(stack) else []
    return names + ([postgres.secret_name(stack)] if _generates_postgres(stack) else [])


def referenced_secret_keys(stack: TradingStack) -> dict[str, tuple[str, ...]]:
    """The users' Secrets the stack's pods read (`existingSecret`), with the keys each must have."""
    keys: dict[str, tuple[str, ...]] = {}
    if stack.spec.redis.enabled and stack.spec.redis.existing_secret:
        keys[stack.spec.redis.existing_secret] = (SecretKey.PASSWORD,)
    if stack.spec.postgres.enabled and stack.spec.postgres.existing_secret:
        name = stack.spec.postgres.existing_secret
        keys[name] = tuple(dict.fromkeys(keys.get(name, ()) + postgres.POSTGRES_SECRET_KEYS))
    return keys


def generated_secrets(
    stack: TradingStack,
    owner: OwnerReference,
    new_password: Callable[[], str],
    domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> list[Manifest]:
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
    return secrets
