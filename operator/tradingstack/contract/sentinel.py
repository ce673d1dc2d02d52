"""What the sentinels answer about the master, as the Redis client reads it and the operator's planner decides on
it (`reconcile.redis_master`): plain data, so the planner needs no Redis client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class MasterAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pod_name(self) -> str:
        """First DNS label: the pod name when the host is a pod's stable DNS name."""
        return self.host.split(".", 1)[0]


@dataclass(frozen=True)
class MasterObservation:
    """Each sentinel's answer (None: unreachable or no master known) and the agreed master, if any."""

    answers: Mapping[str, MasterAddress | None]
    master: MasterAddress | None

    @property
    def agreeing(self) -> int:
        return sum(1 for answer in self.answers.values() if answer is not None and answer == self.master)

    @property
    def reachable(self) -> int:
        return sum(1 for answer in self.answers.values() if answer is not None)

    def describe(self) -> str:
        return f"{self.agreeing} of {len(self.answers)} sentinels report {self.master or 'no agreed master'}"


def agreed_master(answers: Mapping[str, MasterAddress | None]) -> MasterAddress | None:
    """The answer of a strict majority of ALL sentinels asked (not just the reachable ones): one sentinel cut
    off from its peers may still report a master that the others have already replaced."""
    counts = Counter(answer for answer in answers.values() if answer is not None)
    for address, count in counts.most_common(1):
        if count * 2 > len(answers):
            return address
    return None
