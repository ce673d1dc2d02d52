"""Rules the API server enforces across updates (CEL transition rules of the CRD), on the real API server."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.fixtures.cluster import Cluster
from tests.unit.test_render_pitr import S3
from tradingstack.api.spec import PITR_CLUSTER_REPOSITORY

pytestmark = pytest.mark.cluster


def document(namespace: str, **postgres: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": "s", "namespace": namespace},
        "spec": {
            "services": [{"name": "api", "image": "ghcr.io/quantumtrader/demo-service:0.1.0", "port": 8000}],
            **({"postgres": postgres} if postgres else {}),  # kubectl sends an empty object as null
        },
    }


def apply(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> str:
    """Applies as the same field manager every time (so leaving a field out removes it); the refusal, if any."""
    result = cluster.kubectl(
        "apply", "--server-side", "--field-manager=test", "-f", "-", "-n", namespace,
        input=json.dumps(doc), check=False,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr


def test_a_volume_size_cannot_change_by_leaving_it_out_first(cluster: Cluster, namespace: str, crd: None) -> None:
    sized = document(namespace, storage={"size": "10Gi"})
    assert apply(cluster, namespace, sized) == ""
    unsized = copy.deepcopy(sized)
    del unsized["spec"]["postgres"]
    assert apply(cluster, namespace, unsized) == ""  # the default is 10Gi: no change of size
    bigger = document(namespace, storage={"size": "30Gi"})
    refused = apply(cluster, namespace, bigger)
    assert "postgres.storage.size is immutable" in refused and "leaving it out means 10Gi" in refused
    assert apply(cluster, namespace, document(namespace, backup={"storage": {"size": "5Gi"}})) != ""


def test_restore_from_only_when_the_stack_is_created(cluster: Cluster, namespace: str, crd: None) -> None:
    assert apply(cluster, namespace, document(namespace)) == ""
    refused = apply(cluster, namespace, document(namespace, restore={"from": "latest"}))
    assert "postgres.restore bootstraps a new stack only" in refused
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace)

    assert apply(cluster, namespace, document(namespace, restore={"from": "latest"})) == ""
    assert "bootstraps a new stack only" in apply(cluster, namespace, document(namespace, restore={"from": "b-1"}))
    assert apply(cluster, namespace, document(namespace)) == ""  # removing it is fine


def test_a_patroni_cluster_archives_to_s3_only(cluster: Cluster, namespace: str, crd: None) -> None:
    on_volume = {"enabled": True, "s3": S3}  # volume defaults to true
    assert PITR_CLUSTER_REPOSITORY in apply(cluster, namespace, document(namespace, instances=3, pitr=on_volume))
    s3_only = {"enabled": True, "volume": False, "s3": S3}
    assert apply(cluster, namespace, document(namespace, instances=3, pitr=s3_only, restore={})) == ""
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace)
    assert apply(cluster, namespace, document(namespace, pitr=on_volume, restore={})) == ""  # one server may


def test_tls_cannot_be_switched_while_redis_runs(cluster: Cluster, namespace: str, crd: None) -> None:
    plain = document(namespace)
    assert apply(cluster, namespace, plain) == ""
    with_tls = copy.deepcopy(plain)
    with_tls["spec"]["tls"] = {"enabled": True}
    assert "tls.enabled cannot change while Redis runs" in apply(cluster, namespace, with_tls)
    without_redis = copy.deepcopy(plain)
    without_redis["spec"]["redis"] = {"enabled": False}
    assert apply(cluster, namespace, without_redis) == ""
    without_redis["spec"]["tls"] = {"enabled": True}
    assert apply(cluster, namespace, without_redis) == ""  # PostgreSQL alone restarts with TLS: allowed
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace)
    assert apply(cluster, namespace, with_tls) == ""  # a new stack may start with TLS
    assert "tls.enabled cannot change" in apply(cluster, namespace, plain)


@pytest.mark.parametrize("image", ["Demo:1", "demo service:1", "ghcr.io/x/y:tag@sha256:abc", "x/y:", "-x"])
def test_an_invalid_image_reference_is_refused(cluster: Cluster, namespace: str, crd: None, image: str) -> None:
    doc = document(namespace)
    doc["spec"]["services"][0]["image"] = image
    assert "spec.services[0].image" in apply(cluster, namespace, doc)


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("redis", {"sentinels": 1}, "quorum must be <= sentinels"),
        ("service-resources", {"requests": {"cpu": "1", "memory": "1Gi", "gpu": "1"}}, "unknown resource name"),
        ("restarts", {"schedule": "0 5\u2003* * * *"}, "spec.restarts.schedule"),
        (
            "maintenance",
            {"freezes": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-23T00:00:00Z", "reason": "x"}]},
            "end must be later than start",
        ),
    ],
    ids=[
        "one-sentinel-default-quorum",
        "unknown-resource",
        "unicode-whitespace-cron",
        "freeze-ending-before-it-starts",
    ],
)
def test_specs_the_operator_would_fail_are_refused_by_the_api_server(
    cluster: Cluster, namespace: str, crd: None, field: str, value: dict[str, Any], refusal: str
) -> None:
    doc = document(namespace)
    if field == "service-resources":
        doc["spec"]["services"][0]["resources"] = value
    else:
        doc["spec"][field] = value
    assert refusal in apply(cluster, namespace, doc)
