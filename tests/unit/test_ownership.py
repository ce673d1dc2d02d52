"""Pure rules of what a stack may write (ownership), what outlives it (retention) and canonical quantities."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tradingstack.api import TradingStack
from tradingstack.api.base import canonical_quantity, is_quantity
from tradingstack.api.spec import STORAGE_DEFAULTS, TradingStackSpec
from tradingstack.components import render
from tradingstack.contract import MANAGED_BY, Annotation, Label
from tradingstack.reconcile.ownership import conflict, referenced_secrets
from tradingstack.reconcile.retention import retention_patches
from tradingstack.render.secrets import generated_secrets

UID = "uid-of-s"


def obj(kind: str = "ConfigMap", name: str = "s-gateway", **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, **meta}}


def ref(uid: str, name: str = "s", controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "trading.quantumtrader.dev/v1alpha1", "kind": "TradingStack", "name": name, "uid": uid,
            "controller": controller}  # fmt: skip


def test_the_stacks_own_child_and_its_retained_data_are_not_conflicts() -> None:
    assert conflict(None, "s", UID) is None
    assert conflict(obj(ownerReferences=[ref(UID)]), "s", UID) is None
    retained = obj(labels={Label.STACK: "s", Label.MANAGED_BY: MANAGED_BY}, annotations={Annotation.RETAIN: "true"})
    assert conflict(retained, "s", UID) is None


def test_anything_else_holding_the_name_is_a_conflict_naming_the_holder() -> None:
    assert str(conflict(obj(), "s", UID)) == "ConfigMap/s-gateway exists and is not created by this stack"
    other = conflict(obj(ownerReferences=[ref("uid-of-a", name="a")]), "s", UID)
    assert str(other) == "ConfigMap/s-gateway exists and is controlled by TradingStack/a"
    # Our labels without the retain mark (copied by hand) or a retained object of another stack: not ours.
    assert conflict(obj(labels={Label.STACK: "s", Label.MANAGED_BY: MANAGED_BY}), "s", UID) is not None
    retained_elsewhere = obj(
        labels={Label.STACK: "t", Label.MANAGED_BY: MANAGED_BY}, annotations={Annotation.RETAIN: "true"}
    )
    assert conflict(retained_elsewhere, "s", UID) is not None
    # A previous stack of the same name that still controls it (deleted and recreated before GC ran).
    assert conflict(obj(ownerReferences=[ref("uid-of-old-s")]), "s", UID) is not None


def example() -> TradingStack:
    return TradingStack.model_validate(
        {
            "apiVersion": "trading.quantumtrader.dev/v1alpha1",
            "kind": "TradingStack",
            "metadata": {"name": "s", "namespace": "n", "uid": UID, "generation": 1},
            "spec": {"services": [{"name": "api", "image": "i", "port": 8000, "uses": ["redis", "postgres"]}]},
        }
    )


def test_the_secrets_a_child_reads_are_found_in_env_and_volumes() -> None:
    stack = example()
    by_name = {o["metadata"]["name"]: o for o in render(stack, stack.owner_reference())}
    assert referenced_secrets(by_name["s-api"]) == {"s-redis", "s-postgres"}
    assert referenced_secrets({"spec": {"volumes": [{"secret": {"secretName": "tls"}}]}}) == {"tls"}


def secrets_for(policy: str) -> list[dict[str, Any]]:
    stack = example()
    stack = stack.model_copy(update={"spec": stack.spec.model_copy(update={"deletion_policy": policy})})
    return generated_secrets(stack, stack.owner_reference(), lambda: "pw")


def test_a_changed_policy_moves_the_owner_reference_of_the_generated_secrets() -> None:
    someone = ref("uid-of-someone", name="x", controller=False)
    live = {("Secret", "s-redis"): obj("Secret", "s-redis", ownerReferences=[someone, ref(UID)])}
    patches = retention_patches(secrets_for("Retain"), live, UID)
    assert [(p.kind, p.name, p.patch) for p in patches] == [
        ("Secret", "s-redis", {"metadata": {"ownerReferences": [someone]}})
    ]
    back = retention_patches(secrets_for("Delete"), {("Secret", "s-redis"): obj("Secret", "s-redis")}, UID)
    assert [p.patch["metadata"]["ownerReferences"][0]["uid"] for p in back] == [UID]
    assert retention_patches(secrets_for("Delete"), live, UID) == []


def test_statefulset_claim_retention_follows_the_policy() -> None:
    stack = example()
    sts = next(o for o in render(stack, stack.owner_reference()) if o["kind"] == "StatefulSet")
    live = {("StatefulSet", sts["metadata"]["name"]): {**sts, "spec": {**sts["spec"],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}}}  # fmt: skip
    [patch] = retention_patches([sts], live, UID)
    assert patch.patch == {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                                              "whenScaled": "Retain"}}}  # fmt: skip


SUFFIXES = ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"]
_FACTORS = {
    **{suffix: Decimal(10) ** (3 * i) for i, suffix in enumerate(["", "k", "M", "G", "T", "P", "E"])},
    **{suffix: Decimal(1024) ** (i + 1) for i, suffix in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])},
    "m": Decimal("1e-3"),
    "u": Decimal("1e-6"),
    "n": Decimal("1e-9"),
}


def value_of(quantity: str) -> Decimal:
    number = quantity.rstrip("nukKMGTPEim")
    return Decimal(number) * _FACTORS[quantity[len(number) :]]


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", ".5", ".25", ".125", ".0", ".001"]),
    st.sampled_from(SUFFIXES),
)
def test_canonical_quantities_keep_their_value_and_are_stable(whole: int, fraction: str, suffix: str) -> None:
    # The cluster tier compares the forms with the API server's.
    quantity = f"{whole}{fraction}{suffix}"
    assert is_quantity(quantity)
    canonical = canonical_quantity(quantity)
    if is_quantity(canonical):
        assert canonical_quantity(canonical) == canonical
    exact = value_of(quantity)
    # Finer than 1m is rounded up to the next milli, as the API server does for container resources.
    assert value_of(canonical) == (exact / Decimal("0.001")).to_integral_value(ROUND_CEILING) * Decimal("0.001")


def test_the_storage_defaults_the_cel_rules_assume_are_the_models() -> None:
    spec = TradingStackSpec()
    sizes = {
        ("redis", "storage"): spec.redis.storage.size,
        ("postgres", "storage"): spec.postgres.storage.size,
        ("postgres", "backup", "storage"): spec.postgres.backup.storage.size,
    }
    assert sizes == STORAGE_DEFAULTS
