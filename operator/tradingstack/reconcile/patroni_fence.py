"""A Patroni member's pod that still carries the leader's role label after another member took the leader lock.

Patroni labels its own pod (`Label.POSTGRES_ROLE`) and the read-write Service selects that label, so a leader that
dies with its node cannot take its label off: until the node controller marks the node NotReady (50 s by default,
and only then the pod not ready) the Service keeps the dead pod's address beside the new leader's, and connections
spread over both fail about every other time. The leader lock ConfigMap is the DCS's word on who leads. A pod
labelled leader that does not hold the lock is a suspect; the operator asks its Patroni, and removes the label of
one that does not answer (a lost node, a dead container). Patroni labels its pod again on its next loop whenever the
label is not its role, so a removal never outlives a member that runs.

Sound because a pass lists the pods before it reads the lock: had the pod led when it was listed, a lock naming
another member afterwards means it lost the lock since. A member that answers is left to label itself (a demoted
leader does within a loop), so a planned switchover posts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tradingstack.api import TradingStack
from tradingstack.components.observe import PodState
from tradingstack.contract import Label, Patroni
from tradingstack.kube.actions import Action, Obj, PatchLabels, PostEvent
from tradingstack.reconcile.patroni_status import member_pods
from tradingstack.render.patroni import leader_lock_name

STALE_LEADER_REASON = "PostgresStaleLeaderLabel"


def lock_holder(stack: TradingStack, locks: Iterable[Obj]) -> str | None:
    """The member the leader lock ConfigMap names (None: no lock yet, or released)."""
    name = leader_lock_name(stack)
    for lock in locks:
        metadata = lock.get("metadata") or {}
        if metadata.get("name") == name:
            holder = (metadata.get("annotations") or {}).get(Patroni.LOCK_HOLDER_ANNOTATION)
            return holder if isinstance(holder, str) and holder else None
    return None


def stale_leader_suspects(stack: TradingStack, pods: Iterable[PodState], holder: str | None) -> list[str]:
    """The member pods labelled leader while the lock names another member, by name; none without a holder."""
    if holder is None:
        return []
    return sorted(
        pod.name
        for pod in member_pods(stack, pods)
        if pod.labels.get(Label.POSTGRES_ROLE) == Patroni.LEADER_ROLE and pod.name != holder
    )


def fence_actions(namespace: str, unanswered: Sequence[str], holder: str) -> list[Action]:
    """For each suspect whose Patroni did not answer: its role label removed, and a Warning naming both members."""
    actions: list[Action] = []
    for pod in unanswered:
        actions.append(PatchLabels("Pod", pod, namespace, {Label.POSTGRES_ROLE: None}))
        message = (
            f"{pod} was still labelled leader while {holder} holds Patroni's leader lock and its Patroni did not "
            f"answer: its role label was removed, so the read-write Service selects {holder} alone"
        )
        actions.append(PostEvent("Warning", STALE_LEADER_REASON, message))
    return actions
