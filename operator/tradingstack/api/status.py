"""The TradingStack status: what the operator observed. Written only by the operator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from tradingstack.api.base import ApiModel
from tradingstack.contract.termination import BackupInfo

__all__ = ["BackupInfo"]  # defined with the backup tool's result, reported in status.postgres

ConditionType = Literal["Ready", "Progressing", "Degraded", "RedisReady", "PostgresReady", "BackupHealthy", "Halted"]
CONDITION_TYPES: tuple[ConditionType, ...] = (
    "Ready",
    "Progressing",
    "Degraded",
    "RedisReady",
    "PostgresReady",
    "BackupHealthy",
    "Halted",
)
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
HealthState = Literal["HEALTHY", "DEGRADED", "UNHEALTHY", "UNREACHABLE", "UNKNOWN"]


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: ConditionType
    """Condition type."""

    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""

    reason: str = Field(max_length=1024)
    """CamelCase reason for the last transition."""

    message: str = Field(default="", max_length=32768)
    """Human-readable details."""

    last_transition_time: datetime
    """When the status last changed."""

    observed_generation: int | None = None
    """Spec generation the condition was computed from."""


class ServiceStatus(ApiModel):
    """Observed state of one service."""

    ready: int = 0
    """Ready pods."""

    desired: int = 0
    """Desired pods."""

    health: HealthState = "UNKNOWN"
    """The worst state among the health documents of its running pods (read by pod IP, ready or not); UNREACHABLE
    when none could be read."""


class RedisStatus(ApiModel):
    """Observed Redis Sentinel state."""

    master: str | None = None
    """Pod that the sentinels agree is the master."""

    last_failover: datetime | None = None
    """When the operator last saw the master change."""


class PitrStatus(ApiModel):
    """Point-in-time recovery with pgBackRest, from the newest pitr-backup and pitr-archive-status Jobs."""

    last_full_backup: datetime | None = None
    """Stop time of the newest full base backup."""

    last_diff_backup: datetime | None = None
    """Stop time of the newest differential base backup."""

    recoverable_from: datetime | None = None
    """Earliest time a point-in-time restore can reach."""

    recoverable_to: datetime | None = None
    """Latest time a restore is known to reach: the newest backup's end (archived WAL usually reaches further)."""

    archive_lag_seconds: float | None = None
    """How long the oldest WAL segment not yet archived has waited (0 when none waits)."""

    last_archived_at: datetime | None = None
    """When the server last archived a WAL segment."""

    archive_failing: bool | None = None
    """The server's last archive_command failure came after its last success."""


class PostgresMember(ApiModel):
    """A replica of the Patroni cluster (`spec.postgres.instances` > 1) as Patroni's REST API reports it."""

    name: str
    """The pod."""

    state: str
    """Patroni's state of the member's server: running (streaming), starting, stopped, restarting, ..."""

    synchronous: bool = False
    """The synchronous standby (`spec.postgres.synchronous`)."""

    lag_bytes: int | None = None
    """Bytes of WAL the member's last reported position is behind the leader's; absent when Patroni does not
    know."""


class PostgresFailover(ApiModel):
    """A change of the Patroni cluster's leader."""

    time: datetime
    """When the operator saw the new leader."""

    from_: str | None = Field(default=None, alias="from")
    """The leader before (absent when the operator never saw one)."""

    to: str
    """The leader after."""

    planned: bool
    """A switchover the operator asked for (restart run, `tradingstack postgres switchover`), not a failover."""


class PlannedSwitchover(ApiModel):
    """A switchover the operator asked Patroni for and has not yet seen done."""

    leader: str
    """The leader to switch over."""

    candidate: str
    """The member to take over."""

    requested_at: datetime

    reason: str
    """Why: the restart run or the `tradingstack postgres switchover` request."""


class PostgresStatus(ApiModel):
    """Observed PostgreSQL and backup state."""

    leader: str | None = None
    """The Patroni cluster's leader (`spec.postgres.instances` > 1), as its members report it; absent while it
    has none or none answered."""

    leader_lost: str | None = None
    """While the cluster has no leader: the last leader seen (the `from` of the failover that follows)."""

    replicas: list[PostgresMember] = Field(default_factory=list)
    """The Patroni cluster's other members, by name."""

    last_failover: PostgresFailover | None = None
    """The last change of leader the operator saw."""

    switchover: PlannedSwitchover | None = None
    """A switchover the operator asked for and has not seen done yet: the next change of leader from that
    leader is planned (a Normal PostgresSwitchover Event), any other a failover (a Warning PostgresFailover)."""

    handled_switchover: str | None = None
    """The last value of the stack's switchover annotation acted on (`tradingstack postgres switchover`)."""

    last_backup: BackupInfo | None = None
    """Newest good backup."""

    last_backup_job: str | None = None
    """Name of the last finished backup Job."""

    last_backup_result: Literal["Succeeded", "Failed"] | None = None
    """Result of the last finished backup Job."""

    pitr: PitrStatus | None = None
    """Point-in-time recovery (spec.postgres.pitr), when enabled."""


class RestartsStatus(ApiModel):
    """State of the daily restarts."""

    last_run: datetime | None = None
    """Scheduled (or triggered) time of the last run."""

    last_result: Literal["Succeeded", "Failed", "Skipped"] | None = None
    """How the last run ended."""

    next_run: datetime | None = None
    """Next scheduled run."""

    in_progress: str | None = None
    """Service being restarted now (`postgres`: the Patroni cluster, restarted before the services)."""

    run_id: str | None = None
    """Identifier of the current or last run (stamped on the pod templates)."""

    done: list[str] = Field(default_factory=list)
    """Services already restarted in the current run."""

    stamped_at: datetime | None = None
    """When the service in progress was stamped; its serviceReadyTimeoutSeconds deadline counts from here."""

    members_done: list[str] = Field(default_factory=list)
    """While the run restarts the Patroni cluster (in progress `postgres`): the members whose server it restarted,
    the replicas first; the leader is switched over before its own restart."""

    handled_trigger: str | None = None
    """Last value of the restart-now annotation that was acted on (a run was started or skipped for it)."""

    held: datetime | None = None
    """Scheduled time of the run that was due while maintenance was closed and waits for it to open (it starts
    if maintenance opens within windowMinutes of that time, else it is skipped)."""

    paused: str | None = None
    """Why restarts are paused now (the stack is halted): no run starts (a due run is Skipped) and a run in
    progress stamps no further service until it is released. Unset otherwise."""


class MaintenanceStatus(ApiModel):
    """Whether disruptive actions may start now (spec.maintenance), and what waits for it."""

    open: bool = True
    """Inside a window (or no windows) and not frozen, or overridden with apply-now."""

    next_window: datetime | None = None
    """While closed: the next moment maintenance opens (freezes skipped; unset if not within a year)."""

    open_until: datetime | None = None
    """While open: when the current open period ends (a window's end or a freeze's start); unset when it does
    not end within the horizon searched (always open without windows or freezes)."""

    frozen_until: datetime | None = None
    """While a freeze is in force: when it (and any freeze overlapping it) ends."""

    freeze_reason: str | None = None
    """While a freeze is in force: its reason."""

    override_until: datetime | None = None
    """While an apply-now override is fresh: when it expires (maintenance counts as open until then)."""

    override_reason: str | None = None
    """While an apply-now override is fresh: the reason the person gave."""

    handled_override: str | None = None
    """Last apply-now annotation value a MaintenanceOverride Event was posted for (posted once per value)."""

    pending: list[str] = Field(default_factory=list)
    """Disruptive actions waiting for maintenance to open, e.g. a held restart run."""


class HaltStatus(ApiModel):
    """The kill switch as the operator carries it out (see spec.halt)."""

    since: datetime
    """When the operator first saw the halt (kept while it lasts, also when the reason changes)."""

    by: str | None = None
    """Who halted the stack (spec.halt.requestedBy)."""

    reason: str = Field(max_length=1024)
    """Why (spec.halt.reason)."""

    services: list[str] = Field(default_factory=list)
    """The haltable services stopped."""


RolloutStep = Literal["Idle", "Pending", "Baking", "Promoting", "RolledBack"]


class RolloutStatus(ApiModel):
    """State of one service's health-gated rollout (`reconcile.rollout`)."""

    current_revision: str | None = None
    """Revision of the service's Deployment as it runs now (its revision annotation)."""

    last_good_revision: str | None = None
    """The last revision fully rolled out and ready."""

    target_revision: str | None = None
    """The revision being rolled out, or last rolled out or back."""

    bad_revision: str | None = None
    """A revision rolled back: not tried again while the spec renders it."""

    step: RolloutStep = "Idle"
    """Idle (nothing to roll out), Pending (the target revision waits for maintenance to open), Baking (the canary
    pod runs the target revision), Promoting (the Deployment rolls to it), RolledBack (the target revision failed;
    the Deployment kept its template)."""

    started_at: datetime | None = None
    """When the canary of the target revision was started; its deadlineSeconds count from here."""

    healthy_since: datetime | None = None
    """Since when the canary has been Ready and HEALTHY without a break; it is promoted bakeSeconds later."""

    message: str = Field(default="", max_length=4096)
    """What the rollout waits for, or why it was rolled back."""


class TradingStackStatus(ApiModel):
    """Status of a TradingStack."""

    observed_generation: int | None = None
    """Spec generation the status describes."""

    phase: Phase = "Pending"
    """Pending, Progressing, Ready, Degraded or Failed."""

    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded, RedisReady, PostgresReady, BackupHealthy, Halted."""

    ready_summary: str = "0/0"
    """Ready services / all services (printer column)."""

    services: dict[str, ServiceStatus] = Field(default_factory=dict)
    """Per-service ready/desired pods and health."""

    redis: RedisStatus = Field(default_factory=RedisStatus)
    """Redis master tracking."""

    postgres: PostgresStatus = Field(default_factory=PostgresStatus)
    """Backups."""

    restarts: RestartsStatus = Field(default_factory=RestartsStatus)
    """Daily restarts."""

    rollouts: dict[str, RolloutStatus] = Field(default_factory=dict)
    """Per-service health-gated rollouts: revisions and step."""

    maintenance: MaintenanceStatus = Field(default_factory=MaintenanceStatus)
    """Change windows and freezes now, and what waits for them."""

    halt: HaltStatus | None = None
    """Set while the stack is halted (spec.halt): since when, by whom, why, which services."""
