"""API models: defaults, cross-field rules, readable errors, and the generated CRD in sync with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tradingstack.api import TradingStack, describe
from tradingstack.api.crd import build_crd, render_crd_yaml
from tradingstack.api.reference import render_reference

ROOT = Path(__file__).resolve().parents[2]
CRD_COPIES = [ROOT / "crds/tradingstack.yaml", ROOT / "charts/tradingstack-operator/crds/tradingstack.yaml"]


def problems(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": spec})
    return describe(caught.value)


def egress(cidr: str = "203.0.113.0/24", **extra: Any) -> dict[str, Any]:
    return {"cidr": cidr, "ports": [{"port": 443}], **extra}


def service(name: str = "api", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "example/api:1", "port": 8000, **extra}


def test_defaults_follow_the_design() -> None:
    stack = TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": {}})
    assert stack.spec.redis.quorum == 2 and stack.spec.redis.sentinels == 3
    assert stack.spec.redis.min_replicas_to_write == 1
    assert stack.spec.postgres.backup.schedule == "0 2 * * *"
    assert stack.spec.deletion_policy == "Retain"
    assert stack.spec.gateway.rate_limit.burst == 100


def test_example_files_parse() -> None:
    for path in (ROOT / "examples").glob("*.yaml"):
        TradingStack.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"redis": {"quorum": 4}}, "spec.redis.quorum: must be <= sentinels (3)"),
        ({"redis": {"downAfterMilliseconds": 1000}}, "spec.redis.downAfterMilliseconds: Input should be greater"),
        ({"redis": {"replicas": 1}}, "spec.redis.minReplicasToWrite: must be less than replicas (1) or 0"),
        ({"restarts": {"schedule": "30 4 * *"}}, "spec.restarts.schedule: String should match pattern"),
        ({"restarts": {"schedule": "30 25 * * *"}}, "spec.restarts.schedule: invalid cron expression"),
        ({"restarts": {"timeZone": "Europe/Atlantis"}}, "spec.restarts.timeZone: unknown IANA time zone"),
        ({"services": [service(), service()]}, "spec.services: duplicate name 'api'"),
        (
            {"services": [service("a", route={"pathPrefix": "/x/"}), service("b", route={"pathPrefix": "/x/"})]},
            "spec.services: route pathPrefix '/x/' is used twice",
        ),
        ({"services": [service(env=[{"name": "DB_PASSWORD", "value": "hunter2"}])]}, "spec.services[0].env[0]:"),
        ({"services": [service("redis")]}, "spec.services[0].name: 'redis' is reserved"),
        ({"services": [service("api-canary")]}, "spec.services[0].name: 'api-canary' ends in -canary"),
        ({"services": [service(rollout={"bakeSeconds": 3601})]}, "spec.services[0].rollout.bakeSeconds: Input should"),
        ({"services": [service(rollout={"deadlineSeconds": 29})]}, "spec.services[0].rollout.deadlineSeconds:"),
        ({"services": [service(uses=["redis"])], "redis": {"enabled": False}}, "spec.services[0].uses: redis"),
        ({"restarts": {"order": ["ghost"]}}, "spec.restarts.order: 'ghost' is not a service of this stack"),
        ({"unknownField": 1}, "spec.unknownField: Extra inputs are not permitted"),
        (
            {"services": [service(resources={"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}})]},
            "spec.services[0].resources.requests: must set memory",
        ),
        ({"redis": {"resources": {"limits": {"cpu": "1"}}}}, "spec.redis.resources.limits: must set memory"),
        (
            {
                "maintenance": {
                    "freezes": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-24T00:00:00Z", "reason": "x"}]
                }
            },
            "spec.maintenance.freezes[0].end: must be later than start",
        ),
        (
            {"maintenance": {"freezes": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-25T00:00:00Z"}]}},
            "spec.maintenance.freezes[0].reason: Field required",
        ),
        (
            {"maintenance": {"windows": [{"schedule": "0 22 * * *", "durationMinutes": 0}]}},
            "spec.maintenance.windows[0].durationMinutes: Input should be greater",
        ),
        (
            {"maintenance": {"windows": [{"schedule": "0 22 * * *", "durationMinutes": 60, "timeZone": "Mars/Base"}]}},
            "spec.maintenance.windows[0].timeZone: unknown IANA time zone",
        ),
        (
            {"services": [service(egress=[egress("203.0.113.7/24")])]},
            "spec.services[0].egress[0].cidr: invalid CIDR",
        ),
        (
            {"services": [service(egress=[egress("203.0.113.7")])]},
            "spec.services[0].egress[0].cidr: invalid CIDR",
        ),
        ({"services": [service(egress=[egress("203.0.113.0/33")])]}, "spec.services[0].egress[0].cidr: invalid CIDR"),
        ({"services": [service(egress=[egress(ports=[{"port": 0}])])]}, "spec.services[0].egress[0].ports[0].port:"),
        (
            {"services": [service(egress=[egress(ports=[{"port": 65536}])])]},
            "spec.services[0].egress[0].ports[0].port:",
        ),
        (
            {"services": [service(egress=[egress(ports=[{"port": 1, "protocol": "ICMP"}])])]},
            "spec.services[0].egress[0].ports[0].protocol:",
        ),
        (
            {"services": [service(egress=[egress(ports=[])])]},
            "spec.services[0].egress[0].ports: List should have at least",
        ),
        (
            {"services": [service(egress=[{**egress(), "except": ["10.0.0.0/8"]}])]},
            "spec.services[0].egress[0]: except 10.0.0.0/8 is not inside",
        ),
        (
            {"services": [service(image="example/api@sha256:abc")]},
            "spec.services[0].image: String should match pattern",
        ),
        ({"services": [service("postgres-restore")]}, "spec.services[0].name: 'postgres-restore' is reserved"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], expected: str) -> None:
    found = problems(spec)
    assert any(line.startswith(expected) for line in found), found


def test_an_egress_entry_takes_a_network_its_exceptions_and_ports() -> None:
    entry = egress(
        "2001:db8::/32", ports=[{"port": 53, "protocol": "UDP"}, {"port": 443}], **{"except": ["2001:db8::/48"]}
    )
    stack = TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": {"services": [service(egress=[entry])]}})
    (parsed,) = stack.spec.services[0].egress
    assert (parsed.cidr, parsed.except_) == ("2001:db8::/32", ["2001:db8::/48"])
    assert [(p.port, p.protocol) for p in parsed.ports] == [(53, "UDP"), (443, "TCP")]


@pytest.mark.parametrize(
    "image",
    [
        "example/api:1@sha256:" + "a" * 64,
        "ghcr.io/quantumtrader/demo-service@sha256:" + "0123456789abcdef" * 4,
        "registry.local:5000/api@sha256:" + "f" * 64,
    ],
)
def test_an_image_can_be_pinned_by_digest(image: str) -> None:
    stack = TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": {"services": [service(image=image)]}})
    assert stack.spec.services[0].image == image


def test_credentials_pass_by_reference_only() -> None:
    ref = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": {"services": [service(env=[ref])]}})
    inline = problems({"services": [service(env=[{"name": "DB_PASSWORD", "value": "hunter2"}])]})
    assert inline == [
        "spec.services[0].env[0]: DB_PASSWORD looks like a credential: pass it with valueFrom.secretKeyRef, not inline"
    ]
    both = problems({"services": [service(env=[{**ref, "value": "x"}])]})
    assert both == ["spec.services[0].env[0]: set exactly one of value, valueFrom"]


def test_committed_crds_match_the_models() -> None:
    """`make crds` output must be committed: this fails when a model changed without regenerating."""
    expected = render_crd_yaml()
    for path in CRD_COPIES:
        assert path.read_text() == expected, f"{path} is stale: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, f"{path}[{index}]")
    return found


def test_crd_schema_is_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        if "properties" in node or "items" in node:
            assert "type" in node, path
    spec = schema["properties"]["spec"]["properties"]
    assert "description" in spec["redis"]["properties"]["quorum"]
    rules = [v["rule"] for v in spec["redis"]["x-kubernetes-validations"]]
    assert any("quorum" in r for r in rules)
    transitions = [v["message"] for v in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert any(m.startswith("redis.storage.size is immutable") for m in transitions)


def test_crd_has_status_subresource_and_printer_columns() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Ready", "Phase", "Services", "Redis master", "Last backup", "Next restart", "Age"]


def test_committed_field_reference_matches_the_models() -> None:
    assert (ROOT / "docs/reference.md").read_text() == render_reference(), "stale: run `make crds`"
