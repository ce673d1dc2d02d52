"""Operations a person asks for from the command line: trigger a restart run, override maintenance, ask for a
switchover of the Patroni leader, halt and resume a stack (the kill switch, `spec.halt`), list and restore backups.

Backup list and restore run the backup tool as a Job next to the stack's backup volume and read the tool's
result from the pod's termination message, so they need no access to pod logs.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradingstack.api import TradingStack
from tradingstack.components.observe import job_run, pod_state
from tradingstack.contract import Annotation, Label, format_switchover_request, termination
from tradingstack.kube.client import Kube, Obj
from tradingstack.overview import overview_document
from tradingstack.render.pitr_jobs import info_job, runs_pitr_backup
from tradingstack.render.postgres import render_list_job, render_restore_job
from tradingstack.schedule.maintenance import format_override

JOB_POLL_SECONDS = 2.0


class OperationError(Exception):
    """The operation could not be carried out; the message says why."""


@dataclass(frozen=True)
class JobOutcome:
    name: str
    succeeded: bool
    result: termination.TerminationMessage | None
    """The tool's result from the termination message (None when none was written)."""


async def load_stack(kube: Kube, namespace: str, name: str) -> TradingStack:
    body = await kube.get_stack(namespace, name)
    if body is None:
        raise OperationError(f"TradingStack {namespace}/{name} not found")
    return TradingStack.model_validate(body)


async def stack_overview(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The document of `tradingstack status` (see `tradingstack.overview`)."""
    body = await kube.get_stack(namespace, name)
    if body is None:
        raise OperationError(f"TradingStack {namespace}/{name} not found")
    return overview_document(body, await kube.warning_events(namespace, name))


async def trigger_restart(kube: Kube, namespace: str, name: str) -> str:
    """Starts a restart run now; the value (a timestamp) makes each trigger a new run."""
    await load_stack(kube, namespace, name)
    value = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await kube.annotate_stack(namespace, name, {Annotation.RESTART_NOW: value})
    return value


async def apply_now(kube: Kube, namespace: str, name: str, reason: str, now: datetime | None = None) -> str:
    """Opens maintenance (spec.maintenance) for an hour from `now`: sets Annotation.APPLY_NOW to
    `<now>/<reason>`; the operator records it with a MaintenanceOverride Event. Returns the value."""
    if not reason.strip():
        raise OperationError("a reason is required")
    await load_stack(kube, namespace, name)
    value = format_override(now or datetime.now(UTC), reason.strip())
    await kube.annotate_stack(namespace, name, {Annotation.APPLY_NOW: value})
    return value


async def request_switchover(kube: Kube, namespace: str, name: str, to: str | None, now: datetime | None = None) -> str:
    """Asks the operator for one switchover of the stack's Patroni leader (to the member `to`, or the replica
    Patroni finds best): sets Annotation.SWITCHOVER; the operator records it in status.postgres.switchover, asks
    Patroni and posts a PostgresSwitchover Event (PostgresSwitchoverFailed when refused). Returns the value."""
    stack = await load_stack(kube, namespace, name)
    if not (stack.spec.postgres.enabled and stack.spec.postgres.patroni):
        raise OperationError(f"{namespace}/{name} runs one Postgres instance (spec.postgres.instances): no switchover")
    value = format_switchover_request(now or datetime.now(UTC), to)
    await kube.annotate_stack(namespace, name, {Annotation.SWITCHOVER: value})
    return value


async def requester(kube: Kube) -> str | None:
    """Who is asking: the identity the API server knows, else the kubeconfig's user, else $USER."""
    return await kube.whoami() or kube.kubeconfig_user or os.environ.get("USER") or None


async def halt_stack(kube: Kube, namespace: str, name: str, reason: str, requested_by: str | None) -> str | None:
    """Sets spec.halt: the operator stops the haltable services at once. Returns who it is recorded as."""
    await load_stack(kube, namespace, name)
    by = requested_by or await requester(kube)
    halt: dict[str, str] = {"reason": reason}
    if by:
        halt["requestedBy"] = by[:256]
    await kube.merge_patch_stack(namespace, name, {"spec": {"halt": halt}})
    return by


async def resume_stack(kube: Kube, namespace: str, name: str) -> bool:
    """Removes spec.halt; False when the stack was not halted (nothing written)."""
    stack = await load_stack(kube, namespace, name)
    if stack.spec.halt is None:
        return False
    await kube.merge_patch_stack(namespace, name, {"spec": {"halt": None}})
    return True


async def run_tool_job(kube: Kube, job: Obj, timeout_seconds: float) -> JobOutcome:
    created = await kube.create(job)
    if created is None:
        raise OperationError("the Job already exists")
    name, namespace = created["metadata"]["name"], created["metadata"]["namespace"]
    deadline = time.monotonic() + timeout_seconds
    while (current := await kube.get("Job", name, namespace)) is None or job_run(current).succeeded is None:
        if time.monotonic() > deadline:
            raise OperationError(f"Job {name} did not finish within {timeout_seconds:.0f}s")
        await asyncio.sleep(JOB_POLL_SECONDS)
    pods = await kube.list_objects("Pod", namespace, {Label.JOB_NAME: name})
    run = job_run(current, [pod_state(pod) for pod in pods])
    return JobOutcome(name, bool(run.succeeded), run.result)


async def list_backups(kube: Kube, namespace: str, name: str, timeout_seconds: float, domain: str) -> JobOutcome:
    stack = await load_stack(kube, namespace, name)
    return await run_tool_job(kube, render_list_job(stack, stack.owner_reference(), domain), timeout_seconds)


async def list_pitr_backups(kube: Kube, namespace: str, name: str, timeout_seconds: float) -> JobOutcome | None:
    """`pitr-info` in a Job made from the stack's pitr-backup CronJob; None when the stack has none (the
    operator renders it only with spec.postgres.pitr enabled, so its presence is the live answer)."""
    cronjobs = await kube.list_objects("CronJob", namespace, {Label.STACK: name})
    backup = next((c for c in cronjobs if runs_pitr_backup(c)), None)
    if backup is None:
        return None
    return await run_tool_job(kube, info_job(backup), timeout_seconds)


async def restore_backup(
    kube: Kube, namespace: str, name: str, backup: str, force: bool, timeout_seconds: float, domain: str
) -> JobOutcome:
    stack = await load_stack(kube, namespace, name)
    job = render_restore_job(stack, stack.owner_reference(), backup, force, domain)
    return await run_tool_job(kube, job, timeout_seconds)
