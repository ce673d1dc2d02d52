"""PostgreSQL: Service, StatefulSet, backup volume, backup CronJob and restore Jobs; backups are read from the
termination messages of the backup Jobs' pods."""

from __future__ import annotations

from collections.abc import Mapping

from tradingstack.api import TradingStack
from tradingstack.components.assess import Assessment, ConditionUpdate, store_condition
from tradingstack.components.base import APPLIED, GENERATED_SECRETS, Component, KindUse, uses
from tradingstack.components.observe import ChildKey, ChildrenState, JobRun, WorkloadState
from tradingstack.render.common import child_name
from tradingstack.render.patroni import POD_RULES
from tradingstack.render.postgres import BACKUP_COMPONENT, PITR_ARCHIVE, PITR_DIFF, PITR_FULL, render_postgres
from tradingstack.render.postgres import COMPONENT as POSTGRES_COMPONENT

COMPONENT = Component(
    name="postgres",
    kinds=(
        uses("ConfigMap", "v1", "configmaps", APPLIED, "pgBackRest configuration and scripts (pitr)", apply_rank=2),
        uses("Service", "v1", "services", APPLIED, "the database address", apply_rank=4),
        uses("StatefulSet", "apps/v1", "statefulsets", APPLIED, "the database server", apply_rank=5),
        uses(
            "PersistentVolumeClaim",
            "v1",
            "persistentvolumeclaims",
            "get list watch create patch",
            "the backup volume (holds data: never deleted by the operator)",
            apply_rank=3,
        ),
        uses("CronJob", "batch/v1", "cronjobs", APPLIED, "scheduled backups (pg_dump, pgBackRest)", apply_rank=7),
        uses(
            "Job",
            "batch/v1",
            "jobs",
            "get list watch create patch",
            "restore Jobs (applied) and the CLI's list/restore Jobs (created, then polled)",
            apply_rank=8,
        ),
        uses(
            "Pod",
            "v1",
            "pods",
            "list delete patch",
            "termination messages of the backup tool's pods; a Patroni member's pod deleted to roll a new template; "
            "the leader label taken off a lost member's pod",
        ),
        uses("ServiceAccount", "v1", "serviceaccounts", APPLIED, "the Patroni pods' identity", apply_rank=2),
        uses("Role", "rbac.authorization.k8s.io/v1", "roles", APPLIED, "what the Patroni pods may do", apply_rank=2),
        uses(
            "RoleBinding",
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            APPLIED,
            "the Patroni pods' Role to their ServiceAccount",
            apply_rank=3,
        ),
        uses(
            "PodDisruptionBudget",
            "policy/v1",
            "poddisruptionbudgets",
            APPLIED,
            "one Patroni pod down at a time",
            apply_rank=9,
        ),
        GENERATED_SECRETS,
    ),
    enabled=lambda spec: spec.postgres.enabled,
    render=lambda stack, owner, cluster: render_postgres(stack, owner, cluster.domain),
)


PATRONI_GRANTS: tuple[KindUse, ...] = tuple(
    uses(kind, "v1", plural, " ".join(verbs), "granted to the Patroni pods' Role, so the operator must hold it too")
    for kind, plural, verbs in POD_RULES
)
"""What the operator grants the Patroni pods (`render.patroni.POD_RULES`): the API server lets a Role grant only
verbs its creator holds. In the chart's RBAC only, not among the kinds the operator lists, watches or prunes."""

MEMBER_ROLE_WATCH = uses(
    "Pod",
    "v1",
    "pods",
    "watch",
    "a Patroni member's role label changed (a failover, a switchover): its stack's pass runs at once "
    "(handlers.member_role_changed)",
)
"""The one watch of pods: not among the children's watches, which wake a pass on every change of their objects
(Patroni rewrites its pod's annotations every loop)."""


def backup_runs(stack: TradingStack, children: ChildrenState) -> list[JobRun]:
    """The Jobs of the stack's backup CronJob, each with the backup tool's result."""
    cronjob = child_name(stack, BACKUP_COMPONENT)
    return [job for job in children.jobs if cronjob in job.owners]


def pitr_runs(stack: TradingStack, children: ChildrenState) -> tuple[list[JobRun], list[JobRun]]:
    """The Jobs of the pgBackRest backup CronJobs (full, diff) and of the archive-status CronJob, with results."""
    backups = {child_name(stack, PITR_FULL), child_name(stack, PITR_DIFF)}
    archive = child_name(stack, PITR_ARCHIVE)
    return (
        [job for job in children.jobs if backups & set(job.owners)],
        [job for job in children.jobs if archive in job.owners],
    )


def assess(
    stack: TradingStack,
    workloads: Mapping[ChildKey, WorkloadState],
    backup: ConditionUpdate | None,
    leader: ConditionUpdate | None = None,
) -> Assessment:
    """PostgresReady from the database's StatefulSet, or for a Patroni cluster from `leader`, the presence of its
    leader (`reconcile.patroni_status`; None when the members were not read); BackupHealthy from `backup`, the
    backup runs' health (`reconcile.backup_health`, with `reconcile.pitr_health.with_pitr` when
    spec.postgres.pitr is enabled), None when it was not assessed; a False BackupHealthy degrades the stack."""
    spec = stack.spec.postgres
    if spec.enabled and (spec.backup.enabled or spec.pitr.enabled):
        backup = backup or ConditionUpdate("Unknown", "NoBackupYet", "no backup Job has finished")
    else:
        backup = ConditionUpdate("True", "Disabled", "backups are disabled")
    degraded = (("BackupUnhealthy", backup.message),) if backup.status == "False" else ()
    if not spec.enabled:
        ready = ConditionUpdate("True", "Disabled", "postgres.enabled is false")
        return Assessment({"PostgresReady": ready, "BackupHealthy": backup}, degraded=degraded)
    ready = store_condition(workloads.get(("StatefulSet", child_name(stack, POSTGRES_COMPONENT))), "Postgres")
    if spec.patroni and leader is not None and ready.reason != "NotCreated":
        ready = leader
    waiting = () if ready.status == "True" else ("postgres",)
    return Assessment({"PostgresReady": ready, "BackupHealthy": backup}, waiting, degraded)
