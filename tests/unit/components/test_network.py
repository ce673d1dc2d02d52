"""The network component: one NetworkPolicy per enabled store, admitting only the stack's own pods (and the
operator, to the sentinels only)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.test_render import example
from tradingstack.api import TradingStack
from tradingstack.components import network
from tradingstack.contract import OPERATOR_APP_NAME, Label
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN


def policies(stack: TradingStack) -> dict[str, dict[str, Any]]:
    rendered = network.COMPONENT.render(stack, stack.owner_reference(), DEFAULT_CLUSTER_DOMAIN)
    return {obj["metadata"]["name"]: obj for obj in rendered}


def with_stores(*, redis: bool, postgres: bool) -> TradingStack:
    stack = example("quantum-trader.yaml")
    spec = stack.spec.model_copy(
        update={
            "redis": stack.spec.redis.model_copy(update={"enabled": redis}),
            "postgres": stack.spec.postgres.model_copy(update={"enabled": postgres}),
        }
    )
    return stack.model_copy(update={"spec": spec})


def test_declares_every_kind_it_renders() -> None:
    assert_declares_what_it_renders(network.COMPONENT, example("quantum-trader.yaml"), set())


@pytest.mark.parametrize(("redis", "postgres"), [(True, True), (True, False), (False, True), (False, False)])
def test_one_policy_per_enabled_store(redis: bool, postgres: bool) -> None:
    expected = {
        name
        for name, on in (("quantum-trader-redis-access", redis), ("quantum-trader-postgres-access", postgres))
        if on
    }
    assert set(policies(with_stores(redis=redis, postgres=postgres))) == expected


def test_the_stacks_pods_reach_redis_and_the_sentinels_the_operator_only_the_sentinels() -> None:
    policy = policies(example("quantum-trader.yaml"))["quantum-trader-redis-access"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchExpressions"] == [
        {"key": Label.NAME, "operator": "In", "values": ["redis", "redis-sentinel"]}
    ]
    from_stack, from_operator = policy["ingress"]
    assert from_stack["from"] == [{"podSelector": {"matchLabels": {Label.STACK: "quantum-trader"}}}]
    assert [p["port"] for p in from_stack["ports"]] == [6379, 26379]
    assert from_operator["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {Label.NAME: OPERATOR_APP_NAME}}}
    ]
    assert [p["port"] for p in from_operator["ports"]] == [26379]


def test_only_the_stacks_pods_reach_postgres() -> None:
    policy = policies(example("quantum-trader.yaml"))["quantum-trader-postgres-access"]["spec"]
    assert policy["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {Label.STACK: "quantum-trader"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "quantum-trader"}


def test_every_policy_is_owned_by_the_stack_and_labelled() -> None:
    stack = example("quantum-trader.yaml")
    for obj in policies(stack).values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == stack.metadata.uid
        assert obj["metadata"]["labels"][Label.STACK] == stack.name
