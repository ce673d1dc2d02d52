"""e2e of `spec.tls` on the real node: the minimal stack with TLS on, its pods from `make images`. The servers
load the generated certificate from their mounted Secret (file modes, fsGroup and all), the service connects to
PostgreSQL with `sslmode=verify-full` and to Redis through the sentinels over TLS, the operator tracks the Redis
master over TLS, and a plaintext client is refused by every server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from string import Template

import pytest

from tests.e2e.helpers import ChartInstaller
from tests.e2e.test_chart_install import MINIMAL, READY_TIMEOUT, load, stack_status
from tests.e2e.test_real_containers import Stack, health_document
from tests.fixtures.cluster import Cluster
from tests.fixtures.operator import wait_for_condition
from tradingstack.render.common import REDIS_PORT, SENTINEL_PORT
from tradingstack.render.redis import SENTINEL_COMPONENT

pytestmark = [pytest.mark.cluster, pytest.mark.real_containers]
NAME = "tls"


@pytest.fixture(scope="module")
def tls_stack(cluster: Cluster, real_node: list[str], images: None, crd: None) -> Iterator[Stack]:
    installer = ChartInstaller(cluster)
    try:
        namespace = installer.namespace("e2e-tls")
        installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
        document = load(MINIMAL, namespace)
        document["metadata"]["name"] = NAME
        document["spec"]["tls"] = {"enabled": True}
        cluster.apply(document, namespace=namespace)
        wait_for_condition(cluster, namespace, NAME, "Ready", "True", READY_TIMEOUT)
        yield Stack(cluster, namespace, real_node)
    finally:
        installer.cleanup()


# Run in the service's pod: its own env (what the operator injected) against the stack's servers.
PROBE = Template("""
import json, os, ssl
import psycopg, redis
from psycopg.conninfo import make_conninfo
from tradingstack.redisclient import SentinelRedisClient

result = {"dsn_sslmode": psycopg.conninfo.conninfo_to_dict(os.environ["DATABASE_URL"]).get("sslmode")}
with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
    result["postgres_ssl"] = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
try:
    psycopg.connect(make_conninfo(os.environ["DATABASE_URL"], sslmode="disable"), connect_timeout=10).close()
    result["postgres_plaintext"] = "accepted"
except psycopg.OperationalError as err:
    result["postgres_plaintext"] = str(err).strip().splitlines()[-1]
result["redis_write"] = SentinelRedisClient.from_env().execute(lambda master: master.set("e2e:tls", "1"))
for name, host, port in (("redis", "$redis_host", $redis_port), ("sentinel", "$sentinel_host", $sentinel_port)):
    try:
        redis.Redis(host=host, port=port, password=os.environ["REDIS_PASSWORD"], socket_timeout=5).ping()
        result[name + "_plaintext"] = "accepted"
    except redis.RedisError as err:
        result[name + "_plaintext"] = type(err).__name__
print(json.dumps(result))
""")


def test_a_tls_stack_is_ready_and_its_servers_speak_tls_only(tls_stack: Stack) -> None:
    status = stack_status(tls_stack.cluster, tls_stack.namespace, NAME)
    assert status["redis"].get("master"), status["redis"]  # the operator asked the sentinels over TLS
    api = tls_stack.service_pods("api")[0]
    assert health_document(tls_stack, api)["status"] == "HEALTHY"  # its checks of Redis and PostgreSQL, over TLS
    out = tls_stack.python(
        api["metadata"]["name"],
        PROBE.substitute(
            redis_host=f"{NAME}-redis-0.{NAME}-redis",
            redis_port=REDIS_PORT.number,
            sentinel_host=f"{NAME}-{SENTINEL_COMPONENT}-0.{NAME}-{SENTINEL_COMPONENT}",
            sentinel_port=SENTINEL_PORT.number,
        ),
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["dsn_sslmode"] == "verify-full", result
    assert result["postgres_ssl"] is True, result
    assert result["redis_write"] is True, result
    assert "no encryption" in result["postgres_plaintext"], result
    assert result["redis_plaintext"] != "accepted" and result["sentinel_plaintext"] != "accepted", result


def test_the_tls_stack_restarts_nothing(tls_stack: Stack) -> None:
    """The servers started once with the mounted certificate: no pod of the stack was restarted."""
    pods = tls_stack.cluster.kubectl_json("get", "pods", "-n", tls_stack.namespace)["items"]
    restarts = {
        p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"].get("containerStatuses", []))
        for p in pods
        if p["metadata"]["name"].startswith(NAME)
    }
    assert restarts and not any(restarts.values()), restarts
