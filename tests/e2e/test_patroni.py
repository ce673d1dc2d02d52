"""e2e of a Patroni cluster on the real node (issue 20): `spec.postgres.instances: 3` with `synchronous: true`, one
demo-service `api` that uses PostgreSQL only, no Redis, no gateway, `deletionPolicy: Delete`. One stack serves the
module; the tests run in file order and the last one deletes it.

- Ready: one leader (role label `master`), two replicas streaming from it (`pg_stat_replication` on the leader,
  one of them `sync`), the read-write Service's ready endpoints exactly the leader's pod, the `-replicas`
  Service's exactly the two others, and status.postgres naming the same leader and replicas.
- The leader's container killed from containerd, the leader's pod deleted, and `tradingstack postgres switchover`:
  while a writer in the api pod commits a numbered row every ~20 ms through the read-write Service (the injected
  DATABASE_URL), and a checker polls every member's server every 100 ms. Afterwards the cluster is settled as
  above (the Service and the status follow the leader, the old leader serves as a replica), every commit the
  writer saw acknowledged is on the leader and on both replicas, and no two servers were ever out of recovery at
  the same time.
- A new pod template (the members' memory limit changed): the replicas' pods are re-created first, the leader is
  switched over, its pod goes last; the same checks, one write pause.
- Deleting the stack (Delete): Patroni's lock ConfigMaps, which carry the stack as owner, are garbage-collected.
- Then a second stack, two members archiving to S3 with pgBackRest: a backup, a failover onto a new timeline, a
  backup of the new leader, and a new cluster bootstrapped from the repository with the rows of both timelines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.component.postgres.pitr import STANZA_CREATED
from tests.e2e.helpers import ChartInstaller
from tests.e2e.patroni import (
    WRITE_BEFORE_SECONDS,
    Ha,
    PrimaryChecker,
    Writer,
    apply_stack,
    assert_commits_kept,
    cli,
    container_restarts,
    event_uids,
    pod_uid,
    postgres_status,
    stack_events,
    wait_event,
    wait_failover_recorded,
    wait_settled,
)
from tests.e2e.s3 import s3_for_pods
from tests.e2e.test_chart_install import stack_status
from tests.e2e.test_real_containers import Stack, kill_container, run_cronjob
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import wait_for_condition
from tradingstack.components.observe import STATEFULSET_REVISION_LABEL
from tradingstack.render import patroni, pitr
from tradingstack.render.common import child_name
from tradingstack.render.postgres import PITR_DIFF, PITR_FULL

# The first test also waits for the module's stack: three members started one after the other (OrderedReady),
# the replicas from a base backup, on a node the earlier modules loaded.
pytestmark = [pytest.mark.cluster, pytest.mark.real_containers, pytest.mark.timeout(900)]
NAME = "ha"
INSTANCES = 3
READY_TIMEOUT = 420
SWITCHOVER_PAUSE_LIMIT = 10.0


def stack_document(namespace: str) -> dict[str, Any]:
    """The smallest Patroni stack: three members, synchronous, one service on PostgreSQL only, no Redis, no
    gateway, no backup CronJob. Requests: 3 x 100m (members) + 100m (api) + 100m (the operator's one replica)."""
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "deletionPolicy": "Delete",
            "gateway": {"enabled": False},
            "redis": {"enabled": False},
            "postgres": {"instances": INSTANCES, "synchronous": True, "backup": {"enabled": False}},
            "services": [
                {
                    "name": "api",
                    "image": "ghcr.io/quantumtrader/demo-service:0.1.0",
                    "port": 8000,
                    "uses": ["postgres"],
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def ha(cluster: Cluster, real_node: list[str], images: None, crd: None) -> Iterator[Ha]:
    installer = ChartInstaller(cluster)
    try:
        namespace = installer.namespace("e2e-patroni")
        # One operator replica: the node has 2 CPUs (see test_real_containers.start_example).
        installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
        yield apply_stack(Stack(cluster, namespace, real_node), stack_document(namespace), READY_TIMEOUT)
    finally:
        installer.cleanup()


def test_the_patroni_stack_is_ready_with_one_leader_and_two_streaming_replicas(ha: Ha) -> None:
    settled = wait_settled(ha, "one leader and two streaming replicas, the Services and the status on them")
    seen: dict[str, Any] = {}

    def postgres_ready() -> bool:
        conditions = {c["type"]: c for c in stack_status(ha.cluster, ha.namespace, NAME)["conditions"]}
        seen.update(conditions.get("PostgresReady", {}))
        return seen.get("status") == "True" and settled.leader in seen.get("message", "")

    try:
        wait_for(postgres_ready, timeout=30, interval=2, what=f"PostgresReady True from the leader {settled.leader}")
    except AssertionError as err:
        raise AssertionError(f"{err}; PostgresReady: {seen}") from err
    # Patroni names the synchronous standby in its /cluster answer a loop after the replica streams in sync (the
    # server's pg_stat_replication, which `wait_settled` checked); the status shows it from the next pass.
    replicas: dict[str, Any] = {}

    def synchronous_standby() -> bool:
        replicas.update({r["name"]: r for r in postgres_status(ha).get("replicas", [])})
        return any(r.get("synchronous") for r in replicas.values())

    try:
        wait_for(synchronous_standby, timeout=60, interval=2, what="a synchronous standby in status.postgres")
    except AssertionError as err:
        raise AssertionError(f"{err}; status.postgres.replicas: {replicas}") from err
    for pod in ha.stack.pods(ha.selector):
        assert pod["spec"]["nodeName"] in ha.stack.nodes, pod["metadata"]["name"]
    print(f"leader {settled.leader}, replicas {replicas}")


def test_a_killed_leader_container_keeps_every_acknowledged_commit(ha: Ha) -> None:
    """SIGKILL of the leader's container (Patroni and its server) from containerd. The kubelet restarts the
    container at once; Patroni 3.0 then still holds the leader lock (ttl 30 s) and restarts a crashed leader in
    place rather than failing over (primary_start_timeout 300 s), unless the lock lapsed first, when a replica is
    promoted and the old leader rejoins as a replica. Either way: one server out of recovery at a time, the
    Service, the role labels and the status on one leader, every acknowledged commit kept; a promotion is a
    Warning PostgresFailover and status.postgres.lastFailover, a restart in place neither."""
    before = wait_settled(ha, "the cluster settled before the kill")
    old, restarts = before.leader, container_restarts(ha, before.leader)
    known, failover_before = event_uids(ha), postgres_status(ha).get("lastFailover")
    with PrimaryChecker(ha) as checker, Writer(ha) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        killed_at = time.time()
        kill_container(ha.stack, old, "postgres")
        wait_for(lambda: container_restarts(ha, old) > restarts, timeout=120, interval=1,
                 what=f"the kubelet restarting {old}'s killed postgres container")  # fmt: skip
        after = wait_settled(ha, f"one leader after killing {old}'s container")
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    assert_commits_kept(ha, after, written, killed_at)
    outcome = f"{after.leader} promoted" if after.leader != old else f"{old} restarted in place and kept the lock"
    print(f"kill: {outcome}; first commit {written.first_after(killed_at)} s after the kill; {written.describe()}")
    if after.leader != old:
        assert old in after.replicas
        wait_failover_recorded(ha, old, after.leader, planned=False)
        wait_event(ha, "PostgresFailover", "Warning", [after.leader, old], known)
    else:
        assert postgres_status(ha).get("lastFailover") == failover_before, "no change of leader, no failover"
        new = [e.get("message") for e in stack_events(ha, "PostgresFailover") if e["metadata"]["uid"] not in known]
        assert not new, f"a PostgresFailover Event without a change of leader: {new}"


def test_a_deleted_leader_pod_fails_over_and_rejoins_as_a_replica(ha: Ha) -> None:
    """The leader's pod deleted: the kubelet's stop signal reaches Patroni as SIGTERM (`patroni.STOP_COMMAND`), it
    stops its server and releases the lock, the synchronous standby is promoted, the StatefulSet re-creates the
    pod, which rejoins as a replica; the read-write Service, the role labels and status.postgres follow, a Warning
    PostgresFailover and lastFailover record it, one server out of recovery at a time, every acknowledged commit
    kept."""
    before = wait_settled(ha, "the cluster settled before the deletion")
    old, uid, known = before.leader, pod_uid(ha, before.leader), event_uids(ha)
    with PrimaryChecker(ha) as checker, Writer(ha) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        deleted_at = time.time()
        ha.stack.kubectl("delete", "pod", old, "--wait=false")
        wait_for(lambda: pod_uid(ha, old) not in (None, uid), timeout=180, interval=1,
                 what=f"the StatefulSet re-creating {old}")  # fmt: skip
        after = wait_settled(ha, f"another leader after deleting {old}, which rejoined", leader_not=old)
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    assert_commits_kept(ha, after, written, deleted_at)
    assert old in after.replicas
    print(f"delete: {after.leader} promoted; first commit {written.first_after(deleted_at)} s after the delete;"
          f" {written.describe()}")  # fmt: skip
    wait_failover_recorded(ha, old, after.leader, planned=False)
    wait_event(ha, "PostgresFailover", "Warning", [after.leader, old], known)


def test_the_switchover_command_moves_the_leader_with_a_short_write_pause(ha: Ha) -> None:
    """`tradingstack postgres switchover` (no --to: the operator picks the synchronous standby): the leader moves,
    the writer's longest pause is at most SWITCHOVER_PAUSE_LIMIT, a Normal PostgresSwitchover Event and
    lastFailover (planned) record it, one server out of recovery at a time, every acknowledged commit kept."""
    before = wait_settled(ha, "the cluster settled before the switchover")
    known = event_uids(ha)
    with PrimaryChecker(ha) as checker, Writer(ha) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        asked_at = time.time()
        out = cli(ha, "postgres", "switchover", NAME)
        after = wait_settled(ha, f"the leader moved off {before.leader}", leader_not=before.leader)
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    assert_commits_kept(ha, after, written, asked_at)
    pause, at = written.longest_pause()
    print(f"switchover {before.leader} -> {after.leader}: write pause {pause:.2f} s ({out.strip()}); "
          f"{written.describe()}")  # fmt: skip
    assert pause <= SWITCHOVER_PAUSE_LIMIT, (
        f"switchover write pause {pause:.2f} s (from {at - asked_at:+.2f} s after the command) > "
        f"{SWITCHOVER_PAUSE_LIMIT} s; {written.describe()}"
    )
    wait_failover_recorded(ha, before.leader, after.leader, planned=True)
    wait_event(ha, "PostgresSwitchover", "Normal", [before.leader, after.leader], known)
    assert not [e for e in stack_events(ha, "PostgresFailover") if e["metadata"]["uid"] not in known]


def statefulset_revisions(ha: Ha) -> tuple[str | None, dict[str, str | None]]:
    """The Patroni StatefulSet's updateRevision and each live member pod's template revision."""
    name = child_name(ha.model, patroni.COMPONENT)
    update = ha.cluster.kubectl_json("get", "statefulset", name, "-n", ha.namespace).get("status", {})
    pods = [p for p in ha.stack.pods(ha.selector) if not p["metadata"].get("deletionTimestamp")]
    return update.get("updateRevision"), {
        p["metadata"]["name"]: p["metadata"]["labels"].get(STATEFULSET_REVISION_LABEL) for p in pods
    }


def test_a_new_pod_template_rolls_the_replicas_first_and_the_leader_after_a_switchover(ha: Ha) -> None:
    """A change of the members' pod template (their memory limit) under updateStrategy OnDelete: the operator
    deletes the replicas' pods one at a time, switches the leader over to a member on the new template (a planned
    switchover: Normal PostgresSwitchover, no PostgresFailover), and deletes the old leader's pod last. The only
    write pause is the switchover's; one server out of recovery at a time; every acknowledged commit kept."""
    before = wait_settled(ha, "the cluster settled before the new template")
    old_revision, _ = statefulset_revisions(ha)
    known = event_uids(ha)
    patch = {"spec": {"postgres": {"resources": {"limits": {"memory": "640Mi"}}}}}
    with PrimaryChecker(ha) as checker, Writer(ha) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        changed_at = time.time()
        ha.stack.kubectl("patch", "tradingstack", NAME, "--type=merge", "-p", json.dumps(patch))

        def rolled() -> bool:
            update, members = statefulset_revisions(ha)
            return update != old_revision and len(members) == INSTANCES and set(members.values()) == {update}

        wait_for(rolled, timeout=600, interval=2, what="every member's pod made from the new template")
        after = wait_settled(ha, "the cluster settled on the new template", leader_not=before.leader)
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    assert_commits_kept(ha, after, written, changed_at)
    rollouts = sorted((e for e in stack_events(ha, "PostgresRollout") if e["metadata"]["uid"] not in known),
                      key=lambda e: e["metadata"]["creationTimestamp"])  # fmt: skip
    deleted = [e["message"].split()[0] for e in rollouts]
    print(f"new template: pods deleted in the order {deleted}; leader {before.leader} -> {after.leader}; "
          f"{written.describe()}")  # fmt: skip
    assert sorted(deleted) == sorted(ha.members) and deleted[-1] == before.leader, deleted
    wait_event(ha, "PostgresSwitchover", "Normal", [before.leader, after.leader], known)
    assert not [e for e in stack_events(ha, "PostgresFailover") if e["metadata"]["uid"] not in known]
    pause, at = written.longest_pause()
    assert pause <= SWITCHOVER_PAUSE_LIMIT, (
        f"longest write pause {pause:.2f} s ({at - changed_at:+.2f} s after the change) > {SWITCHOVER_PAUSE_LIMIT} s"
    )


def lock_config_maps(ha: Ha) -> dict[str, dict[str, Any]]:
    """Patroni's lock ConfigMaps, listed by the labels Patroni gives them (`render.patroni.lock_selector`)."""
    selector = ",".join(f"{k}={v}" for k, v in patroni.lock_selector(ha.model).items())
    items = ha.cluster.kubectl_json("get", "configmaps", "-n", ha.namespace, "-l", selector)["items"]
    names = set(patroni.lock_config_map_names(ha.model))
    return {c["metadata"]["name"]: c for c in items if c["metadata"]["name"] in names}


def test_deleting_the_stack_deletes_the_lock_config_maps(ha: Ha) -> None:
    """deletionPolicy Delete: the operator gave Patroni's lock ConfigMaps the stack as (non-controlling) owner, and
    at deletion it stops the members before it deletes the locks (`reconcile.plan.plan_patroni_teardown`), so
    nothing of the Patroni cluster stays behind. A ConfigMap found afterwards without an owner was written again by
    a member still running after the locks were removed."""
    uid = ha.cluster.kubectl_json("get", "tradingstack", NAME, "-n", ha.namespace)["metadata"]["uid"]
    scope = patroni.scope(ha.model)
    required = {f"{scope}-config", f"{scope}-leader", f"{scope}-sync"}  # -failover only once one was asked for

    def owned() -> dict[str, Any] | None:
        locks = lock_config_maps(ha)
        refs = {n: [(r["kind"], r["uid"], r.get("controller")) for r in c["metadata"].get("ownerReferences", [])]
                for n, c in locks.items()}  # fmt: skip
        ok = required <= set(locks) and all(r == [("TradingStack", uid, False)] for r in refs.values())
        return refs if ok else None

    try:
        refs = wait_for(owned, timeout=60, interval=2, what="every lock ConfigMap owned by the stack")
    except AssertionError as err:
        found = {n: c["metadata"].get("ownerReferences") for n, c in lock_config_maps(ha).items()}
        raise AssertionError(f"{err}; lock ConfigMaps: {found}") from err
    print(f"lock ConfigMaps before the deletion: {sorted(refs)}")
    deleted_at = time.time()
    ha.stack.kubectl("delete", "tradingstack", NAME, "--wait=true", "--timeout=180s", timeout=200)

    def gone() -> bool:
        return not lock_config_maps(ha) and not ha.stack.pods(ha.selector)

    try:
        wait_for(gone, timeout=240, interval=2, what="the lock ConfigMaps and the members' pods gone")
    except AssertionError as err:
        left = {n: {"created": c["metadata"]["creationTimestamp"], "owners": c["metadata"].get("ownerReferences")}
                for n, c in lock_config_maps(ha).items()}  # fmt: skip
        pods = [p["metadata"]["name"] for p in ha.stack.pods(ha.selector)]
        deleted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deleted_at))
        raise AssertionError(f"{err}; stack deleted at {deleted}, left: {left}, pods {pods}") from err


PITR_NAME = "pitr-ha"
PITR_ROWS = 50
"""Rows committed on each side of the failover: on the first leader's timeline, then on the promoted replica's."""
PITR_TABLE = "pitr_rows"


def pitr_document(namespace: str, s3: dict[str, Any], restore: bool) -> dict[str, Any]:
    """Two synchronous members archiving to the test's S3 server, with `restore` bootstrapped from the repository.
    Retain, so that its Secrets (the repository's passphrase) outlive it."""
    document = stack_document(namespace)
    document["metadata"]["name"] = PITR_NAME
    document["spec"]["deletionPolicy"] = "Retain"
    pitr = {"enabled": True, "volume": False, "s3": s3, "archiveTimeoutSeconds": 10}
    postgres: dict[str, Any] = {"instances": 2, "synchronous": True, "backup": {"enabled": False}, "pitr": pitr}
    document["spec"]["postgres"] = postgres | ({"restore": {"from": "latest"}} if restore else {})
    return document


def last_archived(ha: Ha, ip: str) -> str:
    """The last WAL file the server at `ip` archived since it started."""
    with ha.connect(ip, ha.credentials()) as conn:
        row = conn.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").fetchone()
    assert row is not None
    return str(row[0])


def sidecar_log(ha: Ha, pod: str) -> str:
    return ha.stack.kubectl("logs", pod, "-c", pitr.SIDECAR_NAME, check=False)


def wait_stanza_created(ha: Ha, pod: str) -> None:
    """The member's sidecar ran stanza-create, which it does once its server leads."""
    wait_for(lambda: STANZA_CREATED in sidecar_log(ha, pod), timeout=180, interval=3,
             what=f"stanza-create by {pod}'s sidecar")  # fmt: skip


def insert_rows(ha: Ha, ip: str, numbers: range) -> str:
    """Commits each number as its own transaction on the member at `ip`; the WAL timeline it wrote them on."""
    with ha.connect(ip, ha.credentials()) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PITR_TABLE} (n int PRIMARY KEY)")
        for n in numbers:
            conn.execute(f"INSERT INTO {PITR_TABLE} (n) VALUES (%s)", (n,))  # noqa: S608 - a constant table name
        row = conn.execute("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.timeout(1500)
def test_a_cluster_archives_across_a_failover_and_a_restore_replays_both_timelines(ha: Ha, tmp_path: Path) -> None:
    """pgBackRest with Patroni (issue 20 item 4): a two-member cluster archives to S3 from its leader, whose sidecar
    created the stanza (the replica's waits), and the full backup Job backs up the leader through the read-write
    Service; rows are committed, the leader's pod is deleted, the replica is promoted onto a new timeline (its
    sidecar now runs stanza-create, a no-op on the existing stanza) and more rows are committed there, archived
    by the new leader; a differential backup Job then reaches the new leader. The stack and its volumes are
    deleted, and a new stack of two members bootstraps from the repository (the first member restores to the
    end of the archive, the other copies it): every row of both timelines is on both."""
    with s3_for_pods(ha.cluster, ha.namespace, tmp_path) as s3:
        try:
            cluster = apply_stack(ha.stack, pitr_document(ha.namespace, s3, restore=False), READY_TIMEOUT)
            first = wait_settled(cluster, "one leader and a streaming replica, archiving")
            wait_stanza_created(ha, first.leader)
            full = run_cronjob(ha.stack, f"{PITR_NAME}-{PITR_FULL}")
            old_timeline = insert_rows(cluster, first.ips[first.leader], range(1, PITR_ROWS + 1))
            replica = first.replicas[0]
            assert STANZA_CREATED not in sidecar_log(ha, replica), "a replica's sidecar waits for its promotion"

            ha.stack.kubectl("delete", "pod", first.leader, "--wait=false")
            second = wait_settled(cluster, f"{replica} leading after {first.leader}'s pod was deleted",
                                  leader_not=first.leader)  # fmt: skip
            wait_stanza_created(ha, second.leader)
            new_timeline = insert_rows(cluster, second.ips[second.leader], range(PITR_ROWS + 1, 2 * PITR_ROWS + 1))
            assert new_timeline > old_timeline, f"no new timeline after the failover: {old_timeline} {new_timeline}"
            with cluster.connect(second.ips[second.leader], cluster.credentials()) as conn:
                segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert segment is not None
            wait_for(lambda: last_archived(cluster, second.ips[second.leader]) >= segment[0], timeout=120,
                     interval=2, what=f"{segment[0]} archived by the new leader {second.leader}")  # fmt: skip
            diff = run_cronjob(ha.stack, f"{PITR_NAME}-{PITR_DIFF}")
            print(f"pitr with Patroni: {full} on {first.leader} (timeline {old_timeline}), failover to "
                  f"{second.leader} (timeline {new_timeline}), {diff} after it")  # fmt: skip

            ha.stack.kubectl("delete", "tradingstack", PITR_NAME, "--wait=true", "--timeout=180s", timeout=200)
            wait_for(lambda: not ha.stack.pods(cluster.selector), timeout=180, interval=2,
                     what="the cluster's pods gone")  # fmt: skip
            ha.stack.kubectl("delete", "pvc", *(f"data-{member}" for member in cluster.members), "--wait=true",
                             timeout=150)  # fmt: skip
            # Retain kept Patroni's lock ConfigMaps too; with the volumes gone, their initialize key would have the
            # new members wait for a leader of the old cluster (README, troubleshooting).
            ha.stack.kubectl("delete", "configmap", "--ignore-not-found", *patroni.lock_config_map_names(cluster.model))
            started = time.monotonic()
            ha.cluster.apply(pitr_document(ha.namespace, s3, restore=True), namespace=ha.namespace)
            wait_for_condition(ha.cluster, ha.namespace, PITR_NAME, "Ready", "True", READY_TIMEOUT)
            third = wait_settled(cluster, "the restored leader and its replica streaming")
            elapsed = time.monotonic() - started
            expected = (2 * PITR_ROWS, 2 * PITR_ROWS)
            for member in (third.leader, *third.replicas):

                def restored(member: str = member) -> tuple[int, int] | None:
                    with cluster.connect(third.ips[member], cluster.credentials()) as conn:
                        row = conn.execute(f"SELECT count(*), max(n) FROM {PITR_TABLE}").fetchone()  # noqa: S608
                    return (int(row[0]), int(row[1])) if row and row[0] else None

                rows = wait_for(restored, timeout=60, interval=2, what=f"the restored rows on {member}")
                assert rows == expected, f"{member}: expected rows 1..{2 * PITR_ROWS} of both timelines, got {rows}"
            print(f"restored into two members in {elapsed:.1f} s (settled): leader {third.leader}, rows {expected}")
        finally:
            patch = json.dumps({"spec": {"deletionPolicy": "Delete"}})
            ha.stack.kubectl("patch", "tradingstack", PITR_NAME, "--type=merge", "-p", patch, check=False)
            ha.stack.kubectl("delete", "tradingstack", PITR_NAME, "--wait=true", "--timeout=180s", timeout=200,
                             check=False)  # fmt: skip
