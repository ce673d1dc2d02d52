"""`spec.tls` through whole reconcile passes against the in-memory API server of `test_pass`: the certificates are
created with the other generated Secrets, a settled stack's resync writes nothing, and past `renewBeforeDays` one
pass issues a certificate anew and rolls exactly the servers that serve it: PostgreSQL for its own, Redis and the
sentinels for theirs."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from tests.unit.test_pass import NOW, ApiServer, example_body
from tradingstack.api import TradingStack
from tradingstack.contract import Annotation
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler, new_private_key
from tradingstack.reconcile.tls import revision
from tradingstack.render import tls
from tradingstack.render.certificates import load_authority
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN as DOMAIN
from tradingstack.render.tls import ServerKind


class PatchingApiServer(ApiServer):
    """Also carries out merge patches of a Secret's data, as the API server does."""

    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None:
        await super().merge_patch(kind, name, namespace, patch)
        if kind == "Secret" and "data" in patch:
            self.objects[kind, name]["data"].update(patch["data"])


def tls_body() -> dict[str, Any]:
    body = example_body()
    body["spec"]["tls"] = {"enabled": True}
    body["spec"].pop("maintenance", None)  # a renewal's roll is not held for a window here
    return body


async def one_pass(api: ApiServer, now: datetime, body: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """A pass at `now` over `body` (default `tls_body()`) with the status the last pass wrote."""
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: now, new_password=lambda: "pw", read_data_plane=False)
    body = tls_body() if body is None else body
    await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return list(api.calls)


def child_writes(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The writes of children and Secrets (the status moves with the clock: the next restart, the backups)."""
    return [call for call in calls if call[0] in ("create", "apply", "delete", "patch", "labels")]


SERVERS = {"postgres": ("quantum-trader-postgres",), "redis": ("quantum-trader-redis", "quantum-trader-redis-sentinel")}


def served_revision(api: ApiServer, kind: str) -> str:
    """The certificate revision on the pod templates of the servers of `kind` (one, the same on each)."""
    served = {
        api.objects["StatefulSet", name]["spec"]["template"]["metadata"]["annotations"][Annotation.TLS_REVISION]
        for name in SERVERS[kind]
    }
    (revision_,) = served
    return str(revision_)


def live_cert(api: ApiServer, kind: str) -> str:
    secret = api.objects["Secret", f"quantum-trader-{kind}-tls"]
    return base64.b64decode(secret["data"][TlsSecretKey.CERT]).decode()


def age(api: ApiServer, kind: ServerKind, days: int) -> None:
    """Makes the live certificate of `kind` `days` older: issued by the same CA, `days` before `NOW`."""
    ca = {k: base64.b64decode(v).decode() for k, v in api.objects["Secret", "quantum-trader-tls-ca"]["data"].items()}
    authority = load_authority(ca[TlsSecretKey.CERT], ca[TlsSecretKey.KEY])
    assert authority is not None
    stack = TradingStack.model_validate(tls_body())
    files = tls.server_files(stack, kind, authority, new_private_key(), NOW - timedelta(days=days), DOMAIN)
    data = {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}
    api.objects["Secret", f"quantum-trader-{kind}-tls"]["data"] = data


async def test_the_certificates_are_created_first_and_a_resync_writes_nothing() -> None:
    api = PatchingApiServer()
    calls = await one_pass(api, NOW)
    creates = [call[2] for call in calls if call[:2] == ("create", "Secret")]
    assert creates[-3:] == ["quantum-trader-tls-ca", "quantum-trader-postgres-tls", "quantum-trader-redis-tls"]
    first_apply = next(i for i, call in enumerate(calls) if call[0] == "apply")
    assert all(i < first_apply for i, call in enumerate(calls) if call[0] == "create")
    for kind in SERVERS:
        assert served_revision(api, kind) == revision(live_cert(api, kind))
    assert served_revision(api, "postgres") != served_revision(api, "redis")
    assert child_writes(await one_pass(api, NOW + timedelta(days=1))) == []


async def test_past_renew_before_days_one_pass_renews_and_rolls_the_servers_only() -> None:
    api = PatchingApiServer()
    await one_pass(api, NOW)
    ca_before = api.objects["Secret", "quantum-trader-tls-ca"]["data"]
    old = {kind: live_cert(api, kind) for kind in SERVERS}
    assert child_writes(await one_pass(api, NOW + timedelta(days=60))) == []
    calls = await one_pass(api, NOW + timedelta(days=61))
    assert ("patch", "Secret", "quantum-trader-postgres-tls") in calls
    assert ("patch", "Secret", "quantum-trader-redis-tls") in calls
    assert calls.count(("event", "Normal", "CertificateRenewed")) == 2
    applies = [call[1:3] for call in calls if call[0] == "apply"]
    assert applies == [
        ("StatefulSet", "quantum-trader-postgres"),
        ("StatefulSet", "quantum-trader-redis"),
        ("StatefulSet", "quantum-trader-redis-sentinel"),
    ]
    for kind in SERVERS:
        assert live_cert(api, kind) != old[kind] and served_revision(api, kind) == revision(live_cert(api, kind))
    assert api.objects["Secret", "quantum-trader-tls-ca"]["data"] == ca_before
    assert child_writes(await one_pass(api, NOW + timedelta(days=62))) == []


async def test_a_renewal_of_one_kind_rolls_that_kinds_servers_only() -> None:
    """Redis' certificate issued 20 days after PostgreSQL's: at day 61 only PostgreSQL's is renewed and rolled."""
    api = PatchingApiServer()
    await one_pass(api, NOW)
    age(api, "postgres", 20)
    await one_pass(api, NOW)  # the aged certificate served: its revision on PostgreSQL's template
    redis_before = live_cert(api, "redis")
    calls = await one_pass(api, NOW + timedelta(days=41))
    patches = [call[2] for call in calls if call[:2] == ("patch", "Secret")]
    assert patches == ["quantum-trader-postgres-tls"]
    assert [call[1:3] for call in calls if call[0] == "apply"] == [("StatefulSet", "quantum-trader-postgres")]
    assert live_cert(api, "redis") == redis_before
    assert served_revision(api, "postgres") == revision(live_cert(api, "postgres"))
