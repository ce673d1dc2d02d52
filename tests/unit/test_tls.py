"""`spec.tls`: the API's rules, the rendered server and clients, and the certificate planner with an injected
clock (`reconcile.tls`): issue, keep, renew before expiry under the same CA, reissue after the CA changed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from tests.kubelet import resolved_env
from tests.psa import pod_specs, restricted_violations
from tradingstack.api import TradingStack
from tradingstack.api.crd import build_crd
from tradingstack.components import render
from tradingstack.contract import Annotation, PostgresEnv
from tradingstack.contract.tls import CLIENT_CA_FILE, CLIENT_DIR, SERVER_DIR, VERIFY_FULL, LibpqTlsEnv, TlsSecretKey
from tradingstack.kube.actions import MergePatch
from tradingstack.reconcile.tls import plan_certificates, renewal_reason, revision, with_certificate_revision
from tradingstack.render import tls
from tradingstack.render.certificates import dns_names, signed_by
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN
from tradingstack.render.secrets import generated_secret_names, referenced_secret_keys

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DOMAIN = DEFAULT_CLUSTER_DOMAIN


def stack(tls_spec: dict[str, Any] | None = None, **spec: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1"},
            "spec": {
                "tls": {"enabled": True} if tls_spec is None else tls_spec,
                "services": [
                    {"name": "api", "image": "example/api:1", "port": 8000, "uses": ["postgres", "redis"]},
                    {"name": "cache", "image": "example/cache:1", "port": 8001, "uses": ["redis"]},
                ],
                **spec,
            },
        }
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def as_live(secret: dict[str, Any], owner_uid: str | None = None) -> dict[str, Any]:
    """A generated Secret as the API server returns it: `data` in base64 (with `owner_uid`: controlled by that)."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
    meta = dict(secret["metadata"])
    if owner_uid is not None:
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": owner_uid, "controller": True}
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}


def certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def patched_files(patch: MergePatch) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in patch.patch["data"].items()}


# --- API


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"enabled": True, "issuer": "secret"}, "issuer secret needs secretName"),
        ({"enabled": True, "validityDays": 30, "renewBeforeDays": 30}, "renewBeforeDays must be less"),
    ],
)
def test_inconsistent_tls_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        stack(spec)


def test_tls_needs_a_single_postgres_instance() -> None:
    with pytest.raises(ValidationError, match=r"tls: needs postgres\.instances 1"):
        stack(None, postgres={"instances": 3})


def test_the_crd_carries_the_rules_the_api_server_enforces() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    tls_rules = [r["message"] for r in schema["properties"]["tls"]["x-kubernetes-validations"]]
    assert tls_rules == ["issuer secret needs secretName", "renewBeforeDays must be less than validityDays"]
    spec_rules = [r["message"] for r in schema["x-kubernetes-validations"]]
    assert "tls needs postgres.instances 1 (not yet with a Patroni cluster)" in spec_rules


# --- render


def _by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def _rendered(s: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return _by_key(render(s, s.owner_reference(), DOMAIN))


def test_disabled_tls_renders_exactly_what_no_tls_renders() -> None:
    plain = TradingStack.model_validate({**stack().model_dump(by_alias=True, exclude={"spec": {"tls"}})})
    assert render(stack({"enabled": False}), plain.owner_reference(), DOMAIN) == render(
        plain, plain.owner_reference(), DOMAIN
    )


def test_the_server_serves_tls_with_the_mounted_secret_and_the_rendered_hba() -> None:
    objs = _rendered(stack())
    pod = objs["StatefulSet", "quant-postgres"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    args = server["args"]
    assert args[0] == "postgres"
    settings = dict(a.split("=", 1) for a in args[2::2])
    assert settings["ssl"] == "on"
    assert settings["ssl_cert_file"] == f"{SERVER_DIR}/{TlsSecretKey.CERT}"
    assert settings["ssl_key_file"] == f"{SERVER_DIR}/{TlsSecretKey.KEY}"
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts[tls.SERVER_VOLUME] == SERVER_DIR
    assert volumes[tls.SERVER_VOLUME]["secret"]["secretName"] == "quant-tls"
    assert settings["hba_file"] == f"{mounts[tls.HBA_VOLUME]}/{tls.HBA_FILE}"
    hba = objs["ConfigMap", volumes[tls.HBA_VOLUME]["configMap"]["name"]]["data"][tls.HBA_FILE]
    lines = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    # Nothing but the pod itself connects over plain TCP.
    assert [line for line in lines if line[0] == "host"] == [
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"],
    ]
    assert all(line[-1] != "trust" for line in lines if line[0] != "local")


def test_clients_get_verify_full_and_the_ca_only() -> None:
    objs = _rendered(stack())
    api = objs["Deployment", "quant-api"]["spec"]["template"]["spec"]
    container = api["containers"][0]
    env = resolved_env(container, secret=lambda name, key: "postgresql://u:p@h:5432/trading")
    assert env[PostgresEnv.URL] == f"postgresql://u:p@h:5432/trading?sslmode={VERIFY_FULL}&sslrootcert={CLIENT_CA_FILE}"
    assert env[LibpqTlsEnv.SSLMODE] == VERIFY_FULL and env[LibpqTlsEnv.SSLROOTCERT] == CLIENT_CA_FILE
    (volume,) = [v for v in api["volumes"] if v["name"] == tls.CLIENT_VOLUME]
    # The service mounts the CA certificate alone, never the server's key.
    assert volume["secret"] == {"secretName": "quant-tls", "items": [{"key": TlsSecretKey.CA, "path": TlsSecretKey.CA}]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"{mounts[tls.CLIENT_VOLUME]}/{TlsSecretKey.CA}" == CLIENT_CA_FILE == f"{CLIENT_DIR}/{TlsSecretKey.CA}"
    cache = objs["Deployment", "quant-cache"]["spec"]["template"]["spec"]
    # A Redis-only client gets the CA for Redis (tests/unit/test_tls_redis.py), none of libpq's settings.
    assert LibpqTlsEnv.SSLMODE not in {e["name"] for e in cache["containers"][0]["env"]}
    backup = objs["CronJob", "quant-postgres-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    tool = backup["containers"][0]
    assert {"name": LibpqTlsEnv.SSLMODE, "value": VERIFY_FULL} in tool["env"]
    assert any(m["name"] == tls.CLIENT_VOLUME for m in tool["volumeMounts"])
    assert any(v["name"] == tls.CLIENT_VOLUME for v in backup["volumes"])


def test_every_pod_stays_restricted_with_tls() -> None:
    for obj in _rendered(stack()).values():
        for pod in pod_specs(obj):
            assert restricted_violations(pod) == []


def test_generated_and_referenced_secrets() -> None:
    assert generated_secret_names(stack())[-2:] == ["quant-tls-ca", "quant-tls"]
    assert "quant-tls" not in generated_secret_names(stack({"enabled": False}))
    user = stack({"enabled": True, "issuer": "secret", "secretName": "quant-cert"})
    assert "quant-tls" not in generated_secret_names(user)
    assert referenced_secret_keys(user)["quant-cert"] == ("tls.crt", "tls.key", "ca.crt")
    pod = _rendered(user)["StatefulSet", "quant-postgres"]["spec"]["template"]["spec"]
    assert {"name": tls.SERVER_VOLUME, "secret": {"secretName": "quant-cert", "defaultMode": 0o440}} in pod["volumes"]


def test_server_names_cover_the_service() -> None:
    postgres = [
        "quant-postgres.trading.svc.cluster.local",
        "quant-postgres",
        "quant-postgres.trading",
        "quant-postgres.trading.svc",
    ]
    redis = tls.redis_server_names(stack(), "cluster.local")
    assert tls.server_names(stack(), "cluster.local") == postgres + redis
    assert tls.server_names(stack(redis={"enabled": False}, services=[]), "cluster.local") == postgres
    assert tls.server_names(stack(postgres={"enabled": False}, services=[]), "cluster.local") == redis


# --- planner


def test_no_tls_plans_nothing() -> None:
    plan = plan_certificates(stack({"enabled": False}), None, None, T0, new_key, DOMAIN)
    assert plan.secrets == [] and plan.renewals == [] and plan.revision is None


def test_first_pass_creates_a_ca_and_a_server_certificate_signed_by_it() -> None:
    plan = plan_certificates(stack(), None, None, T0, new_key, DOMAIN)
    ca_secret, server_secret = plan.secrets
    assert [s["metadata"]["name"] for s in plan.secrets] == ["quant-tls-ca", "quant-tls"]
    assert set(ca_secret["stringData"]) == {TlsSecretKey.CERT, TlsSecretKey.KEY}
    files = server_secret["stringData"]
    ca, server = certificate(ca_secret["stringData"][TlsSecretKey.CERT]), certificate(files[TlsSecretKey.CERT])
    assert files[TlsSecretKey.CA] == ca_secret["stringData"][TlsSecretKey.CERT]
    assert signed_by(server, ca)
    assert dns_names(server) == tls.server_names(stack(), DOMAIN)
    assert server.not_valid_after_utc == T0 + timedelta(days=90)
    assert ca.not_valid_after_utc == T0 + timedelta(days=3650)
    assert plan.renewals == [] and plan.revision == revision(files[TlsSecretKey.CERT])
    # Kept like the other generated Secrets.
    assert server_secret["metadata"]["annotations"][Annotation.RETAIN] == "true"


def _issued() -> tuple[dict[str, Any], dict[str, Any]]:
    ca, server = plan_certificates(stack(), None, None, T0, new_key, DOMAIN).secrets
    return as_live(ca), as_live(server)


def test_a_good_certificate_is_kept_until_renew_before_days_remain() -> None:
    live_ca, live_server = _issued()
    live_cert = base64.b64decode(live_server["data"][TlsSecretKey.CERT]).decode()
    last_day_kept = T0 + timedelta(days=90 - 30)
    plan = plan_certificates(stack(), live_ca, live_server, last_day_kept, new_key, DOMAIN)
    assert plan.renewals == [] and plan.revision == revision(live_cert)
    renewed = plan_certificates(stack(), live_ca, live_server, last_day_kept + timedelta(seconds=1), new_key, DOMAIN)
    (patch,) = renewed.renewals
    assert (patch.kind, patch.name, patch.namespace) == ("Secret", "quant-tls", "trading")
    files = patched_files(patch)
    new = certificate(files[TlsSecretKey.CERT])
    ca_pem = base64.b64decode(live_ca["data"][TlsSecretKey.CERT]).decode()
    # The same CA: the clients' CA file does not change.
    assert files[TlsSecretKey.CA] == ca_pem and signed_by(new, certificate(ca_pem))
    assert new.not_valid_after_utc == last_day_kept + timedelta(seconds=1) + timedelta(days=90)
    assert files[TlsSecretKey.KEY] != base64.b64decode(live_server["data"][TlsSecretKey.KEY]).decode()
    assert renewed.revision == revision(files[TlsSecretKey.CERT]) != revision(live_cert)
    assert renewed.reason is not None and "within 30 days" in renewed.reason


def test_renew_before_days_follows_the_spec() -> None:
    spec = {"enabled": True, "validityDays": 10, "renewBeforeDays": 3}
    ca, server = (as_live(s) for s in plan_certificates(stack(spec), None, None, T0, new_key, DOMAIN).secrets)
    assert plan_certificates(stack(spec), ca, server, T0 + timedelta(days=7), new_key, DOMAIN).renewals == []
    assert plan_certificates(stack(spec), ca, server, T0 + timedelta(days=7, hours=1), new_key, DOMAIN).renewals


def test_an_expired_certificate_is_renewed() -> None:
    live_ca, live_server = _issued()
    plan = plan_certificates(stack(), live_ca, live_server, T0 + timedelta(days=400), new_key, DOMAIN)
    assert len(plan.renewals) == 1


def test_a_certificate_of_another_ca_is_issued_anew_by_the_live_one() -> None:
    _, old_server = _issued()
    new_ca, _ = _issued()  # the CA Secret was deleted and made again
    plan = plan_certificates(stack(), new_ca, old_server, T0 + timedelta(days=1), new_key, DOMAIN)
    assert plan.reason == "it is not signed by the stack's CA"
    ca_pem = base64.b64decode(new_ca["data"][TlsSecretKey.CERT]).decode()
    assert signed_by(certificate(patched_files(plan.renewals[0])[TlsSecretKey.CERT]), certificate(ca_pem))


def test_a_missing_server_secret_is_made_from_the_live_ca() -> None:
    live_ca, _ = _issued()
    plan = plan_certificates(stack(), live_ca, None, T0 + timedelta(days=1), new_key, DOMAIN)
    ca_pem = base64.b64decode(live_ca["data"][TlsSecretKey.CERT]).decode()
    assert plan.secrets[0]["stringData"][TlsSecretKey.CERT] == ca_pem
    assert signed_by(certificate(plan.secrets[1]["stringData"][TlsSecretKey.CERT]), certificate(ca_pem))


def test_secrets_of_that_name_held_by_someone_else_are_never_used() -> None:
    issued = plan_certificates(stack(), None, None, T0, new_key, DOMAIN).secrets
    foreign_ca, foreign_server = (as_live(s, owner_uid="someone-else") for s in issued)
    plan = plan_certificates(stack(), foreign_ca, foreign_server, T0, new_key, DOMAIN)
    ca_pem = base64.b64decode(foreign_ca["data"][TlsSecretKey.CERT]).decode()
    assert plan.secrets[0]["stringData"][TlsSecretKey.CERT] != ca_pem
    assert plan.renewals == []  # never patches a Secret that is not the stack's


def test_other_dns_names_are_issued_anew() -> None:
    live_ca, live_server = _issued()
    plan = plan_certificates(stack(), live_ca, live_server, T0, new_key, "example.internal")
    assert plan.reason == "its DNS names are not the Service's"


def test_unreadable_certificate_is_issued_anew() -> None:
    assert renewal_reason("garbage", certificate(_issued_ca_pem()), [], T0, timedelta(days=1)) == "it cannot be read"


def _issued_ca_pem() -> str:
    return str(plan_certificates(stack(), None, None, T0, new_key, DOMAIN).secrets[0]["stringData"][TlsSecretKey.CERT])


def test_the_users_secret_gives_the_revision_only() -> None:
    user = stack({"enabled": True, "issuer": "secret", "secretName": "quant-cert"})
    _, server = _issued()
    plan = plan_certificates(user, None, server, T0 + timedelta(days=400), new_key, DOMAIN)
    assert plan.secrets == [] and plan.renewals == []
    assert plan.revision == revision(base64.b64decode(server["data"][TlsSecretKey.CERT]).decode())


def test_a_new_certificate_rolls_the_servers_only() -> None:
    s = stack()
    objs = render(s, s.owner_reference(), DOMAIN)
    stamped = with_certificate_revision(objs, s, "abc")
    assert with_certificate_revision(objs, s, None) == objs
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(objs, stamped, strict=True) if a != b]
    servers = ["quant-postgres", "quant-redis", "quant-redis-sentinel"]  # each serves the certificate
    assert changed == [("StatefulSet", name) for name in servers]
    (sts,) = [o for o in stamped if o["metadata"]["name"] == "quant-postgres" and o["kind"] == "StatefulSet"]
    assert sts["spec"]["template"]["metadata"]["annotations"][Annotation.TLS_REVISION] == "abc"
    (before,) = [o for o in objs if o["metadata"]["name"] == "quant-postgres" and o["kind"] == "StatefulSet"]
    assert sts["metadata"]["annotations"][Annotation.REVISION] != before["metadata"]["annotations"][Annotation.REVISION]
    assert with_certificate_revision(objs, s, "abd") != stamped
