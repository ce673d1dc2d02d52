"""`tradingstack status STACK`: one screen with the state of a stack, from its status and its Warning Events.

Pure: the CLI reads the stack and its Events and passes them in with `now`; the same document backs `-o json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tradingstack.api import TradingStackStatus

RECENT_WARNINGS = 5


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = int((now - value).total_seconds())
    ago = seconds >= 0
    seconds = abs(seconds)
    span = f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"
    return f"{value:%Y-%m-%d %H:%M:%SZ} ({span} ago)" if ago else f"{value:%Y-%m-%d %H:%M:%SZ} (in {span})"


def overview_document(body: Mapping[str, Any], warnings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What `-o json` prints: the stack's status as stored and its most recent Warning Events."""
    recent = sorted(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))[-RECENT_WARNINGS:]
    return {
        "namespace": body["metadata"]["namespace"],
        "name": body["metadata"]["name"],
        "status": dict(body.get("status") or {}),
        "warnings": [
            {"reason": e.get("reason"), "message": e.get("message"), "count": e.get("count", 1),
             "lastTimestamp": e.get("lastTimestamp")}
            for e in recent
        ],
    }  # fmt: skip


def _maintenance_lines(status: TradingStackStatus, now: datetime) -> list[str]:
    """The Maintenance section, left out while maintenance is open with nothing to say (no windows, no freezes)."""
    m = status.maintenance
    if m.open and m.open_until is None and not m.pending and m.override_reason is None:
        return []
    lines = ["", "Maintenance", f"  open: {'yes' if m.open else 'no'}"]
    if m.override_reason is not None:
        lines.append(f"  apply-now override until {_when(m.override_until, now)}: {m.override_reason}")
    if m.freeze_reason is not None:
        lines.append(f"  frozen until {_when(m.frozen_until, now)}: {m.freeze_reason}")
    if m.open and m.open_until is not None:
        lines.append(f"  open until: {_when(m.open_until, now)}")
    if not m.open:
        lines.append(f"  next window: {_when(m.next_window, now) if m.next_window else 'none within a year'}")
    lines += [f"  pending: {item}" for item in m.pending]
    return lines


def overview_text(document: Mapping[str, Any], now: datetime) -> str:
    status = TradingStackStatus.model_validate(document["status"])
    conditions = {c.type: c for c in status.conditions}
    lines = [f"TradingStack {document['namespace']}/{document['name']}: {status.phase}"]
    if (halt := status.halt) is not None:
        lines.append(f"  HALTED since {_when(halt.since, now)} by {halt.by or 'unknown'}: {halt.reason}")
        lines.append(f"    stopped, egress cut: {', '.join(halt.services) or 'none (no service is haltable)'}")
    for kind in ("Ready", "Degraded"):
        if (c := conditions.get(kind)) is not None:
            lines.append(f"  {kind}: {c.status} ({c.reason}){': ' + c.message if c.message else ''}")
    lines += ["", f"Services ({status.ready_summary} ready)", f"  {'NAME':<24} {'READY':<8} HEALTH"]
    lines += [f"  {name:<24} {f'{s.ready}/{s.desired}':<8} {s.health}" for name, s in sorted(status.services.items())]
    redis = conditions.get("RedisReady")
    lines += ["", "Redis", f"  ready: {redis.status + ' (' + redis.message + ')' if redis else 'unknown'}"]
    lines += [f"  master: {status.redis.master or 'none agreed'}",
              f"  last failover: {_when(status.redis.last_failover, now)}"]  # fmt: skip
    backup, last = conditions.get("BackupHealthy"), status.postgres.last_backup
    lines += [
        "",
        "Postgres",
        f"  backups healthy: {backup.status + ' (' + backup.reason + ')' if backup else 'unknown'}",
    ]
    if last is not None:
        lines.append(f"  last good backup: {last.name}, {last.size_bytes} bytes, {_when(last.time, now)}")
    else:
        lines.append("  last good backup: none")
    if status.postgres.last_backup_result is not None:
        lines.append(
            f"  last backup Job: {status.postgres.last_backup_job or '?'} {status.postgres.last_backup_result}"
        )
    restarts = status.restarts
    lines += ["", "Restarts", f"  last run: {_when(restarts.last_run, now)} {restarts.last_result or ''}".rstrip(),
              f"  next run: {_when(restarts.next_run, now)}"]  # fmt: skip
    if restarts.in_progress:
        lines.append(f"  in progress: {restarts.in_progress} (done: {', '.join(restarts.done) or 'none'})")
    if restarts.paused:
        lines.append(f"  paused: {restarts.paused}")
    lines += _maintenance_lines(status, now)
    rollouts = [(name, r) for name, r in sorted(status.rollouts.items()) if r.step != "Idle"]
    if rollouts:
        lines += ["", "Rollouts"]
        lines += [
            f"  {name}: {r.step} {r.target_revision} (runs {r.current_revision}): {r.message}" for name, r in rollouts
        ]
    lines += ["", "Recent warnings"]
    lines += [f"  {w['reason']}: {w['message']}" for w in document["warnings"]] or ["  none"]
    return "\n".join(lines) + "\n"
