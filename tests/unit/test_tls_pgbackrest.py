"""Rotation of the pgBackRest TLS certificates (pitr, `reconcile.tls.plan_pgbackrest_tls`) with an injected clock:
the server's and the Jobs' client certificates are issued anew under the same CA before they expire, the database
pod rolls by its revision annotation and nothing else does (the backup Jobs read the Secret when they start)."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from cryptography import x509

from tests.unit.test_pass import NOW, ApiServer, example_body
from tests.unit.test_tls_pass import PatchingApiServer, one_pass
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.contract import Annotation
from tradingstack.contract.pgbackrest import CLIENT_CN, TlsFile
from tradingstack.kube.actions import MergePatch, Obj
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler, new_tls_keys
from tradingstack.reconcile.tls import PgBackRestTlsPlan, plan_pgbackrest_tls, revision, with_pgbackrest_revision
from tradingstack.render.certificates import dns_names, load_authority, signed_by
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN as DOMAIN
from tradingstack.render.pgbackrest_tls import CA_KEY, LEAF_VALIDITY, RENEW_BEFORE, TlsKeys, leaf_files, tls_files
from tradingstack.render.secrets import generated_secrets, pgbackrest_server_names

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "quant-pgbackrest-tls"  # noqa: S105 - a Secret's name


def stack(pitr: bool = True, **spec: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1"},
            "spec": {"postgres": {"pitr": {"enabled": pitr}}, **spec},
        }
    )


def created(s: TradingStack, now: datetime = T0) -> dict[str, Any]:
    (secret,) = [x for x in generated_secrets(s, s.owner_reference(), lambda: "pw", DOMAIN, new_tls_keys, now)
                 if x["metadata"]["name"] == SECRET]  # fmt: skip
    return secret


def as_live(secret: dict[str, Any], owner_uid: str = "uid-1") -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
    owner = {"apiVersion": "v1", "kind": "TradingStack", "name": "quant", "uid": owner_uid, "controller": True}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {**secret["metadata"], "ownerReferences": [owner]},
            "data": data}  # fmt: skip


def files_of(live: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in live["data"].items()}


def patched(patch: MergePatch) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in patch.patch["data"].items()}


def cert(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def plan(
    s: TradingStack, live: dict[str, Any] | None, now: datetime, keys: Callable[[], TlsKeys] = new_tls_keys
) -> PgBackRestTlsPlan:
    return plan_pgbackrest_tls(s, live, created(s, now), now, keys, DOMAIN)


def test_without_pitr_nothing_is_planned() -> None:
    assert plan_pgbackrest_tls(stack(False), None, None, T0, new_tls_keys, DOMAIN).revision is None


def test_the_secret_made_in_this_pass_gives_the_revision() -> None:
    s = stack()
    secret = created(s)
    result = plan_pgbackrest_tls(s, None, secret, T0, new_tls_keys, DOMAIN)
    assert result.renewals == [] and result.revision == revision(secret["stringData"][TlsFile.SERVER_CERT])


def test_kept_until_renew_before_remains_then_both_issued_anew_under_the_same_ca() -> None:
    s = stack()
    live = as_live(created(s))
    old = files_of(live)
    last_day_kept = T0 + LEAF_VALIDITY - RENEW_BEFORE
    kept = plan(s, live, last_day_kept)
    assert kept.renewals == [] and kept.revision == revision(old[TlsFile.SERVER_CERT])
    later = last_day_kept + timedelta(seconds=1)
    renewed = plan(s, live, later)
    (patch,) = renewed.renewals
    assert (patch.kind, patch.name, patch.namespace) == ("Secret", SECRET, "trading")
    new = patched(patch)
    # The same CA (certificate and key): Jobs started before the renewal and the server before its restart trust it.
    assert new[TlsFile.CA] == old[TlsFile.CA] and new[CA_KEY] == old[CA_KEY]
    ca = cert(old[TlsFile.CA])
    server, client = cert(new[TlsFile.SERVER_CERT]), cert(new[TlsFile.CLIENT_CERT])
    assert signed_by(server, ca) and signed_by(client, ca)
    assert signed_by(cert(old[TlsFile.CLIENT_CERT]), ca)  # a running Job's certificate still chains to it
    assert dns_names(server) == pgbackrest_server_names(s, DOMAIN)
    assert client.subject.rfc4514_string() == f"CN={CLIENT_CN}"
    assert server.not_valid_after_utc == client.not_valid_after_utc == later + LEAF_VALIDITY
    assert server.serial_number != client.serial_number
    assert new[TlsFile.SERVER_KEY] != old[TlsFile.SERVER_KEY] and new[TlsFile.CLIENT_KEY] != old[TlsFile.CLIENT_KEY]
    assert renewed.revision == revision(new[TlsFile.SERVER_CERT]) != kept.revision
    assert renewed.reason is not None and renewed.reason.startswith("the server certificate: it expires")
    # Once patched, the next pass keeps it.
    assert plan(s, as_live({**created(s), "stringData": new}), later + timedelta(days=1)).renewals == []


def test_a_due_client_certificate_renews_both() -> None:
    """The client certificate issued 100 days before the server's (same CA): due first, both are issued anew."""
    s = stack()
    files = files_of(as_live(created(s)))
    ca = load_authority(files[TlsFile.CA], files[CA_KEY])
    assert ca is not None
    names = pgbackrest_server_names(s, DOMAIN)
    older = leaf_files(ca, names, CLIENT_CN, new_tls_keys(), T0 - timedelta(days=100))
    files[TlsFile.CLIENT_CERT], files[TlsFile.CLIENT_KEY] = older[TlsFile.CLIENT_CERT], older[TlsFile.CLIENT_KEY]
    live = as_live({**created(s), "stringData": files})
    assert plan(s, live, T0 + LEAF_VALIDITY - RENEW_BEFORE - timedelta(days=100)).renewals == []
    result = plan(s, live, T0 + LEAF_VALIDITY - RENEW_BEFORE - timedelta(days=99))
    assert result.reason is not None and result.reason.startswith("the client certificate: it expires")
    new = patched(result.renewals[0])
    assert new[TlsFile.CA] == files[TlsFile.CA]
    assert (
        new[TlsFile.SERVER_CERT] != files[TlsFile.SERVER_CERT]
        and new[TlsFile.CLIENT_CERT] != older[TlsFile.CLIENT_CERT]
    )


def test_a_secret_without_its_ca_key_gets_a_new_ca() -> None:
    """Made before rotation existed (the CA's key was not kept): everything is issued anew once."""
    s = stack()
    old = tls_files(pgbackrest_server_names(s, DOMAIN), CLIENT_CN, new_tls_keys(), T0)
    del old[CA_KEY]
    result = plan(s, as_live({**created(s), "stringData": old}), T0 + timedelta(days=1))
    assert result.reason == "it keeps no key of its CA"
    new = patched(result.renewals[0])
    assert new[TlsFile.CA] != old[TlsFile.CA] and CA_KEY in new
    assert signed_by(cert(new[TlsFile.SERVER_CERT]), cert(new[TlsFile.CA]))


def test_another_cluster_domain_is_issued_anew() -> None:
    s = stack()
    result = plan_pgbackrest_tls(s, as_live(created(s)), None, T0, new_tls_keys, "example.internal")
    assert result.reason == "the server certificate: its DNS names are not the Service's"


def test_a_secret_held_by_someone_else_is_never_patched() -> None:
    s = stack()
    result = plan(s, as_live(created(s), owner_uid="someone-else"), T0 + timedelta(days=400))
    assert result.renewals == [] and result.revision is None


def test_the_revision_rolls_the_database_pod_only() -> None:
    s = stack()
    objs = render(s, s.owner_reference(), DOMAIN)
    assert with_pgbackrest_revision(objs, s, None) == objs
    stamped = with_pgbackrest_revision(objs, s, "r1")
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(objs, stamped, strict=True) if a != b]
    assert changed == [("StatefulSet", "quant-postgres")]
    (sts,) = [o for o in stamped if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "quant-postgres"]
    assert sts["spec"]["template"]["metadata"]["annotations"][Annotation.PGBACKREST_TLS_REVISION] == "r1"


# --- whole passes (the in-memory API server of test_pass)


def pitr_body() -> dict[str, Any]:
    body = example_body()
    body["spec"]["postgres"]["pitr"] = {"enabled": True}
    body["spec"].pop("maintenance", None)  # the database pod's roll is not held for a window here
    return body


def _served(api: ApiServer) -> str:
    sts = api.objects["StatefulSet", "quantum-trader-postgres"]
    return str(sts["spec"]["template"]["metadata"]["annotations"][Annotation.PGBACKREST_TLS_REVISION])


def _server_cert(api: ApiServer) -> str:
    return files_of(api.objects["Secret", "quantum-trader-pgbackrest-tls"])[TlsFile.SERVER_CERT]


async def test_one_pass_past_renew_before_renews_and_rolls_the_database_pod_only() -> None:
    api = PatchingApiServer()
    await one_pass(api, NOW, pitr_body())
    assert _served(api) == revision(_server_cert(api))
    due = NOW + LEAF_VALIDITY - RENEW_BEFORE
    assert [c for c in await one_pass(api, due, pitr_body()) if c[0] in ("create", "apply", "patch", "delete")] == []
    calls = await one_pass(api, due + timedelta(days=1), pitr_body())
    assert ("patch", "Secret", "quantum-trader-pgbackrest-tls") in calls
    assert ("event", "Normal", "CertificateRenewed") in calls
    assert [call[1:3] for call in calls if call[0] == "apply"] == [("StatefulSet", "quantum-trader-postgres")]
    assert _served(api) == revision(_server_cert(api))
    writes = [
        c for c in await one_pass(api, due + timedelta(days=2), pitr_body()) if c[0] in ("create", "apply", "patch")
    ]
    assert writes == []


class CountingApiServer(PatchingApiServer):
    """Also counts the GETs, by kind and name."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: Counter[tuple[str, str]] = Counter()

    async def get(self, kind: str, name: str, namespace: str) -> Obj | None:
        self.gets[kind, name] += 1
        return await super().get(kind, name, namespace)


USERS_TLS = {"issuer": "secret", "postgresSecretName": "pg-tls", "redisSecretName": "redis-tls"}


@pytest.mark.parametrize(
    ("tls_spec", "read_by_both"),
    [({}, "quantum-trader-tls-ca"), (USERS_TLS, "pg-tls")],
    ids=["generated-certificates", "users-certificates"],
)
async def test_a_tls_and_pitr_pass_reads_each_secret_once(tls_spec: dict[str, str], read_by_both: str) -> None:
    """Each Secret a pass looks at is read once: the generated ones (credentials, the TLS CA and servers',
    pgBackRest's) for the certificates' plans and the ownership check alike, the user's TLS Secrets for the
    certificates' revisions and the check of their keys alike; on the pass that creates them, on a resync, and
    on release."""
    api = CountingApiServer()
    body = pitr_body()
    body["spec"]["tls"] = {"enabled": True, **tls_spec}
    for now in (NOW, NOW + timedelta(days=1)):
        api.gets.clear()
        await one_pass(api, now, body)
        assert {"quantum-trader-pgbackrest-tls", read_by_both} <= {name for kind, name in api.gets if kind == "Secret"}
        assert [key for key, count in api.gets.items() if count > 1] == []
    api.gets.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False)
    await reconciler.release(body)
    assert [key for key, count in api.gets.items() if count > 1] == []
