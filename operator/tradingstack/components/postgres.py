"""PostgreSQL: Service, StatefulSet, backup volume, backup CronJob and restore Jobs; backups are read from the
termination messages of the backup Jobs' pods."""

from __future__ import annotations

from tradingstack.api import TradingStack
from tradingstack.components.base import APPLIED, GENERATED_SECRETS, Component, uses
from tradingstack.components.observe import ChildrenState, JobRun
from tradingstack.render.common import child_name
from tradingstack.render.postgres import BACKUP_COMPONENT, render_postgres

COMPONENT = Component(
    name="postgres",
    kinds=(
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
        uses("CronJob", "batch/v1", "cronjobs", APPLIED, "scheduled backups", apply_rank=7),
        uses(
            "Job",
            "batch/v1",
            "jobs",
            "get list watch create patch",
            "restore Jobs (applied) and the CLI's list/restore Jobs (created, then polled)",
            apply_rank=8,
        ),
        uses("Pod", "v1", "pods", "list", "termination messages of the backup tool's pods"),
        GENERATED_SECRETS,
    ),
    enabled=lambda spec: spec.postgres.enabled,
    render=render_postgres,
)


def backup_runs(stack: TradingStack, children: ChildrenState) -> list[JobRun]:
    """The Jobs of the stack's backup CronJob, each with the backup tool's result."""
    cronjob = child_name(stack, BACKUP_COMPONENT)
    return [job for job in children.jobs if cronjob in job.owners]
