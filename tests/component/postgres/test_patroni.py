"""Three real Patroni + PostgreSQL 15 processes on 127.0.0.1 running the rendered Patroni configuration and env.

Patroni's Kubernetes DCS needs an API server, so the configuration's `kubernetes` section (and the
`PATRONI_KUBERNETES_*` env) is swapped for `etcd3` against a real etcd on 127.0.0.1; each member gets its own
ports and directories in place of the pod's. The DCS timings are scaled down (ttl 12 s instead of 30 s, keeping
`loop_wait + 2 * retry_timeout <= ttl`) so a failover fits the component tier's bound; everything else is the
rendered text: bootstrap, post_bootstrap (the stack's database), pg_hba, pg_rewind, synchronous_mode.

Each run: one leader is elected and both replicas stream; the leader's Patroni and postgres are killed with
SIGKILL while a writer commits; a replica must be promoted within ttl + loop_wait + retry_timeout; a checker
polling every member every 100 ms never sees two servers out of recovery; the old leader, started again, rejoins
as a replica. With
synchronous mode every commit acknowledged before the kill is on the new leader.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import psycopg
import pytest

from tests.component.postgres.patroni_harness import (
    MEMBERS,
    TIMINGS,
    Checker,
    Cluster,
    Member,
    Writer,
    get_json,
    http_status,
    streaming,
)
from tests.support import wait_for
from tradingstack.render import patroni

WRITE_SECONDS = 2.0
"""How long the writer commits before the kill (a few hundred rows at most)."""


def _answers(member: Member, paths: list[str]) -> bool:
    return all(http_status(f"http://127.0.0.1:{member.rest_port}{path}") == 200 for path in paths)


def _replayed(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    query = "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= pg_current_wal_lsn()"
    return conn.execute(query).fetchone() == (MEMBERS - 1,)


@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "synchronous"])
def test_a_killed_leader_fails_over_to_a_replica_and_rejoins(cluster_factory: Any, synchronous: bool) -> None:
    cluster: Cluster = cluster_factory(synchronous)
    started = time.monotonic()
    leader = wait_for(cluster.primaries, timeout=40, interval=0.5, what="a leader")[0]
    wait_for(lambda: streaming(leader, MEMBERS - 1, synchronous), timeout=30, interval=0.5, what="replicas")
    print(f"\nbootstrap: {leader.name} leads, {MEMBERS - 1} replicas stream after {time.monotonic() - started:.1f}s")
    # The rendered probes' paths answer 200 on the leader and on streaming replicas alike.
    probes = [p["httpGet"]["path"] for p in (patroni.probes()[k] for k in ("readinessProbe", "livenessProbe"))]
    for member in cluster.members:
        # A replica turns ready at Patroni's next loop after its server runs, as the kubelet would see it.
        wait_for(functools.partial(_answers, member, probes), timeout=10, interval=0.2, what=f"{member.name} ready")
    with leader.connect() as conn:
        conn.execute("CREATE TABLE ticks (id integer PRIMARY KEY)")
        # Every replica has the table before the writes start: only commits may be lost in an async failover.
        wait_for(lambda: _replayed(conn), timeout=10, interval=0.2, what="the table on the replicas")

    checker, writer = Checker(cluster), Writer(leader)
    checker.start()
    writer.start()
    time.sleep(WRITE_SECONDS)
    killed_at = time.monotonic()
    leader.kill()
    acknowledged = list(writer.acknowledged)
    writer.done.set()
    writer.join(timeout=10)

    others = [m for m in cluster.members if m is not leader]
    # The leader key lapses at most ttl after its last renewal and a replica's next loop (loop_wait) takes it; its
    # DCS calls may retry for up to retry_timeout on a loaded machine before it promotes.
    deadline = TIMINGS["ttl"] + TIMINGS["loop_wait"] + TIMINGS["retry_timeout"]
    new_leader = wait_for(
        lambda: [m for m in others if m.is_primary()], timeout=deadline + 10, interval=0.1, what="a promotion"
    )[0]
    failover = time.monotonic() - killed_at
    with new_leader.connect() as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM ticks").fetchall()}
    lost = sorted(set(acknowledged) - present)
    print(
        f"failover: {new_leader.name} promoted {failover:.1f}s after the kill (ttl {TIMINGS['ttl']}s, loop_wait"
        f" {TIMINGS['loop_wait']}s); {len(acknowledged)} commits acknowledged, {len(lost)} missing on the new leader"
    )
    assert failover <= deadline

    cluster.start(leader)  # the old leader's pod back: it must rejoin as a replica (pg_rewind)
    wait_for(lambda: leader.is_primary() is False, timeout=30, interval=0.5, what="the old leader rejoining")
    wait_for(lambda: streaming(new_leader, MEMBERS - 1, False), timeout=20, interval=0.5, what="it streaming")
    with leader.connect() as conn:
        assert leader.is_primary() is False
        wait_for(
            lambda: conn.execute("SELECT count(*) FROM ticks").fetchone() == (len(present),),
            timeout=10, interval=0.2, what="the rejoined replica caught up",
        )  # fmt: skip
    checker.done.set()
    checker.join()
    assert checker.most == 1, "two servers accepted writes at once"
    if synchronous:
        assert lost == [], "an acknowledged commit was lost in the failover"
    state = get_json(f"http://127.0.0.1:{leader.rest_port}/patroni")
    assert state is not None and state["role"] == "replica"
    print(f"rejoin: {leader.name} streams from {new_leader.name}; the run took {time.monotonic() - started:.1f}s")


def test_a_leader_stopped_as_the_kubelet_stops_it_hands_over_before_its_lock_lapses(cluster_factory: Any) -> None:
    """A deleted leader pod: the kubelet sends the image's STOPSIGNAL to the container's first process. Patroni
    must stop its server and release the leader lock, so the synchronous standby is promoted before the lock's
    ttl would have lapsed (a member killed holding it waits out the ttl, the test above), with every acknowledged
    commit; the member started again under its name (the StatefulSet's new pod) rejoins as a replica."""
    cluster: Cluster = cluster_factory(True)
    leader = wait_for(cluster.primaries, timeout=40, interval=0.5, what="a leader")[0]
    wait_for(lambda: streaming(leader, MEMBERS - 1, True), timeout=30, interval=0.5, what="replicas")
    with leader.connect() as conn:
        conn.execute("CREATE TABLE ticks (id integer PRIMARY KEY)")
        wait_for(lambda: _replayed(conn), timeout=10, interval=0.2, what="the table on the replicas")
    checker, writer = Checker(cluster), Writer(leader)
    checker.start()
    writer.start()
    time.sleep(WRITE_SECONDS)
    stopped_at = time.monotonic()
    leader.stop_as_kubelet()
    stopped = time.monotonic() - stopped_at
    writer.done.set()
    writer.join(timeout=10)
    others = [m for m in cluster.members if m is not leader]
    new_leader = wait_for(
        lambda: [m for m in others if m.is_primary()], timeout=TIMINGS["ttl"] + 10, interval=0.1, what="a promotion"
    )[0]
    takeover = time.monotonic() - stopped_at
    with new_leader.connect() as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM ticks").fetchall()}
    print(f"\nstop: {leader.name} exited {stopped:.1f}s after the stop signal, {new_leader.name} promoted after "
          f"{takeover:.1f}s (ttl {TIMINGS['ttl']}s); {len(writer.acknowledged)} commits acknowledged")  # fmt: skip
    assert takeover < TIMINGS["ttl"], "the lock was not released: the replicas waited for it to lapse"
    assert sorted(set(writer.acknowledged) - present) == [], "an acknowledged commit was lost in the handover"
    cluster.start(leader)
    wait_for(lambda: leader.is_primary() is False, timeout=30, interval=0.5, what="the old leader rejoining")
    wait_for(lambda: streaming(new_leader, MEMBERS - 1, False), timeout=20, interval=0.5, what="it streaming")
    checker.done.set()
    checker.join()
    assert checker.most == 1, "two servers accepted writes at once"
