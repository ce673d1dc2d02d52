"""The flow table: every connection a stack's pods need, as data (source, destination, ports, why).

The NetworkPolicies are built from this table (`render.network`): each flow becomes an egress rule of its source's
pods and an ingress rule of its destination's pods, and a default deny selects every pod of the stack, so what is
not in the table is refused. The tests evaluate the rendered policies against the same table, and
docs/security.md lists it.

A flow's ends are pod groups of the stack (a component, or a service with its canary pods) or peers outside it:
any source (the gateway's port, the exporters' ports for Prometheus), the operator's pods in any namespace, the
cluster DNS, or a network of a service's `egress`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradingstack.api import ServiceSpec, TradingStack
from tradingstack.api.spec import EgressSpec
from tradingstack.contract import CANARY_SUFFIX
from tradingstack.render import postgres, redis
from tradingstack.render.common import (
    API_SERVER_CIDR,
    API_SERVER_PORTS,
    PATRONI_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    SENTINEL_PORT,
    Port,
)
from tradingstack.render.gateway import COMPONENT as GATEWAY_COMPONENT
from tradingstack.render.gateway import routed_services
from tradingstack.render.postgres import BACKUP_COMPONENT, LIST_COMPONENT, RESTORE_COMPONENT
from tradingstack.render.redis import REDIS_COMPONENT, SENTINEL_COMPONENT


@dataclass(frozen=True)
class Target:
    """A destination port: number and protocol."""

    port: int
    protocol: str = "TCP"


def tcp(*ports: Port) -> tuple[Target, ...]:
    return tuple(Target(p.number) for p in ports)


DNS_TARGETS = (Target(53, "UDP"), Target(53, "TCP"))


@dataclass(frozen=True)
class Pods:
    """A group of the stack's pods, by their `Label.NAME` values; `group` names its policies."""

    group: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class AnySource:
    """Any client at all (only as a source)."""


@dataclass(frozen=True)
class OperatorPods:
    """The operator's pods (`OPERATOR_POD_LABELS`), in any namespace (only as a source)."""


@dataclass(frozen=True)
class ClusterDns:
    """The cluster DNS, wherever the operator's setting says it answers (only as a destination)."""


@dataclass(frozen=True)
class Network:
    """A network outside the cluster, from a service's `egress` (only as a destination)."""

    cidr: str
    except_: tuple[str, ...] = ()


Peer = Pods | AnySource | OperatorPods | ClusterDns | Network


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    targets: tuple[Target, ...]
    why: str


ANY = AnySource()
OPERATOR = OperatorPods()
DNS = ClusterDns()


def component_pods(component: str) -> Pods:
    return Pods(component, (component,))


def service_pods(service: ServiceSpec) -> Pods:
    """A service's pods and its canary's (`CANARY_SUFFIX`): a canary must reach what its service reaches."""
    return Pods(service.name, (service.name, f"{service.name}{CANARY_SUFFIX}"))


def _gateway_flows(stack: TradingStack) -> list[Flow]:
    if not stack.spec.gateway.enabled:
        return []
    gateway = component_pods(GATEWAY_COMPONENT)
    return [
        Flow(ANY, gateway, (Target(stack.spec.gateway.port),), "clients of the gateway"),
        Flow(gateway, DNS, DNS_TARGETS, "NGINX resolves the upstreams' names when it loads its configuration"),
        *(Flow(gateway, service_pods(s), (Target(s.port),), f"route {s.route_prefix}") for s in routed_services(stack)),
    ]


def _egress_flow(pods: Pods, egress: EgressSpec, why: str) -> Flow:
    """`pods` to a network outside the cluster, as an `egress` entry of the spec names it."""
    ports = tuple(Target(p.port, p.protocol) for p in egress.ports)
    return Flow(pods, Network(egress.cidr, tuple(egress.except_)), ports, why)


def _service_flows(stack: TradingStack, service: ServiceSpec) -> list[Flow]:
    pods = service_pods(service)
    flows = [
        Flow(OPERATOR, pods, (Target(service.port),), "the operator reads the health document"),
        Flow(pods, DNS, DNS_TARGETS, "the stores' and outside hosts' names"),
    ]
    if "redis" in service.uses and stack.spec.redis.enabled:
        flows += [
            Flow(pods, component_pods(SENTINEL_COMPONENT), tcp(SENTINEL_PORT), "uses redis: asks who the master is"),
            Flow(pods, component_pods(REDIS_COMPONENT), tcp(REDIS_PORT), "uses redis"),
        ]
    if "postgres" in service.uses and stack.spec.postgres.enabled:
        flows.append(Flow(pods, component_pods(postgres.COMPONENT), tcp(POSTGRES_PORT), "uses postgres"))
    flows += [_egress_flow(pods, e, "egress") for e in service.egress]
    return flows


def _redis_flows(stack: TradingStack) -> list[Flow]:
    if not stack.spec.redis.enabled:
        return []
    servers, sentinels = component_pods(REDIS_COMPONENT), component_pods(SENTINEL_COMPONENT)
    flows = [
        Flow(servers, servers, tcp(REDIS_PORT), "replication"),
        Flow(servers, sentinels, tcp(SENTINEL_PORT), "a starting server asks the sentinels for the master"),
        Flow(sentinels, servers, tcp(REDIS_PORT), "monitoring and failover"),
        Flow(sentinels, sentinels, tcp(SENTINEL_PORT), "hello messages go through Redis, vote requests direct"),
        Flow(OPERATOR, sentinels, tcp(SENTINEL_PORT), "the operator asks who the master is"),
        Flow(servers, DNS, DNS_TARGETS, "peers by their pod DNS names"),
        Flow(sentinels, DNS, DNS_TARGETS, "peers by their pod DNS names"),
    ]
    flows += [Flow(ANY, servers, tcp(p), "Prometheus scrapes redis_exporter") for p in redis.metrics_ports(stack)]
    return flows


def _postgres_flows(stack: TradingStack) -> list[Flow]:
    if not stack.spec.postgres.enabled:
        return []
    server = component_pods(postgres.COMPONENT)
    flows = [Flow(ANY, server, tcp(p), "Prometheus scrapes postgres_exporter") for p in postgres.metrics_ports(stack)]
    flows += _pitr_flows(stack, server)
    flows += _patroni_flows(stack, server)
    for tool in (BACKUP_COMPONENT, RESTORE_COMPONENT, LIST_COMPONENT):
        # The on-demand Jobs (restore, list) are not rendered with the stack, but their policies are: a Job's pod
        # must not wait for a policy the operator writes only once it has seen the Job.
        flows += [
            Flow(component_pods(tool), server, tcp(POSTGRES_PORT), f"{tool} Job: the backup tool connects"),
            Flow(component_pods(tool), DNS, DNS_TARGETS, f"{tool} Job: the server's name"),
        ]
    return flows


def _pitr_flows(stack: TradingStack, server: Pods) -> list[Flow]:
    """pgBackRest (spec.postgres.pitr): the backup Jobs reach the database pod's pgBackRest TLS server, and both
    reach the S3 repository through the networks its `egress` names."""
    jobs = component_pods(BACKUP_COMPONENT)
    flows = [
        Flow(jobs, server, tcp(p), "pgBackRest backups through the TLS server") for p in postgres.pitr_ports(stack)
    ]
    s3 = stack.spec.postgres.pitr.s3
    if stack.spec.postgres.pitr.enabled and s3 is not None:
        flows += [
            _egress_flow(pods, e, why)
            for e in s3.egress
            for pods, why in ((server, "archive-push and restore to S3"), (jobs, "backups to S3"))
        ]
        flows.append(Flow(server, DNS, DNS_TARGETS, "the S3 server's name"))
    return flows


def _patroni_flows(stack: TradingStack, server: Pods) -> list[Flow]:
    """A Patroni cluster (spec.postgres.instances > 1): the members replicate from the leader and ask each other's
    REST API, and every member keeps the leader lock in the API server (Patroni's Kubernetes DCS); the operator
    calls the same REST API (`patroniclient`)."""
    if not stack.spec.postgres.patroni:
        return []
    return [
        Flow(server, server, tcp(POSTGRES_PORT), "replicas stream from the leader; a rejoining member pg_rewinds"),
        Flow(server, server, tcp(PATRONI_PORT), "Patroni members ask each other's state before a promotion"),
        Flow(server, Network(API_SERVER_CIDR), tcp(*API_SERVER_PORTS), "Patroni's leader lock in the API server"),
        Flow(OPERATOR, server, tcp(PATRONI_PORT), "the operator reads the members, asks switchovers and restarts"),
    ]


def stack_flows(stack: TradingStack) -> list[Flow]:
    """Every intended flow of the stack, in a stable order."""
    services = [flow for s in stack.spec.services for flow in _service_flows(stack, s)]
    return [*_gateway_flows(stack), *services, *_redis_flows(stack), *_postgres_flows(stack)]
