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

import contextlib
import functools
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.component.postgres.server import _pg_bin, _server_user
from tests.support import free_port, wait_for
from tradingstack.api import TradingStack
from tradingstack.contract import PatroniEnv
from tradingstack.render import patroni
from tradingstack.render.postgres import PGDATA, render_postgres

CACHE = Path.home() / ".cache" / "tradingstack"
MEMBERS = 3
TIMINGS = {"ttl": 12, "loop_wait": 2, "retry_timeout": 5}
"""Scaled-down DCS timings (the rendered ones are 30/10/10); the same invariant holds."""
WRITE_SECONDS = 2.0
"""How long the writer commits before the kill (a few hundred rows at most)."""


def _stack(synchronous: bool) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1"},
            "spec": {"postgres": {"instances": MEMBERS, "synchronous": synchronous}},
        }
    )


def _rendered(stack: TradingStack) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Patroni configuration from the rendered ConfigMap and the env of the rendered server container."""
    objects = {(m["kind"], m["metadata"]["name"]): m for m in render_postgres(stack, stack.owner_reference())}
    config = json.loads(objects[("ConfigMap", patroni.config_map_name(stack))]["data"][patroni.CONFIG_FILE])
    statefulset = objects[("StatefulSet", "quant-postgres")]
    env: list[dict[str, Any]] = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    return config, env


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    binaries = sorted(CACHE.glob("etcd-*/bin/etcd"), reverse=True)
    if not binaries:
        pytest.fail("etcd not built: hack/install-prereqs.sh (hack/cluster.sh build)")
    client, peer = free_port(), free_port()
    command = [
        str(binaries[0]),
        f"--data-dir={tmp_path / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=default=http://127.0.0.1:{peer}",
    ]
    with open(tmp_path / "etcd.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{client}/health"), timeout=20, interval=0.2, what="etcd")
        yield f"127.0.0.1:{client}"
    finally:
        process.kill()
        process.wait()


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http on 127.0.0.1
            result: dict[str, Any] = json.loads(response.read())
            return result
    except OSError:
        return None


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http on 127.0.0.1
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


@dataclass
class Member:
    name: str
    base: Path
    pg_port: int
    rest_port: int
    password: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.base / "data"

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.pg_port, user="trading", password=self.password, dbname="trading",
            autocommit=True, connect_timeout=2,
        )  # fmt: skip

    def is_primary(self) -> bool | None:
        """True out of recovery, False a replica, None unreachable."""
        try:
            with self.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                return row is not None and not row[0]
        except psycopg.OperationalError:
            return None

    def kill(self) -> None:
        """SIGKILL to Patroni and to the postmaster it started (a lost pod: no shutdown, no lock release)."""
        assert self.process is not None
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # gone already if it was in Patroni's process group
            os.kill(postmaster, signal.SIGKILL)
        self.process.wait()
        wait_for(lambda: self.is_primary() is None, timeout=10, interval=0.1, what=f"{self.name} down")


@dataclass
class Cluster:
    config: dict[str, Any]
    env: list[dict[str, Any]]
    etcd: str
    run_as: str | None
    members: list[Member] = field(default_factory=list)

    def start(self, member: Member) -> None:
        config = json.loads(json.dumps(self.config))
        del config["kubernetes"]  # the DCS swapped: etcd3 on 127.0.0.1
        config["etcd3"] = {"hosts": [self.etcd]}
        config["bootstrap"]["dcs"].update(TIMINGS)
        config["restapi"]["listen"] = f"127.0.0.1:{member.rest_port}"
        pg = config["postgresql"]
        pg |= {"listen": f"127.0.0.1:{member.pg_port}", "data_dir": str(member.data), "bin_dir": str(_pg_bin())}
        pg |= {"pgpass": str(member.base / "pgpass")}
        pg["parameters"]["unix_socket_directories"] = str(member.base)
        path = member.base / patroni.CONFIG_FILE
        path.write_text(json.dumps(config))
        log = open(member.base / "patroni.log", "ab")  # noqa: SIM115 - the child keeps it
        member.process = subprocess.Popen(
            ["/usr/bin/patroni", str(path)],
            env=self._env(member),
            user=self.run_as,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _env(self, member: Member) -> dict[str, str]:
        """The rendered container env resolved as the kubelet would, with this member's name and address."""
        fields = {"metadata.name": member.name, "metadata.namespace": "trading", "status.podIP": "127.0.0.1"}
        secret = {"username": "trading", "password": member.password}
        resolved: dict[str, str] = {}
        for entry in self.env:
            source = entry.get("valueFrom", {})
            if "fieldRef" in source:
                value = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source:
                value = secret[source["secretKeyRef"]["key"]]
            else:
                value = entry["value"].replace(f"$({PatroniEnv.POD_IP})", "127.0.0.1")
            resolved[entry["name"]] = value
        resolved[PatroniEnv.POSTGRES_CONNECT] = f"127.0.0.1:{member.pg_port}"
        resolved[PatroniEnv.RESTAPI_CONNECT] = f"127.0.0.1:{member.rest_port}"
        dcs = {k: v for k, v in resolved.items() if not k.startswith("PATRONI_KUBERNETES_")}
        return {"PATH": f"{_pg_bin()}:/usr/bin:/bin", "HOME": str(member.base), **dcs}

    def primaries(self) -> list[Member]:
        return [m for m in self.members if m.is_primary()]

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.members:
            if member.process is not None:
                try:
                    member.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(member.process.pid, signal.SIGKILL)


@pytest.fixture
def cluster_factory(etcd: str) -> Iterator[Any]:
    run_as = _server_user()
    made: list[Cluster] = []
    # Not under tmp_path: pytest's directories are root's, mode 0700, and the server user must reach its own.
    top = Path(tempfile.mkdtemp(prefix="tradingstack-patroni-"))
    top.chmod(0o711)

    def make(synchronous: bool) -> Cluster:
        config, env = _rendered(_stack(synchronous))
        assert config["postgresql"]["data_dir"] == PGDATA  # the pod's path, replaced per member below
        cluster = Cluster(config, env, etcd, run_as)
        password = secrets.token_urlsafe(16)
        for i in range(MEMBERS):
            base = top / f"{len(made)}-member-{i}"
            base.mkdir(mode=0o700)
            if run_as:
                entry = pwd.getpwnam(run_as)
                os.chown(base, entry.pw_uid, entry.pw_gid)
            cluster.members.append(Member(f"quant-postgres-{i}", base, free_port(), free_port(), password))
        for member in cluster.members:
            cluster.start(member)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
    shutil.rmtree(top, ignore_errors=True)


class Checker(threading.Thread):
    """Polls every member every 100 ms and records the most servers ever seen out of recovery at once."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.most, self.done = cluster, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.most = max(self.most, len(self.cluster.primaries()))


class Writer(threading.Thread):
    """Commits one row at a time on the leader and records the ids whose commit was acknowledged."""

    def __init__(self, leader: Member) -> None:
        super().__init__(daemon=True)
        self.leader, self.acknowledged, self.done = leader, list[int](), threading.Event()

    def run(self) -> None:
        try:
            with self.leader.connect() as conn:
                for i in range(1, 100_000):
                    if self.done.is_set():
                        return
                    conn.execute("INSERT INTO ticks (id) VALUES (%s)", (i,))
                    self.acknowledged.append(i)
        except psycopg.Error:
            return  # the leader was killed: what was acknowledged until then is recorded


def _answers(member: Member, paths: list[str]) -> bool:
    return all(_status(f"http://127.0.0.1:{member.rest_port}{path}") == 200 for path in paths)


def _replayed(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    query = "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= pg_current_wal_lsn()"
    return conn.execute(query).fetchone() == (MEMBERS - 1,)


def _streaming(leader: Member, replicas: int, synchronous: bool) -> bool:
    with leader.connect() as conn:
        rows = conn.execute("SELECT state, sync_state FROM pg_stat_replication").fetchall()
    streaming = [sync for state, sync in rows if state == "streaming"]
    return len(streaming) == replicas and (not synchronous or "sync" in streaming)


@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "synchronous"])
def test_a_killed_leader_fails_over_to_a_replica_and_rejoins(cluster_factory: Any, synchronous: bool) -> None:
    cluster: Cluster = cluster_factory(synchronous)
    started = time.monotonic()
    leader = wait_for(cluster.primaries, timeout=40, interval=0.5, what="a leader")[0]
    wait_for(lambda: _streaming(leader, MEMBERS - 1, synchronous), timeout=30, interval=0.5, what="replicas")
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
    wait_for(lambda: _streaming(new_leader, MEMBERS - 1, False), timeout=20, interval=0.5, what="it streaming")
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
    state = _get(f"http://127.0.0.1:{leader.rest_port}/patroni")
    assert state is not None and state["role"] == "replica"
    print(f"rejoin: {leader.name} streams from {new_leader.name}; the run took {time.monotonic() - started:.1f}s")
