"""Follows the Redis master the sentinels agree on: plans the label of its pod (which the `<stack>-redis-master`
Service selects), the new status.redis and an Event on each failover; the executor carries the writes out.

Only read-only queries go to the sentinels (SENTINEL GET-MASTER-ADDR-BY-NAME): the operator never sends
SENTINEL RESET, MONITOR or SET, and does nothing while the sentinels have no agreed master (the decision lives
in `reconcile.redis_master`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from tradingstack.api import TradingStack
from tradingstack.api.status import RedisStatus
from tradingstack.components.observe import PodState
from tradingstack.components.redis import redis_pods
from tradingstack.contract import MASTER_ROLE, Label, SecretKey
from tradingstack.kube.actions import Action, ChildKey, Obj
from tradingstack.reconcile.redis_master import decide_master, master_actions
from tradingstack.redisclient.client import RedisTls
from tradingstack.redisclient.observe import observe_master
from tradingstack.render import tls
from tradingstack.render.redis import redis_secret_name, sentinel_addresses

log = logging.getLogger(__name__)


def _password(children: Mapping[ChildKey, Obj], stack: TradingStack) -> str | None:
    secret = children.get(("Secret", redis_secret_name(stack)))
    encoded = (secret or {}).get("data", {}).get(SecretKey.PASSWORD)
    return base64.b64decode(encoded).decode() if encoded else None


async def track_redis_master(
    stack: TradingStack,
    recorded: RedisStatus,
    children: Mapping[ChildKey, Obj],
    pods: Sequence[PodState],
    now: datetime,
    domain: str,
    client_ca: str | None = None,
) -> tuple[RedisStatus, list[Action]]:
    """Asks the sentinels (the only I/O here), then returns the new status.redis and the writes that follow it.
    `children`: where the Redis Secret is read; `pods`: the stack's pods (`components.observe`); `client_ca`: with
    `spec.tls`, the CA (PEM) the sentinels' certificate is verified with (`reconcile.tls.CertificatePlan`)."""
    password = _password(children, stack)
    if password is None:
        return recorded, []  # the Secret is created in this very pass; the sentinels cannot have started yet
    redis_tls = None
    if tls.redis_enabled(stack):
        if client_ca is None:
            return recorded, []  # the user's Secret is missing (reported as such): no sentinel can be verified
        redis_tls = RedisTls(ca_pem=client_ca)
    redis = stack.spec.redis
    # redis-py is blocking; a thread keeps the event loop (other stacks, watches, liveness) responsive.
    observation = await asyncio.to_thread(
        observe_master, sentinel_addresses(stack, domain), redis.master_name, password, 1.0, redis_tls
    )
    servers = redis_pods(pods)
    labelled = [pod.name for pod in servers if pod.labels.get(Label.REDIS_ROLE) == MASTER_ROLE]
    decision = decide_master(observation, recorded, sorted(pod.name for pod in servers), labelled, now)
    if decision.changed:
        log.info("redis master: %s", decision.explanation)
    return decision.status, master_actions(decision, stack.namespace)
