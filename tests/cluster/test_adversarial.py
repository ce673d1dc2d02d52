"""Generated and hostile specs against the real API server and the operator: nothing crashes, every accepted spec
gets a status that says what is wrong (naming the field), and no child is written more than once.

`TRADINGSTACK_GENERATED_SPECS` sets the number of generated specs (bounded here; `make chaos` runs thousands).
They go in batches of `TRADINGSTACK_SPEC_BATCH` (default 100): a batch is applied, reconciled, checked and
deleted (with what its deletion policy retains) before the next, so the operator and the API server carry one
batch at a time and a run takes time in proportion to its size (thousands of stacks at once, each resynced
every few seconds, would saturate this machine's two cores long before they were all processed).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, audit_offset, write_requests_after
from tests.fixtures.reliability import Reliability
from tests.fixtures.spec_batches import applied, batches, refusals
from tests.fixtures.specs import SpecGenerator, hostile_specs
from tradingstack.api import TradingStack
from tradingstack.contract import Label

pytestmark = pytest.mark.cluster
GENERATED = int(os.environ.get("TRADINGSTACK_GENERATED_SPECS", "30"))
BATCH = int(os.environ.get("TRADINGSTACK_SPEC_BATCH", "100"))
CHILD_RESOURCES_EXCLUDED = {"tradingstacks", "events"}
RETAINED_KINDS = "secrets,persistentvolumeclaims"
"""What a stack's default deletion policy (Retain) leaves behind: removed between batches."""


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


@dataclass
class Tally:
    """What the batches found, added up."""

    accepted: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """The operator's successful writes per child (resource, name) while its stack was reconciled."""


def outcome(name: str, stack: dict[str, Any]) -> str:
    """`InvalidSpec` or the phase of one processed stack, after checking its status says what is wrong."""
    conditions = {c["type"]: c for c in stack["status"]["conditions"]}
    try:
        TradingStack.model_validate(stack)
    except ValidationError:
        degraded = conditions["Degraded"]
        assert degraded["reason"] == "InvalidSpec" and "spec." in degraded["message"], (name, degraded)
        assert stack["status"]["phase"] == "Failed", name
        return "InvalidSpec"
    assert stack["status"]["phase"] in ("Progressing", "Ready", "Degraded"), (name, stack["status"])
    if conditions["Degraded"]["status"] == "True":
        assert conditions["Degraded"]["message"], (name, conditions["Degraded"])
    return str(stack["status"]["phase"])


def run_batch(cluster: Cluster, namespace: str, batch: dict[str, dict[str, Any]], tally: Tally) -> None:
    mark = audit_offset(cluster.audit_log)
    listing = {"apiVersion": "v1", "kind": "List", "items": list(batch.values())}
    result = cluster.kubectl("apply", "-n", namespace, "-o", "name", "-f", "-", input=json.dumps(listing),
                             check=False, timeout=60 + 2 * len(batch))  # fmt: skip
    accepted = applied(result.stdout) & set(batch)
    why = refusals(result.stderr, batch)
    refused = {name: why.get(name, "") for name in batch if name not in accepted}
    assert all("is invalid" in text or "denied" in text for text in refused.values()), (refused, result.stderr)
    stacks = wait_for(lambda: processed(cluster, namespace, accepted), timeout=max(600, 4 * len(accepted)), interval=3,
                      what=f"{len(accepted)} stacks processed")  # fmt: skip
    tally.outcomes.update(outcome(name, stacks[name]) for name in accepted)
    tally.writes.update(
        (w["resource"], w["name"])
        for w in write_requests_after(cluster.audit_log, namespace, mark)
        if w["resource"] not in CHILD_RESOURCES_EXCLUDED and (w["code"] or 0) < 400
    )
    tally.accepted |= accepted
    tally.refused |= refused
    # Gone before the next batch, so the namespace holds one batch; the operator still runs to release them.
    cluster.kubectl("delete", "tradingstacks", "--all", "-n", namespace, "--wait=true",
                    f"--timeout={max(300, 3 * len(accepted))}s", timeout=60 + max(300, 3 * len(accepted)))  # fmt: skip
    cluster.kubectl("delete", RETAINED_KINDS, "-n", namespace, "-l", Label.STACK, "--wait=false")


def test_generated_and_hostile_specs_never_crash_or_loop(
    cluster: Cluster, namespace: str, operator: OperatorProcess, reliability: Reliability
) -> None:
    specs = documents(namespace)
    tally = Tally()
    for names in batches(list(specs), BATCH):
        run_batch(cluster, namespace, {name: specs[name] for name in names}, tally)

    repeated = {child: count for child, count in tally.writes.items() if count > 1}
    assert not repeated, repeated
    assert "Traceback" not in operator.log()
    reliability.record(
        "generated and hostile specs",
        runs=f"{GENERATED} specs generated from the CRD schema + {len(specs) - GENERATED} hostile,"
        f" in batches of {BATCH}",
        faults="every spec applied to the real API server, the operator reconciling a whole batch at once",
        checked="refusals by the API server, the condition of every accepted stack, writes per child (audit log)",
        result=f"{len(tally.accepted)} accepted, {len(tally.refused)} refused; {dict(sorted(tally.outcomes.items()))};"
        f" {sum(tally.writes.values())} child writes, none repeated; 0 Tracebacks",
    )
