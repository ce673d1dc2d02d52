"""`spec.tls` for Redis and Sentinel: the rendered configs, scripts, pods and clients, joined to the names they share
(the env the scripts read, the Secret's files, the hosts the clients dial and the certificate's names, checked by
OpenSSL itself), and the certificate revision that rolls the servers. The real servers: tests/component/redis."""

from __future__ import annotations

import functools
import re
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.kubelet import resolved_env
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.contract import Annotation, RedisEnv, RedisExporterEnv, RedisScriptEnv
from tradingstack.contract.tls import CLIENT_DIR, REDIS_CA_FILE, SERVER_DIR, TlsSecretKey
from tradingstack.reconcile.tls import plan_certificates, serving_statefulsets, with_certificate_revisions
from tradingstack.redisclient import RedisTls
from tradingstack.render import redis, tls
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN, REDIS_PORT

DOMAIN = DEFAULT_CLUSTER_DOMAIN
SOURCES = Path(redis.__file__).parent / "redis_files"


def stack(tls_on: bool = True, **spec: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1"},
            "spec": {
                "tls": {"enabled": tls_on},
                "redis": {"metrics": {"enabled": True}},
                "services": [{"name": "cache", "image": "example/cache:1", "port": 8001, "uses": ["redis"]}],
                **spec,
            },
        }
    )


def objects(s: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(s, s.owner_reference(), DOMAIN)}


def pod(s: TradingStack, name: str) -> dict[str, Any]:
    return dict(objects(s)["StatefulSet", name]["spec"]["template"]["spec"])


def _code(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


# --- scripts and configs


def test_without_tls_the_scripts_are_their_sources_without_the_tls_lines() -> None:
    files = redis.config_files(stack(False).spec.redis)
    for name in redis.SCRIPT_FILES:
        source = (SOURCES / name).read_text()
        assert files[name] == "".join(
            line for line in source.splitlines(keepends=True) if not line.startswith(redis.TLS_PREFIX)
        )
        assert "tls" not in files[name].lower()


def test_with_tls_every_redis_cli_call_speaks_tls_with_the_ca() -> None:
    files = redis.config_files(stack().spec.redis, tls_on=True)
    calls = 0
    for name in redis.SCRIPT_FILES:
        assert redis.TLS_PREFIX not in files[name]
        for line in _code(files[name]):
            for match in re.finditer(r"redis-cli\b(.*)", line):
                calls += 1
                assert match[1].startswith(f' --tls --cacert "${RedisEnv.TLS_CA_FILE}" '), line
    assert calls == 5  # sentinel_views: 2, prestop: 3


def test_the_tls_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for name, text in redis.config_files(stack().spec.redis, tls_on=True).items():
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
    scripts = sorted(str(p) for p in tmp_path.glob("*.sh"))
    result = subprocess.run(
        ["shellcheck", "-s", "sh", "-x", "-P", str(tmp_path), *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_tls_configs_serve_tls_only_and_replicate_over_it() -> None:
    spec = stack().spec.redis
    for conf in (redis.redis_conf(spec, tls_on=True), redis.sentinel_conf(spec, tls_on=True)):
        lines = conf.splitlines()
        assert "port 0" in lines and "tls-port @PORT@" in lines and "port @PORT@" not in lines
        assert {"tls-replication yes", "tls-auth-clients no"} <= set(lines)
    # The start scripts append the files' paths from the env of `tls_files` (tls_config of redis-lib.sh).
    lib = redis.config_files(spec, tls_on=True)["redis-lib.sh"]
    for variable in (RedisScriptEnv.TLS_CERT_FILE, RedisScriptEnv.TLS_KEY_FILE, RedisEnv.TLS_CA_FILE):
        assert f'"${variable}"' in lib
    for name in ("redis-start.sh", "sentinel-start.sh"):
        assert "    tls_config\n" in redis.config_files(spec, tls_on=True)[name]


# --- pods


@pytest.mark.parametrize("name", ["quant-redis", "quant-redis-sentinel"])
def test_servers_and_sentinels_mount_the_secret_where_their_env_points(name: str) -> None:
    spec = pod(stack(), name)
    container = spec["containers"][0]
    env = resolved_env(container)
    (volume,) = [v for v in spec["volumes"] if v["name"] == tls.SERVER_VOLUME]
    assert volume["secret"]["secretName"] == "quant-redis-tls"  # Redis' own, never PostgreSQL's
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == tls.SERVER_VOLUME]
    assert mount["mountPath"] == SERVER_DIR
    assert env[RedisScriptEnv.TLS_CERT_FILE] == f"{SERVER_DIR}/{TlsSecretKey.CERT}"
    assert env[RedisScriptEnv.TLS_KEY_FILE] == f"{SERVER_DIR}/{TlsSecretKey.KEY}"
    assert env[RedisEnv.TLS_CA_FILE] == f"{SERVER_DIR}/{TlsSecretKey.CA}"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert f'redis-cli --tls --cacert "${RedisEnv.TLS_CA_FILE}" ' in container[probe]["exec"]["command"][2]


def test_the_exporter_reads_its_server_over_tls() -> None:
    exporter = pod(stack(), "quant-redis")["containers"][1]
    env = resolved_env(exporter)
    assert env[RedisExporterEnv.ADDRESS] == f"rediss://127.0.0.1:{REDIS_PORT.number}"
    assert env[RedisExporterEnv.SKIP_TLS_VERIFICATION] == "true"


def test_a_redis_client_service_gets_the_ca_alone_and_the_env_the_client_reads() -> None:
    deployment = objects(stack())["Deployment", "quant-cache"]["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    env = resolved_env(container)
    assert env[RedisEnv.TLS_CA_FILE] == REDIS_CA_FILE
    assert RedisTls.from_env(env) == RedisTls(ca_file=REDIS_CA_FILE)
    (volume,) = [v for v in deployment["volumes"] if v["name"] == tls.CLIENT_VOLUME]
    items = [{"key": TlsSecretKey.CA, "path": REDIS_CA_FILE.removeprefix(f"{CLIENT_DIR}/")}]
    assert volume["projected"]["sources"] == [{"secret": {"name": "quant-redis-tls", "items": items}}]
    assert {"name": tls.CLIENT_VOLUME, "mountPath": CLIENT_DIR, "readOnly": True} in container["volumeMounts"]
    plain = resolved_env(
        objects(stack(False))["Deployment", "quant-cache"]["spec"]["template"]["spec"]["containers"][0]
    )
    assert RedisEnv.TLS_CA_FILE not in plain and RedisTls.from_env(plain) is None


# --- the certificate names every host the clients dial


def _dialled_hosts(s: TradingStack) -> set[str]:
    """Every host a client of Redis is given or told: the injected sentinel addresses, what the servers and
    sentinels announce (the sentinels report those as the master), the bootstrap master, the master Service."""
    hosts = {address.rsplit(":", 1)[0] for address in redis.sentinel_addresses(s, DOMAIN)}
    for name in ("quant-redis", "quant-redis-sentinel"):
        statefulset = objects(s)["StatefulSet", name]
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        for pod_name in (f"{name}-{ordinal}" for ordinal in range(statefulset["spec"]["replicas"])):
            env = resolved_env(container, field=functools.partial(_pod_field, pod_name))
            for variable in (RedisScriptEnv.ANNOUNCE_HOST, RedisScriptEnv.SENTINEL_ANNOUNCE_HOST):
                if variable in env:
                    hosts.add(env[variable])
            if RedisScriptEnv.BOOTSTRAP_MASTER in env:
                hosts.add(env[RedisScriptEnv.BOOTSTRAP_MASTER].rsplit(":", 1)[0])
    return hosts | {f"{redis.master_service_name(s)}.trading.svc.{DOMAIN}", redis.master_service_name(s)}


def _pod_field(pod_name: str, path: str) -> str:
    assert path == "metadata.name"
    return pod_name


def _handshake(files: dict[str, str], host: str, tmp_path: Path) -> None:
    """A TLS handshake in memory, verified by OpenSSL as redis-py verifies it (chain and host name)."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / TlsSecretKey.CERT, tmp_path / TlsSecretKey.KEY)
    client_context = ssl.create_default_context(cafile=str(tmp_path / TlsSecretKey.CA))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=host)
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            return
    raise AssertionError("the handshake did not finish")


def test_the_certificate_names_every_host_the_redis_clients_dial(tmp_path: Path) -> None:
    s = stack(redis={"replicas": 5, "sentinels": 5})
    plan = plan_certificates(s, None, {}, datetime.now(UTC), _key, DOMAIN)
    files = plan.secrets[2]["stringData"]
    assert plan.secrets[2]["metadata"]["name"] == "quant-redis-tls"
    hosts = _dialled_hosts(s)
    assert len(hosts) == 5 + 5 + 2  # pods of both StatefulSets (the bootstrap master among them), the Service
    for host in sorted(hosts):
        _handshake(files, host, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, "quant-redis-0.other-redis.trading.svc.cluster.local", tmp_path)
    # Redis' certificate does not serve as PostgreSQL's, nor PostgreSQL's as Redis'.
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, f"quant-postgres.trading.svc.{DOMAIN}", tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(plan.secrets[1]["stringData"], f"{redis.master_service_name(s)}.trading.svc.{DOMAIN}", tmp_path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --- renewal


def test_a_new_redis_certificate_rolls_redis_and_the_sentinels_only() -> None:
    s = stack()
    stamped = with_certificate_revisions(render(s, s.owner_reference(), DOMAIN), s, {tls.REDIS: "rev-1"})
    rolled = {
        o["metadata"]["name"]
        for o in stamped
        if o["kind"] == "StatefulSet" and o["spec"]["template"]["metadata"]["annotations"].get(Annotation.TLS_REVISION)
    }
    assert rolled == {"quant-redis", "quant-redis-sentinel"} == set(serving_statefulsets(s, tls.REDIS))
    assert serving_statefulsets(s, tls.POSTGRES) == ["quant-postgres"]
    assert serving_statefulsets(stack(postgres={"enabled": False}), tls.POSTGRES) == []
    assert serving_statefulsets(stack(redis={"enabled": False}, services=[]), tls.REDIS) == []
    assert serving_statefulsets(stack(False), tls.REDIS) == serving_statefulsets(stack(False), tls.POSTGRES) == []


def test_the_plan_hands_the_operator_the_ca_its_redis_client_trusts() -> None:
    s = stack()
    plan = plan_certificates(s, None, {}, datetime.now(UTC), _key, DOMAIN)
    assert plan.client_ca == plan.secrets[0]["stringData"][TlsSecretKey.CERT]
    user = stack(tls={"enabled": True, "issuer": "secret", "postgresSecretName": "pg", "redisSecretName": "mine"})
    live = {
        tls.POSTGRES: {"stringData": {TlsSecretKey.CERT: "c", TlsSecretKey.KEY: "k", TlsSecretKey.CA: "PG's CA"}},
        tls.REDIS: {"stringData": {TlsSecretKey.CERT: "c", TlsSecretKey.KEY: "k", TlsSecretKey.CA: "the user's CA"}},
    }
    assert plan_certificates(user, None, live, datetime.now(UTC), _key, DOMAIN).client_ca == "the user's CA"
