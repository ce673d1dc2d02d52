"""The Patroni cluster in the stack's status: pure, from the members Patroni's REST API reports
(`contract.patroni_cluster`, read by `patroniclient`) and the status written before.

- `status.postgres.leader`, `replicas` (state, synchronous, lag), `lastFailover`;
- a change of leader is a planned switchover (Normal `PostgresSwitchover`) when it is the one recorded in
  `status.postgres.switchover` (the operator records a switchover before asking Patroni for it), else a failover
  (Warning `PostgresFailover`);
- `PostgresReady` is the leader's presence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from tradingstack.api import TradingStack
from tradingstack.api.status import PlannedSwitchover, PostgresFailover, PostgresMember, PostgresStatus
from tradingstack.components.assess import ConditionUpdate
from tradingstack.components.observe import STATEFULSET_REVISION_LABEL, ChildrenState, PodState
from tradingstack.contract import Annotation, Label, parse_switchover_request
from tradingstack.contract.patroni_cluster import RUNNING_STATES, PatroniCluster
from tradingstack.kube.actions import PostEvent
from tradingstack.reconcile.switchover import (
    Done,
    Refuse,
    RestartMember,
    Switchover,
    WaitFor,
    plan_postgres_rollout,
    plan_switchover,
)
from tradingstack.render.common import child_name
from tradingstack.render.patroni import COMPONENT
from tradingstack.render.patroni import scope as patroni_scope

SWITCHOVER_EXPIRY = timedelta(minutes=5)
"""A recorded switchover not seen done for this long failed (Patroni answers within about 30 s): the record is
dropped, so a later change of leader is a failover."""


@dataclass(frozen=True)
class PatroniObservation:
    postgres: PostgresStatus
    """status.postgres with the cluster's fields."""
    condition: ConditionUpdate
    """PostgresReady."""
    events: list[PostEvent] = field(default_factory=list)


def record_switchover(postgres: PostgresStatus, planned: PlannedSwitchover) -> PostgresStatus:
    """status.postgres with the switchover about to be asked for: written before the request."""
    return postgres.model_copy(update={"switchover": planned})


def observe_patroni(previous: PostgresStatus, cluster: PatroniCluster | None, now: datetime) -> PatroniObservation:
    """`cluster`: the members' view (None: no member answered)."""
    switchover = previous.switchover
    if switchover is not None and now - switchover.requested_at > SWITCHOVER_EXPIRY:
        switchover = None
    before = previous.leader or previous.leader_lost
    leader = cluster.leader if cluster is not None else None
    replicas = [
        PostgresMember(name=m.name, state=m.state, synchronous=m.is_sync, lag_bytes=m.lag_bytes)
        for m in (cluster.replicas if cluster is not None else ())
    ]
    update = {"replicas": replicas, "switchover": switchover}
    if leader is None:
        why = "no Patroni member answered" if cluster is None else "the Patroni cluster has no leader"
        postgres = previous.model_copy(update=update | {"leader": None, "leader_lost": before})
        return PatroniObservation(postgres, ConditionUpdate("False", "NoLeader", why))
    events: list[PostEvent] = []
    last_failover = previous.last_failover
    if before != leader.name:
        # Planned only as asked: from that leader to that candidate (a crash that promoted another is a failover).
        planned = switchover is not None and (switchover.leader, switchover.candidate) == (before, leader.name)
        if before is not None:
            last_failover = PostgresFailover(time=now, from_=before, to=leader.name, planned=planned)
            if planned and switchover is not None:
                message = f"Switchover from {before} to {leader.name} ({switchover.reason})"
                events.append(PostEvent("Normal", "PostgresSwitchover", message))
            else:
                message = f"Failover: {leader.name} leads in place of {before}, no switchover was asked for"
                events.append(PostEvent("Warning", "PostgresFailover", message))
        switchover = None
    postgres = previous.model_copy(
        update=update
        | {"leader": leader.name, "leader_lost": None, "last_failover": last_failover, "switchover": switchover}
    )
    running = sum(1 for m in replicas if m.state in RUNNING_STATES)
    message = f"{leader.name} leads; {running}/{len(replicas)} replicas running"
    if not leader.running:
        return PatroniObservation(postgres, ConditionUpdate("False", "LeaderNotRunning", message), events)
    return PatroniObservation(postgres, ConditionUpdate("True", "LeaderRunning", message), events)


REQUESTED = f"requested with {Annotation.SWITCHOVER}"


@dataclass(frozen=True)
class SwitchoverRequest:
    """What the pass does about the switchover annotation: `postgres` is status.postgres afterwards (the request
    marked handled, the switchover recorded); `switchover` the one to ask Patroni for, after writing `postgres`."""

    postgres: PostgresStatus
    switchover: Switchover | None = None
    events: list[PostEvent] = field(default_factory=list)


def plan_requested_switchover(
    trigger: str | None, postgres: PostgresStatus, cluster: PatroniCluster | None, now: datetime
) -> SwitchoverRequest:
    """Acts once on each new value of `Annotation.SWITCHOVER`: a switchover (recorded as planned before it is
    asked for), nothing when the member asked for leads already, a Warning when it is refused, or when the
    cluster is not ready for it within `SWITCHOVER_EXPIRY` of the request (until then each pass tries again)."""
    if trigger is None or trigger == postgres.handled_switchover:
        return SwitchoverRequest(postgres)
    handled = postgres.model_copy(update={"handled_switchover": trigger})
    requested_at, to = parse_switchover_request(trigger)
    step = plan_switchover(cluster, to)
    match step:
        case Switchover(leader, candidate):
            return planned_switchover(SwitchoverRequest(handled), leader, candidate, now, REQUESTED)
        case Done(leader):
            return SwitchoverRequest(
                handled, events=[PostEvent("Normal", "PostgresSwitchover", f"{leader} leads already")]
            )
        case Refuse(reason):
            return SwitchoverRequest(handled, events=[PostEvent("Warning", "PostgresSwitchoverFailed", reason)])
        case WaitFor(reason) if requested_at is None or now - requested_at > SWITCHOVER_EXPIRY:
            message = f"switchover {trigger} given up: {reason}"
            return SwitchoverRequest(handled, events=[PostEvent("Warning", "PostgresSwitchoverFailed", message)])
    return SwitchoverRequest(postgres)


def planned_switchover(
    request: SwitchoverRequest, leader: str, candidate: str, now: datetime, reason: str
) -> SwitchoverRequest:
    """`request` with the switchover a restart run plans (`reason`), recorded as planned before it is asked."""
    planned = PlannedSwitchover(leader=leader, candidate=candidate, requested_at=now, reason=reason)
    return SwitchoverRequest(
        record_switchover(request.postgres, planned), Switchover(leader, candidate), request.events
    )


@dataclass(frozen=True)
class PatroniMembersRead:
    """The members' REST API base URLs by pod name, and what they answered (None: none did)."""

    urls: Mapping[str, str]
    cluster: PatroniCluster | None
    outdated: Sequence[str] = ()
    """The members whose pod runs an older template than the StatefulSet's (`outdated_members`)."""


TEMPLATE_ROLLOUT = "rolling update of the pod template"


@dataclass(frozen=True)
class TemplateRollout:
    """The pass's step of a new pod template: `request` with the switchover it plans, if any; `delete` the member
    whose pod to delete (the StatefulSet re-creates it from the new template)."""

    request: SwitchoverRequest
    delete: str | None = None


def plan_template_rollout(
    request: SwitchoverRequest, members: PatroniMembersRead, instances: int, now: datetime
) -> TemplateRollout:
    """The next step of moving `members.outdated` onto the new template (`plan_postgres_rollout`: replicas first,
    then a switchover recorded as planned, then the old leader), unless `request` already asks for a switchover."""
    if request.switchover is not None or not members.outdated:
        return TemplateRollout(request)
    match plan_postgres_rollout(members.cluster, members.outdated, instances):
        case RestartMember(member):
            message = f"{member} deleted to start on the new pod template ({len(members.outdated)} of {instances} left)"
            event = PostEvent("Normal", "PostgresRollout", message)
            return TemplateRollout(replace(request, events=[*request.events, event]), delete=member)
        case Switchover(leader, candidate):
            return TemplateRollout(planned_switchover(request, leader, candidate, now, TEMPLATE_ROLLOUT))
    return TemplateRollout(request)


def switchover_failed(postgres: PostgresStatus, switchover: Switchover, answer: str) -> SwitchoverRequest:
    """Patroni did not carry out the switchover asked for (`answer`): the record is dropped, with a Warning."""
    message = f"switchover from {switchover.leader} to {switchover.candidate} failed: {answer}"
    failed = postgres.model_copy(update={"switchover": None})
    return SwitchoverRequest(failed, events=[PostEvent("Warning", "PostgresSwitchoverFailed", message)])


def member_pods(stack: TradingStack, pods: Iterable[PodState]) -> list[PodState]:
    """The Patroni members' live pods: those of the cluster's scope not being deleted."""
    scope = patroni_scope(stack)
    return [pod for pod in pods if pod.labels.get(Label.POSTGRES_CLUSTER) == scope and not pod.deleting]


def member_ips(stack: TradingStack, pods: Iterable[PodState]) -> dict[str, str]:
    """The Patroni members' pod IPs by pod name (the live member pods that have one)."""
    return {pod.name: pod.ip for pod in member_pods(stack, pods) if pod.ip}


def outdated_members(stack: TradingStack, state: ChildrenState) -> list[str]:
    """The Patroni members whose pod was made from an older template than the StatefulSet's current one (its
    status.updateRevision), by name; none while the StatefulSet reports no revision."""
    statefulset = state.workload("StatefulSet", child_name(stack, COMPONENT))
    revision = statefulset.update_revision if statefulset is not None else None
    if revision is None:
        return []
    return sorted(
        pod.name for pod in member_pods(stack, state.pods) if pod.labels.get(STATEFULSET_REVISION_LABEL) != revision
    )
