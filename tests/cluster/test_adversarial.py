"""Generated and hostile specs against the real API server and the operator: nothing crashes, every accepted spec
gets a status that says what is wrong (naming the field), and no child is written more than once.

`TRADINGSTACK_GENERATED_SPECS` sets the number of generated specs (bounded here; `make chaos` runs thousands).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, write_requests
from tests.fixtures.reliability import Reliability
from tests.fixtures.specs import SpecGenerator, hostile_specs
from tradingstack.api import TradingStack

pytestmark = pytest.mark.cluster
GENERATED = int(os.environ.get("TRADINGSTACK_GENERATED_SPECS", "30"))
CHILD_RESOURCES_EXCLUDED = {"tradingstacks", "events"}


def documents(namespace: str) -> dict[str, dict[str, Any]]:
    specs = {f"gen-{seed}": SpecGenerator(seed).spec() for seed in range(GENERATED)}
    specs |= {f"h-{name}": spec for name, spec in hostile_specs().items()}
    return {
        name: {"apiVersion": "trading.quantumtrader.dev/v1alpha1", "kind": "TradingStack",
               "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        for name, spec in specs.items()
    }  # fmt: skip


def processed(cluster: Cluster, namespace: str, names: set[str]) -> dict[str, dict[str, Any]] | None:
    items = cluster.kubectl_json("get", "tradingstacks", "-n", namespace)["items"]
    done = {
        i["metadata"]["name"]: i
        for i in items
        if i.get("status", {}).get("observedGeneration") == i["metadata"]["generation"]
    }
    return done if names <= set(done) else None


def test_generated_and_hostile_specs_never_crash_or_loop(
    cluster: Cluster, namespace: str, operator: OperatorProcess, reliability: Reliability
) -> None:
    mark = len(cluster.audit_log.read_text().splitlines())
    accepted: set[str] = set()
    refused: dict[str, str] = {}
    for name, document in documents(namespace).items():
        result = cluster.kubectl("apply", "-f", "-", "-n", namespace, input=json.dumps(document), check=False)
        if result.returncode == 0:
            accepted.add(name)
        else:
            refused[name] = result.stderr.strip()
    assert all("is invalid" in why or "denied" in why for why in refused.values()), refused
    stacks = wait_for(lambda: processed(cluster, namespace, accepted), timeout=max(600, 4 * len(accepted)), interval=3,
                      what=f"{len(accepted)} stacks processed")  # fmt: skip

    outcomes: Counter[str] = Counter()
    for name in accepted:
        stack = stacks[name]
        conditions = {c["type"]: c for c in stack["status"]["conditions"]}
        try:
            TradingStack.model_validate(stack)
        except ValidationError:
            degraded = conditions["Degraded"]
            assert degraded["reason"] == "InvalidSpec" and "spec." in degraded["message"], (name, degraded)
            assert stack["status"]["phase"] == "Failed", name
            outcomes["InvalidSpec"] += 1
            continue
        assert stack["status"]["phase"] in ("Progressing", "Ready", "Degraded"), (name, stack["status"])
        if conditions["Degraded"]["status"] == "True":
            assert conditions["Degraded"]["message"], (name, conditions["Degraded"])
        outcomes[stack["status"]["phase"]] += 1

    writes = Counter(
        (w["resource"], w["name"])
        for w in write_requests(cluster.audit_log, namespace, mark)
        if w["resource"] not in CHILD_RESOURCES_EXCLUDED and (w["code"] or 0) < 400
    )
    repeated = {child: count for child, count in writes.items() if count > 1}
    assert not repeated, repeated
    assert "Traceback" not in operator.log()
    reliability.record(
        "generated and hostile specs",
        runs=f"{GENERATED} specs generated from the CRD schema + {len(documents(namespace)) - GENERATED} hostile",
        faults="every spec applied to the real API server, the operator reconciling all of them at once",
        checked="refusals by the API server, the condition of every accepted stack, writes per child (audit log)",
        result=f"{len(accepted)} accepted, {len(refused)} refused; {dict(sorted(outcomes.items()))}; "
        f"{sum(writes.values())} child writes, none repeated; 0 Tracebacks",
    )
