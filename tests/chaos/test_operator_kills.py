"""The operator killed with SIGKILL at random moments while stacks reconcile (real API server, kwok nodes).

Afterwards every stack's children are exactly what the renderer says (nothing duplicated, left over or missing),
each generated Secret was created once and never replaced, and a resync by a fresh process writes nothing.

Sized by `TRADINGSTACK_CHAOS_STACKS` (default 10) and `TRADINGSTACK_CHAOS_KILLS` (default 12 in `make test`;
`make chaos` runs 50); `TRADINGSTACK_CHAOS_SEED` picks the moments.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from tests.cluster.test_operator import example
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_passes, write_requests
from tests.fixtures.reliability import Reliability
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.contract import Label
from tradingstack.render.secrets import generated_secret_names

pytestmark = pytest.mark.cluster
STACKS = int(os.environ.get("TRADINGSTACK_CHAOS_STACKS", "10"))
KILLS = int(os.environ.get("TRADINGSTACK_CHAOS_KILLS", "12"))
SEED = int(os.environ.get("TRADINGSTACK_CHAOS_SEED", "1"))
LONGEST_LIFE_SECONDS = 4.0
"""A kill comes at most this long after the operator answers its liveness probe (passes take about a second)."""
SPEC_CHANGE_EVERY = 3
"""Every third life also changes a stack's spec, so kills land in updates and prunes, not only in creation."""


def stacks(namespace: str) -> dict[str, dict[str, Any]]:
    documents = {}
    for index in range(STACKS):
        document = example(namespace)
        document["metadata"]["name"] = f"chaos-{index}"
        documents[f"chaos-{index}"] = document
    return documents


def change_spec(cluster: Cluster, namespace: str, name: str, life: int) -> None:
    """Scales a service up and back and removes and restores another, by life number: creates, updates, prunes."""
    document = cluster.kubectl_json("get", "tradingstack", name, "-n", namespace)
    services = document["spec"]["services"]
    if life % 2:
        services[0]["replicas"] = 3 - services[0].get("replicas", 2) % 2  # 2 -> 3 -> 2 ...
    else:
        services[:] = services[:-1] if len(services) == 6 else example(namespace)["spec"]["services"]
    cluster.apply({"apiVersion": document["apiVersion"], "kind": document["kind"],
                   "metadata": {"name": name, "namespace": namespace}, "spec": document["spec"]},
                  namespace=namespace)  # fmt: skip


def settled(cluster: Cluster, namespace: str, names: set[str]) -> list[dict[str, Any]] | None:
    items = cluster.kubectl_json("get", "tradingstacks", "-n", namespace)["items"]
    done = [
        i
        for i in items
        if i["metadata"]["name"] in names
        and i.get("status", {}).get("observedGeneration") == i["metadata"]["generation"]
        and i["status"].get("phase") == "Ready"
    ]
    return done if len(done) == len(names) else None


def statefulset_claims(statefulset: dict[str, Any]) -> list[str]:
    """The claims the StatefulSet controller makes for a rendered StatefulSet: `<template>-<set>-<ordinal>`."""
    name, spec = statefulset["metadata"]["name"], statefulset["spec"]
    templates = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    return [f"{t}-{name}-{i}" for t in templates for i in range(spec.get("replicas", 1))]


def expected_children(stack: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    """(stack, kind, name) of what the renderer says, with the claims its StatefulSets make."""
    model = TradingStack.model_validate(stack)
    children = render(model, model.owner_reference())
    claims = [c for o in children if o["kind"] == "StatefulSet" for c in statefulset_claims(o)]
    return Counter([(model.metadata.name, o["kind"], o["metadata"]["name"]) for o in children]
                   + [(model.metadata.name, "PersistentVolumeClaim", c) for c in claims])  # fmt: skip


def live_children(cluster: Cluster, namespace: str, kinds: set[str]) -> Counter[tuple[str, str, str]]:
    """(stack, kind, name) of every object of the rendered kinds that carries a stack label, counted."""
    items = cluster.kubectl_json("get", ",".join(sorted(kinds)), "-n", namespace, "-l", Label.STACK)["items"]
    return Counter(
        (o["metadata"]["labels"][Label.STACK], o["kind"], o["metadata"]["name"])
        for o in items
        if not o["metadata"].get("deletionTimestamp")
    )


def test_kill_9_at_random_moments_converges_exactly(
    cluster: Cluster, namespace: str, operator: OperatorProcess, reliability: Reliability
) -> None:
    chance = random.Random(SEED)
    documents = stacks(namespace)
    mark = len(cluster.audit_log.read_text().splitlines())
    operator.kill()
    for document in documents.values():
        cluster.apply(document, namespace=namespace)
    started = time.monotonic()
    for life in range(KILLS):
        operator.start()
        if life % SPEC_CHANGE_EVERY == SPEC_CHANGE_EVERY - 1:
            change_spec(cluster, namespace, chance.choice(sorted(documents)), life)
        time.sleep(chance.uniform(0, LONGEST_LIFE_SECONDS))
        operator.kill()
    chaos_seconds = time.monotonic() - started

    operator.start()
    converge_start = time.monotonic()
    live_stacks = wait_for(lambda: settled(cluster, namespace, set(documents)), timeout=600, interval=2,
                           what=f"{STACKS} stacks Ready at their latest generation")  # fmt: skip
    converge_seconds = time.monotonic() - converge_start

    desired = sum((expected_children(s) for s in live_stacks), Counter[tuple[str, str, str]]())
    live = live_children(cluster, namespace, {kind for _, kind, _ in desired})
    assert live == desired, {"missing": desired - live, "left over or duplicated": live - desired}

    secret_writes = Counter(
        (w["verb"], w["name"]) for w in write_requests(cluster.audit_log, namespace, mark)
        if w["resource"] == "secrets" and (w["code"] or 0) < 400
    )  # fmt: skip
    generated = {name for s in live_stacks for name in generated_secret_names(TradingStack.model_validate(s))}
    assert secret_writes == Counter({("create", name): 1 for name in generated}), secret_writes

    wait_for_passes(operator, count=STACKS)
    resync_mark = len(cluster.audit_log.read_text().splitlines())
    operator.stop()
    operator.start()
    wait_for_passes(operator, count=2 * STACKS)
    resync_writes = write_requests(cluster.audit_log, namespace, resync_mark)
    assert resync_writes == [], resync_writes
    assert "Traceback" not in operator.log()

    reliability.record(
        "operator kill -9 while stacks reconcile",
        runs=f"{KILLS} kills in {chaos_seconds:.0f} s, {STACKS} stacks (seed {SEED})",
        faults="SIGKILL 0-4 s after the liveness probe answers; a spec change every third life",
        checked="children vs `render`, Secret writes in the audit log, writes of a fresh process's resync",
        result=f"0 diffs of {sum(desired.values())} children, {len(generated)} Secrets created once each, "
        f"0 resync writes; converged {converge_seconds:.0f} s after the last kill",
    )
