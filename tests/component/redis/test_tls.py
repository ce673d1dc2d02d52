"""`spec.tls` for Redis and Sentinel with the real servers: the rendered ConfigMap (configs and scripts) run with a
certificate issued by the stack's CA as the operator issues it, on 127.0.0.1 only (announced as `localhost`, which
the test's certificate names besides the rendered names, as the pods' DNS names are not resolvable here).

Shown: the servers replicate and the sentinels agree over TLS; a killed master is replaced and the operator's
client (`redisclient`, verifying the CA and the host name) finds the new master; plaintext, a foreign CA and a
host name the certificate does not hold are all refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.component.redis.processes import FAST_FAILOVER, RenderedRedis, running_redis, stack_for
from tests.kubelet import resolved_env
from tests.support import free_port, wait_for
from tradingstack.contract import RedisEnv, RedisExporterEnv
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.health.checks import RedisPing
from tradingstack.health.contract import DependencyStatus
from tradingstack.redisclient import RedisTls, SentinelRedisClient, observe_master, parse_address
from tradingstack.redisclient.client import no_retry
from tradingstack.render import tls
from tradingstack.render.certificates import Authority, leaf, pem, pem_key
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN
from tradingstack.render.redis import render_redis

pytestmark = pytest.mark.component

NOW = datetime.now(UTC)
LOCAL_NAME = "localhost"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue(directory: Path, ca: Authority) -> None:
    """The TLS Secret's files (`tls.crt`, `tls.key`, `ca.crt`) as `render.tls.server_files` makes them, the local
    name added."""
    stack = stack_for(FAST_FAILOVER, tls=True)
    names = [*tls.server_names(stack, tls.REDIS, DEFAULT_CLUSTER_DOMAIN), LOCAL_NAME]
    key = _key()
    server = leaf(ca, names[0], key, ExtendedKeyUsageOID.SERVER_AUTH, 1, NOW, timedelta(days=1), names)
    directory.mkdir()
    files = {TlsSecretKey.CERT: pem(server), TlsSecretKey.KEY: pem_key(key), TlsSecretKey.CA: pem(ca.certificate)}
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o600)


@pytest.fixture
def tls_stack(tmp_path: Path) -> Iterator[RenderedRedis]:
    ca = tls.new_authority(stack_for(FAST_FAILOVER, tls=True), _key(), NOW)
    _issue(tmp_path / "tls", ca)
    with running_redis(tmp_path / "run", FAST_FAILOVER, tls_dir=tmp_path / "tls") as processes:
        yield processes


def _ca_pem(processes: RenderedRedis) -> str:
    assert processes.tls_dir is not None
    return (processes.tls_dir / TlsSecretKey.CA).read_text()


def _ping(host: str, port: int, password: str, **options: Any) -> None:
    client = redis.Redis(
        host=host, port=port, password=password, socket_timeout=2, socket_connect_timeout=2, retry=no_retry(), **options
    )
    with contextlib.closing(client):
        client.ping()


def test_replication_and_failover_over_tls(tls_stack: RenderedRedis) -> None:
    stack = tls_stack
    master = stack.wait_stable(timeout=60)
    assert master == 0
    for index in range(stack.spec.replicas):  # the servers' own view: replication runs over TLS
        with contextlib.closing(stack.server(index)) as server:
            assert server.config_get("port") == {"port": "0"}
            assert server.config_get("tls-port") == {"tls-port": str(stack.redis_ports[index])}
            assert server.config_get("tls-replication") == {"tls-replication": "yes"}
    client = SentinelRedisClient(
        stack.sentinel_addresses, stack.spec.master_name, stack.password, socket_timeout=0.5, tls=stack.tls
    )
    try:
        client.write_confirmed("before", "1", replicas=2)
        stack.kill_redis(master)
        client.write_confirmed("after", "2", retry_seconds=60)
        # The operator's view, with the CA as it reads it from the Secret.
        observation = observe_master(
            stack.sentinel_addresses, stack.spec.master_name, stack.password, tls=RedisTls(ca_pem=_ca_pem(stack))
        )
        assert observation.master is not None and observation.agreeing == stack.spec.sentinels
        new_master = stack.index_of(observation.master)
        assert new_master != master and stack.role(new_master) == "master"
        assert observation.master.host == LOCAL_NAME
        stack.start_redis(master)
        assert stack.wait_stable(timeout=60) == new_master
        assert client.master.mget(["before", "after"]) == [b"1", b"2"]
    finally:
        client.close()


def test_plaintext_a_foreign_ca_and_a_wrong_name_are_refused(tls_stack: RenderedRedis) -> None:
    stack = tls_stack
    stack.wait_stable(timeout=60)
    ports = [stack.redis_ports[0], stack.sentinel_ports[0]]
    foreign = tls.new_authority(stack_for(FAST_FAILOVER, name="other", tls=True), _key(), NOW)
    for port in ports:
        _ping(LOCAL_NAME, port, stack.password, **stack.tls.options())  # type: ignore[union-attr]
        with pytest.raises(redis.ConnectionError):
            _ping(LOCAL_NAME, port, stack.password)  # plaintext: no answer on a TLS-only port
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            _ping(LOCAL_NAME, port, stack.password, **RedisTls(ca_pem=pem(foreign.certificate)).options())
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            _ping("127.0.0.1", port, stack.password, **stack.tls.options())  # type: ignore[union-attr]
    # The services' health check (demo-service: RedisPing through the sentinels) with the env the operator injects.
    ping = RedisPing.from_sentinels(
        [parse_address(a) for a in stack.sentinel_addresses],
        stack.spec.master_name,
        stack.password,
        tls_options=RedisTls.from_env({RedisEnv.TLS_CA_FILE: str(stack.tls_dir / TlsSecretKey.CA)}).options(),  # type: ignore[operator,union-attr]
    )
    assert asyncio.run(ping.health_check()).status is DependencyStatus.UP
    # redis-cli as the scripts run it: the stack's CA passes, a foreign CA does not.
    foreign_ca = stack.root / "foreign-ca.crt"
    foreign_ca.write_text(pem(foreign.certificate))
    for ca_file, answer in ((str(stack.tls_dir / TlsSecretKey.CA), "PONG"), (str(foreign_ca), "")):  # type: ignore[operator]
        result = subprocess.run(
            ["redis-cli", "--tls", "--cacert", ca_file, "-p", str(ports[0]), "ping"],
            env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": stack.password},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert result.stdout.strip() == answer, result


def test_the_exporter_reads_the_server_over_tls(tls_stack: RenderedRedis, tmp_path: Path) -> None:
    """The rendered exporter env (`rediss://127.0.0.1`), pointed at this test's port and listen address."""
    stack = tls_stack
    stack.wait_stable(timeout=60)
    rendered = stack_for({**FAST_FAILOVER, "metrics": {"enabled": True}}, tls=True)
    statefulset = next(m for m in render_redis(rendered, rendered.owner_reference()) if m["kind"] == "StatefulSet")
    exporter = statefulset["spec"]["template"]["spec"]["containers"][1]
    env = resolved_env(exporter, secret=lambda name, key: stack.password)
    listen = free_port()
    env[RedisExporterEnv.ADDRESS] = env[RedisExporterEnv.ADDRESS].rsplit(":", 1)[0] + f":{stack.redis_ports[0]}"
    env[RedisExporterEnv.LISTEN_ADDRESS] = f"127.0.0.1:{listen}"
    assert env[RedisExporterEnv.ADDRESS].startswith("rediss://127.0.0.1:")
    with (tmp_path / "exporter.log").open("wb") as log:
        process = subprocess.Popen(
            exporter["command"],
            env={"PATH": os.environ["PATH"], **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=2) as response:
                    return "\nredis_up 1\n" in response.read().decode()
            except OSError:
                return False

        wait_for(up, timeout=20, interval=0.5, what="the exporter to report redis_up 1")
    finally:
        process.kill()
        process.wait()
