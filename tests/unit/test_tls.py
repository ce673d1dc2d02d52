"""`spec.tls`: the API's rules, the rendered server and clients, and the certificate planner with an injected
clock (`reconcile.tls`): issue one certificate per server kind, keep, renew each before expiry under the same CA,
reissue after the CA changed; each kind's key only in its own pods."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

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
from tradingstack.contract.tls import (
    CLIENT_DIR,
    POSTGRES_CA_FILE,
    REDIS_CA_FILE,
    SERVER_DIR,
    VERIFY_FULL,
    LibpqTlsEnv,
    TlsSecretKey,
)
from tradingstack.kube.actions import MergePatch
from tradingstack.reconcile.tls import plan_certificates, renewal_reason, revision, with_certificate_revisions
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
        ({"enabled": True, "issuer": "secret"}, "issuer secret needs tls.postgresSecretName while postgres"),
        ({"enabled": True, "issuer": "secret", "postgresSecretName": "pg"}, "needs tls.redisSecretName while redis"),
        (
            {"enabled": True, "issuer": "secret", "postgresSecretName": "c", "redisSecretName": "c"},
            "postgresSecretName and redisSecretName must differ",
        ),
        ({"enabled": True, "validityDays": 30, "renewBeforeDays": 30}, "renewBeforeDays must be less"),
    ],
)
def test_inconsistent_tls_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        stack(spec)


def test_the_users_secrets_are_needed_only_for_the_servers_the_stack_runs() -> None:
    redis_only = stack(
        {"enabled": True, "issuer": "secret", "redisSecretName": "r"}, postgres={"enabled": False}, services=[]
    )
    assert tls.secret_name(redis_only, tls.REDIS) == "r"
    postgres_only = stack(
        {"enabled": True, "issuer": "secret", "postgresSecretName": "p"}, redis={"enabled": False}, services=[]
    )
    assert tls.secret_name(postgres_only, tls.POSTGRES) == "p"


def test_tls_needs_a_single_postgres_instance() -> None:
    with pytest.raises(ValidationError, match=r"tls: needs postgres\.instances 1"):
        stack(None, postgres={"instances": 3})


def test_the_crd_carries_the_rules_the_api_server_enforces() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    tls_rules = [r["message"] for r in schema["properties"]["tls"]["x-kubernetes-validations"]]
    assert tls_rules == [
        "postgresSecretName and redisSecretName must differ: each server kind holds only its own key",
        "renewBeforeDays must be less than validityDays",
    ]
    spec_rules = [r["message"] for r in schema["x-kubernetes-validations"]]
    assert "tls needs postgres.instances 1 (not yet with a Patroni cluster)" in spec_rules
    assert "tls.issuer secret needs tls.postgresSecretName while postgres is enabled" in spec_rules
    assert "tls.issuer secret needs tls.redisSecretName while redis is enabled" in spec_rules


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
    assert volumes[tls.SERVER_VOLUME]["secret"]["secretName"] == "quant-postgres-tls"
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
    query = f"sslmode={VERIFY_FULL}&sslrootcert={POSTGRES_CA_FILE}"
    assert env[PostgresEnv.URL] == f"postgresql://u:p@h:5432/trading?{query}"
    assert env[LibpqTlsEnv.SSLMODE] == VERIFY_FULL and env[LibpqTlsEnv.SSLROOTCERT] == POSTGRES_CA_FILE
    # The service mounts the CA certificate of each server kind it uses alone, never a server's key.
    assert _ca_files(api, container) == {
        POSTGRES_CA_FILE: ("quant-postgres-tls", TlsSecretKey.CA),
        REDIS_CA_FILE: ("quant-redis-tls", TlsSecretKey.CA),
    }
    cache = objs["Deployment", "quant-cache"]["spec"]["template"]["spec"]
    # A Redis-only client gets the CA for Redis (tests/unit/test_tls_redis.py), none of libpq's settings.
    assert LibpqTlsEnv.SSLMODE not in {e["name"] for e in cache["containers"][0]["env"]}
    assert _ca_files(cache, cache["containers"][0]) == {REDIS_CA_FILE: ("quant-redis-tls", TlsSecretKey.CA)}
    backup = objs["CronJob", "quant-postgres-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    tool = backup["containers"][0]
    assert {"name": LibpqTlsEnv.SSLMODE, "value": VERIFY_FULL} in tool["env"]
    assert _ca_files(backup, tool) == {POSTGRES_CA_FILE: ("quant-postgres-tls", TlsSecretKey.CA)}


def _ca_files(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The container's CA files by path, each with the Secret and key it comes from."""
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == tls.CLIENT_VOLUME]
    assert mount["mountPath"] == CLIENT_DIR and mount["readOnly"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tls.CLIENT_VOLUME]
    return {
        f"{CLIENT_DIR}/{item['path']}": (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_each_server_kind_holds_its_own_key_only() -> None:
    """Least privilege: a pod mounts the whole TLS Secret (the private key) of its own kind only; every other pod
    gets the CA files' items alone."""
    objs = _rendered(stack())
    own = {"quant-postgres": "quant-postgres-tls", "quant-redis": "quant-redis-tls"}
    own["quant-redis-sentinel"] = "quant-redis-tls"
    tls_secrets = {"quant-postgres-tls", "quant-redis-tls", "quant-tls-ca"}
    for (kind, name), obj in objs.items():
        for pod in pod_specs(obj):
            whole = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
            expected = {own[name]} if kind == "StatefulSet" and name in own else set()
            assert whole & tls_secrets == expected, name
            for volume in pod.get("volumes", []):
                for source in volume.get("projected", {}).get("sources", []):
                    assert source["secret"]["items"] == [{"key": TlsSecretKey.CA, "path": ANY}], name


def test_every_pod_stays_restricted_with_tls() -> None:
    for obj in _rendered(stack()).values():
        for pod in pod_specs(obj):
            assert restricted_violations(pod) == []


def test_generated_and_referenced_secrets() -> None:
    assert generated_secret_names(stack())[-3:] == ["quant-tls-ca", "quant-postgres-tls", "quant-redis-tls"]
    postgres_only = stack(redis={"enabled": False}, services=[])
    assert generated_secret_names(postgres_only)[-2:] == ["quant-tls-ca", "quant-postgres-tls"]
    assert not any("tls" in name for name in generated_secret_names(stack({"enabled": False})))
    user = stack({"enabled": True, "issuer": "secret", "postgresSecretName": "pg-cert", "redisSecretName": "r-cert"})
    assert not any("tls" in name for name in generated_secret_names(user))
    assert referenced_secret_keys(user)["pg-cert"] == ("tls.crt", "tls.key", "ca.crt")
    assert referenced_secret_keys(user)["r-cert"] == ("tls.crt", "tls.key", "ca.crt")
    objs = _rendered(user)
    for name, secret in (("quant-postgres", "pg-cert"), ("quant-redis", "r-cert"), ("quant-redis-sentinel", "r-cert")):
        pod = objs["StatefulSet", name]["spec"]["template"]["spec"]
        assert {"name": tls.SERVER_VOLUME, "secret": {"secretName": secret, "defaultMode": 0o440}} in pod["volumes"]


def test_server_names_cover_the_service() -> None:
    postgres = [
        "quant-postgres.trading.svc.cluster.local",
        "quant-postgres",
        "quant-postgres.trading",
        "quant-postgres.trading.svc",
    ]
    redis = tls.redis_server_names(stack(), "cluster.local")
    assert tls.server_names(stack(), tls.POSTGRES, "cluster.local") == postgres
    assert tls.server_names(stack(), tls.REDIS, "cluster.local") == redis
    assert not set(postgres) & set(redis)


# --- planner


def test_no_tls_plans_nothing() -> None:
    plan = plan_certificates(stack({"enabled": False}), None, {}, T0, new_key, DOMAIN)
    assert plan.secrets == [] and plan.renewals == [] and plan.revisions == {}


def test_first_pass_creates_a_ca_and_a_certificate_per_server_kind_signed_by_it() -> None:
    plan = plan_certificates(stack(), None, {}, T0, new_key, DOMAIN)
    ca_secret, postgres_secret, redis_secret = plan.secrets
    assert [s["metadata"]["name"] for s in plan.secrets] == ["quant-tls-ca", "quant-postgres-tls", "quant-redis-tls"]
    assert set(ca_secret["stringData"]) == {TlsSecretKey.CERT, TlsSecretKey.KEY}
    ca = certificate(ca_secret["stringData"][TlsSecretKey.CERT])
    assert ca.not_valid_after_utc == T0 + timedelta(days=3650)
    servers = {}
    for kind, secret in ((tls.POSTGRES, postgres_secret), (tls.REDIS, redis_secret)):
        files = secret["stringData"]
        server = servers[kind] = certificate(files[TlsSecretKey.CERT])
        assert files[TlsSecretKey.CA] == ca_secret["stringData"][TlsSecretKey.CERT]
        assert signed_by(server, ca)
        assert dns_names(server) == tls.server_names(stack(), kind, DOMAIN)
        assert server.not_valid_after_utc == T0 + timedelta(days=90)
        assert plan.revisions[kind] == revision(files[TlsSecretKey.CERT])
        # Kept like the other generated Secrets.
        assert secret["metadata"]["annotations"][Annotation.RETAIN] == "true"
    # Two keys, two serials under one CA, though issued at the same instant.
    assert postgres_secret["stringData"][TlsSecretKey.KEY] != redis_secret["stringData"][TlsSecretKey.KEY]
    assert servers[tls.POSTGRES].serial_number != servers[tls.REDIS].serial_number
    assert plan.renewals == [] and plan.reasons == {}
    assert plan.client_ca == ca_secret["stringData"][TlsSecretKey.CERT]


def test_names_longer_than_a_common_name_may_be_still_get_certificates() -> None:
    """A common name holds 64 characters at most (RFC 5280); a 63-character namespace and a 30-character stack name make
    longer ones, which the generated-spec test found failing every pass. The SANs carry the full names."""
    long = TradingStack.model_validate(
        {**stack().model_dump(by_alias=True), "metadata": {"name": "s" * 30, "namespace": "n" * 63, "uid": "u"}}
    )
    plan = plan_certificates(long, None, {}, T0, new_key, DOMAIN)
    ca = certificate(plan.secrets[0]["stringData"][TlsSecretKey.CERT])
    assert len(ca.subject.rfc4514_string()) == len("CN=") + 64
    for kind, secret in zip((tls.POSTGRES, tls.REDIS), plan.secrets[1:], strict=True):
        server = certificate(secret["stringData"][TlsSecretKey.CERT])
        assert dns_names(server) == tls.server_names(long, kind, DOMAIN)
        assert any(len(n) > 64 for n in dns_names(server))


def test_only_the_kinds_that_serve_tls_get_a_certificate() -> None:
    postgres_only = plan_certificates(stack(redis={"enabled": False}, services=[]), None, {}, T0, new_key, DOMAIN)
    assert [s["metadata"]["name"] for s in postgres_only.secrets] == ["quant-tls-ca", "quant-postgres-tls"]
    assert set(postgres_only.revisions) == {tls.POSTGRES} and postgres_only.client_ca is None
    redis_only = plan_certificates(stack(postgres={"enabled": False}, services=[]), None, {}, T0, new_key, DOMAIN)
    assert [s["metadata"]["name"] for s in redis_only.secrets] == ["quant-tls-ca", "quant-redis-tls"]


Live = tuple[dict[str, Any], dict[tls.ServerKind, dict[str, Any] | None]]


def _issued(s: TradingStack | None = None) -> Live:
    ca, postgres, redis = plan_certificates(s or stack(), None, {}, T0, new_key, DOMAIN).secrets
    return as_live(ca), {tls.POSTGRES: as_live(postgres), tls.REDIS: as_live(redis)}


def _text(secret: dict[str, Any] | None, key: str) -> str:
    assert secret is not None
    return base64.b64decode(secret["data"][key]).decode()


def test_a_good_certificate_is_kept_until_renew_before_days_remain() -> None:
    live_ca, live_servers = _issued()
    last_day_kept = T0 + timedelta(days=90 - 30)
    plan = plan_certificates(stack(), live_ca, live_servers, last_day_kept, new_key, DOMAIN)
    assert plan.renewals == []
    assert plan.revisions == {kind: revision(_text(live, TlsSecretKey.CERT)) for kind, live in live_servers.items()}
    later = last_day_kept + timedelta(seconds=1)
    renewed = plan_certificates(stack(), live_ca, live_servers, later, new_key, DOMAIN)
    patches = {patch.name: patch for patch in renewed.renewals}
    assert sorted(patches) == ["quant-postgres-tls", "quant-redis-tls"]
    ca_pem = _text(live_ca, TlsSecretKey.CERT)
    for kind, live in live_servers.items():
        patch = patches[f"quant-{kind}-tls"]
        assert (patch.kind, patch.namespace) == ("Secret", "trading")
        files = patched_files(patch)
        new = certificate(files[TlsSecretKey.CERT])
        # The same CA: the clients' CA files do not change.
        assert files[TlsSecretKey.CA] == ca_pem and signed_by(new, certificate(ca_pem))
        assert dns_names(new) == tls.server_names(stack(), kind, DOMAIN)
        assert new.not_valid_after_utc == later + timedelta(days=90)
        assert files[TlsSecretKey.KEY] != _text(live, TlsSecretKey.KEY)
        assert renewed.revisions[kind] == revision(files[TlsSecretKey.CERT]) != revision(_text(live, TlsSecretKey.CERT))
        assert "within 30 days" in renewed.reasons[kind]


def test_each_kind_is_renewed_on_its_own() -> None:
    """Redis' certificate issued later (e.g. its Secret was deleted): PostgreSQL's is renewed alone, then Redis'."""
    live_ca, live_servers = _issued()
    later = T0 + timedelta(days=20)
    redis_later = plan_certificates(
        stack(), live_ca, {tls.POSTGRES: live_servers[tls.POSTGRES]}, later, new_key, DOMAIN
    )
    redis_secret = as_live(redis_later.secrets[2])
    servers = {tls.POSTGRES: live_servers[tls.POSTGRES], tls.REDIS: redis_secret}
    plan = plan_certificates(stack(), live_ca, servers, T0 + timedelta(days=61), new_key, DOMAIN)
    assert [patch.name for patch in plan.renewals] == ["quant-postgres-tls"] and list(plan.reasons) == [tls.POSTGRES]
    assert plan.revisions[tls.REDIS] == revision(_text(redis_secret, TlsSecretKey.CERT))
    plan = plan_certificates(stack(), live_ca, servers, T0 + timedelta(days=81), new_key, DOMAIN)
    assert [patch.name for patch in plan.renewals] == ["quant-postgres-tls", "quant-redis-tls"]


def test_renew_before_days_follows_the_spec() -> None:
    spec = {"enabled": True, "validityDays": 10, "renewBeforeDays": 3}
    ca, servers = _issued(stack(spec))
    assert plan_certificates(stack(spec), ca, servers, T0 + timedelta(days=7), new_key, DOMAIN).renewals == []
    assert plan_certificates(stack(spec), ca, servers, T0 + timedelta(days=7, hours=1), new_key, DOMAIN).renewals


def test_an_expired_certificate_is_renewed() -> None:
    live_ca, live_servers = _issued()
    plan = plan_certificates(stack(), live_ca, live_servers, T0 + timedelta(days=400), new_key, DOMAIN)
    assert len(plan.renewals) == 2


def test_a_certificate_of_another_ca_is_issued_anew_by_the_live_one() -> None:
    _, old_servers = _issued()
    new_ca, _ = _issued()  # the CA Secret was deleted and made again
    plan = plan_certificates(stack(), new_ca, old_servers, T0 + timedelta(days=1), new_key, DOMAIN)
    assert plan.reasons == {kind: "it is not signed by the stack's CA" for kind in tls.SERVER_KINDS}
    ca_pem = _text(new_ca, TlsSecretKey.CERT)
    for patch in plan.renewals:
        assert signed_by(certificate(patched_files(patch)[TlsSecretKey.CERT]), certificate(ca_pem))


def test_a_missing_server_secret_is_made_from_the_live_ca() -> None:
    live_ca, _ = _issued()
    plan = plan_certificates(stack(), live_ca, {}, T0 + timedelta(days=1), new_key, DOMAIN)
    ca_pem = _text(live_ca, TlsSecretKey.CERT)
    assert plan.secrets[0]["stringData"][TlsSecretKey.CERT] == ca_pem
    for server in plan.secrets[1:]:
        assert signed_by(certificate(server["stringData"][TlsSecretKey.CERT]), certificate(ca_pem))


def test_secrets_of_that_name_held_by_someone_else_are_never_used() -> None:
    issued = plan_certificates(stack(), None, {}, T0, new_key, DOMAIN).secrets
    foreign_ca, foreign_postgres, foreign_redis = (as_live(s, owner_uid="someone-else") for s in issued)
    foreign = {tls.POSTGRES: foreign_postgres, tls.REDIS: foreign_redis}
    plan = plan_certificates(stack(), foreign_ca, foreign, T0, new_key, DOMAIN)
    assert plan.secrets[0]["stringData"][TlsSecretKey.CERT] != _text(foreign_ca, TlsSecretKey.CERT)
    assert plan.renewals == []  # never patches a Secret that is not the stack's


def test_other_dns_names_are_issued_anew() -> None:
    live_ca, live_servers = _issued()
    plan = plan_certificates(stack(), live_ca, live_servers, T0, new_key, "example.internal")
    assert plan.reasons == {kind: "its DNS names are not the Service's" for kind in tls.SERVER_KINDS}


def test_a_certificate_of_the_other_kind_is_issued_anew() -> None:
    """PostgreSQL's Secret holding Redis' certificate (names of the other kind) is no certificate for it."""
    live_ca, live_servers = _issued()
    swapped = {tls.POSTGRES: live_servers[tls.REDIS], tls.REDIS: live_servers[tls.REDIS]}
    plan = plan_certificates(stack(), live_ca, swapped, T0, new_key, DOMAIN)
    assert plan.reasons == {tls.POSTGRES: "its DNS names are not the Service's"}


def test_unreadable_certificate_is_issued_anew() -> None:
    assert renewal_reason("garbage", certificate(_issued_ca_pem()), [], T0, timedelta(days=1)) == "it cannot be read"


def _issued_ca_pem() -> str:
    return str(plan_certificates(stack(), None, {}, T0, new_key, DOMAIN).secrets[0]["stringData"][TlsSecretKey.CERT])


def test_the_users_secrets_give_the_revisions_only() -> None:
    user = stack({"enabled": True, "issuer": "secret", "postgresSecretName": "pg-cert", "redisSecretName": "r-cert"})
    _, servers = _issued()
    plan = plan_certificates(user, None, servers, T0 + timedelta(days=400), new_key, DOMAIN)
    assert plan.secrets == [] and plan.renewals == []
    assert plan.revisions == {kind: revision(_text(live, TlsSecretKey.CERT)) for kind, live in servers.items()}
    assert plan.client_ca == _text(servers[tls.REDIS], TlsSecretKey.CA)
    assert plan_certificates(user, None, {}, T0, new_key, DOMAIN).revisions == {}  # missing: reported elsewhere


def _template_annotations(objs: list[dict[str, Any]], name: str) -> dict[str, str]:
    (sts,) = [o for o in objs if o["metadata"]["name"] == name and o["kind"] == "StatefulSet"]
    return dict(sts["spec"]["template"]["metadata"].get("annotations", {}))


def test_a_new_certificate_rolls_the_servers_of_its_kind_only() -> None:
    s = stack()
    objs = render(s, s.owner_reference(), DOMAIN)
    assert with_certificate_revisions(objs, s, {}) == objs
    stamped = with_certificate_revisions(objs, s, {tls.POSTGRES: "pg-1", tls.REDIS: "r-1"})
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(objs, stamped, strict=True) if a != b]
    servers = ["quant-postgres", "quant-redis", "quant-redis-sentinel"]  # each serves a certificate
    assert changed == [("StatefulSet", name) for name in servers]
    assert _template_annotations(stamped, "quant-postgres")[Annotation.TLS_REVISION] == "pg-1"
    assert _template_annotations(stamped, "quant-redis")[Annotation.TLS_REVISION] == "r-1"
    assert _template_annotations(stamped, "quant-redis-sentinel")[Annotation.TLS_REVISION] == "r-1"
    (sts,) = [o for o in stamped if o["metadata"]["name"] == "quant-postgres" and o["kind"] == "StatefulSet"]
    (before,) = [o for o in objs if o["metadata"]["name"] == "quant-postgres" and o["kind"] == "StatefulSet"]
    assert sts["metadata"]["annotations"][Annotation.REVISION] != before["metadata"]["annotations"][Annotation.REVISION]
    # Redis' certificate renewed: its StatefulSets change, PostgreSQL's not.
    renewed = with_certificate_revisions(objs, s, {tls.POSTGRES: "pg-1", tls.REDIS: "r-2"})
    rolled = [a["metadata"]["name"] for a, b in zip(stamped, renewed, strict=True) if a != b]
    assert rolled == ["quant-redis", "quant-redis-sentinel"]
