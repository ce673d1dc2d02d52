"""Planned work on a Patroni cluster without a crash failover: pure decisions from the members Patroni reports
(`contract.patroni_cluster`), one step at a time, carried out by the caller through Patroni's REST API
(`patroniclient`).

- `plan_postgres_restart`: restart every member's server, the replicas first, one at a time; then switch the
  leader over to a replica already restarted, and only then restart the old leader (a replica by then). The
  only write pause is the switchover's. Level-based: the caller keeps the names restarted so far (the planner
  decides the next step from them and the live members), so an interrupted run resumes where it stopped.
- `plan_postgres_rollout`: a new pod template of the StatefulSet (updateStrategy OnDelete) reaches the members in
  the same order, a member's "restart" being the deletion of its pod (the StatefulSet re-creates it from the new
  template). Level-based on the pods' template revisions.
- `plan_switchover`: the one switchover `tradingstack postgres switchover STACK [--to POD]` asks for.

Nothing is done while a member's server does not run (one member down at a time) or while Patroni is paused.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from tradingstack.contract.patroni_cluster import PatroniCluster, PatroniMember
from tradingstack.render.patroni import MAXIMUM_LAG_ON_FAILOVER


@dataclass(frozen=True)
class RestartMember:
    """Restart the server of `name` (a replica) through Patroni (`POST /restart` on that member)."""

    name: str


@dataclass(frozen=True)
class Switchover:
    """Switch the leader `leader` over to `candidate` (`POST /switchover`)."""

    leader: str
    candidate: str


@dataclass(frozen=True)
class WaitFor:
    """Nothing to do now (`reason`): ask again on a later pass."""

    reason: str


@dataclass(frozen=True)
class Done:
    """Every member was restarted (or, for a switchover, `leader` leads)."""

    leader: str


@dataclass(frozen=True)
class Refuse:
    """The request cannot be carried out (`reason`), waiting does not help."""

    reason: str


PostgresStep = RestartMember | Switchover | WaitFor | Done | Refuse


def switchover_candidate(
    cluster: PatroniCluster, among: Collection[str] | None = None, max_lag_bytes: int = MAXIMUM_LAG_ON_FAILOVER
) -> PatroniMember | None:
    """The replica to hand the leader over to: a running one with a known lag within `max_lag_bytes` (Patroni
    would not promote one further behind), `among` those names when given; a synchronous standby first (in
    synchronous mode Patroni promotes only one), then the least lag, then by name."""
    eligible = [
        m
        for m in cluster.replicas
        if m.running and m.lag_bytes is not None and m.lag_bytes <= max_lag_bytes and (among is None or m.name in among)
    ]
    return min(eligible, key=lambda m: (not m.is_sync, m.lag_bytes or 0, m.name), default=None)


def _unsteered(cluster: PatroniCluster | None) -> WaitFor | None:
    """Why the cluster cannot be steered at all now: nobody answers, Patroni is paused, or there is no leader."""
    if cluster is None:
        return WaitFor("no Patroni member answered")
    if cluster.paused:
        return WaitFor("Patroni is paused")
    if cluster.leader is None:
        return WaitFor("the cluster has no leader")
    return None


def _blocked(cluster: PatroniCluster | None) -> WaitFor | PatroniMember:
    """Why nothing may be done now, else the leader."""
    if (unsteered := _unsteered(cluster)) is not None:
        return unsteered
    assert cluster is not None and cluster.leader is not None
    leader = cluster.leader
    if down := [f"{m.name} is {m.state or 'unknown'}" for m in cluster.members if not m.running]:
        return WaitFor(", ".join(down))
    return leader


def plan_postgres_restart(
    cluster: PatroniCluster | None, restarted: Collection[str], max_lag_bytes: int = MAXIMUM_LAG_ON_FAILOVER
) -> PostgresStep:
    """The next step of restarting every member: `restarted` are the members whose server this run restarted."""
    leader = _blocked(cluster)
    if isinstance(leader, WaitFor):
        return leader
    assert cluster is not None
    for replica in cluster.replicas:
        if replica.name not in restarted:
            return RestartMember(replica.name)
    if leader.name not in restarted:
        candidate = switchover_candidate(cluster, restarted, max_lag_bytes)
        if candidate is None:
            return WaitFor(f"no restarted replica within {max_lag_bytes} bytes of {leader.name} to switch over to")
        return Switchover(leader.name, candidate.name)
    return Done(leader.name)


def plan_postgres_rollout(
    cluster: PatroniCluster | None,
    outdated: Collection[str],
    instances: int,
    max_lag_bytes: int = MAXIMUM_LAG_ON_FAILOVER,
) -> PostgresStep:
    """The next step of moving the members onto the StatefulSet's new pod template: `outdated` are the member pods
    made from an older one, `instances` the members the spec asks for. `RestartMember` means: delete that pod.
    A replica on an old template that does not run goes first, whatever the others do: it serves nothing, and
    only its re-creation can bring it back (a template that made it fail, then mended). Otherwise waits while a
    member is missing (a deleted pod not re-created yet, or not yet registered with Patroni) or down."""
    if (unsteered := _unsteered(cluster)) is not None:
        return unsteered
    assert cluster is not None
    registered = {m.name: m for m in cluster.members}
    for name in sorted(outdated):
        member = registered.get(name)
        if member is None or (not member.running and not member.is_leader):
            return RestartMember(name)
    if len(cluster.members) < instances:
        return WaitFor(f"{len(cluster.members)} of {instances} members registered with Patroni")
    updated = [m.name for m in cluster.members if m.name not in outdated]
    return plan_postgres_restart(cluster, updated, max_lag_bytes)


def plan_switchover(
    cluster: PatroniCluster | None, to: str | None, max_lag_bytes: int = MAXIMUM_LAG_ON_FAILOVER
) -> PostgresStep:
    """The switchover asked for (`to`: the member to lead, None: the best replica); `Done` when `to` leads."""
    if cluster is not None and to is not None:
        if cluster.member(to) is None:
            return Refuse(f"{to} is not a member ({', '.join(m.name for m in cluster.members) or 'none'})")
        if (current := cluster.leader) is not None and current.name == to:
            return Done(to)
    leader = _blocked(cluster)
    if isinstance(leader, WaitFor):
        return leader
    assert cluster is not None
    candidate = switchover_candidate(cluster, None if to is None else [to], max_lag_bytes)
    if candidate is None:
        target = to or "any replica"
        return WaitFor(f"{target} is not a running replica within {max_lag_bytes} bytes of {leader.name}")
    return Switchover(leader.name, candidate.name)
