"""The harness of the Patroni component tests: a real etcd and three real Patroni + PostgreSQL 15 members on
127.0.0.1 running the rendered Patroni configuration and env (the DCS swapped for etcd3, ttl scaled down); a
checker of two primaries and a writer that records its acknowledged commits. Fixtures `etcd` and
`cluster_factory` (registered in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
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


def _stack(synchronous: bool) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1"},
            "spec": {"postgres": {"instances": MEMBERS, "synchronous": synchronous}},
        }
    )


def _rendered(stack: TradingStack) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The Patroni configuration from the rendered ConfigMap, and the env and command of the rendered server
    container."""
    objects = {(m["kind"], m["metadata"]["name"]): m for m in render_postgres(stack, stack.owner_reference())}
    config = json.loads(objects[("ConfigMap", patroni.config_map_name(stack))]["data"][patroni.CONFIG_FILE])
    statefulset = objects[("StatefulSet", "quant-postgres")]
    server = statefulset["spec"]["template"]["spec"]["containers"][0]
    return config, server["env"], server["command"]


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
        wait_for(lambda: get_json(f"http://127.0.0.1:{client}/health"), timeout=20, interval=0.2, what="etcd")
        yield f"127.0.0.1:{client}"
    finally:
        process.kill()
        process.wait()


def get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http on 127.0.0.1
            result: dict[str, Any] = json.loads(response.read())
            return result
    except OSError:
        return None


def http_status(url: str) -> int | None:
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
    namespaced: bool = False
    """Whether `process` is `unshare`, whose child runs the command as PID 1 of a PID namespace."""

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
        """SIGKILL to the member's processes (a lost pod: no shutdown, no lock release)."""
        assert self.process is not None
        if self.namespaced:
            os.killpg(self.process.pid, signal.SIGKILL)  # its PID 1 dies with it, and with that the namespace
        else:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
            os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):  # gone already if it was in Patroni's process group
                os.kill(postmaster, signal.SIGKILL)
        self.process.wait()
        wait_for(lambda: self.is_primary() is None, timeout=10, interval=0.1, what=f"{self.name} down")

    def stop_as_kubelet(self, grace_seconds: float = 60) -> None:
        """What the kubelet does to a deleted pod's container: the image's STOPSIGNAL to its first process (the
        rendered command's), which must exit within the pod's grace period (60 s)."""
        assert self.process is not None
        first = self.process.pid
        if self.namespaced:  # unshare's one child, the namespace's PID 1
            first = int(Path(f"/proc/{first}/task/{first}/children").read_text().split()[0])
        os.kill(first, patroni.IMAGE_STOP_SIGNAL)
        self.process.wait(timeout=grace_seconds)


@dataclass
class Cluster:
    config: dict[str, Any]
    env: list[dict[str, Any]]
    command: list[str]
    """The container's command; its last argument, the configuration file, is replaced per member."""
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
        command = [*self.command[:-1], str(path)]
        if self.run_as:
            # As in the pod, the command is the first process (PID 1) of its own PID namespace, with a /proc of it;
            # when that process ends, the kernel kills whatever it left behind in the namespace.
            ids = [f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups"]
            command = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "setpriv", *ids, *command]
        log = open(member.base / "patroni.log", "ab")  # noqa: SIM115 - the child keeps it
        member.process = subprocess.Popen(
            command,
            env=self._env(member),
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        member.namespaced = bool(self.run_as)
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
        config, env, command = _rendered(_stack(synchronous))
        assert config["postgresql"]["data_dir"] == PGDATA  # the pod's path, replaced per member below
        cluster = Cluster(config, env, command, etcd, run_as)
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


def streaming(leader: Member, replicas: int, synchronous: bool) -> bool:
    with leader.connect() as conn:
        rows = conn.execute("SELECT state, sync_state FROM pg_stat_replication").fetchall()
    syncs = [sync for state, sync in rows if state == "streaming"]
    return len(syncs) == replicas and (not synchronous or "sync" in syncs)
