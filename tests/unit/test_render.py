"""The whole renderer: golden output for the example, and properties over generated stacks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.golden import assert_golden
from tests.netpol import selects
from tests.psa import pod_specs, restricted_violations
from tradingstack.api import TradingStack
from tradingstack.cli import dump_yaml
from tradingstack.components import render
from tradingstack.contract import Annotation, Label
from tradingstack.reconcile.stack import new_tls_keys
from tradingstack.render.common import template_revision
from tradingstack.render.postgres import render_list_job, render_restore_job
from tradingstack.render.secrets import generated_secrets
from tradingstack.render.services import canary_deployment

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def example(name: str) -> TradingStack:
    document = yaml.safe_load((ROOT / "examples" / name).read_text())
    document["metadata"].update(namespace="trading", uid="00000000-0000-4000-8000-000000000001")
    return TradingStack.model_validate(document)


def test_example_renders_to_the_golden_file() -> None:
    stack = example("quantum-trader.yaml")
    assert_golden("quantum-trader.yaml", dump_yaml(render(stack, stack.owner_reference())))


def test_example_renders_every_component() -> None:
    stack = example("quantum-trader.yaml")
    kinds: dict[str, set[str]] = {}
    for obj in render(stack, stack.owner_reference()):
        kinds.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    services = {f"quantum-trader-{s.name}" for s in stack.spec.services}
    assert services | {"quantum-trader-gateway"} <= kinds["Deployment"]
    assert {"quantum-trader-redis", "quantum-trader-postgres"} <= kinds["StatefulSet"]
    assert "quantum-trader-postgres-backup" in kinds["CronJob"]
    assert {"quantum-trader-default-deny", "quantum-trader-redis-ingress", "quantum-trader-postgres-ingress"} <= kinds[
        "NetworkPolicy"
    ]
    assert "quantum-trader-ai-engine" in kinds["PodDisruptionBudget"]
    assert "quantum-trader-portfolio" not in kinds["PodDisruptionBudget"]  # one replica: no PDB


names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"redis", "postgres", "gateway"}
)
egress_specs = st.builds(
    lambda net, port, protocol: {"cidr": f"198.51.{net}.0/24", "ports": [{"port": port, "protocol": protocol}]},
    st.integers(0, 255),
    st.integers(1, 65535),
    st.sampled_from(["TCP", "UDP", "SCTP"]),
)
service_specs = st.builds(
    lambda name, port, replicas, uses, degraded, haltable, routed, egress: {
        "name": name,
        "image": f"example/{name}:1",
        "port": port,
        "replicas": replicas,
        "uses": uses,
        "health": {"degradedIsReady": degraded},
        "haltable": haltable,
        "route": {"enabled": routed},
        "egress": egress,
    },
    names,
    st.integers(1024, 65535),
    st.integers(0, 5),
    st.lists(st.sampled_from(["redis", "postgres"]), unique=True),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.lists(egress_specs, max_size=2),
)


S3_REF = {"name": "s3-keys", "key": "id"}


@st.composite
def pitr_specs(draw: st.DrawFn) -> dict[str, Any]:
    """`spec.postgres` parts with pitr on: either repository or both, with or without a restore."""
    pitr: dict[str, Any] = {
        "enabled": True,
        "volume": draw(st.booleans()),
        "encrypt": draw(st.booleans()),
        "diffSchedule": draw(st.sampled_from(["0 1 * * 1-6", None])),
    }
    if not pitr["volume"] or draw(st.booleans()):
        style = draw(st.sampled_from(["host", "path"]))
        pitr["s3"] = {"endpoint": "s3.example.com", "bucket": "backups", "uriStyle": style,
                      "accessKeyId": S3_REF, "secretAccessKey": S3_REF}  # fmt: skip
        if draw(st.booleans()):
            pitr["s3"]["caSecret"] = {"name": "s3-ca", "key": "ca.crt"}
    restore = draw(st.sampled_from([None, {"from": "latest"}, {"targetTime": "2026-12-01T09:30:00Z"}, {"from": "b-1"}]))
    return {"pitr": pitr, **({"restore": restore} if restore else {})}


@st.composite
def stacks(draw: st.DrawFn) -> TradingStack:
    services = draw(st.lists(service_specs, max_size=6, unique_by=lambda s: s["name"]))
    sentinels = draw(st.integers(1, 5))
    replicas = draw(st.integers(2, 5))
    postgres: dict[str, Any] = {
        "enabled": True,
        "backup": {"enabled": draw(st.booleans())},
        "metrics": {"enabled": draw(st.booleans())},
    }
    if draw(st.booleans()):
        postgres |= draw(pitr_specs())
    elif draw(st.booleans()):
        # A Patroni cluster (pitr needs a single instance in this release).
        postgres |= {"instances": draw(st.integers(2, 5)), "synchronous": draw(st.booleans())}
    spec = {
        "services": services,
        "redis": {
            "enabled": True,
            "replicas": replicas,
            "sentinels": sentinels,
            "quorum": draw(st.integers(1, sentinels)),
            "minReplicasToWrite": draw(st.integers(0, replicas - 1)),
            "metrics": {"enabled": draw(st.booleans())},
        },
        "postgres": postgres,
        "gateway": {"enabled": draw(st.booleans()), "replicas": draw(st.integers(0, 3))},
        "deletionPolicy": draw(st.sampled_from(["Retain", "Delete"])),
    }
    if draw(st.booleans()):
        spec["halt"] = {"reason": "kill switch", "requestedBy": "test"}
    name = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True))
    return TradingStack.model_validate({"metadata": {"name": name, "namespace": "ns", "uid": "uid-1"}, "spec": spec})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_rendering_is_deterministic(stack: TradingStack) -> None:
    assert dump_yaml(render(stack, stack.owner_reference())) == dump_yaml(render(stack, stack.owner_reference()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_every_dns_name_uses_the_configured_cluster_domain(stack: TradingStack) -> None:
    text = dump_yaml(render(stack, stack.owner_reference(), "corp.example"))
    assert "cluster.local" not in text
    secrets = generated_secrets(stack, stack.owner_reference(), lambda: "pw", "corp.example", new_tls_keys, NOW)
    assert all(".svc.corp.example:" in s["stringData"]["dsn"] for s in secrets if "dsn" in s["stringData"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_claims_follow_the_deletion_policy_through_one_rule(stack: TradingStack) -> None:
    expected = "Delete" if stack.spec.deletion_policy == "Delete" else "Retain"
    for obj in render(stack, stack.owner_reference()):
        if obj["kind"] == "StatefulSet" and "volumeClaimTemplates" in obj["spec"]:
            retention = obj["spec"]["persistentVolumeClaimRetentionPolicy"]
            assert retention == {"whenDeleted": expected, "whenScaled": "Retain"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_every_pod_is_restricted_and_every_child_is_owned_and_labelled(stack: TradingStack) -> None:
    owner = stack.owner_reference().to_dict()
    for obj in render(stack, stack.owner_reference()):
        meta = obj["metadata"]
        retained = meta.get("annotations", {}).get(Annotation.RETAIN) == "true"
        if retained and stack.spec.deletion_policy == "Retain":
            assert "ownerReferences" not in meta, meta["name"]  # data outlives the stack
        else:
            assert meta["ownerReferences"] == [owner], meta["name"]
        assert meta["namespace"] == "ns"
        assert meta["labels"][Label.STACK] == stack.name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "tradingstack-operator"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "quantum-trader"
        assert len(meta["name"]) <= 63
        for pod in pod_specs(obj):
            assert restricted_violations(pod) == [], (obj["kind"], meta["name"])
            # Only the Patroni pods call the API (the leader lock), with a ServiceAccount of their own; no other
            # pod gets a token. Scratch space is bounded.
            patroni = obj["kind"] == "StatefulSet" and meta["name"] == f"{stack.name}-postgres"
            patroni = patroni and stack.spec.postgres.instances > 1
            assert pod["automountServiceAccountToken"] is patroni, (obj["kind"], meta["name"])
            assert pod.get("serviceAccountName") == (meta["name"] if patroni else None)
            for volume in pod.get("volumes", []):
                if "emptyDir" in volume:
                    assert volume["emptyDir"].get("sizeLimit"), (meta["name"], volume["name"])
        if obj["kind"] == "PodDisruptionBudget":
            assert obj["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        if obj["kind"] == "CronJob":
            assert obj["spec"]["startingDeadlineSeconds"] > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_a_halt_stops_exactly_the_haltable_services_and_denies_exactly_their_egress(stack: TradingStack) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(stack, stack.owner_reference())}
    halted = [s.name for s in stack.spec.services if s.haltable] if stack.spec.halt else []
    for service in stack.spec.services:
        replicas = objects["Deployment", f"{stack.name}-{service.name}"]["spec"]["replicas"]
        assert replicas == (0 if service.name in halted else service.replicas), service.name
    policy = objects.get(("NetworkPolicy", f"{stack.name}-halt"))
    if not halted:
        assert policy is None
        return
    assert policy is not None and policy["spec"]["policyTypes"] == ["Egress"] and "egress" not in policy["spec"]
    selector = policy["spec"]["podSelector"]
    assert selector["matchLabels"] == {Label.INSTANCE: stack.name}
    assert selector["matchExpressions"] == [{"key": Label.NAME, "operator": "In", "values": halted}]
    # No policy of the stack allows a halted pod out: the deny is not undone by an allow (they add up).
    for name in halted:
        labels = objects["Deployment", f"{stack.name}-{name}"]["spec"]["template"]["metadata"]["labels"]
        allows = [o for key, o in objects.items() if key[0] == "NetworkPolicy" and o["spec"].get("egress")]
        assert not any(selects(o["spec"]["podSelector"], labels) for o in allows), name


@pytest.mark.parametrize(("policy", "owned"), [("Retain", False), ("Delete", True)])
def test_generated_credentials_follow_the_deletion_policy(policy: str, owned: bool) -> None:
    stack = example("minimal.yaml")
    stack = stack.model_copy(update={"spec": stack.spec.model_copy(update={"deletion_policy": policy})})
    generated = "value-from-the-random-source"
    secrets = generated_secrets(stack, stack.owner_reference(), lambda: generated)
    assert {s["metadata"]["name"] for s in secrets} == {"minimal-redis", "minimal-postgres"}
    for secret in secrets:
        assert ("ownerReferences" in secret["metadata"]) is owned
    postgres = next(s for s in secrets if s["metadata"]["name"] == "minimal-postgres")["stringData"]
    assert postgres["password"] == generated and generated in postgres["dsn"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_every_canary_is_restricted_owned_labelled_and_selected_by_nothing_of_its_service(stack: TradingStack) -> None:
    owner = stack.owner_reference().to_dict()
    rendered = render(stack, stack.owner_reference())
    selectors = [
        o["spec"]["selector"] if o["kind"] == "Service" else o["spec"]["selector"]["matchLabels"]
        for o in rendered
        if o["kind"] in ("Service", "Deployment", "StatefulSet", "PodDisruptionBudget")
    ]
    for service in stack.spec.services:
        main = next(
            o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{stack.name}-{service.name}"
        )
        canary = canary_deployment(main)
        meta = canary["metadata"]
        assert meta["name"] == main["metadata"]["name"] + "-canary" and len(meta["name"]) <= 63
        assert meta["ownerReferences"] == [owner] and meta["namespace"] == "ns"
        assert meta["labels"][Label.STACK] == stack.name and meta["labels"][Label.CANARY] == "true"
        assert meta["annotations"] == {Annotation.REVISION: main["metadata"]["annotations"][Annotation.REVISION]}
        assert canary["spec"]["replicas"] == 1
        (pod,) = pod_specs(canary)
        assert restricted_violations(pod) == [] and pod["automountServiceAccountToken"] is False
        assert pod == main["spec"]["template"]["spec"]  # the same containers, env, probes and security
        pod_labels = canary["spec"]["template"]["metadata"]["labels"]
        assert _selects(canary["spec"]["selector"]["matchLabels"], pod_labels)
        assert pod_labels[Label.STACK] == stack.name and pod_labels[Label.COMPONENT] == service.name
        # No selector of the stack (its Services, Deployments, PDBs) takes the canary's pods.
        assert not any(_selects(selector, pod_labels) for selector in selectors), service.name
        assert len(pod_labels[Label.NAME]) <= 63


@pytest.mark.parametrize("force", [False, True])
def test_the_on_demand_backup_jobs_are_hardened_like_the_stack(force: bool) -> None:
    """`tradingstack backup restore|list` create Jobs outside the render: restricted, no token, bounded scratch."""
    stack = example("quantum-trader.yaml")
    jobs = [
        render_restore_job(stack, stack.owner_reference(), "latest", force),
        render_list_job(stack, stack.owner_reference()),
    ]
    for job in jobs:
        (pod,) = pod_specs(job)
        assert restricted_violations(pod) == [], job["metadata"]
        assert pod["automountServiceAccountToken"] is False
        assert all(v["emptyDir"].get("sizeLimit") for v in pod.get("volumes", []) if "emptyDir" in v)


def test_the_revision_follows_the_pod_template_and_ignores_the_restart_stamp() -> None:
    stack = example("quantum-trader.yaml")
    main = next(o for o in render(stack, stack.owner_reference()) if o["kind"] == "Deployment")
    template = main["spec"]["template"]
    revision = template_revision(template)
    assert main["metadata"]["annotations"][Annotation.REVISION] == revision and len(revision) == 10
    stamped = {**template, "metadata": {**template["metadata"], "annotations": {Annotation.RESTARTED_AT: "run-1"}}}
    assert template_revision(stamped) == revision
    other = yaml.safe_load(yaml.safe_dump(template))
    other["spec"]["containers"][0]["image"] = "example/other:2"
    assert template_revision(other) != revision
