"""The NGINX gateway: one ConfigMap with nginx.conf, a Deployment, a Service and (replicas > 1) a PDB.

Routing: each service with an enabled route gets `location <prefix>` proxied to an `upstream` block naming the
service's cluster DNS name. The prefix is stripped (`/api/execution/orders` reaches the service as `/orders`),
so services serve their own paths and do not need to know where the gateway mounts them; the original prefix
is passed in `X-Forwarded-Prefix` for services that build absolute links.

Upstream addressing: `upstream` blocks with explicit `server host:port` entries. NGINX resolves those names once
when it loads the configuration; a Service's ClusterIP never changes during the Service's life, so no runtime
`resolver` (which would need the cluster DNS address baked into the config) is required. The host can be given
to `nginx_conf` as a template, so tests render the same configuration pointing at processes on 127.0.0.1.

Correlation: a client's `X-Request-ID` is passed through; without one NGINX's own `$request_id` is used. Either
way it is sent upstream, returned to the client and written in the JSON access log.
"""

from __future__ import annotations

from typing import Any

from tradingstack.api import OwnerReference, ServiceSpec, TradingStack
from tradingstack.contract import Probe
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    Manifest,
    child_name,
    child_service,
    container_security_context,
    http_port,
    manifest,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    pod_template_metadata,
    resources,
    scratch_volume,
    selector_labels,
    service_host,
    spread_and_anti_affinity,
)

COMPONENT = "gateway"
CONFIG_KEY = "nginx.conf"
CONFIG_DIR = "/etc/nginx/gateway"
RUNTIME_DIR = "/tmp"
"""The only writable path in the pod (an emptyDir): the root filesystem is read-only."""

NGINX_UID = 101
"""The nginx user of the nginx-unprivileged image (its files are owned by it)."""

RATE_LIMIT_ZONE = "per_client"

_PROXY_HEADERS = (
    # Empty Connection keeps upstream connections alive (the upstream blocks' keepalive pool).
    ("Connection", '""'),
    ("Host", "$host"),
    ("X-Request-ID", "$correlation_id"),
    ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
    ("X-Forwarded-Proto", "$scheme"),
)


def _upstream_name(service: ServiceSpec) -> str:
    return "svc_" + service.name.replace("-", "_")


def routed_services(stack: TradingStack) -> list[ServiceSpec]:
    return sorted((s for s in stack.spec.services if s.route.enabled), key=lambda s: s.route_prefix)


def _upstream_block(stack: TradingStack, service: ServiceSpec, upstream_host: str | None, domain: str) -> list[str]:
    if upstream_host is None:
        host = service_host(stack, service.name, domain)
    else:
        host = upstream_host.format(stack=stack.name, service=service.name, namespace=stack.namespace)
    return [
        f"    upstream {_upstream_name(service)} {{",
        f"        server {host}:{service.port};",
        "        keepalive 16;",
        "    }",
    ]


def _location_block(service: ServiceSpec, rate_limit: str) -> list[str]:
    prefix = service.route_prefix
    return [
        f"        location {prefix} {{",
        f"            {rate_limit}",
        # The URI part "/" replaces the matched prefix: the prefix is stripped.
        f"            proxy_pass http://{_upstream_name(service)}/;",
        # A location with any proxy_set_header inherits none from the server block: all are set here.
        *(f"            proxy_set_header {name} {value};" for name, value in _PROXY_HEADERS),
        f"            proxy_set_header X-Forwarded-Prefix {prefix};",
        "        }",
    ]


def nginx_conf(
    stack: TradingStack,
    upstream_host: str | None = None,
    runtime_dir: str = RUNTIME_DIR,
    domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> str:
    """The gateway's nginx.conf. Upstreams are the services' cluster DNS names, unless `upstream_host` (a
    template with fields stack, service, namespace) says otherwise (tests pass "127.0.0.1"); `runtime_dir`
    holds the pid file and temp files (tests pass a private directory)."""
    gateway = stack.spec.gateway
    limit = gateway.rate_limit
    rate_limit = f"limit_req zone={RATE_LIMIT_ZONE} burst={limit.burst} nodelay;"
    services = routed_services(stack)
    lines = [
        "# Rendered by the tradingstack operator; changes are overwritten.",
        "daemon off;",
        # One worker per pod: the pod's CPU limit sizes it; scale with replicas.
        "worker_processes 1;",
        f"pid {runtime_dir}/nginx.pid;",
        "error_log stderr warn;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        f"    client_body_temp_path {runtime_dir}/client_body;",
        f"    proxy_temp_path {runtime_dir}/proxy;",
        f"    fastcgi_temp_path {runtime_dir}/fastcgi;",
        f"    uwsgi_temp_path {runtime_dir}/uwsgi;",
        f"    scgi_temp_path {runtime_dir}/scgi;",
        "    server_tokens off;",
        "    default_type application/json;",
        "",
        "    map $http_x_request_id $correlation_id {",
        "        default $http_x_request_id;",
        '        "" $request_id;',
        "    }",
        "",
        "    log_format gateway_json escape=json",
        '        \'{"time":"$time_iso8601","requestId":"$correlation_id","remoteAddr":"$remote_addr",\'',
        '        \'"method":"$request_method","uri":"$request_uri","status":$status,\'',
        '        \'"bytesSent":$body_bytes_sent,"requestTime":$request_time,\'',
        '        \'"upstream":"$upstream_addr","upstreamStatus":"$upstream_status",\'',
        '        \'"upstreamTime":"$upstream_response_time","userAgent":"$http_user_agent"}\';',
        "    access_log /dev/stdout gateway_json;",
        "",
        f"    limit_req_zone $binary_remote_addr zone={RATE_LIMIT_ZONE}:10m rate={limit.requests_per_second}r/s;",
        "    limit_req_status 429;",
        "",
    ]
    for service in services:
        lines += _upstream_block(stack, service, upstream_host, domain)
        lines.append("")
    lines += [
        "    server {",
        f"        listen {gateway.port};",
        "",
        "        proxy_http_version 1.1;",
        "        add_header X-Request-ID $correlation_id always;",
        "",
        # Answered by NGINX itself, without rate limit: probes must not depend on the services.
        f"        location = {Probe.GATEWAY} {{",
        "            access_log off;",
        '            return 200 "{\\"status\\":\\"ok\\"}\\n";',
        "        }",
        "",
    ]
    for service in services:
        lines += _location_block(service, rate_limit)
        lines.append("")
    lines += [
        "        location / {",
        '            return 404 "{\\"error\\":\\"no route\\"}\\n";',
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _healthz_probe(failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": Probe.GATEWAY, "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": failure_threshold,
    }


def _deployment(stack: TradingStack, owner: OwnerReference, config: dict[str, str]) -> Manifest:
    gateway = stack.spec.gateway
    container = {
        "name": "nginx",
        "image": gateway.image,
        # `command` replaces the image's entrypoint, whose scripts try to edit files on the read-only root.
        "command": ["nginx", "-e", "stderr", "-c", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "ports": [http_port(gateway.port).container_port()],
        "readinessProbe": _healthz_probe(failure_threshold=3),
        "livenessProbe": _healthz_probe(failure_threshold=6),
        "resources": resources(gateway.resources),
        "securityContext": container_security_context(read_only_root=True),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": RUNTIME_DIR},
        ],
    }
    pod_spec = {
        "securityContext": pod_security_context(uid=NGINX_UID),
        "automountServiceAccountToken": False,
        "affinity": spread_and_anti_affinity(stack, COMPONENT),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": child_name(stack, COMPONENT)}},
            scratch_volume("tmp", "64Mi"),
        ],
    }
    return manifest(
        "apps/v1",
        "Deployment",
        metadata(stack, owner, COMPONENT),
        spec={
            "replicas": gateway.replicas,
            "selector": {"matchLabels": selector_labels(stack, COMPONENT)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": pod_template_metadata(stack, COMPONENT, config), "spec": pod_spec},
        },
    )


def render_gateway(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[Manifest]:
    """The gateway's manifests; empty when the gateway is disabled."""
    gateway = stack.spec.gateway
    if not gateway.enabled:
        return []
    config = {CONFIG_KEY: nginx_conf(stack, domain=domain)}
    manifests = [
        manifest("v1", "ConfigMap", metadata(stack, owner, COMPONENT), data=config),
        _deployment(stack, owner, config),
        child_service(stack, owner, COMPONENT, http_port(gateway.port)),
    ]
    if gateway.replicas > 1:
        manifests.append(pod_disruption_budget(stack, owner, COMPONENT))
    return manifests
