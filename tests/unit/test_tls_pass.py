"""`spec.tls` through whole reconcile passes against the in-memory API server of `test_pass`: the certificates are
created with the other generated Secrets, a settled stack's resync writes nothing, and past `renewBeforeDays` one
pass issues the certificate anew and rolls exactly the servers that serve it (PostgreSQL, Redis, the sentinels)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from tests.unit.test_pass import NOW, ApiServer, example_body
from tradingstack.contract import Annotation
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler
from tradingstack.reconcile.tls import revision


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


async def one_pass(api: ApiServer, now: datetime) -> list[tuple[Any, ...]]:
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: now, new_password=lambda: "pw", read_data_plane=False)
    body = tls_body()
    await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return list(api.calls)


def child_writes(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The writes of children and Secrets (the status moves with the clock: the next restart, the backups)."""
    return [call for call in calls if call[0] in ("create", "apply", "delete", "patch", "labels")]


def served_revision(api: ApiServer) -> str:
    """The certificate revision on the servers' pod templates (one, the same on each)."""
    names = ("quantum-trader-postgres", "quantum-trader-redis", "quantum-trader-redis-sentinel")
    served = {
        api.objects["StatefulSet", name]["spec"]["template"]["metadata"]["annotations"][Annotation.TLS_REVISION]
        for name in names
    }
    (revision_,) = served
    return str(revision_)


def live_cert(api: ApiServer) -> str:
    return base64.b64decode(api.objects["Secret", "quantum-trader-tls"]["data"][TlsSecretKey.CERT]).decode()


async def test_the_certificates_are_created_first_and_a_resync_writes_nothing() -> None:
    api = PatchingApiServer()
    calls = await one_pass(api, NOW)
    creates = [call[2] for call in calls if call[:2] == ("create", "Secret")]
    assert creates[-2:] == ["quantum-trader-tls-ca", "quantum-trader-tls"]
    first_apply = next(i for i, call in enumerate(calls) if call[0] == "apply")
    assert all(i < first_apply for i, call in enumerate(calls) if call[0] == "create")
    assert served_revision(api) == revision(live_cert(api))
    assert child_writes(await one_pass(api, NOW + timedelta(days=1))) == []


async def test_past_renew_before_days_one_pass_renews_and_rolls_the_servers_only() -> None:
    api = PatchingApiServer()
    await one_pass(api, NOW)
    ca_before = api.objects["Secret", "quantum-trader-tls-ca"]["data"]
    old = live_cert(api)
    assert child_writes(await one_pass(api, NOW + timedelta(days=60))) == []
    calls = await one_pass(api, NOW + timedelta(days=61))
    assert ("patch", "Secret", "quantum-trader-tls") in calls
    assert ("event", "Normal", "CertificateRenewed") in calls
    applies = [call[1:3] for call in calls if call[0] == "apply"]
    assert applies == [
        ("StatefulSet", "quantum-trader-postgres"),
        ("StatefulSet", "quantum-trader-redis"),
        ("StatefulSet", "quantum-trader-redis-sentinel"),
    ]
    assert live_cert(api) != old and served_revision(api) == revision(live_cert(api))
    assert api.objects["Secret", "quantum-trader-tls-ca"]["data"] == ca_before
    assert child_writes(await one_pass(api, NOW + timedelta(days=62))) == []
