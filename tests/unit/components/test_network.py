"""The network component: a default deny of every pod of the stack and an allow per flow of the table
(`render.flows`), judged by a small evaluator (`tests.netpol`) on the rendered policies, over generated stacks:
every intended flow is allowed, a list of unintended ones is refused, every pod is isolated both ways."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.netpol import Endpoint, address, allowed, isolated, pod
from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.test_render import example, stacks
from tradingstack.api import TradingStack
from tradingstack.components import network, render
from tradingstack.contract import OPERATOR_APP_NAME, Label
from tradingstack.kube.actions import Delete, key_of
from tradingstack.reconcile.plan import prunes
from tradingstack.render.common import Cluster
from tradingstack.render.flows import AnySource, ClusterDns, Flow, Network, OperatorPods, Pods, stack_flows
from tradingstack.render.postgres import render_list_job, render_restore_job
from tradingstack.render.services import canary_deployment

OPERATOR = pod("operator", "tradingstack-system", {Label.NAME: OPERATOR_APP_NAME})
KUBE_DNS = pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
HOST_DNS = address("10.96.0.10")
STRANGER = pod("stranger", "ns", {"app": "stranger"})
FOREIGNER = pod("foreigner", "elsewhere", {"app": "stranger"})
OUTSIDE = address("203.0.113.7")


def policies(stack: TradingStack, cluster: Cluster | None = None) -> list[dict[str, Any]]:
    return network.COMPONENT.render(stack, stack.owner_reference(), cluster or Cluster())


def pod_templates(stack: TradingStack) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template the operator creates for the stack: its children, the canaries and on-demand Jobs."""
    objects = render(stack, stack.owner_reference())
    objects += [
        canary_deployment(o)
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] != f"{stack.name}-gateway"
    ]
    if stack.spec.postgres.enabled:
        objects += [
            render_restore_job(stack, stack.owner_reference(), "latest", False),
            render_list_job(stack, stack.owner_reference()),
        ]
    for obj in objects:
        for template in _templates(obj):
            yield obj["metadata"].get("name") or obj["metadata"]["generateName"], template


def _templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return [spec["template"]] if "template" in spec else []


def stack_pods(stack: TradingStack) -> dict[str, Endpoint]:
    """One pod per `Label.NAME` the stack's templates carry, with the template's labels."""
    found = {}
    for name, template in pod_templates(stack):
        labels = template["metadata"]["labels"]
        found[labels[Label.NAME]] = pod(name, stack.namespace, labels)
    return found


def ends(end: object, pods: dict[str, Endpoint], dns: Endpoint) -> list[Endpoint]:
    """The endpoints one end of a flow stands for."""
    match end:
        case Pods():
            return [pods[n] for n in end.names if n in pods]
        case AnySource():
            return [STRANGER, FOREIGNER]
        case OperatorPods():
            return [OPERATOR]
        case ClusterDns():
            return [dns]
        case Network():
            return [address(str(next(iter(ipaddress.ip_network(end.cidr)))))]
    raise AssertionError(end)


def assert_flow_allowed(stack: TradingStack, flow: Flow, rendered: list[dict[str, Any]], dns: Endpoint) -> None:
    pods = stack_pods(stack)
    for source in ends(flow.source, pods, dns):
        for destination in ends(flow.destination, pods, dns):
            for target in flow.targets:
                assert allowed(rendered, source, destination, target.port, target.protocol), (
                    source.name, destination.name, target, flow.why
                )  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_every_pod_of_the_stack_is_isolated_for_ingress_and_egress(stack: TradingStack) -> None:
    rendered = policies(stack)
    for name, template in pod_templates(stack):
        subject = pod(name, stack.namespace, template["metadata"]["labels"])
        assert isolated(rendered, subject, "Ingress"), name
        assert isolated(rendered, subject, "Egress"), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_no_policy_renders_an_empty_rule_list(stack: TradingStack) -> None:
    """The API server drops an empty `ingress`/`egress` list: a rendered one would differ from the live object at
    every resync and be written again each time (found by the cluster tier's zero-write resync)."""
    for policy in policies(stack):
        for key in ("ingress", "egress"):
            assert policy["spec"].get(key, None) != [], (policy["metadata"]["name"], key)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_every_intended_flow_is_allowed(stack: TradingStack) -> None:
    if stack.spec.halt is not None:
        stack = stack.model_copy(update={"spec": stack.spec.model_copy(update={"halt": None})})
    rendered = policies(stack)
    for flow in stack_flows(stack):
        assert_flow_allowed(stack, flow, rendered, KUBE_DNS)


def test_the_dns_peer_can_be_host_networks_instead_of_the_kube_dns_pods() -> None:
    stack = example("quantum-trader.yaml")
    rendered = policies(stack, Cluster(dns_cidrs=("10.96.0.10/32",)))
    for flow in stack_flows(stack):
        assert_flow_allowed(stack, flow, rendered, HOST_DNS)
    api = stack_pods(stack)["ai-engine"]
    assert not allowed(rendered, api, KUBE_DNS, 53, "UDP")
    assert allowed(policies(stack), api, KUBE_DNS, 53, "UDP") and not allowed(policies(stack), api, HOST_DNS, 53, "UDP")


def a_stack() -> TradingStack:
    """Services with and without Postgres, a route and egress; the stores' exporters on."""
    return TradingStack.model_validate(
        {
            "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
            "spec": {
                "services": [
                    {"name": "api", "image": "i", "port": 8000, "uses": ["redis", "postgres"]},
                    {"name": "quotes", "image": "i", "port": 8001, "uses": ["redis"], "route": {"enabled": False}},
                    {
                        "name": "exec",
                        "image": "i",
                        "port": 8002,
                        "egress": [
                            {"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25"], "ports": [{"port": 443}]}
                        ],
                    },
                ],
                "redis": {"metrics": {"enabled": True}},
                "postgres": {"metrics": {"enabled": True}},
            },
        }
    )


UNINTENDED = [
    # (source, destination, port, protocol)
    *((stranger, "redis", 6379) for stranger in ("STRANGER", "FOREIGNER")),
    *((stranger, "redis-sentinel", 26379) for stranger in ("STRANGER", "FOREIGNER")),
    *((stranger, "postgres", 5432) for stranger in ("STRANGER", "FOREIGNER")),
    *(
        (stranger, service, port)
        for stranger in ("STRANGER", "FOREIGNER")
        for service, port in (("api", 8000), ("quotes", 8001))
    ),
    ("OPERATOR", "redis", 6379),
    ("OPERATOR", "postgres", 5432),
    ("gateway", "quotes", 8001),  # not routed
    ("gateway", "redis", 6379),
    ("quotes", "postgres", 5432),  # no uses: [postgres]
    ("exec", "redis", 6379),  # uses nothing
    ("exec", "postgres", 5432),
    ("api", "quotes", 8001),  # services do not call each other
    ("api", "OUTSIDE", 443),  # no egress
    ("exec", "OUTSIDE", 443),  # outside its egress network
    ("exec", "198.51.100.200", 443),  # in the network's `except`
    ("exec", "198.51.100.7", 80),  # not the egress port
    ("postgres", "OUTSIDE", 443),
    ("redis", "OUTSIDE", 443),
    ("postgres-backup", "redis", 6379),
]


def _endpoint(name: str, pods: dict[str, Endpoint]) -> Endpoint:
    named = {"STRANGER": STRANGER, "FOREIGNER": FOREIGNER, "OPERATOR": OPERATOR, "OUTSIDE": OUTSIDE}
    if name in named:
        return named[name]
    return pods[name] if name in pods else address(name)


@pytest.mark.parametrize(("source", "destination", "port"), UNINTENDED)
def test_an_unintended_flow_is_refused(source: str, destination: str, port: int) -> None:
    stack = a_stack()
    pods = stack_pods(stack)
    assert not allowed(policies(stack), _endpoint(source, pods), _endpoint(destination, pods), port)


def test_the_egress_network_and_the_metrics_ports_are_open() -> None:
    stack = a_stack()
    pods, rendered = stack_pods(stack), policies(stack)
    assert allowed(rendered, pods["exec"], address("198.51.100.7"), 443)
    assert allowed(rendered, pods["exec-canary"], address("198.51.100.7"), 443)
    assert allowed(rendered, FOREIGNER, pods["redis"], 9121) and allowed(rendered, FOREIGNER, pods["postgres"], 9187)
    assert not allowed(rendered, FOREIGNER, pods["redis-sentinel"], 9121)


def test_without_policies_everything_is_allowed_and_a_rule_without_ports_allows_every_port() -> None:
    """The evaluator itself: not isolated means allowed; an empty-ports rule is every port."""
    assert allowed([], STRANGER, FOREIGNER, 1)
    everything = {
        "metadata": {"namespace": "ns"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    assert allowed([everything], FOREIGNER, STRANGER, 12345)
    nothing = {**everything, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert not allowed([nothing], FOREIGNER, STRANGER, 12345)


def test_declares_every_kind_it_renders() -> None:
    assert_declares_what_it_renders(network.COMPONENT, example("quantum-trader.yaml"), set())


@pytest.mark.parametrize(("redis", "postgres"), [(True, True), (False, False)])
def test_a_disabled_store_has_no_policy(redis: bool, postgres: bool) -> None:
    stack = example("quantum-trader.yaml")
    spec = stack.spec.model_copy(
        update={
            "redis": stack.spec.redis.model_copy(update={"enabled": redis}),
            "postgres": stack.spec.postgres.model_copy(update={"enabled": postgres}),
        }
    )
    names = {o["metadata"]["name"] for o in policies(stack.model_copy(update={"spec": spec}))}
    assert ("quantum-trader-redis-ingress" in names) is redis
    assert ("quantum-trader-postgres-ingress" in names) is postgres
    assert ("quantum-trader-postgres-backup-egress" in names) is postgres
    assert "quantum-trader-default-deny" in names


def test_every_policy_is_owned_by_the_stack_and_labelled() -> None:
    stack = example("quantum-trader.yaml")
    for obj in policies(stack):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == stack.metadata.uid
        assert obj["metadata"]["labels"][Label.STACK] == stack.name


def test_policies_no_longer_rendered_are_pruned() -> None:
    """The store policies of before the default deny (`<stack>-redis-access`, `-postgres-access`) and a halted
    service's egress allow are the stack's own NetworkPolicies no longer rendered: the main batch deletes them."""
    stack = a_stack()
    desired = render(stack, stack.owner_reference())
    policy = next(o for o in desired if o["kind"] == "NetworkPolicy")
    old = [
        {**policy, "metadata": {**policy["metadata"], "name": f"s-{store}-access"}} for store in ("redis", "postgres")
    ]
    live = {key_of(o): o for o in [*desired, *old]}
    assert prunes(stack, desired, live) == [Delete("NetworkPolicy", o["metadata"]["name"], "ns") for o in old]
    spec = stack.model_dump(by_alias=True, exclude_none=True)
    spec["spec"]["services"][2]["haltable"] = True
    spec["spec"]["halt"] = {"reason": "test"}
    halted = TradingStack.model_validate(spec)
    live = {key_of(o): o for o in desired}
    assert prunes(halted, render(halted, halted.owner_reference()), live) == [
        Delete("NetworkPolicy", "s-exec-egress", "ns")
    ]
