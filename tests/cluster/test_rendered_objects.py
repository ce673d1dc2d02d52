"""Everything the renderer produces is accepted by the real API server, and its pods by Pod Security."""

from __future__ import annotations

import json

import pytest

from tests.cluster.test_operator import example
from tests.fixtures.cluster import Cluster
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.render.secrets import generated_secrets

pytestmark = pytest.mark.cluster


def test_crd_is_established_with_its_printer_columns(cluster: Cluster, crd: None) -> None:
    stored = cluster.kubectl_json("get", "crd", "tradingstacks.trading.quantumtrader.dev")
    established = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert established["Established"] == "True" and established["NamesAccepted"] == "True"
    columns = [c["name"] for c in stored["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Ready", "Phase", "Services", "Redis master", "Last backup", "Next restart", "Age"]


def test_every_rendered_object_passes_server_side_dry_run(cluster: Cluster, crd: None, namespace: str) -> None:
    # Workload templates are only *warned* about by Pod Security: make the warning visible and fail on it.
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted", "--overwrite")
    document = example(namespace)
    # The children reference the stack's uid, which the server assigns; any well-formed uid does for a dry run.
    owned = {**document, "metadata": {**document["metadata"], "uid": "00000000-0000-4000-8000-000000000001"}}
    stack = TradingStack.model_validate(owned)
    objects = [document, *generated_secrets(stack, stack.owner_reference(), lambda: "dry-run-only")]
    objects += render(stack, stack.owner_reference())
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=tradingstack-operator", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "violate PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "serverside-applied (server dry run)" in line]
    assert len(applied) == len(objects), result.stdout
