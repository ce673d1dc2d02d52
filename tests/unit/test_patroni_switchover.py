"""The `/cluster` parser (`contract.patroni_cluster`) on a real answer of Patroni 3.0.2 (captured from the component
test's three members, tests/unit/fixtures/patroni_cluster.json) and variants of it, and the switchover planner
(`reconcile.switchover`) on what it parses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.spec import TradingStackSpec
from tradingstack.api.status import PlannedSwitchover, PostgresFailover, PostgresMember, PostgresStatus, RestartsStatus
from tradingstack.components.assess import ConditionUpdate
from tradingstack.components.observe import STATEFULSET_REVISION_LABEL, ChildrenState, observe
from tradingstack.contract import Label
from tradingstack.contract.patroni_cluster import ClusterDocumentError, PatroniCluster, agreed_view, parse_cluster
from tradingstack.kube.actions import WriteStatus
from tradingstack.reconcile.patroni_status import (
    SWITCHOVER_EXPIRY,
    TEMPLATE_ROLLOUT,
    PatroniMembersRead,
    SwitchoverRequest,
    TemplateRollout,
    observe_patroni,
    outdated_members,
    plan_template_rollout,
    record_switchover,
)
from tradingstack.reconcile.restart_runner import plan_restarts
from tradingstack.reconcile.restarts import (
    DeploymentObservation,
    Fail,
    Finish,
    PostgresMembers,
    RestartPostgresMember,
    Stamp,
    SwitchoverPostgres,
    Wait,
    plan_restart_step,
)
from tradingstack.reconcile.switchover import (
    Done,
    Refuse,
    RestartMember,
    Switchover,
    WaitFor,
    plan_postgres_restart,
    plan_postgres_rollout,
    plan_switchover,
)

CAPTURED = Path(__file__).parent / "fixtures" / "patroni_cluster.json"
"""Leader quant-postgres-1, replicas -0 and -2 running with lag 0."""


def document(members: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The captured answer with the named members' fields replaced (None removes a field)."""
    raw: dict[str, Any] = json.loads(CAPTURED.read_text())
    for member in raw["members"]:
        for key, value in (members or {}).get(member["name"].removeprefix("quant-postgres-"), {}).items():
            if value is None:
                member.pop(key, None)
            else:
                member[key] = value
    return raw


def cluster(members: Mapping[str, Mapping[str, Any]] | None = None) -> PatroniCluster:
    return parse_cluster(json.dumps(document(members)).encode())


def test_the_captured_answer_parses_into_its_leader_and_replicas() -> None:
    parsed = parse_cluster(CAPTURED.read_bytes())
    assert parsed.leader is not None and parsed.leader.name == "quant-postgres-1"
    assert parsed.leader.lag_bytes is None and parsed.leader.timeline == 1 and parsed.leader.running
    assert [(m.name, m.role, m.state, m.lag_bytes) for m in parsed.replicas] == [
        ("quant-postgres-0", "replica", "running", 0),
        ("quant-postgres-2", "replica", "running", 0),
    ]
    assert not parsed.paused


def test_variants_unknown_lag_sync_standby_pause_and_a_stopped_member() -> None:
    parsed = parse_cluster(
        {**document({"0": {"lag": "unknown", "state": "stopped"}, "2": {"role": "sync_standby"}}), "pause": True}
    )
    zero, two = parsed.member("quant-postgres-0"), parsed.member("quant-postgres-2")
    assert zero is not None and zero.lag_bytes is None and not zero.running
    assert two is not None and two.is_sync and not two.is_leader
    assert parsed.paused


def test_no_leader_while_the_lock_is_free() -> None:
    assert cluster({"1": {"role": "replica"}}).leader is None


@pytest.mark.parametrize("raw", [b"[]", b"{}", b'{"members": [{"role": "leader"}]}', b'{"members": "x"}', b"nope"])
def test_what_is_not_a_cluster_document_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_cluster(raw)
    assert isinstance(caught.value, ClusterDocumentError | json.JSONDecodeError)


def test_the_agreed_view_prefers_an_answer_with_a_leader() -> None:
    leaderless, full = cluster({"1": {"role": "replica"}}), cluster()
    assert agreed_view([None, leaderless, full]) is full
    assert agreed_view([None, leaderless]) is leaderless
    assert agreed_view([None, None]) is None


# The planned restart: replicas first, one at a time, then the switchover, then the old leader.


def test_a_restart_run_restarts_the_replicas_then_switches_over_then_restarts_the_old_leader() -> None:
    healthy = cluster()
    assert plan_postgres_restart(healthy, []) == RestartMember("quant-postgres-0")
    assert plan_postgres_restart(healthy, ["quant-postgres-0"]) == RestartMember("quant-postgres-2")
    both = ["quant-postgres-0", "quant-postgres-2"]
    assert plan_postgres_restart(healthy, both) == Switchover("quant-postgres-1", "quant-postgres-0")
    switched = cluster({"0": {"role": "leader", "lag": None}, "1": {"role": "replica", "lag": 0}})
    assert plan_postgres_restart(switched, both) == RestartMember("quant-postgres-1")
    assert plan_postgres_restart(switched, [*both, "quant-postgres-1"]) == Done("quant-postgres-0")


def test_nothing_is_restarted_while_a_member_is_down_or_without_a_leader_or_paused() -> None:
    restarting = cluster({"0": {"state": "restarting"}})
    assert plan_postgres_restart(restarting, []) == WaitFor("quant-postgres-0 is restarting")
    assert plan_postgres_restart(cluster({"1": {"role": "replica"}}), []) == WaitFor("the cluster has no leader")
    assert plan_postgres_restart(None, []) == WaitFor("no Patroni member answered")
    paused = parse_cluster({**document(), "pause": True})
    assert plan_postgres_restart(paused, []) == WaitFor("Patroni is paused")


def test_the_switchover_goes_to_the_sync_standby_then_the_least_lag_and_never_to_a_lagging_replica() -> None:
    both = ["quant-postgres-0", "quant-postgres-2"]
    sync = cluster({"2": {"role": "sync_standby", "lag": 100}})
    assert plan_postgres_restart(sync, both) == Switchover("quant-postgres-1", "quant-postgres-2")
    lagging = cluster({"0": {"lag": 5000}})
    assert plan_postgres_restart(lagging, both) == Switchover("quant-postgres-1", "quant-postgres-2")
    far = cluster({"0": {"lag": 2 << 20}, "2": {"lag": "unknown"}})
    step = plan_postgres_restart(far, both)
    assert isinstance(step, WaitFor) and "no restarted replica" in step.reason


def test_a_switchover_on_request() -> None:
    healthy = cluster()
    assert plan_switchover(healthy, None) == Switchover("quant-postgres-1", "quant-postgres-0")
    assert plan_switchover(healthy, "quant-postgres-2") == Switchover("quant-postgres-1", "quant-postgres-2")
    assert plan_switchover(healthy, "quant-postgres-1") == Done("quant-postgres-1")
    refused = plan_switchover(healthy, "quant-postgres-7")
    assert isinstance(refused, Refuse) and "not a member" in refused.reason
    stopped = plan_switchover(cluster({"2": {"state": "stopped"}}), "quant-postgres-0")
    assert stopped == WaitFor("quant-postgres-2 is stopped")


# The status (`reconcile.patroni_status`): leader, replicas, failover or switchover, PostgresReady.

NOW = datetime(2026, 12, 7, 4, 30, tzinfo=UTC)


def test_the_status_shows_the_leader_and_the_replicas_with_lag() -> None:
    seen = observe_patroni(PostgresStatus(), cluster({"2": {"role": "sync_standby", "lag": 42}}), NOW)
    assert seen.postgres.leader == "quant-postgres-1"
    assert seen.postgres.replicas == [
        PostgresMember(name="quant-postgres-0", state="running", synchronous=False, lag_bytes=0),
        PostgresMember(name="quant-postgres-2", state="running", synchronous=True, lag_bytes=42),
    ]
    assert seen.condition == ConditionUpdate("True", "LeaderRunning", "quant-postgres-1 leads; 2/2 replicas running")
    assert seen.events == [] and seen.postgres.last_failover is None  # the first leader seen is no failover
    document = seen.postgres.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert document["replicas"][1] == {
        "name": "quant-postgres-2",
        "state": "running",
        "synchronous": True,
        "lagBytes": 42,
    }


def test_an_unasked_change_of_leader_is_a_failover_with_a_warning() -> None:
    before = PostgresStatus(leader="quant-postgres-0")
    seen = observe_patroni(before, cluster(), NOW)
    assert seen.postgres.last_failover == PostgresFailover(
        time=NOW, from_="quant-postgres-0", to="quant-postgres-1", planned=False
    )
    assert [(e.event_type, e.reason) for e in seen.events] == [("Warning", "PostgresFailover")]
    assert seen.postgres.model_dump(by_alias=True)["lastFailover"]["from"] == "quant-postgres-0"
    assert observe_patroni(seen.postgres, cluster(), NOW).events == []  # once


def test_the_recorded_switchover_is_planned_and_cleared() -> None:
    planned = PlannedSwitchover(
        leader="quant-postgres-0", candidate="quant-postgres-1", requested_at=NOW, reason="restart run X"
    )
    before = record_switchover(PostgresStatus(leader="quant-postgres-0"), planned)
    seen = observe_patroni(before, cluster(), NOW + timedelta(seconds=5))
    assert seen.postgres.switchover is None
    assert seen.postgres.last_failover is not None and seen.postgres.last_failover.planned
    assert [(e.event_type, e.reason) for e in seen.events] == [("Normal", "PostgresSwitchover")]
    assert "restart run X" in seen.events[0].message
    # Not yet done: the record stays, until it expires.
    waiting = observe_patroni(before, cluster({"0": {"role": "leader"}, "1": {"role": "replica"}}), NOW)
    assert waiting.postgres.switchover == planned and waiting.events == []
    # A failover to another member while the switchover was pending is no switchover.
    other = observe_patroni(before, cluster({"2": {"role": "leader"}, "1": {"role": "replica"}}), NOW)
    assert [(e.event_type, e.reason) for e in other.events] == [("Warning", "PostgresFailover")]
    expired = observe_patroni(
        before, cluster({"0": {"role": "leader"}, "1": {"role": "replica"}}), NOW + SWITCHOVER_EXPIRY * 2
    )
    assert expired.postgres.switchover is None


def test_no_leader_is_not_ready_and_the_failover_after_it_names_the_lost_leader() -> None:
    lost = observe_patroni(PostgresStatus(leader="quant-postgres-0"), cluster({"1": {"role": "replica"}}), NOW)
    assert lost.condition.status == "False" and lost.condition.reason == "NoLeader"
    assert lost.postgres.leader is None and lost.postgres.leader_lost == "quant-postgres-0"
    unreachable = observe_patroni(lost.postgres, None, NOW)
    assert unreachable.condition.message == "no Patroni member answered"
    assert unreachable.postgres.leader_lost == "quant-postgres-0"
    back = observe_patroni(unreachable.postgres, cluster(), NOW)
    assert back.postgres.last_failover is not None and back.postgres.last_failover.from_ == "quant-postgres-0"
    assert back.postgres.leader_lost is None and back.condition.status == "True"


# The daily restart run with a Patroni cluster (`reconcile.restarts`): the cluster first, then the services.

SCHEDULED = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)


def spec_with_services() -> TradingStackSpec:
    services = [{"name": "api", "image": "example/api:1", "port": 8000}]
    return TradingStackSpec.model_validate(
        {"services": services, "postgres": {"instances": 3}, "restarts": {"schedule": "30 4 * * *"}}
    )


def settled_api(restarted_at: str | None) -> DeploymentObservation:
    return DeploymentObservation("api", restarted_at, 3, 3, 2, 2, 2, 2, 2)


class SimulatedPatroni:
    """The captured answer's three members, as Patroni evolves them under restarts and switchovers."""

    def __init__(self) -> None:
        self.leader, self.restarting = "quant-postgres-1", ""
        self.restarts: list[str] = []

    def view(self) -> PatroniCluster:
        changes = {
            name: {"role": "leader" if f"quant-postgres-{name}" == self.leader else "replica",
                   "state": "restarting" if f"quant-postgres-{name}" == self.restarting else "running",
                   "lag": None if f"quant-postgres-{name}" == self.leader else 0}
            for name in ("0", "1", "2")
        }  # fmt: skip
        return cluster(changes)

    def carry_out(self, decision: object) -> None:
        self.restarting = ""
        if isinstance(decision, RestartPostgresMember):
            assert decision.member != self.leader, "the leader restarted without a switchover"
            self.restarts.append(decision.member)
            self.restarting = decision.member  # seen restarting on the next tick
        elif isinstance(decision, SwitchoverPostgres):
            assert decision.leader == self.leader
            self.leader = decision.candidate


def test_a_run_restarts_the_patroni_cluster_replicas_first_then_the_services() -> None:
    patroni, api_restarted = SimulatedPatroni(), None
    status, now, decisions = RestartsStatus(), SCHEDULED + timedelta(seconds=5), []
    for _ in range(20):
        step = plan_restart_step(
            spec_with_services(), status, degraded=False, trigger=None,
            deployments=[settled_api(api_restarted)], now=now, postgres=PostgresMembers(patroni.view()),
        )  # fmt: skip
        status, decision = step.status, step.decision
        decisions.append(decision)
        patroni.carry_out(decision)
        if isinstance(decision, Stamp):
            api_restarted = decision.run_id
        if isinstance(decision, Finish):
            break
        now += timedelta(seconds=15)
    kinds = [type(d).__name__ for d in decisions]
    assert [k for k in kinds if k != "Wait"] == [
        "RestartPostgresMember", "RestartPostgresMember", "SwitchoverPostgres", "RestartPostgresMember",
        "Stamp", "Finish",
    ]  # fmt: skip
    assert patroni.restarts == ["quant-postgres-0", "quant-postgres-2", "quant-postgres-1"]
    assert status.last_result == "Succeeded" and status.done == ["postgres", "api"] and status.members_done == []
    switchover = next(d for d in decisions if isinstance(d, SwitchoverPostgres))
    assert (switchover.leader, switchover.candidate) == ("quant-postgres-1", "quant-postgres-0")
    assert switchover.event.reason == "RestartingPostgres"


def test_a_run_whose_patroni_cluster_stays_without_a_leader_fails_at_postgres_and_restarts_no_service() -> None:
    leaderless = PostgresMembers(cluster({"1": {"role": "replica"}}))
    status, now = RestartsStatus(), SCHEDULED + timedelta(seconds=5)
    first = plan_restart_step(
        spec_with_services(), status, degraded=False, trigger=None, deployments=[settled_api(None)], now=now,
        postgres=leaderless,
    )  # fmt: skip
    assert isinstance(first.decision, Wait) and first.decision.service == "postgres"
    late = plan_restart_step(
        spec_with_services(), first.status, degraded=False, trigger=None, deployments=[settled_api(None)],
        now=now + timedelta(seconds=601), postgres=leaderless,
    )  # fmt: skip
    assert isinstance(late.decision, Fail) and late.decision.service == "postgres"
    assert "the cluster has no leader" in late.decision.reason and "not restarted: api" in late.decision.event.message


def test_without_patroni_members_the_run_is_as_before() -> None:
    step = plan_restart_step(
        spec_with_services(), RestartsStatus(), degraded=False, trigger=None, deployments=[settled_api(None)],
        now=SCHEDULED + timedelta(seconds=5),
    )  # fmt: skip
    assert isinstance(step.decision, Stamp) and step.decision.service == "api"


def test_the_runner_writes_the_members_done_before_the_restart_is_asked_for() -> None:
    stack = TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "u"},
            "spec": spec_with_services().model_dump(by_alias=True),
        }
    )
    plan = plan_restarts(
        stack, SCHEDULED - timedelta(days=1), TradingStackStatus(), has_status=True, degraded=False, workloads={},
        now=SCHEDULED + timedelta(seconds=5), postgres=PostgresMembers(cluster()),
    )  # fmt: skip
    assert isinstance(plan.postgres, RestartPostgresMember) and plan.postgres.member == "quant-postgres-0"
    write = plan.actions[0]
    assert isinstance(write, WriteStatus)
    assert write.document["restarts"]["membersDone"] == ["quant-postgres-0"]
    assert write.document["restarts"]["inProgress"] == "postgres"
    assert [type(a).__name__ for a in plan.actions] == ["WriteStatus", "PostEvent"]


# A new pod template (updateStrategy OnDelete): the members' pods deleted in the restart's order.


def test_a_new_template_reaches_the_replicas_first_then_the_leader_after_a_switchover() -> None:
    members = ["quant-postgres-0", "quant-postgres-1", "quant-postgres-2"]
    healthy = cluster()
    assert plan_postgres_rollout(healthy, members, 3) == RestartMember("quant-postgres-0")
    assert plan_postgres_rollout(healthy, members[1:], 3) == RestartMember("quant-postgres-2")
    assert plan_postgres_rollout(healthy, ["quant-postgres-1"], 3) == Switchover("quant-postgres-1", "quant-postgres-0")
    switched = cluster({"0": {"role": "leader", "lag": None}, "1": {"role": "replica", "lag": 0}})
    assert plan_postgres_rollout(switched, ["quant-postgres-1"], 3) == RestartMember("quant-postgres-1")


def test_the_switchover_of_a_rollout_goes_only_to_a_member_on_the_new_template() -> None:
    # -0 (the candidate a restart would pick) still runs the old template: the leader waits for -2.
    assert plan_postgres_rollout(cluster(), ["quant-postgres-0", "quant-postgres-1"], 3) == RestartMember(
        "quant-postgres-0"
    )
    lagging = cluster({"2": {"lag": 5000}})
    assert plan_postgres_rollout(lagging, ["quant-postgres-1"], 3, max_lag_bytes=1000) == Switchover(
        "quant-postgres-1", "quant-postgres-0"
    )
    assert isinstance(plan_postgres_rollout(lagging, ["quant-postgres-1", "quant-postgres-0"], 3, 1000), RestartMember)


def test_a_rollout_waits_for_a_deleted_member_to_come_back_and_for_every_member_to_run() -> None:
    raw = document()
    raw["members"] = [m for m in raw["members"] if m["name"] != "quant-postgres-0"]
    missing = parse_cluster(raw)
    assert plan_postgres_rollout(missing, ["quant-postgres-1", "quant-postgres-2"], 3) == WaitFor(
        "2 of 3 members registered with Patroni"
    )
    starting = cluster({"0": {"state": "starting"}})
    assert plan_postgres_rollout(starting, ["quant-postgres-1"], 3) == WaitFor("quant-postgres-0 is starting")
    assert plan_postgres_rollout(None, ["quant-postgres-1"], 3) == WaitFor("no Patroni member answered")


def stack_state(update_revision: str | None, pods: Mapping[str, tuple[str, bool]]) -> ChildrenState:
    """The Patroni StatefulSet with `update_revision` and its pods: name -> (template revision, being deleted)."""
    statefulset = {"kind": "StatefulSet", "metadata": {"name": "quant-postgres"}, "spec": {"replicas": 3},
                   "status": {"updateRevision": update_revision} if update_revision else {}}  # fmt: skip
    children: dict[tuple[str, str], dict[str, Any]] = {("StatefulSet", "quant-postgres"): statefulset}
    for name, (revision, deleting) in pods.items():
        labels = {Label.POSTGRES_CLUSTER: "quant-postgres", STATEFULSET_REVISION_LABEL: revision}
        meta: dict[str, Any] = {"name": name, "labels": labels}
        if deleting:
            meta["deletionTimestamp"] = "2026-12-07T12:00:00Z"
        children[("Pod", name)] = {"kind": "Pod", "metadata": meta, "status": {"phase": "Running"}}
    return observe(children)


def test_outdated_members_are_the_live_pods_of_the_cluster_made_from_another_revision() -> None:
    stack = TradingStack(metadata={"name": "quant", "namespace": "trading"}, spec=TradingStackSpec.model_validate(
        {"postgres": {"instances": 3}, "services": []}))  # fmt: skip
    pods = {"quant-postgres-0": ("r2", False), "quant-postgres-1": ("r1", False), "quant-postgres-2": ("r1", True)}
    assert outdated_members(stack, stack_state("r2", pods)) == ["quant-postgres-1"]
    assert outdated_members(stack, stack_state(None, pods)) == []  # no revision reported yet
    assert outdated_members(stack, stack_state("r1", pods)) == ["quant-postgres-0"]


def test_a_rollout_step_yields_to_a_requested_switchover_and_records_its_own_as_planned() -> None:
    read = PatroniMembersRead({}, cluster(), ["quant-postgres-1"])
    asked = SwitchoverRequest(PostgresStatus(), Switchover("quant-postgres-1", "quant-postgres-2"))
    assert plan_template_rollout(asked, read, 3, NOW) == TemplateRollout(asked)
    rollout = plan_template_rollout(SwitchoverRequest(PostgresStatus()), read, 3, NOW)
    assert rollout.delete is None and rollout.request.switchover == Switchover("quant-postgres-1", "quant-postgres-0")
    planned = rollout.request.postgres.switchover
    assert planned is not None and planned.reason == TEMPLATE_ROLLOUT and planned.candidate == "quant-postgres-0"
    replica = plan_template_rollout(SwitchoverRequest(PostgresStatus()), replace(read, outdated=["quant-postgres-2"]),
                                    3, NOW)  # fmt: skip
    assert replica.delete == "quant-postgres-2" and replica.request.switchover is None
    assert [(e.event_type, e.reason) for e in replica.request.events] == [("Normal", "PostgresRollout")]
    assert plan_template_rollout(SwitchoverRequest(PostgresStatus()), replace(read, outdated=[]), 3, NOW).delete is None


def test_a_replica_down_on_an_old_template_is_deleted_first_so_a_mended_template_can_replace_it() -> None:
    # -2 failed on the previous template (start failed); the spec was mended: its pod goes first, whatever else.
    failed = cluster({"2": {"state": "start failed"}, "0": {"state": "starting"}})
    assert plan_postgres_rollout(failed, ["quant-postgres-1", "quant-postgres-2"], 3) == RestartMember(
        "quant-postgres-2"
    )
    raw = document()
    raw["members"] = [m for m in raw["members"] if m["name"] != "quant-postgres-2"]  # never registered
    assert plan_postgres_rollout(parse_cluster(raw), ["quant-postgres-2"], 3) == RestartMember("quant-postgres-2")
    # Never the leader, and nothing while Patroni is paused.
    down_leader = cluster({"1": {"state": "stopped"}})
    assert plan_postgres_rollout(down_leader, ["quant-postgres-1"], 3) == WaitFor("quant-postgres-1 is stopped")
    paused = parse_cluster({**document({"2": {"state": "start failed"}}), "pause": True})
    assert plan_postgres_rollout(paused, ["quant-postgres-2"], 3) == WaitFor("Patroni is paused")
