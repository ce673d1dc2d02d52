"""The gateway renderer: golden manifests, routing, rate limit, pod security, config checksum."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.components.recorded import live_workloads, workload
from tradingstack.api import DEFAULT_RESTART_ORDER, TradingStack
from tradingstack.components import gateway
from tradingstack.components.assess import Assessment
from tradingstack.contract import Annotation
from tradingstack.render.gateway import nginx_conf, render_gateway

GOLDEN = Path(__file__).parents[1] / "golden" / "gateway.yaml"


def example_stack(**gateway: Any) -> TradingStack:
    """The seed's six services on ports 8001-8006, one with a custom prefix and one without a route."""
    services: list[dict[str, Any]] = [
        {"name": name, "image": f"registry.example/{name}:1.0.0", "port": 8001 + index}
        for index, name in enumerate(DEFAULT_RESTART_ORDER)
    ]
    services[1]["route"] = {"pathPrefix": "/api/ai/"}
    services[5]["route"] = {"enabled": False}
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "0b5c1a2e-uid"},
            "spec": {"services": services, "gateway": gateway},
        }
    )


def _kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def _deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == "Deployment")


def test_matches_golden_file() -> None:
    stack = example_stack()
    rendered = yaml.safe_dump_all(render_gateway(stack, stack.owner_reference()), sort_keys=True)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text(), "gateway render changed: review, then regenerate with UPDATE_GOLDEN=1"


def test_routes_every_enabled_service_to_its_cluster_name_and_strips_the_prefix() -> None:
    conf = nginx_conf(example_stack())
    assert "server quant-ai-engine.trading.svc.cluster.local:8002;" in conf
    assert "location /api/ai/ {" in conf
    assert "location /api/rl-training/ {" in conf
    assert "proxy_pass http://svc_rl_training/;" in conf
    assert "execution" not in conf, "a service whose route is disabled must not be reachable"


def test_upstream_host_is_a_template() -> None:
    conf = nginx_conf(example_stack(), upstream_host="{service}.local", runtime_dir="/run/gw")
    assert "server portfolio.local:8003;" in conf
    assert "pid /run/gw/nginx.pid;" in conf
    assert "svc.cluster.local" not in conf


def test_rate_limit_and_request_id() -> None:
    conf = nginx_conf(example_stack(rateLimit={"requestsPerSecond": 7, "burst": 3}))
    assert "zone=per_client:10m rate=7r/s;" in conf
    assert conf.count("limit_req zone=per_client burst=3 nodelay;") == 5
    assert "limit_req_status 429;" in conf
    assert conf.count("proxy_set_header X-Request-ID $correlation_id;") == 5
    assert "escape=json" in conf
    assert '\\"requestId\\":\\"$correlation_id\\"' not in conf and '"requestId":"$correlation_id"' in conf


def test_pods_are_restricted_with_a_writable_tmp_only() -> None:
    stack = example_stack()
    pod = _deployment(render_gateway(stack, stack.owner_reference()))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")} == {"/tmp"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]


def test_config_change_changes_the_pod_template() -> None:
    def checksum(stack: TradingStack) -> str:
        template = _deployment(render_gateway(stack, stack.owner_reference()))["spec"]["template"]
        return str(template["metadata"]["annotations"][Annotation.CONFIG_HASH])

    assert checksum(example_stack()) == checksum(example_stack())
    assert checksum(example_stack()) != checksum(example_stack(rateLimit={"requestsPerSecond": 10}))


def test_budget_only_with_several_replicas_and_nothing_when_disabled() -> None:
    for replicas, kinds in (
        (1, ["ConfigMap", "Deployment", "Service"]),
        (3, ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]),
    ):
        stack = example_stack(replicas=replicas)
        assert _kinds(render_gateway(stack, stack.owner_reference())) == kinds
    stack = example_stack(enabled=False)
    assert render_gateway(stack, stack.owner_reference()) == []


def test_every_child_is_owned_by_the_stack() -> None:
    stack = example_stack()
    for manifest in render_gateway(stack, stack.owner_reference()):
        assert manifest["metadata"]["ownerReferences"] == [stack.owner_reference().to_dict()]
        assert manifest["metadata"]["name"] == "quant-gateway"


def test_declares_every_kind_it_renders() -> None:
    assert_declares_what_it_renders(gateway.COMPONENT, example_stack(replicas=2), set())


def test_the_stack_waits_for_the_gateway_until_it_is_rolled_out() -> None:
    stack = example_stack()
    name = f"{stack.name}-gateway"
    assert gateway.assess(stack, live_workloads()) == Assessment(waiting=("gateway",))
    assert gateway.assess(stack, live_workloads(workload("Deployment", name, 0, 2))).waiting == ("gateway",)
    assert gateway.assess(stack, live_workloads(workload("Deployment", name, 2, 2))) == Assessment()
    assert gateway.assess(example_stack(enabled=False), live_workloads()) == Assessment()
