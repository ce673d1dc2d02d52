"""The Redis Sentinel renderer (golden file, pod security, settings in the configs) and the master decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.golden import assert_golden
from tests.psa import pod_specs, restricted_violations
from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.components.recorded import DEADLINE, live_workloads, workload
from tradingstack.api import TradingStack
from tradingstack.api.status import RedisStatus
from tradingstack.components import redis
from tradingstack.components.assess import Assessment, ConditionUpdate
from tradingstack.components.observe import observe
from tradingstack.contract import MASTER_ROLE, Annotation, Label
from tradingstack.kube.actions import PatchLabels, PostEvent
from tradingstack.reconcile.redis_master import FAILOVER_REASON, MASTER_OBSERVED_REASON, decide_master, master_actions
from tradingstack.redisclient.observe import MasterAddress, MasterObservation, agreed_master
from tradingstack.render.common import selector_labels
from tradingstack.render.redis import (
    REDIS_SECRET_KEYS,
    connection_env,
    redis_secret_name,
    render_redis,
)


def example_stack(deletion_policy: str = "Retain", **redis: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "0b5c1a2e-uid"},
            "spec": {
                "deletionPolicy": deletion_policy,
                "redis": {
                    "replicas": 3,
                    "sentinels": 5,
                    "quorum": 3,
                    "downAfterMilliseconds": 4000,
                    "failoverTimeoutMilliseconds": 30000,
                    "parallelSyncs": 2,
                    "minReplicasToWrite": 1,
                    "minReplicasMaxLagSeconds": 7,
                    "storage": {"size": "8Gi", "storageClassName": "fast-ssd"},
                    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                    **redis,
                },
            },
        }
    )


def by_name(stack: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in render_redis(stack, stack.owner_reference())}


def config(stack: TradingStack, name: str) -> str:
    return str(by_name(stack)[("ConfigMap", "quant-redis-config")]["data"][name])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def test_matches_golden_file() -> None:
    stack = example_stack()
    assert_golden("redis.yaml", yaml.safe_dump_all(render_redis(stack, stack.owner_reference()), sort_keys=True))


def test_renders_the_expected_objects() -> None:
    assert sorted(by_name(example_stack())) == [
        ("ConfigMap", "quant-redis-config"),
        ("PodDisruptionBudget", "quant-redis"),
        ("PodDisruptionBudget", "quant-redis-sentinel"),
        ("Service", "quant-redis"),
        ("Service", "quant-redis-master"),
        ("Service", "quant-redis-sentinel"),
        ("StatefulSet", "quant-redis"),
        ("StatefulSet", "quant-redis-sentinel"),
    ]


def test_every_pod_is_restricted_with_resources_and_probes() -> None:
    objects = by_name(example_stack())
    pods = [pod for obj in objects.values() for pod in pod_specs(obj)]
    assert len(pods) == 2
    for pod in pods:
        assert restricted_violations(pod) == []
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"livenessProbe", "readinessProbe"} <= set(container)
            for probe in ("livenessProbe", "readinessProbe"):
                assert "redis-cli" in container[probe]["exec"]["command"][-1]
    redis_container = objects[("StatefulSet", "quant-redis")]["spec"]["template"]["spec"]["containers"][0]
    assert redis_container["resources"] == {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def test_statefulsets_follow_the_spec_counts_and_storage() -> None:
    objects = by_name(example_stack())
    redis_set = objects[("StatefulSet", "quant-redis")]["spec"]
    sentinel_set = objects[("StatefulSet", "quant-redis-sentinel")]["spec"]
    assert redis_set["replicas"] == 3
    assert sentinel_set["replicas"] == 5
    (claim,) = redis_set["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["metadata"]["annotations"] == {Annotation.RETAIN: "true"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert redis_set["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    deleting = by_name(example_stack(deletion_policy="Delete"))[("StatefulSet", "quant-redis")]["spec"]
    assert deleting["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    for spec in (redis_set, sentinel_set):
        affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
        assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100


def test_services_headless_sentinel_and_master_selector() -> None:
    objects = by_name(example_stack())
    headless = objects[("Service", "quant-redis")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    sentinel = objects[("Service", "quant-redis-sentinel")]["spec"]
    assert sentinel["ports"][0]["port"] == 26379
    assert sentinel["publishNotReadyAddresses"] is True
    master = objects[("Service", "quant-redis-master")]["spec"]
    assert master["selector"] == {**selector_labels(example_stack(), "redis"), Label.REDIS_ROLE: "master"}
    assert "clusterIP" not in master


def test_settings_from_the_spec_are_in_the_configs() -> None:
    sentinel = config(example_stack(), "sentinel.conf")
    assert "sentinel monitor tradingstack @MASTER_HOST@ @MASTER_PORT@ 3\n" in sentinel
    assert "sentinel down-after-milliseconds tradingstack 4000\n" in sentinel
    assert "sentinel failover-timeout tradingstack 30000\n" in sentinel
    assert "sentinel parallel-syncs tradingstack 2\n" in sentinel
    assert "sentinel announce-hostnames yes\n" in sentinel
    assert "sentinel resolve-hostnames yes\n" in sentinel
    redis = config(example_stack(), "redis.conf")
    assert "min-replicas-to-write 1\n" in redis
    assert "min-replicas-max-lag 7\n" in redis
    assert "appendonly yes\n" in redis
    assert "sentinel monitor orders" in config(example_stack(masterName="orders"), "sentinel.conf")


def test_password_only_through_the_secret() -> None:
    stack = example_stack()
    assert REDIS_SECRET_KEYS == ("password",)
    assert redis_secret_name(stack) == "quant-redis"
    rendered = yaml.safe_dump_all(render_redis(stack, stack.owner_reference()))
    assert "kind: Secret" not in rendered
    reference = {"secretKeyRef": {"name": "quant-redis", "key": "password"}}
    for (kind, _), obj in by_name(stack).items():
        if kind == "StatefulSet":
            env = env_of(obj["spec"]["template"]["spec"]["containers"][0])
            assert env["REDIS_PASSWORD"] == reference
            assert env["REDISCLI_AUTH"] == reference


def test_pods_announce_stable_dns_names() -> None:
    objects = by_name(example_stack())
    redis_env = env_of(objects[("StatefulSet", "quant-redis")]["spec"]["template"]["spec"]["containers"][0])
    assert redis_env["REDIS_ANNOUNCE_HOST"] == "$(POD_NAME).quant-redis.trading.svc.cluster.local"
    sentinel_env = env_of(objects[("StatefulSet", "quant-redis-sentinel")]["spec"]["template"]["spec"]["containers"][0])
    assert sentinel_env["SENTINEL_ANNOUNCE_HOST"] == "$(POD_NAME).quant-redis-sentinel.trading.svc.cluster.local"
    assert sentinel_env["REDIS_BOOTSTRAP_MASTER"] == "quant-redis-0.quant-redis.trading.svc.cluster.local:6379"


def test_connection_env_lists_every_sentinel() -> None:
    env = {var["name"]: var for var in connection_env(example_stack(), "cluster.local")}
    assert env["REDIS_SENTINELS"]["value"].split(",") == [
        f"quant-redis-sentinel-{i}.quant-redis-sentinel.trading.svc.cluster.local:26379" for i in range(5)
    ]
    assert env["REDIS_MASTER_NAME"]["value"] == "tradingstack"
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "quant-redis", "key": "password"}}


def test_a_changed_sentinel_setting_rolls_only_the_sentinels() -> None:
    def hashes(stack: TradingStack) -> dict[str, str]:
        return {
            name: obj["spec"]["template"]["metadata"]["annotations"]["trading.quantumtrader.dev/config-hash"]
            for (kind, name), obj in by_name(stack).items()
            if kind == "StatefulSet"
        }

    before, after = hashes(example_stack()), hashes(example_stack(downAfterMilliseconds=9000))
    assert before["quant-redis"] == after["quant-redis"]
    assert before["quant-redis-sentinel"] != after["quant-redis-sentinel"]


@given(
    replicas=st.integers(2, 9),
    sentinels=st.integers(1, 9),
    down_after=st.integers(2000, 600000),
)
def test_rendering_is_deterministic_and_restricted(replicas: int, sentinels: int, down_after: int) -> None:
    stack = example_stack(replicas=replicas, sentinels=sentinels, quorum=1, downAfterMilliseconds=down_after)
    first = render_redis(stack, stack.owner_reference())
    assert first == render_redis(stack, stack.owner_reference())
    for obj in first:
        for pod in pod_specs(obj):
            assert restricted_violations(pod) == []


# -- the master decision --------------------------------------------------------------------------------

PODS = ["quant-redis-0", "quant-redis-1", "quant-redis-2"]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SENTINELS = ["s0:26379", "s1:26379", "s2:26379"]


def address(pod: str) -> MasterAddress:
    return MasterAddress(f"{pod}.quant-redis.trading.svc.cluster.local", 6379)


def observed(*answers: str | None) -> MasterObservation:
    by_sentinel = {s: (None if a is None else address(a)) for s, a in zip(SENTINELS, answers, strict=True)}
    return MasterObservation(answers=by_sentinel, master=agreed_master(by_sentinel))


def test_agreement_needs_a_majority_of_all_sentinels() -> None:
    assert observed("quant-redis-1", "quant-redis-1", None).master == address("quant-redis-1")
    assert observed("quant-redis-1", None, None).master is None
    assert observed("quant-redis-1", "quant-redis-2", None).master is None
    assert observed(None, None, None).master is None


@pytest.mark.parametrize(
    "observation",
    [
        observed(None, None, None),
        observed("quant-redis-1", "quant-redis-2", None),
        observed("quant-redis-1", None, None),
    ],
)
def test_no_agreed_master_means_no_action(observation: MasterObservation) -> None:
    recorded = RedisStatus(master="quant-redis-0")
    decision = decide_master(observation, recorded, PODS, ["quant-redis-0"], NOW)
    assert decision.changed is False
    assert decision.status is recorded
    assert (decision.label, decision.unlabel, decision.event) == (None, (), None)


def test_steady_state_changes_nothing() -> None:
    recorded = RedisStatus(master="quant-redis-0", last_failover=datetime(2026, 1, 1, tzinfo=UTC))
    decision = decide_master(observed(*["quant-redis-0"] * 3), recorded, PODS, ["quant-redis-0"], NOW)
    assert decision.changed is False
    assert decision.status is recorded


def test_failover_moves_the_label_and_records_the_time() -> None:
    recorded = RedisStatus(master="quant-redis-0")
    decision = decide_master(observed("quant-redis-2", "quant-redis-2", None), recorded, PODS, ["quant-redis-0"], NOW)
    assert decision.label == "quant-redis-2"
    assert decision.unlabel == ("quant-redis-0",)
    assert decision.status == RedisStatus(master="quant-redis-2", last_failover=NOW)
    assert decision.event is not None
    assert decision.event.reason == FAILOVER_REASON
    assert decision.event.event_type == "Warning"
    assert "quant-redis-0 to quant-redis-2" in decision.event.message


def test_first_observation_is_not_a_failover() -> None:
    decision = decide_master(observed(*["quant-redis-0"] * 3), RedisStatus(), PODS, [], NOW)
    assert decision.label == "quant-redis-0"
    assert decision.status == RedisStatus(master="quant-redis-0")
    assert decision.event is not None
    assert decision.event.reason == MASTER_OBSERVED_REASON


def test_a_lost_label_is_restored_without_an_event() -> None:
    recorded = RedisStatus(master="quant-redis-1")
    decision = decide_master(observed(*["quant-redis-1"] * 3), recorded, PODS, [], NOW)
    assert decision.label == "quant-redis-1"
    assert decision.event is None
    assert decision.status is recorded


def test_a_master_that_is_not_a_pod_of_the_stack_changes_nothing() -> None:
    recorded = RedisStatus(master="quant-redis-0")
    decision = decide_master(observed(*["quant-redis-7"] * 3), recorded, PODS, ["quant-redis-0"], NOW)
    assert decision.changed is False


def test_a_failover_labels_the_new_master_then_unlabels_the_old_then_posts_its_event() -> None:
    recorded = RedisStatus(master="quant-redis-0")
    decision = decide_master(observed("quant-redis-2", "quant-redis-2", None), recorded, PODS, ["quant-redis-0"], NOW)
    assert decision.event is not None
    assert master_actions(decision, "trading") == [
        PatchLabels("Pod", "quant-redis-2", "trading", {Label.REDIS_ROLE: MASTER_ROLE}),
        PatchLabels("Pod", "quant-redis-0", "trading", {Label.REDIS_ROLE: None}),
        PostEvent("Warning", FAILOVER_REASON, decision.event.message),
    ]


def test_a_steady_master_plans_no_write() -> None:
    recorded = RedisStatus(master="quant-redis-0")
    decision = decide_master(observed(*["quant-redis-0"] * 3), recorded, PODS, ["quant-redis-0"], NOW)
    assert master_actions(decision, "trading") == []


def test_declares_every_kind_it_renders() -> None:
    # The pods are listed to move the master label; the password Secret is generated, not rendered.
    assert_declares_what_it_renders(redis.COMPONENT, example_stack(), {"Pod", "Secret"})


def test_the_master_decision_reads_only_the_redis_servers_pods() -> None:
    def pod(name: str, app: str, **labels: str) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"name": name, "labels": {Label.NAME: app, **labels}}, "status": {}}

    children = {
        ("Pod", "qt-redis-0"): pod("qt-redis-0", "redis", **{Label.REDIS_ROLE: MASTER_ROLE}),
        ("Pod", "qt-redis-1"): pod("qt-redis-1", "redis"),
        ("Pod", "qt-redis-sentinel-0"): pod("qt-redis-sentinel-0", "redis-sentinel"),
        ("Pod", "qt-api-1"): pod("qt-api-1", "api"),
    }
    servers = redis.redis_pods(observe(children).pods)
    assert [p.name for p in servers] == ["qt-redis-0", "qt-redis-1"]
    assert [p.name for p in servers if p.labels.get(Label.REDIS_ROLE) == MASTER_ROLE] == ["qt-redis-0"]


def test_redis_ready_follows_the_servers_statefulset() -> None:
    stack = example_stack()
    name = f"{stack.name}-redis"
    missing = redis.assess(stack, live_workloads())
    assert missing == Assessment({"RedisReady": ConditionUpdate("False", "NotCreated", "Redis does not exist yet")},
                                 waiting=("redis",))  # fmt: skip
    rolling = redis.assess(stack, live_workloads(workload("StatefulSet", name, 1, 3)))
    assert rolling.conditions["RedisReady"] == ConditionUpdate("False", "NotReady", "1/3 pods ready")
    stuck = redis.assess(stack, live_workloads(workload("StatefulSet", name, 1, 3, DEADLINE)))
    assert stuck.conditions["RedisReady"] == ConditionUpdate("False", "RolloutFailed", "stuck")
    ready = redis.assess(stack, live_workloads(workload("StatefulSet", name, 3, 3)))
    assert ready == Assessment({"RedisReady": ConditionUpdate("True", "Ready", "3/3 pods ready")})
    # the sentinels' StatefulSet is not the Redis servers'
    assert redis.assess(stack, live_workloads(workload("StatefulSet", f"{name}-sentinel", 3, 3))).waiting == ("redis",)


def test_disabled_redis_is_ready_and_waits_for_nothing() -> None:
    stack = TradingStack.model_validate({"metadata": {"name": "qt"}, "spec": {"redis": {"enabled": False}}})
    assert redis.assess(stack, live_workloads()) == Assessment(
        {"RedisReady": ConditionUpdate("True", "Disabled", "redis.enabled is false")}
    )
