"""What Patroni 3.0's REST API answers at `GET /cluster` (`Patroni.CLUSTER_PATH`), parsed in this one place: the
operator's status (`reconcile.patroni_status`), its switchover planner (`reconcile.switchover`) and the component
tests read the members through `parse_cluster`. Pure: the client (`kube.patroni`) hands it the bytes.

The document (patroni/utils.py `cluster_as_json`): `{"members": [{"name", "role", "state", "api_url", "host",
"port", "timeline", "lag", "pending_restart", "tags"}, ...], "pause": true?, "scheduled_switchover": {...}?}`;
`role` is `leader` (or `standby_leader`), `sync_standby` or `replica`; `lag` (not on the leader) is the bytes of
WAL the member's last reported position is behind the leader's, or `"unknown"`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

LEADER_ROLES: Final = frozenset({"leader", "standby_leader"})
SYNC_ROLE: Final = "sync_standby"
RUNNING_STATES: Final = frozenset({"running", "streaming"})
"""A member whose server runs (3.0.2 reports `running`; later releases `streaming` for a replica that streams)."""


class ClusterDocumentError(ValueError):
    """The answer is not a `/cluster` document."""


@dataclass(frozen=True)
class PatroniMember:
    name: str
    role: str
    """`leader`, `standby_leader`, `sync_standby` or `replica`."""
    state: str
    """Patroni's state of the member's server: `running`, `streaming`, `starting`, `stopped`, `restarting`, ..."""
    host: str | None = None
    lag_bytes: int | None = None
    """WAL bytes behind the leader (None on the leader and when Patroni reports `unknown`)."""
    timeline: int | None = None
    pending_restart: bool = False

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def is_sync(self) -> bool:
        return self.role == SYNC_ROLE

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


@dataclass(frozen=True)
class PatroniCluster:
    members: tuple[PatroniMember, ...]
    paused: bool = False

    @property
    def leader(self) -> PatroniMember | None:
        return next((m for m in self.members if m.is_leader), None)

    @property
    def replicas(self) -> tuple[PatroniMember, ...]:
        return tuple(m for m in self.members if not m.is_leader)

    def member(self, name: str) -> PatroniMember | None:
        return next((m for m in self.members if m.name == name), None)


def _member(raw: Any) -> PatroniMember:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("role"), str):
        raise ClusterDocumentError(f"a member without name and role: {raw!r}")
    lag = raw.get("lag")
    timeline = raw.get("timeline")
    return PatroniMember(
        name=raw["name"],
        role=raw["role"],
        state=str(raw.get("state", "")),
        host=raw["host"] if isinstance(raw.get("host"), str) else None,
        lag_bytes=lag if isinstance(lag, int) and not isinstance(lag, bool) and lag >= 0 else None,
        timeline=timeline if isinstance(timeline, int) and not isinstance(timeline, bool) else None,
        pending_restart=raw.get("pending_restart") is True,
    )


def parse_cluster(document: bytes | str | Mapping[str, Any]) -> PatroniCluster:
    """The members of a `/cluster` answer (raw bytes or already decoded), sorted by name as Patroni sorts them."""
    raw: Any = json.loads(document) if isinstance(document, bytes | str) else document
    if not isinstance(raw, Mapping) or not isinstance(raw.get("members"), list):
        raise ClusterDocumentError("no members list")
    members = sorted((_member(m) for m in raw["members"]), key=lambda m: m.name)
    return PatroniCluster(tuple(members), paused=raw.get("pause") is True)


def agreed_view(answers: Iterable[PatroniCluster | None]) -> PatroniCluster | None:
    """One view of the cluster from the answers of several members (None: no answer): each member reads the DCS,
    so their views differ only while it changes. The first answer that names a leader, else the first answer."""
    views: Sequence[PatroniCluster] = [a for a in answers if a is not None]
    return next((v for v in views if v.leader is not None), views[0] if views else None)
