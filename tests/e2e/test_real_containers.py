"""e2e on real containers: the example stack on the real node, its pods started from `make images`, judged by
the kubelet's own probes. One stack serves the whole module (a start on two cores takes a minute or two); the
tests run in file order and the last ones delete it.

The operator is the chart's pod (namespace mode: it watches only the module's namespace). Commands inside the
pods run through `kubectl exec`; the Redis master is also killed from the node's containerd (`ctr tasks kill
-s SIGKILL`), which is a crash as a node sees it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.component.postgres.pitr import STANZA_CREATED
from tests.dashboard import DASHBOARD, POSTGRES_ROW, REDIS_ROW, row_expressions
from tests.e2e import halt
from tests.e2e.helpers import STRANGER_IMAGE, ChartInstaller, create_restricted_namespace
from tests.e2e.prometheus import SCRAPE_SECONDS, start_prometheus
from tests.e2e.s3 import s3_for_pods
from tests.e2e.test_chart_install import (
    EXAMPLE,
    READY_TIMEOUT,
    RETAINED_CLAIMS,
    STACK,
    load,
    remaining_claims,
    stack_status,
    wait_for_status,
)
from tests.fixtures.cluster import CACHE, REPO, Cluster, wait_for
from tests.fixtures.operator import wait_for_condition
from tests.fixtures.reliability import Reliability
from tradingstack.api import RedisSpec, TradingStack
from tradingstack.contract import CANARY_SUFFIX, OPERATOR_APP_NAME, Annotation, Label, ServiceEnv
from tradingstack.render.common import (
    METRICS_CONTAINER,
    METRICS_PORT_NAME,
    POSTGRES_PORT,
    REDIS_PORT,
    SENTINEL_PORT,
    container_security_context,
    pod_security_context,
)
from tradingstack.render.redis import SENTINEL_COMPONENT, master_service_name

pytestmark = [pytest.mark.cluster, pytest.mark.real_containers]
MASTER_LABEL = f"{Label.REDIS_ROLE}=master"
RESTART_NOW = Annotation.RESTART_NOW
RESTARTED_AT = Annotation.RESTARTED_AT
SERVICES = [s["name"] for s in load(EXAMPLE, "x")["spec"]["services"]]
MASTER_NAME = RedisSpec.model_validate(load(EXAMPLE, "x")["spec"]["redis"]).master_name
CHART_DIR = REPO / "charts" / "tradingstack-operator"
ALERT_RULES = CHART_DIR / "alerts" / "tradingstack.rules.yaml"
ROLLOUT_TIMEOUT = 420
"""A health-gated rollout on the loaded node: canary start (startup probe), bake, then one pod at a time."""
UNHEALTHY_FOR = 120
"""`for` of TradingStackServiceUnhealthy, in seconds (the test checks it against the rules file)."""
REDIS_OUTAGE_SECONDS = 200
REDIS_FAULT_ROUNDS = int(os.environ.get("TRADINGSTACK_CHAOS_REDIS_ROUNDS", "1"))
"""Rounds of master delete + master kill under the writer (1 in `make test`, 10 in `make chaos`)."""


@dataclass
class Stack:
    cluster: Cluster
    namespace: str
    nodes: list[str]

    def kubectl(self, *args: str, timeout: float = 120.0, check: bool = True) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, timeout=timeout, check=check).stdout

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(self.cluster.kubectl_json("get", "pods", "-n", self.namespace, "-l", selector)["items"])

    def service_pods(self, service: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(f"{Label.COMPONENT}={service}") if not p["metadata"].get("deletionTimestamp")]

    def python(self, pod: str, code: str, timeout: float = 120.0) -> str:
        """Runs Python in a pod of the demo-service image (it has the tradingstack package and redis-py)."""
        return self.kubectl("exec", pod, "--", "python3", "-c", textwrap.dedent(code), timeout=timeout)

    def redis_cli(self, pod: str, *args: str) -> str:
        return self.kubectl("exec", pod, "-c", "redis", "--", "redis-cli", *args).strip()

    def psql(self, sql: str, database: str = "$POSTGRES_DB") -> str:
        command = f'psql -U "$POSTGRES_USER" -d "{database}" -v ON_ERROR_STOP=1 -At -c "$0"'
        return self.kubectl("exec", f"{STACK}-postgres-0", "-c", "postgres", "--", "sh", "-c", command, sql).strip()

    def restart_counts(self) -> dict[str, int]:
        pods = self.cluster.kubectl_json("get", "pods", "-n", self.namespace)["items"]
        return {
            p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"].get("containerStatuses", []))
            for p in pods
            if p["metadata"]["name"].startswith(STACK) and p["status"].get("phase") == "Running"
        }


def start_example(installer: ChartInstaller, prefix: str, nodes: list[str]) -> Stack:
    """The example stack in a fresh namespace with the chart's operator (namespace mode), once it is Ready."""
    cluster = installer.cluster
    namespace = installer.namespace(prefix)
    # One operator replica: the real node has 2 CPUs and the stack requests most of them; a second replica
    # would leave no room for the surge pods of a rollout (test_chart_install runs the default two replicas).
    installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "exchange-credentials",
                    "--from-literal=api-key=e2e")  # fmt: skip
    cluster.apply(load(EXAMPLE, namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, STACK, "Ready", "True", READY_TIMEOUT)
    return Stack(cluster, namespace, nodes)


@pytest.fixture(scope="module")
def stack(cluster: Cluster, real_node: list[str], images: None, crd: None) -> Iterator[Stack]:
    # `crd`: helm installs crds/ only where the CRD is missing; a CRD left by an older run would prune new fields.
    installer = ChartInstaller(cluster)
    try:
        yield start_example(installer, "e2e-real", real_node)
    finally:
        installer.cleanup()


def pod_ready(pod: dict[str, Any]) -> bool:
    return {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready") == "True"


def health_document(stack: Stack, pod: dict[str, Any]) -> dict[str, Any]:
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    out = stack.python(
        pod["metadata"]["name"],
        f"""
        import urllib.error, urllib.request
        try:
            print(urllib.request.urlopen("http://127.0.0.1:{port}/health", timeout=10).read().decode())
        except urllib.error.HTTPError as err:
            print(err.read().decode())
        """,
    )
    return dict(json.loads(out))


def test_the_example_stack_is_ready_from_the_kubelets_probes(stack: Stack) -> None:
    status = stack_status(stack.cluster, stack.namespace)
    assert status["readySummary"] == "6/6", status
    pods = [p for p in stack.pods(f"{Label.STACK}={STACK}") if p["status"].get("phase") != "Succeeded"]
    assert len(pods) >= 18, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["spec"]["nodeName"] in stack.nodes, pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running" and pod_ready(pod), pod["metadata"]["name"]
    for service in SERVICES:
        for pod in stack.service_pods(service):
            document = health_document(stack, pod)
            assert document["status"] == "HEALTHY", (service, document)
    before = stack.restart_counts()
    time.sleep(20)  # a window for a liveness probe that misjudges the contract to restart something
    assert stack.restart_counts() == before


def test_the_gateway_routes_every_service_and_limits_the_rate(stack: Stack) -> None:
    """From a pod outside the stack (the gateway admits any client; the stack's own pods may not call it):
    /api/<prefix>/ reaches the service that owns the route; a burst past the limit gets 429."""
    routes = {s["name"]: s["route"]["pathPrefix"] for s in load(EXAMPLE, "x")["spec"]["services"]}
    client = start_stranger(stack, stack.namespace)
    gateway = f"http://{STACK}-gateway.{stack.namespace}.svc:8080"
    try:
        out = gateway_requests(stack, client, gateway, routes)
    finally:
        stack.kubectl("delete", "pod", client, "--wait=false", check=False)
    result = json.loads(out)
    assert result["answered"] == {name: name for name in routes}, result["answered"]
    codes = result["codes"]
    assert set(codes) <= {200, 429}, sorted(set(codes))
    assert codes.count(200) >= 100, "the burst is served"
    assert codes.count(429) > 0, "past the burst the gateway answers 429"


def gateway_requests(stack: Stack, client: str, gateway: str, routes: dict[str, str]) -> str:
    """From `client`: one request per route (which service answered), then 600 to one route (status codes)."""
    return stack.python(
        client,
        f"""
        import json, urllib.request
        from concurrent.futures import ThreadPoolExecutor
        routes = {json.dumps(routes)}
        answered = {{}}
        for service, prefix in routes.items():
            body = json.load(urllib.request.urlopen("{gateway}" + prefix + "ping", timeout=10))
            answered[service] = body["service"]

        def status(_):
            try:
                return urllib.request.urlopen("{gateway}{routes["risk-safety"]}ping", timeout=10).status
            except urllib.error.HTTPError as err:
                return err.code

        with ThreadPoolExecutor(16) as pool:  # 600 requests: far past 2 pods x (burst 100 + 50/s)
            codes = list(pool.map(status, range(600)))
        print(json.dumps({{"answered": answered, "codes": codes}}))
        """,
    )


CONNECT = """
import json, socket, sys
results = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        results[target] = "connected"
    except OSError as err:
        results[target] = type(err).__name__
print(json.dumps(results))
"""


SLEEP = ["python3", "-c", "import time; time.sleep(3600)"]
LISTEN_PORT = 8080
LISTEN = ["python3", "-m", "http.server", str(LISTEN_PORT), "--directory", "/"]
"""A stranger that also answers on LISTEN_PORT: an address outside the stack to try the egress with."""


def start_stranger(stack: Stack, namespace: str, command: list[str] = SLEEP) -> str:
    """A restricted pod that is not part of the stack, in `namespace`, running `command`; returns its name once
    it runs."""
    name = f"stranger-{uuid.uuid4().hex[:6]}"
    stack.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "stranger"}},
            "spec": {
                "securityContext": pod_security_context(),
                "containers": [
                    {
                        "name": "stranger",
                        "image": STRANGER_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": container_security_context(),
                    }
                ],
            },
        }
    )
    stack.cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=130
    )
    return name


def connections(stack: Stack, namespace: str, pod: str, targets: list[str]) -> dict[str, str]:
    """What each `host:port` answers a TCP connect from `pod`: "connected" or the error's class."""
    out = stack.cluster.kubectl("-n", namespace, "exec", pod, "--", "python3", "-c", CONNECT, *targets).stdout
    return dict(json.loads(out))


def flow_line(source: str, target: str, expected: bool, observed: str) -> tuple[str, bool]:
    """One line per flow for docs/security.md, and whether it came out as the flow table says."""
    line = f"flow {source} -> {target}: expected {'allowed' if expected else 'refused'}, observed {observed}"
    print(line)
    return line, (observed == "connected") is expected


def test_network_policies_are_enforced_on_the_real_node(stack: Stack) -> None:
    """kube-network-policies enforces the rendered policies (a default deny, one allow per flow of
    `render.flows`): strangers in the stack's namespace and in another one are refused by Redis, the sentinels,
    Postgres and a service's port; a service reaches the stores its `uses` names and no other, nor, without
    `egress`, an address outside the stack that answers a stranger; the intended flows work (each route through
    the gateway, the operator reading every health document and the master, the stack Ready). Prints one line
    per flow: `flow <source> -> <target>: expected <allowed|refused>, observed <connected|error class>`."""
    example = TradingStack.model_validate(load(EXAMPLE, stack.namespace))

    def address(selector: str, port: int) -> str:
        return f"{stack.pods(selector)[0]['status']['podIP']}:{port}"

    def service_address(service: str) -> str:
        pod = stack.service_pods(service)[0]
        return f"{pod['status']['podIP']}:{pod['spec']['containers'][0]['ports'][0]['containerPort']}"

    stores = {
        "redis :6379": address(f"{Label.NAME}=redis", REDIS_PORT.number),
        "sentinel :26379": address(f"{Label.NAME}=redis-sentinel", SENTINEL_PORT.number),
        "postgres :5432": address(f"{Label.NAME}=postgres", POSTGRES_PORT.number),
        "redis master Service :6379": f"{master_service_name(example)}.{stack.namespace}.svc:{REDIS_PORT.number}",
    }
    uses = {s.name: s.uses for s in example.spec.services}
    assert uses["risk-safety"] == ["redis"] and "postgres" in uses["ai-engine"], uses  # what the checks predict
    other_namespace = create_restricted_namespace(stack.cluster, "e2e-stranger")
    strangers = {stack.namespace: start_stranger(stack, stack.namespace)}
    try:
        strangers[other_namespace] = start_stranger(stack, other_namespace, LISTEN)
        listener = stack.cluster.kubectl_json("get", "pod", strangers[other_namespace], "-n", other_namespace)
        outside = {"a stranger's listening port": f"{listener['status']['podIP']}:{LISTEN_PORT}"}
        services = {f"{s} port": service_address(s) for s in ("risk-safety", "ai-engine")}
        risk, ai = (stack.service_pods(s)[0]["metadata"]["name"] for s in ("risk-safety", "ai-engine"))
        redis_side = {k: v for k, v in stores.items() if k != "postgres :5432"}
        checks = [  # (source, namespace, pod, targets, expected)
            ("stranger in the namespace", stack.namespace, strangers[stack.namespace], {**stores, **services}, False),
            ("stranger in another namespace", other_namespace, strangers[other_namespace], {**stores, **services},
             False),
            ("stranger in the namespace", stack.namespace, strangers[stack.namespace], outside, True),  # it listens
            ("risk-safety (uses redis)", stack.namespace, risk, redis_side, True),
            ("risk-safety (uses redis)", stack.namespace, risk,
             {"postgres :5432": stores["postgres :5432"], "ai-engine port": services["ai-engine port"], **outside},
             False),
            ("ai-engine (uses redis, postgres)", stack.namespace, ai, {"postgres :5432": stores["postgres :5432"]},
             True),
        ]  # fmt: skip
        results = []
        for source, namespace, pod, targets, expected in checks:
            answers = connections(stack, namespace, pod, list(targets.values()))
            results += [flow_line(source, name, expected, answers[target]) for name, target in targets.items()]
        results += gateway_flows(stack, strangers[stack.namespace])
        results += operator_flows(stack)
        wrong = [line for line, ok in results if not ok]
        assert not wrong, wrong
    finally:
        stack.kubectl("delete", "pod", strangers[stack.namespace], "--wait=false", check=False)
        stack.cluster.kubectl("delete", "namespace", other_namespace, "--wait=false", check=False)


def gateway_flows(stack: Stack, client: str) -> list[tuple[str, bool]]:
    """anyone -> gateway -> each routed service: one request per route from `client` (a stranger)."""
    routes = {s["name"]: s["route"]["pathPrefix"] for s in load(EXAMPLE, "x")["spec"]["services"]}
    gateway = f"http://{STACK}-gateway.{stack.namespace}.svc:8080"
    out = stack.python(
        client,
        f"""
        import json, urllib.request
        answered = {{}}
        for service, prefix in {json.dumps(routes)}.items():
            try:
                body = json.load(urllib.request.urlopen("{gateway}" + prefix + "ping", timeout=10))
                answered[service] = "connected" if body["service"] == service else body["service"]
            except OSError as err:
                answered[service] = type(err).__name__
        print(json.dumps(answered))
        """,
    )
    answered = json.loads(out)
    return [flow_line(f"stranger -> gateway {routes[s]}", f"{s} port", True, answered[s]) for s in routes]


def operator_flows(stack: Stack) -> list[tuple[str, bool]]:
    """operator -> sentinels and operator -> every service's health port, as the status shows them: the master
    is known and every service reports HEALTHY (UNKNOWN when the operator cannot read the document)."""
    wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)
    status = stack_status(stack.cluster, stack.namespace)
    master = status.get("redis", {}).get("master")
    lines = [flow_line("operator", "sentinel :26379", True, "connected" if master else "no master in the status")]
    for service, entry in sorted(status.get("services", {}).items()):
        health = entry.get("health", "UNKNOWN")
        lines.append(flow_line("operator", f"{service} health", True, "connected" if health != "UNKNOWN" else health))
    return lines


def set_env(stack: Stack, service: str, name: str, value: str) -> None:
    document = stack.cluster.kubectl_json("get", "tradingstack", STACK, "-n", stack.namespace)
    index = next(i for i, s in enumerate(document["spec"]["services"]) if s["name"] == service)
    env = [e for e in document["spec"]["services"][index].get("env", []) if e["name"] != name]
    patch = [{"op": "add", "path": f"/spec/services/{index}/env", "value": [*env, {"name": name, "value": value}]}]
    stack.kubectl("patch", "tradingstack", STACK, "--type=json", "-p", json.dumps(patch))


def readiness(stack: Stack, service: str) -> tuple[set[str], set[bool]]:
    """The health statuses the service's pods report, and their pods' Ready conditions."""
    pods = [p for p in stack.service_pods(service) if p["status"].get("phase") == "Running"]
    return {health_document(stack, p)["status"] for p in pods}, {pod_ready(p) for p in pods}


def wait_readiness(stack: Stack, expected: dict[str, tuple[str, bool]], what: str) -> None:
    def reached() -> bool:
        return all(readiness(stack, s) == ({status}, {ready}) for s, (status, ready) in expected.items())

    wait_for(reached, timeout=180, interval=2, what=what)  # the services retry an open circuit after 60 s


def test_halt_stops_the_haltable_services_at_once_and_nothing_else(stack: Stack) -> None:
    """`tradingstack halt`: the haltable service (execution) has no Running pod and a stuck pod with its labels
    (no Deployment owns it, so the scale-down misses it) can no longer connect anywhere, while every other pod
    keeps running, not restarted; status, condition and Event say who halted and why. `resume` restores the
    replicas and the egress, and the stack is Ready again."""
    services = halt.haltable_services(stack)
    assert services == ["execution"], services
    replicas = {s: stack.cluster.kubectl_json("get", "deployment", f"{STACK}-{s}", "-n", stack.namespace)["spec"][
        "replicas"] for s in services}  # fmt: skip
    stuck = halt.start_stuck_pod(stack, halt.egress_target(stack))
    others = halt.other_pods(stack, services)
    try:
        timing = halt.halt(stack, services, stuck, "e2e: drawdown limit hit")
        print(f"halted: pods gone {timing.pods_gone:.2f} s, egress blocked {timing.egress_blocked:.2f} s")
        # The halt's writes come first in a pass, its status at the end (after the data-plane reads).
        status = wait_for_status(stack.cluster, stack.namespace, lambda s: s.get("halt"), 30, "status.halt")
        assert status["halt"]["reason"] == "e2e: drawdown limit hit", status.get("halt")
        assert status["halt"]["since"] and status["halt"]["by"], status["halt"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Halted"]["status"] == "True" and "execution" in conditions["Halted"]["message"]
        events = stack.cluster.kubectl_json("get", "events", "-n", stack.namespace,
                                            "--field-selector", f"involvedObject.name={STACK}")["items"]  # fmt: skip
        assert any(e["reason"] == "Halted" and e["type"] == "Warning" for e in events), [e["reason"] for e in events]
        time.sleep(5)  # a few passes of the operator later: still halted, nothing else touched
        assert not halt.running_pods(stack, services)
        assert halt.other_pods(stack, services) == others, "a pod of a service that is not haltable was replaced"
    finally:
        halt.resume(stack, stuck)
        stack.kubectl("delete", "pod", stuck, "--wait=false", check=False)
    for service, count in replicas.items():
        ready = stack.cluster.kubectl_json("get", "deployment", f"{STACK}-{service}", "-n", stack.namespace)
        assert ready["status"].get("readyReplicas") == count, ready["status"]
    assert halt.other_pods(stack, services) == others


class ReadyFloor:
    """The fewest Ready pods `service`'s own Deployment had at any poll (every 200 ms) while it runs."""

    def __init__(self, stack: Stack, service: str) -> None:
        self.stack, self.service, self.fewest, self.polls = stack, service, 1 << 30, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def ready(self) -> int:
        pods = self.stack.service_pods(self.service)
        return sum(1 for p in pods if p["metadata"]["labels"].get(Label.NAME) == self.service and pod_ready(p))

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.fewest, self.polls = min(self.fewest, self.ready()), self.polls + 1

    def __enter__(self) -> ReadyFloor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def set_service(stack: Stack, service: str, **fields: Any) -> None:
    document = stack.cluster.kubectl_json("get", "tradingstack", STACK, "-n", stack.namespace)
    index = next(i for i, s in enumerate(document["spec"]["services"]) if s["name"] == service)
    patch = [{"op": "add", "path": f"/spec/services/{index}/{name}", "value": value} for name, value in fields.items()]
    stack.kubectl("patch", "tradingstack", STACK, "--type=json", "-p", json.dumps(patch))


def rollout_status(stack: Stack, service: str) -> dict[str, Any]:
    return dict(stack_status(stack.cluster, stack.namespace).get("rollouts", {}).get(service, {}))


def wait_rolled_out(
    stack: Stack, replicas: dict[str, int], runs_new: Callable[[dict[str, str | None]], bool], what: str
) -> None:
    """Until each service's rollout is Idle and exactly its replicas run, all of them with the new template
    (`runs_new` of their first container's env); the rollouts' status is in the failure message."""

    def rolled_out() -> bool:
        for service, count in replicas.items():
            pods = stack.service_pods(service)
            envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]} for p in pods]
            if rollout_status(stack, service).get("step") != "Idle" or len(pods) != count:
                return False
            if not all(runs_new(e) for e in envs):
                return False
        return True

    try:
        wait_for(rolled_out, timeout=ROLLOUT_TIMEOUT, interval=2, what=what)
    except AssertionError as err:
        rollouts = stack_status(stack.cluster, stack.namespace).get("rollouts", {})
        raise AssertionError(f"{err}; rollouts: {json.dumps({s: rollouts.get(s) for s in replicas})}") from err


def conditions(stack: Stack) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in stack_status(stack.cluster, stack.namespace)["conditions"]}


def test_a_rollout_that_answers_unhealthy_is_rolled_back_and_a_good_one_rolls_out(stack: Stack) -> None:
    """risk-safety (2 replicas) gets a template whose pods answer UNHEALTHY (Redis, a critical dependency, at an
    address nothing listens on): its canary is rolled back, the Deployment never loses a Ready pod, the stack says
    so. Then a good template (a new VERSION) bakes, is promoted and replaces every pod, never below 2 Ready."""
    service = "risk-safety"
    env = next(s for s in load(EXAMPLE, "x")["spec"]["services"] if s["name"] == service).get("env", [])
    set_service(stack, service, rollout={"bakeSeconds": 15, "deadlineSeconds": 90})  # no template change
    before = {p["metadata"]["name"] for p in stack.service_pods(service)}
    assert len(before) == 2
    with ReadyFloor(stack, service) as floor:
        set_service(stack, service, env=[*env, {"name": "REDIS_URL", "value": "redis://127.0.0.1:1/0"}])
        bad = wait_for(lambda: rollout_status(stack, service).get("step") == "RolledBack" and rollout_status(
            stack, service), timeout=240, interval=1, what=f"{service}'s canary rolled back")  # fmt: skip
        # The step is written before the pass's child writes (reconcile.rollout_runner.interim_status), the
        # conditions at its end: wait for that pass to finish.
        degraded = wait_for(lambda: (c := conditions(stack)["Degraded"])["reason"] == "RolloutRolledBack" and c,
                            timeout=60, interval=1, what="Degraded with reason RolloutRolledBack")  # fmt: skip
        assert service in degraded["message"] and bad["badRevision"] in degraded["message"], degraded
        events = stack.cluster.kubectl_json("get", "events", "-n", stack.namespace,
                                            "--field-selector", f"involvedObject.name={STACK}")["items"]  # fmt: skip
        assert any(e["reason"] == "RolloutRolledBack" and e["type"] == "Warning" for e in events)
        canary = f"deployment/{STACK}-{service}{CANARY_SUFFIX}"
        wait_for(lambda: not stack.kubectl("get", canary, "--ignore-not-found").strip(), timeout=60,
                 what="the canary deleted")  # fmt: skip
        assert {p["metadata"]["name"] for p in stack.service_pods(service)} == before, "a serving pod was replaced"

        set_service(stack, service, env=[*env, {"name": ServiceEnv.VERSION, "value": "0.2.0"}])

        def rolled_out() -> bool:
            status = rollout_status(stack, service)
            pods = stack.service_pods(service)
            versions = {e.get("value") for p in pods for e in p["spec"]["containers"][0]["env"]
                        if e["name"] == ServiceEnv.VERSION}  # fmt: skip
            return status.get("step") == "Idle" and versions == {"0.2.0"} and len(pods) == 2 and floor.ready() == 2

        wait_for(rolled_out, timeout=420, interval=2, what=f"{service}'s good revision rolled out")
    good = rollout_status(stack, service)
    assert good["lastGoodRevision"] == good["currentRevision"] != bad["badRevision"], good
    assert floor.polls > 100 and floor.fewest >= 2, f"Ready pods fell to {floor.fewest} ({floor.polls} polls)"
    degraded = {c["type"]: c for c in stack_status(stack.cluster, stack.namespace)["conditions"]}["Degraded"]
    assert degraded["status"] == "False", degraded
    set_service(stack, service, env=env)  # back to the example: one more rollout, finished before the next test
    wait_rolled_out(stack, {service: 2}, lambda pod_env: ServiceEnv.VERSION not in pod_env, "back to the example")


def test_pod_readiness_follows_the_health_contract_when_dependencies_really_fail(stack: Stack) -> None:
    """execution (degradedIsReady: false) and portfolio (default true) count Postgres as non-critical, so a
    Postgres outage makes them DEGRADED; a Redis outage makes them UNHEALTHY. Liveness restarts nothing."""
    replicas = {s["name"]: s.get("replicas", 1) for s in load(EXAMPLE, "x")["spec"]["services"]}
    for service in ("execution", "portfolio"):
        set_service(stack, service, rollout={"bakeSeconds": 5})  # the rollouts are not what this test is about
        set_env(stack, service, ServiceEnv.CRITICAL_DEPENDENCIES, "redis")
    wait_rolled_out(stack, {s: replicas[s] for s in ("execution", "portfolio")},
                    lambda pod_env: pod_env.get(ServiceEnv.CRITICAL_DEPENDENCIES) == "redis",
                    "execution and portfolio rolled out")  # fmt: skip
    wait_readiness(stack, {"execution": ("HEALTHY", True), "portfolio": ("HEALTHY", True)}, "HEALTHY and Ready")
    before = stack.restart_counts()

    # Postgres refuses every new connection to the stack's database.
    stack.psql("ALTER DATABASE trading ALLOW_CONNECTIONS false", database="postgres")
    try:
        wait_readiness(
            stack,
            {"execution": ("DEGRADED", False), "portfolio": ("DEGRADED", True)},
            "DEGRADED: Ready only where degradedIsReady",
        )
    finally:
        stack.psql("ALTER DATABASE trading ALLOW_CONNECTIONS true", database="postgres")
    wait_readiness(stack, {"execution": ("HEALTHY", True), "portfolio": ("HEALTHY", True)}, "HEALTHY again")

    # Every Redis server stops answering clients for 40 s (sentinels cannot fail over: no server answers).
    for pod in stack.pods(f"{Label.COMPONENT}=redis"):
        stack.redis_cli(pod["metadata"]["name"], "CLIENT", "PAUSE", "40000", "ALL")
    wait_readiness(
        stack,
        {"execution": ("UNHEALTHY", False), "portfolio": ("UNHEALTHY", False)},
        "UNHEALTHY: not Ready",
    )
    wait_readiness(stack, {"execution": ("HEALTHY", True), "portfolio": ("HEALTHY", True)}, "HEALTHY after Redis")
    assert stack.restart_counts() == before, "liveness never restarts a pod because a dependency is down"


def test_alerts_fire_and_resolve_in_a_real_prometheus(stack: Stack, tmp_path: Path) -> None:
    """Prometheus scrapes the operator's pod and the services' pods and evaluates the chart's rules: every
    dashboard query evaluates; a service made UNHEALTHY fires its alert within the rule's `for` plus two scrape
    intervals of the operator seeing it, and recovery resolves it."""
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    assert next(r["for"] for r in rules if r["alert"] == "TradingStackServiceUnhealthy") == f"{UNHEALTHY_FOR // 60}m"
    operators = stack.pods(f"{Label.NAME}={OPERATOR_APP_NAME}")  # the leader and the standby, as a PodMonitor would
    services = [p for p in stack.pods(f"{Label.PART_OF}=quantum-trader") if p["metadata"]["labels"].get(
        Label.COMPONENT) in SERVICES and pod_ready(p)]  # fmt: skip
    targets = {
        "tradingstack-operator": [f"{p['status']['podIP']}:9102" for p in operators],
        "demo-service": [f"{p['status']['podIP']}:{p['spec']['containers'][0]['ports'][0]['containerPort']}"
                         for p in services],
    }  # fmt: skip
    prometheus = start_prometheus(tmp_path, targets, ALERT_RULES)
    try:
        wait_for(lambda: prometheus.query('tradingstack_stack_condition{condition="Ready"} == 1'), timeout=90,
                 what="the stack's per-stack series scraped")  # fmt: skip
        dashboard = json.loads(DASHBOARD.read_text())
        for expr in (t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])):
            prometheus.query(expr)  # evaluates (an error fails the test)
        for name in ("tradingstack_service_ready_replicas", "tradingstack_service_health", "tradingstack_stacks"):
            assert prometheus.query(name), f"no {name} series scraped"
        assert not prometheus.firing("TradingStackServiceUnhealthy")

        for pod in stack.pods(f"{Label.COMPONENT}=redis"):
            stack.redis_cli(pod["metadata"]["name"], "CLIENT", "PAUSE", str(REDIS_OUTAGE_SECONDS * 1000), "ALL")
        unhealthy = 'tradingstack_service_health{service="execution",state="UNHEALTHY"} == 1'
        wait_for(lambda: prometheus.query(unhealthy), timeout=120, interval=1, what="execution UNHEALTHY scraped")
        seen = time.monotonic()
        wait_for(lambda: [a for a in prometheus.firing("TradingStackServiceUnhealthy")
                          if a["labels"]["service"] == "execution"], timeout=UNHEALTHY_FOR + 60, interval=1,
                 what="TradingStackServiceUnhealthy firing for execution")  # fmt: skip
        fired_after = time.monotonic() - seen
        assert fired_after <= UNHEALTHY_FOR + 2 * SCRAPE_SECONDS, fired_after

        for pod in stack.pods(f"{Label.COMPONENT}=redis"):
            stack.redis_cli(pod["metadata"]["name"], "CLIENT", "UNPAUSE")
        wait_for(lambda: not prometheus.firing("TradingStackServiceUnhealthy"), timeout=240, interval=2,
                 what="the alert resolved after recovery")  # fmt: skip
    finally:
        prometheus.stop()
    wait_readiness(stack, {"execution": ("HEALTHY", True), "portfolio": ("HEALTHY", True)}, "HEALTHY again")


METRICS_ON = {"metrics": {"enabled": True}}


def exporter_targets(stack: Stack, component: str) -> list[str]:
    """`podIP:port` of the `metrics` port of each ready pod of `component` that runs the exporter sidecar."""
    targets = []
    for pod in stack.pods(f"{Label.COMPONENT}={component}"):
        sidecars = [c for c in pod["spec"]["containers"] if c["name"] == METRICS_CONTAINER]
        if sidecars and pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            port = next(p["containerPort"] for p in sidecars[0]["ports"] if p["name"] == METRICS_PORT_NAME)
            targets.append(f"{pod['status']['podIP']}:{port}")
    return targets


def test_the_data_store_exporters_are_scraped_by_a_real_prometheus(stack: Stack, tmp_path: Path) -> None:
    """spec.redis.metrics and spec.postgres.metrics on the running example: every Redis server pod and the
    PostgreSQL pod roll with the exporter sidecar, a Prometheus outside the stack (a host process, as the
    NetworkPolicies see any scraper) scrapes them by pod IP, as a ServiceMonitor on the `metrics` port would:
    redis_up and pg_up are 1, the master reports its replicas, and every expression of the dashboard's Redis and
    PostgreSQL rows returns data. A pod outside the stack reaches the metrics ports but still not the stores.
    The sidecars stay enabled for the tests after this one."""
    redis_spec = RedisSpec.model_validate(load(EXAMPLE, "x")["spec"]["redis"])
    patch = {"spec": {"redis": METRICS_ON, "postgres": METRICS_ON}}
    stack.kubectl("patch", "tradingstack", STACK, "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: len(exporter_targets(stack, "redis")) == redis_spec.replicas
             and len(exporter_targets(stack, "postgres")) == 1, timeout=READY_TIMEOUT, interval=3,
             what="every Redis server pod and the PostgreSQL pod ready with the metrics sidecar")  # fmt: skip
    wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)
    targets = {"redis": exporter_targets(stack, "redis"), "postgres": exporter_targets(stack, "postgres")}

    prometheus = start_prometheus(tmp_path, targets, ALERT_RULES)
    try:
        wait_for(lambda: len(prometheus.query("redis_up == 1")) == redis_spec.replicas, timeout=60, interval=2,
                 what=f"redis_up == 1 from {targets['redis']}")  # fmt: skip
        wait_for(lambda: len(prometheus.query("pg_up == 1")) == 1, timeout=60, interval=2,
                 what=f"pg_up == 1 from {targets['postgres']}")  # fmt: skip
        # One master (the roles come from the exporters), all replicas connected to it (resyncs after the roll).
        master_replicas = 'redis_connected_slaves and on (instance) redis_instance_info{role="master"}'
        wait_for(lambda: [float(r["value"][1]) for r in prometheus.query(master_replicas)] == [redis_spec.replicas - 1],
                 timeout=60, interval=2, what="one master reporting every replica")  # fmt: skip
        expressions = row_expressions(REDIS_ROW) + row_expressions(POSTGRES_ROW)
        assert len(expressions) >= 9, expressions
        for expr in expressions:  # rates need two scrapes: a few intervals
            wait_for(partial(prometheus.query, expr), timeout=12 * SCRAPE_SECONDS, interval=2,
                     what=f"data for the dashboard's {expr!r}")  # fmt: skip
    finally:
        prometheus.stop()

    stranger = start_stranger(stack, stack.namespace)
    try:
        exporters = [exporter_targets(stack, "redis")[0], exporter_targets(stack, "postgres")[0]]
        stores = [f"{exporters[0].rsplit(':', 1)[0]}:{REDIS_PORT.number}",
                  f"{exporters[1].rsplit(':', 1)[0]}:{POSTGRES_PORT.number}"]  # fmt: skip
        answers = connections(stack, stack.namespace, stranger, [*exporters, *stores])
        assert [answers[t] for t in exporters] == ["connected", "connected"], answers
        assert "connected" not in [answers[t] for t in stores], answers
    finally:
        stack.kubectl("delete", "pod", stranger, "--wait=false", check=False)


WRITER = """
import json, sys, time
from tradingstack.redisclient import RedisUnavailableError, SentinelRedisClient, WriteNotAcknowledgedError
client = SentinelRedisClient.from_env()
acknowledged, refused, deadline, i = [], 0, time.monotonic() + {seconds}, 0
while time.monotonic() < deadline:
    i += 1
    try:
        client.write_confirmed(f"e2e:{run}:{{i}}", str(i), replicas=1, timeout_ms=500)
        acknowledged.append(i)
    except (WriteNotAcknowledgedError, RedisUnavailableError):
        refused += 1
        time.sleep(0.1)
    time.sleep(0.02)
print(json.dumps({{"acknowledged": acknowledged, "refused": refused}}))
"""


def master(stack: Stack) -> str:
    status = wait_for_status(stack.cluster, stack.namespace, lambda s: s.get("redis", {}).get("master"), 120,
                             "status.redis.master")  # fmt: skip
    return str(status["redis"]["master"])


def wait_single_master_followed(stack: Stack, previous: str, what: str, *, failed_over: bool) -> str:
    """One server in the master role, and the status and the master label name it; with `failed_over`, a server
    other than `previous` (a killed master that restarts before down-after may legitimately stay the master)."""

    def settled() -> str | None:
        roles: dict[str, str] = {
            p["metadata"]["name"]: stack.redis_cli(p["metadata"]["name"], "ROLE").splitlines()[0]
            for p in stack.pods(f"{Label.COMPONENT}=redis")
            if pod_ready(p)
        }
        masters = [name for name, role in roles.items() if role == "master"]
        status = stack_status(stack.cluster, stack.namespace).get("redis", {})
        labelled = [p["metadata"]["name"] for p in stack.pods(MASTER_LABEL)]
        if len(roles) == 3 and len(masters) == 1 and status.get("master") == masters[0] and labelled == masters:
            return None if failed_over and masters[0] == previous else masters[0]
        return None

    return wait_for(settled, timeout=180, interval=2, what=f"{what}: one master, status and label on it")


def wait_sentinels_quiet(stack: Stack) -> None:
    """A failover test starts from quiet sentinels: each names the master with no o_down or failover in progress,
    which an outage provoked by an earlier test leaves for up to failover-timeout (a SENTINEL FAILOVER then
    answers INPROG and the master's preStop cannot hand over)."""
    sentinels = [p["metadata"]["name"] for p in stack.pods(f"{Label.COMPONENT}={SENTINEL_COMPONENT}")]

    def flags() -> dict[str, str]:
        found = {}
        for pod in sentinels:
            reply = stack.kubectl("exec", pod, "-c", "sentinel", "--", "redis-cli", "-p", str(SENTINEL_PORT.number),
                                  "--raw", "SENTINEL", "MASTER", MASTER_NAME).strip().splitlines()  # fmt: skip
            found[pod] = dict(zip(reply[::2], reply[1::2], strict=False)).get("flags", "")
        return found

    wait_for(lambda: set(flags().values()) == {"master"}, timeout=300, interval=3,
             what=f"sentinels {sentinels} quiet (flags master only)")  # fmt: skip


def kill_container(stack: Stack, pod: str, container: str) -> None:
    """SIGKILL from the node's containerd: the process dies without its preStop hook or a graceful shutdown."""
    found = stack.cluster.kubectl_json("get", "pod", pod, "-n", stack.namespace)
    status = next(c for c in found["status"]["containerStatuses"] if c["name"] == container)
    container_id = status["containerID"].removeprefix("containerd://")
    socket = f"/run/tradingstack-nodes/{found['spec']['nodeName']}/containerd.sock"
    subprocess.run(
        [str(CACHE / "bin" / "ctr"), "--address", socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL",
         container_id],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def test_redis_master_loss_keeps_acknowledged_writes(stack: Stack, reliability: Reliability) -> None:
    """A client in a pod writes with WAIT while, round after round, the master pod is deleted (preStop hands over)
    and then the next master's container is killed: after each fault one master, status and label follow, and
    every acknowledged write is on the final master. `make chaos` runs 10 rounds (20 faults)."""
    wait_sentinels_quiet(stack)
    run = uuid.uuid4().hex[:8]
    client = stack.service_pods("risk-safety")[0]["metadata"]["name"]
    seconds = 60 + 90 * REDIS_FAULT_ROUNDS
    writer = subprocess.Popen(
        [str(stack.cluster.bin_dir / "kubectl"), "--kubeconfig", str(stack.cluster.kubeconfig), "-n",
         stack.namespace, "exec", client, "--", "python3", "-c", WRITER.format(seconds=seconds, run=run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(5)
        current = master(stack)
        for _ in range(REDIS_FAULT_ROUNDS):
            stack.kubectl("delete", "pod", current, "--wait=false")
            current = wait_single_master_followed(stack, current, f"after deleting {current}", failed_over=True)
            time.sleep(5)
            kill_container(stack, current, "redis")
            current = wait_single_master_followed(stack, current, f"after killing {current}", failed_over=False)
            wait_sentinels_quiet(stack)
        out, err = writer.communicate(timeout=seconds + 120)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    acknowledged = result["acknowledged"]
    assert len(acknowledged) > 100, result
    keys = stack.redis_cli(current, "--scan", "--pattern", f"e2e:{run}:*").split()
    missing = sorted(set(acknowledged) - {int(k.rsplit(":", 1)[1]) for k in keys})
    reliability.record(
        "Redis master lost under WAIT-acknowledged writes (real pods)",
        runs=f"{REDIS_FAULT_ROUNDS} rounds",
        faults=f"{REDIS_FAULT_ROUNDS} master pods deleted + {REDIS_FAULT_ROUNDS} master containers killed (SIGKILL)",
        checked="after each fault one server in the master role, status.redis.master and the label on it; "
        "every acknowledged write on the final master",
        result=f"{len(acknowledged)} writes acknowledged, {len(missing)} lost, {result['refused']} refused",
    )
    assert not missing, f"acknowledged writes lost: {missing[:20]} (of {len(acknowledged)}; {len(keys)} keys)"
    assert "lastFailover" in stack_status(stack.cluster, stack.namespace)["redis"]


def test_the_daily_restart_run_restarts_one_service_at_a_time(stack: Stack) -> None:
    """On real Deployments: never a moment (polled every 200 ms) with a service at 0 ready pods, never two
    services rolling at once, and the run ends Succeeded."""
    trigger = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.kubectl("annotate", "tradingstack", STACK, f"{RESTART_NOW}={trigger}", "--overwrite")
    names = {f"{STACK}-{s}": s for s in SERVICES}
    zero_ready: list[str] = []
    overlapping: list[list[str]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        deployments = stack.cluster.kubectl_json("get", "deployments", "-n", stack.namespace)["items"]
        rolling = []
        for d in deployments:
            if d["metadata"]["name"] not in names:
                continue
            if d["status"].get("readyReplicas", 0) == 0:
                zero_ready.append(d["metadata"]["name"])
            if (
                d["status"].get("updatedReplicas", 0) < d["spec"]["replicas"]
                or d["status"].get("replicas", 0) > d["spec"]["replicas"]
            ):
                rolling.append(d["metadata"]["name"])
        if len(rolling) > 1:
            overlapping.append(rolling)
        restarts = stack_status(stack.cluster, stack.namespace).get("restarts", {})
        if restarts.get("handledTrigger") == trigger and not restarts.get("inProgress") and restarts.get("lastResult"):
            break
        time.sleep(0.2)
    assert restarts.get("handledTrigger") == trigger, restarts
    assert restarts["lastResult"] == "Succeeded", restarts
    assert not zero_ready, f"a service had no ready pod: {sorted(set(zero_ready))}"
    assert not overlapping, f"services rolled at the same time: {overlapping[:3]}"
    replica_sets = stack.cluster.kubectl_json("get", "replicasets", "-n", stack.namespace)["items"]
    for deployment, service in names.items():
        stamped = [
            rs for rs in replica_sets
            if rs["metadata"]["ownerReferences"][0]["name"] == deployment
            and rs["spec"]["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT) == restarts["runId"]
        ]  # fmt: skip
        assert len(stamped) == 1, f"{service}: expected one ReplicaSet of run {restarts['runId']}"


def secret_forms(value: str) -> set[str]:
    """How a secret value can appear in text: as it is, percent-encoded (in a DSN) and base64-encoded."""
    return {value, quote(value, safe=""), base64.b64encode(value.encode()).decode()}


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets any form of which occurs in `text`."""
    return sorted(name for name, value in secrets.items() if any(form in text for form in secret_forms(value)))


def namespaced_kinds(stack: Stack) -> list[str]:
    """Every namespaced kind the API server lists, Secrets excepted (they are where the values belong)."""
    out = stack.cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout
    return sorted(kind for kind in out.split() if kind not in {"secrets", "events", "events.events.k8s.io"})


def test_generated_credentials_appear_nowhere_but_in_their_secrets(stack: Stack) -> None:
    """After every scenario above (start, failovers, halts, rollouts, restarts), the generated Redis and Postgres
    passwords and DSN occur in no log line of any container of the namespace (the operator's included), no
    Event, and no other object: status, annotations (kopf's own too), ConfigMaps, pod specs."""
    secrets = {}
    for component in ("redis", "postgres"):
        data = stack.cluster.kubectl_json("get", "secret", f"{STACK}-{component}", "-n", stack.namespace)["data"]
        for key, encoded in data.items():
            value = base64.b64decode(encoded).decode()
            if key in {"password", "dsn"}:
                assert len(value) >= 16, f"{component}/{key} is too short to search for"
                secrets[f"{component}/{key}"] = value
    assert set(secrets) >= {"redis/password", "postgres/password", "postgres/dsn"}, sorted(secrets)
    # The detector finds what is there: the Secret objects themselves hold every value, base64-encoded.
    own = stack.kubectl("get", "secret", f"{STACK}-redis", f"{STACK}-postgres", "-o", "json")
    assert leaked(own, secrets) == sorted(secrets)

    found: dict[str, list[str]] = {}
    for pod in stack.cluster.kubectl_json("get", "pods", "-n", stack.namespace)["items"]:
        name = pod["metadata"]["name"]
        for container in [c["name"] for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]]:
            logs = stack.kubectl("logs", name, "-c", container, check=False)
            if hits := leaked(logs, secrets):
                found[f"log of {name}/{container}"] = hits
    events = stack.kubectl("get", "events", "-o", "json")
    if hits := leaked(events, secrets):
        found["Events"] = hits
    for kind in namespaced_kinds(stack):
        objects = stack.cluster.kubectl_json("get", kind, "-n", stack.namespace)["items"]
        for obj in objects:
            if hits := leaked(json.dumps(obj), secrets):
                found[f"{kind}/{obj['metadata']['name']}"] = hits
    assert not found, f"generated credentials leaked: {found}"


def test_scaling_and_deleted_children_are_reconciled(stack: Stack) -> None:
    patch = [{"op": "replace", "path": "/spec/services/0/replicas", "value": 3}]
    stack.kubectl("patch", "tradingstack", STACK, "--type=json", "-p", json.dumps(patch))
    wait_for_status(stack.cluster, stack.namespace,
                    lambda s: s.get("services", {}).get("ai-engine", {}).get("ready") == 3, 180,
                    "ai-engine at 3 ready replicas")  # fmt: skip
    uid = stack.cluster.kubectl_json("get", "deployment", f"{STACK}-portfolio", "-n", stack.namespace)["metadata"]
    stack.kubectl("delete", "deployment", f"{STACK}-portfolio")
    stack.kubectl("delete", "service", f"{STACK}-execution")

    def restored() -> bool:
        portfolio = stack.cluster.kubectl_json("get", "deployment", f"{STACK}-portfolio", "-n", stack.namespace)
        stack.kubectl("get", "service", f"{STACK}-execution")
        return bool(portfolio["metadata"]["uid"] != uid["uid"])

    wait_for(restored, timeout=60, what="the deleted Deployment and Service restored")
    wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)


def run_backup(stack: Stack) -> dict[str, Any]:
    job = f"e2e-backup-{uuid.uuid4().hex[:6]}"
    stack.kubectl("create", "job", f"--from=cronjob/{STACK}-postgres-backup", job)
    stack.kubectl("wait", "--for=condition=Complete", f"job/{job}", "--timeout=300s", timeout=330)
    return wait_for_status(
        stack.cluster, stack.namespace,
        lambda s: s.get("postgres", {}).get("lastBackupJob") == job and s["postgres"].get("lastBackup"),
        120, f"status.postgres.lastBackup from {job}",
    )  # fmt: skip


def delete_stack(stack: Stack) -> None:
    stack.kubectl("delete", "tradingstack", STACK, "--wait=true", "--timeout=120s", timeout=150)
    wait_for(lambda: not stack.cluster.kubectl_json("get", "statefulsets", "-n", stack.namespace)["items"],
             timeout=120, what="the stack's StatefulSets garbage-collected")  # fmt: skip


def recreate(stack: Stack, document: dict[str, Any]) -> None:
    delete_stack(stack)
    assert remaining_claims(stack.cluster, stack.namespace) >= RETAINED_CLAIMS, "Retain keeps the volumes"
    stack.cluster.apply(document, namespace=stack.namespace)
    wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)


def test_retain_keeps_the_data_across_a_deleted_and_recreated_stack(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    stack.psql(f"CREATE TABLE retained (v text); INSERT INTO retained VALUES ('{marker}')")  # noqa: S608 - hex
    recreate(stack, load(EXAMPLE, stack.namespace))
    assert wait_for(lambda: stack.psql("SELECT v FROM retained") == marker, timeout=120, what="the retained row")


def test_a_backup_archive_restores_into_a_new_volume(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    stack.psql(f"CREATE TABLE restored (v text); INSERT INTO restored VALUES ('{marker}')")  # noqa: S608 - hex
    status = run_backup(stack)
    backup = status["postgres"]["lastBackup"]
    assert backup["sizeBytes"] > 0 and re.fullmatch(r"sha256:[0-9a-f]{64}", backup["checksum"]), backup
    assert backup["verified"] is True, backup
    assert status["postgres"]["lastBackupResult"] == "Succeeded"
    assert {c["type"]: c["status"] for c in status["conditions"]}["BackupHealthy"] == "True"

    # The data volume goes; a new stack of the same name bootstraps from the retained backup volume.
    document = load(EXAMPLE, stack.namespace)
    document["spec"]["postgres"]["restore"] = {"from": "latest"}
    delete_stack(stack)
    stack.kubectl("delete", "pvc", f"data-{STACK}-postgres-0", "--wait=true", timeout=150)
    stack.cluster.apply(document, namespace=stack.namespace)
    wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)
    assert wait_for(lambda: stack.psql("SELECT v FROM restored") == marker, timeout=300, what="the restored row")
    assert json.dumps(stack_status(stack.cluster, stack.namespace)).count(marker) == 0, "no data in the status"


PITR_WRITER = (
    "DO $$ BEGIN FOR i IN 1..100 LOOP INSERT INTO pitr_rows (n) VALUES (i); COMMIT; "
    "PERFORM pg_sleep(0.05); END LOOP; END $$"
)
"""100 rows, each its own commit, 50 ms apart."""
PITR_TARGET = (
    "SELECT to_char((a.at + (b.at - a.at) / 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
    "FROM pitr_rows a, pitr_rows b WHERE a.n = 50 AND b.n = 51"
)
"""Between the commits of rows 50 and 51: row k commits before row k+1's insert starts."""


def wal_archived_past_now(stack: Stack) -> None:
    """Closes the current WAL segment and waits until the server reports it archived (async archive-push)."""
    segment = stack.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: stack.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment,
             timeout=120, interval=2, what=f"WAL segment {segment} archived")  # fmt: skip


def run_cronjob(stack: Stack, cronjob: str) -> str:
    job = f"e2e-{cronjob.removeprefix(STACK + '-')}-{uuid.uuid4().hex[:6]}"
    stack.kubectl("create", "job", f"--from=cronjob/{cronjob}", job)
    try:
        stack.kubectl("wait", "--for=condition=Complete", f"job/{job}", "--timeout=300s", timeout=330)
    except Exception:
        print(stack.kubectl("logs", f"job/{job}", "--all-containers", check=False))
        raise
    return job


def test_pitr_restores_a_new_stack_from_s3_to_a_point_in_time(stack: Stack, tmp_path: Path) -> None:
    """pgBackRest on the real pods: the stack archives WAL to S3 (versitygw) and the full-backup CronJob's Job
    backs up through the database pod's TLS server; then the stack and its data volume are deleted, and a new
    stack restores to a time between two commits: exactly the rows committed before it come back."""
    with s3_for_pods(stack.cluster, stack.namespace, tmp_path) as s3:
        pitr = {"enabled": True, "volume": False, "s3": s3, "archiveTimeoutSeconds": 10}
        stack.kubectl("patch", "tradingstack", STACK, "--type=merge",
                      "-p", json.dumps({"spec": {"postgres": {"pitr": pitr}}}))  # fmt: skip
        wait_for(lambda: "pgbackrest" in {c["name"] for p in stack.pods(f"{Label.NAME}=postgres")
                                          for c in p["spec"]["containers"]} and all(
                     pod_ready(p) for p in stack.pods(f"{Label.NAME}=postgres")),
                 timeout=READY_TIMEOUT, interval=3, what="the PostgreSQL pod with its pgBackRest sidecar")  # fmt: skip
        stack.psql("CREATE TABLE pitr_rows (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        wait_for(lambda: STANZA_CREATED in stack.kubectl("logs", f"{STACK}-postgres-0", "-c", "pgbackrest",
                                                         check=False),
                 timeout=180, interval=3, what="the sidecar's stanza-create")  # fmt: skip
        job = run_cronjob(stack, f"{STACK}-postgres-pitr-full")
        status = wait_for_status(
            stack.cluster, stack.namespace,
            lambda s: (s.get("postgres", {}).get("pitr") or {}).get("lastFullBackup") is not None, 120,
            f"status.postgres.pitr.lastFullBackup from {job}",
        )  # fmt: skip
        print(f"pitr status after {job}: {status['postgres']['pitr']}")

        stack.psql(PITR_WRITER)
        target = stack.psql(PITR_TARGET)
        wal_archived_past_now(stack)

        document = load(EXAMPLE, stack.namespace)
        document["spec"]["postgres"]["pitr"] = pitr
        document["spec"]["postgres"]["restore"] = {"from": "latest", "targetTime": target}
        delete_stack(stack)
        stack.kubectl("delete", "pvc", f"data-{STACK}-postgres-0", "--wait=true", timeout=150)
        started = time.monotonic()
        stack.cluster.apply(document, namespace=stack.namespace)
        wait_for_condition(stack.cluster, stack.namespace, STACK, "Ready", "True", READY_TIMEOUT)
        rows = wait_for(lambda: stack.psql("SELECT count(*), coalesce(max(n), 0) FROM pitr_rows"), timeout=300,
                        what="the restored table")  # fmt: skip
        print(f"restored to {target} in {time.monotonic() - started:.1f} s (stack Ready): rows {rows}")
        assert rows == "50|50", f"expected rows 1..50 (restored to {target}), got count|max {rows}"
