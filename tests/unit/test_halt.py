"""The kill switch (`spec.halt`): what a halted stack renders, the first batch that carries the halt out before
anything else, the status it shows and the metric; and, in a whole pass against the in-memory API server, that a
refused child and a missing user Secret do not delay it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.netpol import allowed, pod
from tests.unit.test_ownership import UID, example
from tests.unit.test_pass import NOW, ApiServer, example_body, one_pass
from tests.unit.test_reconcile_pure import all_ready, observations
from tests.unit.test_reconcile_pure import stack as ready_stack
from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.status import HaltStatus
from tradingstack.components import render
from tradingstack.contract import Label
from tradingstack.errors import ApiPermanentError
from tradingstack.kube.actions import FIELD_MANAGER, Apply, ChildKey, Delete, Obj, PostEvent, key_of
from tradingstack.metrics import stack_samples
from tradingstack.reconcile.diff import with_applied_hash
from tradingstack.reconcile.halt import halt_status, plan_halt_writes
from tradingstack.reconcile.ownership import NameConflict
from tradingstack.reconcile.status import compute_status

HALT = {"reason": "runaway orders", "requestedBy": "alice"}


def stack(halt: dict[str, Any] | None = None, haltable: tuple[str, ...] = ("exec",)) -> TradingStack:
    base = example().model_dump(by_alias=True, exclude_none=True)
    services = [{"name": name, "image": "i", "port": 8000 + i, "haltable": name in haltable}
                for i, name in enumerate(("api", "exec"))]  # fmt: skip
    base["spec"]["services"] = services
    if halt is not None:
        base["spec"]["halt"] = halt
    return TradingStack.model_validate(base)


def rendered(s: TradingStack) -> dict[ChildKey, Obj]:
    return {key_of(o): o for o in (with_applied_hash(m) for m in render(s, s.owner_reference()))}


def body_of(obj: Obj) -> Obj:
    return {key: value for key, value in obj.items() if key != "metadata"}


def live(s: TradingStack) -> dict[ChildKey, Obj]:
    return {key: {**obj, "status": {}} for key, obj in rendered(s).items()}


def test_a_halted_stack_renders_its_haltable_services_at_zero_and_denies_their_egress() -> None:
    children = rendered(stack(HALT))
    assert children["Deployment", "s-exec"]["spec"]["replicas"] == 0
    assert children["Deployment", "s-api"]["spec"]["replicas"] == 1
    # Their normal grace period: the render sets none, so the pods get the Kubernetes default to cancel orders.
    assert "terminationGracePeriodSeconds" not in children["Deployment", "s-exec"]["spec"]["template"]["spec"]
    policy = children["NetworkPolicy", "s-halt"]
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {Label.INSTANCE: "s"},
            "matchExpressions": [{"key": Label.NAME, "operator": "In", "values": ["exec"]}],
        },
        "policyTypes": ["Egress"],
    }
    assert policy["metadata"]["labels"][Label.COMPONENT] == "halt"
    assert policy["metadata"]["labels"][Label.STACK] == "s"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == UID
    # The policy selects every pod of the service, whatever its ReplicaSet: the template's labels match it.
    pod_labels = children["Deployment", "s-exec"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[Label.INSTANCE] == "s" and pod_labels[Label.NAME] == "exec"


def test_not_halted_or_nothing_haltable_renders_no_halt_policy_and_full_replicas() -> None:
    for s in (stack(), stack(HALT, haltable=())):
        children = rendered(s)
        assert ("NetworkPolicy", "s-halt") not in children
        assert children["Deployment", "s-exec"]["spec"]["replicas"] == 1
    # The only difference a halt makes to the render: the replicas of the haltable services and the policy.
    before, after = rendered(stack()), rendered(stack(HALT))
    assert set(after) - set(before) == {("NetworkPolicy", "s-halt")}
    assert set(before) - set(after) == {("NetworkPolicy", "s-exec-egress")}  # its allows, which would undo the deny
    changed = [key for key in before.keys() & after.keys() if body_of(before[key]) != body_of(after[key])]
    assert changed == [("Deployment", "s-exec")]


def test_the_halt_batch_applies_the_policy_first_then_the_deployments_then_announces() -> None:
    s = stack(HALT)
    desired = list(rendered(s).values())
    actions = plan_halt_writes(s, desired, live(stack()), {}, previous=None)
    # The live egress allow goes before the deny is applied: while it exists the deny would deny nothing.
    assert actions[0] == Delete("NetworkPolicy", "s-exec-egress", s.namespace)
    assert [a.key for a in actions if isinstance(a, Apply)] == [("NetworkPolicy", "s-halt"), ("Deployment", "s-exec")]
    event = actions[-1]
    assert isinstance(event, PostEvent) and (event.event_type, event.reason) == ("Warning", "Halted")
    assert "alice" in event.message and "runaway orders" in event.message and "exec" in event.message
    # Already carried out and announced: nothing more.
    assert plan_halt_writes(s, desired, live(s), {}, previous=halt_status(s, None, NOW)) == []


def test_a_halted_service_reaches_nothing_and_its_allows_come_back_on_resume() -> None:
    def reaches_dns(halt: dict[str, Any] | None, service: str) -> bool:
        s = stack(halt)
        policies = [o for o in rendered(s).values() if o["kind"] == "NetworkPolicy"]
        source = pod(service, s.namespace, {Label.INSTANCE: s.name, Label.NAME: service})
        return allowed(policies, source, pod("dns", "kube-system", {"k8s-app": "kube-dns"}), 53, "UDP")

    assert not reaches_dns(HALT, "exec")
    assert reaches_dns(None, "exec")
    assert reaches_dns(HALT, "api")  # not haltable: untouched


def test_the_halt_batch_deletes_only_live_egress_allows_of_halted_services() -> None:
    s = stack(HALT, haltable=("api", "exec"))
    live_children = {k: v for k, v in live(stack()).items() if k != ("NetworkPolicy", "s-api-egress")}
    deletes = [
        a for a in plan_halt_writes(s, list(rendered(s).values()), live_children, {}, None) if isinstance(a, Delete)
    ]
    assert deletes == [Delete("NetworkPolicy", "s-exec-egress", s.namespace)]


def test_the_halt_batch_skips_a_name_held_by_someone_else() -> None:
    s = stack(HALT)
    taken = {("NetworkPolicy", "s-halt"): NameConflict("NetworkPolicy", "s-halt", "not created by this stack")}
    actions = plan_halt_writes(s, list(rendered(s).values()), live(stack()), taken, previous=None)
    assert [a.key for a in actions if isinstance(a, Apply)] == [("Deployment", "s-exec")]


def test_not_halted_plans_nothing_and_a_lifted_halt_only_announces_the_resume() -> None:
    s = stack()
    desired = list(rendered(s).values())
    assert plan_halt_writes(s, desired, live(s), {}, previous=None) == []
    assert plan_halt_writes(s, desired, {}, {}, previous=None) == []  # a new stack: the main batch creates it all
    was = HaltStatus(since=NOW, by="alice", reason="runaway orders", services=["exec"])
    actions = plan_halt_writes(s, desired, live(stack(HALT)), {}, previous=was)
    assert actions == [PostEvent("Normal", "Resumed", "Halt lifted; restoring exec")]


def test_the_status_shows_the_halt_and_the_stopped_services_do_not_degrade_the_stack() -> None:
    base = ready_stack()
    spec = base.spec.model_copy(
        update={
            "services": [base.spec.services[0].model_copy(update={"haltable": True})],
            "halt": TradingStack.model_validate({"metadata": {"name": "x"}, "spec": {"halt": HALT}}).spec.halt,
        }
    )
    halted = base.model_copy(update={"spec": spec})
    name = halted.spec.services[0].name
    workloads = all_ready()
    deployment = next(key for key in workloads if key[0] == "Deployment")
    workloads[deployment] = {**workloads[deployment], "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    status = compute_status(halted, observations(workloads), TradingStackStatus(), NOW)
    assert status.phase == "Ready"
    assert status.halt is not None and (status.halt.by, status.halt.reason) == ("alice", "runaway orders")
    assert status.halt.since == NOW and status.halt.services == [name]
    assert status.services[name].desired == 0
    condition = {c.type: c for c in status.conditions}
    assert (condition["Halted"].status, condition["Halted"].reason) == ("True", "Halted")
    assert name in condition["Halted"].message and "runaway orders" in condition["Halted"].message
    assert f"halted: {name}" in condition["Ready"].message
    assert ("tradingstack_halted", (), 1.0) in list(stack_samples(status, 0))
    # A later pass keeps `since`; lifting the halt clears it.
    later = compute_status(halted, observations(workloads), status, NOW + timedelta(minutes=5))
    assert later.halt is not None and later.halt.since == NOW
    resumed = compute_status(base, observations(all_ready()), later, NOW + timedelta(minutes=6))
    assert resumed.halt is None
    assert {c.type: c for c in resumed.conditions}["Halted"].reason == "NotHalted"
    assert ("tradingstack_halted", (), 0.0) in list(stack_samples(resumed, 0))


class RefusingApiServer(ApiServer):
    """Refuses every apply of one child, as an admission webhook would."""

    def __init__(self, refused: ChildKey) -> None:
        super().__init__()
        self.refused = refused

    async def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        if (obj["kind"], obj["metadata"]["name"]) == self.refused:
            self.calls.append(("refused", obj["kind"], obj["metadata"]["name"]))
            raise ApiPermanentError("admission webhook denied the request", 403)
        return await super().apply(obj, field_manager)


def halted_body(**halt: Any) -> dict[str, Any]:
    body = example_body()
    for service in body["spec"]["services"]:
        service["haltable"] = service["name"] == "execution"
    body["spec"]["halt"] = halt or HALT
    return body


async def test_a_halt_is_carried_out_first_while_another_child_is_refused_and_a_user_secret_missing() -> None:
    api = RefusingApiServer(("ConfigMap", "quantum-trader-gateway"))
    await one_pass(api, example_body())
    api.settle()
    await one_pass(api, example_body())
    body = halted_body()
    body["metadata"]["generation"] = 2
    body["spec"]["redis"]["existingSecret"] = "missing-redis-password"  # SecretInvalid: blocks Redis users
    status, calls = await one_pass(api, body)
    writes = [call for call in calls if call[0] in ("apply", "refused", "event")]
    assert writes[:3] == [
        ("apply", "NetworkPolicy", "quantum-trader-halt", FIELD_MANAGER),
        ("apply", "Deployment", "quantum-trader-execution", FIELD_MANAGER),
        ("event", "Warning", "Halted"),
    ]
    # Before the deny: the egress allow that would undo it, deleted once (the main batch does not prune it again).
    deletes = [call for call in calls if call[0] == "delete"]
    assert deletes == [("delete", "NetworkPolicy", "quantum-trader-execution-egress")]
    assert calls.index(deletes[0]) < calls.index(("apply", "NetworkPolicy", "quantum-trader-halt", FIELD_MANAGER))
    assert ("NetworkPolicy", "quantum-trader-execution-egress") not in api.objects
    # The main batch finds them matching: neither is applied twice.
    assert calls.count(("apply", "Deployment", "quantum-trader-execution", FIELD_MANAGER)) == 1
    assert api.objects["Deployment", "quantum-trader-execution"]["spec"]["replicas"] == 0
    degraded = {c.type: c for c in status.conditions}["Degraded"]
    assert degraded.status == "True" and "missing-redis-password" in degraded.message
    assert "ConfigMap/quantum-trader-gateway" in degraded.message
    assert status.halt is not None and status.halt.services == ["execution"]
    # Resume: the replicas come back, the policy is pruned, the Event says so.
    resumed = example_body()
    resumed["metadata"]["generation"] = 3
    status, calls = await one_pass(api, resumed)
    assert ("event", "Normal", "Resumed") in calls
    assert ("delete", "NetworkPolicy", "quantum-trader-halt") in calls
    assert ("NetworkPolicy", "quantum-trader-execution-egress") in api.objects  # its egress is allowed again
    assert api.objects["Deployment", "quantum-trader-execution"]["spec"]["replicas"] == 2
    assert status.halt is None
