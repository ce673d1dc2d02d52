"""Real redis-server and redis-sentinel processes on 127.0.0.1, started the way the pods start them.

`RenderedRedis` writes the ConfigMap of `render_redis` to a directory and runs its start scripts with the
environment the pods get (announce host 127.0.0.1 and a free port per process instead of pod DNS names). With
`tls_dir` (`spec.tls`) the processes announce `localhost`, a name the test's certificate holds, and listen on
127.0.0.1 only.
`StockRedis` runs the same topology from plain configs (the baseline of the benchmark). Both are also used
by bench/bench_redis.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis
import yaml

from tests.support import free_port, wait_for
from tradingstack.api import TradingStack
from tradingstack.api.spec import RedisSpec
from tradingstack.contract import RedisEnv
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.redisclient import MasterAddress, RedisTls, observe_master
from tradingstack.redisclient.client import no_retry, tls_options
from tradingstack.render.redis import failover_wait_seconds, render_redis, tls_files

HOST = "127.0.0.1"
POLL_SECONDS = 0.1

FAST_FAILOVER = {  # spec.redis of the failover tests
    "replicas": 3,
    "sentinels": 3,
    "quorum": 2,
    "downAfterMilliseconds": 2000,  # the lowest the API allows
    "failoverTimeoutMilliseconds": 10000,
    "minReplicasToWrite": 1,
}


def stack_for(redis_spec: dict[str, Any], name: str = "comp", tls: bool = False) -> TradingStack:
    spec = {"redis": redis_spec, **({"tls": {"enabled": True}} if tls else {})}
    return TradingStack.model_validate({"metadata": {"name": name, "namespace": "test"}, "spec": spec})


@dataclass
class RedisProcesses:
    """Shared machinery: ports, logs, processes, and the questions the tests ask the servers."""

    root: Path
    spec: RedisSpec
    chained_replication: ClassVar[bool] = False
    """Whether a replica may replicate from another replica (stock) instead of directly from the master."""
    network: HostNetwork | None = None
    """Each server on a host of its own (a network namespace) instead of all on 127.0.0.1."""
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    host: str = HOST
    """The address the processes announce and the tests dial (without `network`)."""
    tls: RedisTls | None = None
    """The servers and sentinels serve TLS only: how the tests' clients reach them."""
    redis_ports: list[int] = field(init=False)
    sentinel_ports: list[int] = field(init=False)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.redis_ports = [free_port() for _ in range(self.spec.replicas)]
        self.sentinel_ports = [free_port() for _ in range(self.spec.sentinels)]
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    # -- what a subclass provides ------------------------------------------------------------------------
    def redis_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def sentinel_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    # -- processes ---------------------------------------------------------------------------------------
    def redis_host(self, index: int) -> str:
        return self.host if self.network is None else self.network.host(index)

    @property
    def sentinel_host(self) -> str:
        """Where the sentinels (and the tests' clients) are, reachable from every server's host."""
        return self.host if self.network is None else self.network.gateway

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"{self.sentinel_host}:{port}" for port in self.sentinel_ports]

    def _spawn(self, name: str, command: tuple[list[str], dict[str, str]], host: int | None = None) -> None:
        """Run `command` logging to logs/<name>.log, on the host of server `host` when there is a network."""
        argv, env = command
        if self.network is not None and host is not None:
            argv = self.network.wrap(host, argv)
        with (self.root / "logs" / f"{name}.log").open("ab") as log:
            self._processes[name] = subprocess.Popen(
                argv, env={"PATH": os.environ["PATH"], **env}, stdout=log, stderr=subprocess.STDOUT
            )

    def start_redis(self, index: int, sentinels: list[str] | None = None) -> None:
        """Start server `index`; `sentinels` replaces the addresses its start script asks (rendered only)."""
        argv, env = self.redis_command(index)
        if sentinels is not None:
            env = env | {"REDIS_SENTINELS": ",".join(sentinels)}
        self._spawn(f"redis-{index}", (argv, env), host=index)

    def start_sentinel(self, index: int) -> None:
        self._spawn(f"sentinel-{index}", self.sentinel_command(index))

    def start_isolated_sentinel(self, name: str, master: int) -> str:
        """A stock sentinel monitoring server `master` that knows no other sentinel: while that server is down
        it hears of no failover and keeps naming it (a sentinel that has not yet received the news)."""
        port = free_port()
        conf = self.root / f"{name}.conf"
        conf.write_text(plain_sentinel_conf(self, port, master))
        self._spawn(name, (["redis-sentinel", str(conf)], {}))
        wait_for(lambda: self.sentinel_answers(port), timeout=10, interval=0.05, what=f"{name} to answer")
        return f"{self.sentinel_host}:{port}"

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host=self.sentinel_host,
            port=port,
            password=self.password,
            socket_timeout=0.5,
            retry=no_retry(),
            **tls_options(self.tls),
        )

    def sentinel_master_state(self, client: redis.Redis) -> dict[str, Any]:
        """SENTINEL MASTER as the sentinel behind `client` answers it. redis-py types the call dict | bool: the
        bool is what its Sentinel class returns after asking every sentinel; a single client gets the dict."""
        state = client.sentinel_master(self.spec.master_name)
        assert isinstance(state, dict), f"SENTINEL MASTER answered {state!r}"
        return state

    def sentinel_answers(self, port: int) -> bool:
        with contextlib.closing(self.sentinel_client(port)) as client:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

    def master_odown(self) -> bool:
        """Whether a sentinel holds the master objectively down (a quorum agrees; a failover starts)."""
        for port in self.sentinel_ports:
            with contextlib.closing(self.sentinel_client(port)) as client:
                try:
                    state = self.sentinel_master_state(client)
                except redis.RedisError:
                    continue
            if state.get("is_odown"):
                return True
        return False

    def kill_redis(self, index: int) -> None:
        """kill -9: no shutdown, no handover (a crash or a lost node)."""
        process = self._processes.pop(f"redis-{index}")
        process.send_signal(signal.SIGKILL)
        process.wait()

    def start(self) -> None:
        for index in range(self.spec.sentinels):
            self.start_sentinel(index)
        for index in range(self.spec.replicas):
            self.start_redis(index)
        self.wait_stable(timeout=60)

    def stop(self) -> None:
        for process in self._processes.values():
            process.kill()
        for process in self._processes.values():
            process.wait()
        self._processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("logs/*"))
        )

    # -- questions ---------------------------------------------------------------------------------------
    def server(self, index: int, timeout: float = 0.5) -> redis.Redis:
        return redis.Redis(
            host=self.redis_host(index),
            port=self.redis_ports[index],
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=no_retry(),
            decode_responses=True,
            **tls_options(self.tls),
        )

    def role(self, index: int) -> str | None:
        """`master`, `slave`, or None when the server does not answer."""
        with contextlib.closing(self.server(index)) as client:
            try:
                return str(client.execute_command("ROLE")[0])  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            except redis.RedisError:
                return None

    def index_of(self, address: MasterAddress) -> int:
        return self.redis_ports.index(address.port)

    def agreed_master(self) -> int | None:
        """Index of the server a majority of the sentinels report as master."""
        observation = observe_master(self.sentinel_addresses, self.spec.master_name, self.password, 0.5, self.tls)
        return None if observation.master is None else self.index_of(observation.master)

    def connected_replicas(self, index: int) -> int:
        with contextlib.closing(self.server(index)) as client:
            try:
                info = client.info("replication")
            except redis.RedisError:
                return -1
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return sum(1 for replica in online if replica.get("state") == "online")

    def replicating(self, index: int) -> bool:
        """A replica whose link to its master is up."""
        with contextlib.closing(self.server(index)) as client:
            try:
                info = client.info("replication")
            except redis.RedisError:
                return False
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def sentinels_see_everything(self, master: int) -> bool:
        """Every sentinel knows all replicas and all other sentinels: only then can they fail over."""
        for port in self.sentinel_ports:
            with contextlib.closing(self.sentinel_client(port)) as client:
                try:
                    state = self.sentinel_master_state(client)
                except redis.RedisError:
                    return False
            if int(state["port"]) != self.redis_ports[master]:
                return False
            if int(state["num-slaves"]) < self.spec.replicas - 1:
                return False
            if int(state["num-other-sentinels"]) < self.spec.sentinels - 1:
                return False
            if state.get("is_sdown") or state.get("is_odown"):
                return False
        return True

    def running_redis(self) -> list[int]:
        return [i for i in range(self.spec.replicas) if f"redis-{i}" in self._processes]

    def wait_stable(self, timeout: float) -> int:
        """Wait for one agreed master, all running servers replicating from it, all sentinels informed."""
        found: list[int] = []

        def stable() -> bool:
            master = self.agreed_master()
            if master is None or self.role(master) != "master":
                return False
            others = [i for i in self.running_redis() if i != master]
            if self.chained_replication:
                if not all(self.replicating(i) for i in others):
                    return False
            elif self.connected_replicas(master) < len(others):
                return False
            if not self.sentinels_see_everything(master):
                return False
            found[:] = [master]
            return True

        try:
            wait_for(stable, timeout=timeout, interval=0.2, what="a stable master with all replicas and sentinels")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.describe()}") from None
        return found[0]

    def wait_promoted(self, old_master: int, timeout: float = 60) -> int:
        """Wait for the sentinels to agree on a master other than `old_master`; returns its index."""
        found: list[int] = []

        def promoted() -> bool:
            master = self.agreed_master()
            found[:] = [] if master in (None, old_master) else [master]
            return bool(found)

        wait_for(promoted, timeout=timeout, interval=POLL_SECONDS, what="the sentinels to agree on a promoted replica")
        return found[0]

    def wait_replicating(self, index: int, timeout: float = 30) -> None:
        wait_for(
            lambda: self.replicating(index),
            timeout=timeout,
            interval=POLL_SECONDS,
            what=f"redis-{index} to replicate from the master",
        )

    def describe(self) -> str:
        """Roles, replicas and every sentinel's view, for the message of a failed wait."""
        lines = [
            f"redis-{i} port {port}: role {self.role(i)}, online replicas {self.connected_replicas(i)}"
            for i, port in enumerate(self.redis_ports)
        ]
        for port in self.sentinel_ports:
            with contextlib.closing(self.sentinel_client(port)) as client:
                try:
                    state = self.sentinel_master_state(client)
                    replicas = client.sentinel_slaves(self.spec.master_name)
                except redis.RedisError as error:
                    lines.append(f"sentinel port {port}: {error}")
                    continue
            seen = ", ".join(f"{r['port']} {r['flags']}" for r in replicas)
            lines.append(f"sentinel port {port}: master {state['port']} {state['flags']}; replicas {seen}")
        return "\n".join(lines)


@dataclass
class RenderedRedis(RedisProcesses):
    """Runs the ConfigMap of `render_redis` (scripts and configs) as the pods do; with `tls_dir` (holding the TLS
    Secret's files) that of a stack with `spec.tls`."""

    tls_dir: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stack = stack_for(self.spec.model_dump(by_alias=True), tls=self.tls_dir is not None)
        if self.tls_dir is not None:
            self.host = "localhost"
            self.tls = RedisTls(ca_file=str(self.tls_dir / TlsSecretKey.CA))
            self._bin = self.root / "bin"
            self._bin.mkdir()
            for program in ("redis-server", "redis-sentinel"):
                wrapper = self._bin / program
                wrapper.write_text(f'#!/bin/sh\nexec {shutil.which(program)} "$@" --bind 127.0.0.1\n')
                wrapper.chmod(0o755)
        stack = self.stack
        config_map = next(m for m in render_redis(stack, stack.owner_reference()) if m["kind"] == "ConfigMap")
        self.config_dir = self.root / "config"
        self.config_dir.mkdir()
        for name, text in config_map["data"].items():
            (self.config_dir / name).write_text(text)
        # The manifests themselves, for whoever reads the logs of a failed run.
        (self.root / "configmap.yaml").write_text(yaml.safe_dump(config_map))

    def _env(self, pod_name: str) -> dict[str, str]:
        env = {
            "POD_NAME": pod_name,
            "REDIS_CONFIG_DIR": str(self.config_dir),
            "REDIS_SENTINELS": ",".join(self.sentinel_addresses),
            "REDIS_MASTER_NAME": self.spec.master_name,
            "REDIS_PASSWORD": self.password,
            "REDISCLI_AUTH": self.password,
            "REDIS_SENTINEL_WAIT_SECONDS": "3",
        }
        if self.tls_dir is None:
            return env
        # The rendered env of the files (the pods': the mounted Secret), and the servers on 127.0.0.1 only.
        files = {e["name"]: e["value"] for e in tls_files(self.stack, str(self.tls_dir))}
        ca = {RedisEnv.TLS_CA_FILE: str(self.tls_dir / TlsSecretKey.CA)}
        return env | files | ca | {"PATH": f"{self._bin}:{os.environ['PATH']}"}

    def redis_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        data_dir, run_dir = self.root / f"redis-{index}" / "data", self.root / f"redis-{index}" / "run"
        data_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = self._env(f"redis-{index}") | {
            "REDIS_ANNOUNCE_HOST": self.redis_host(index),
            "REDIS_PORT": str(self.redis_ports[index]),
            "REDIS_DATA_DIR": str(data_dir),
            "REDIS_RUN_DIR": str(run_dir),
            "REDIS_PRESTOP_WAIT_SECONDS": "10",
            "REDIS_FAILOVER_WAIT_SECONDS": str(failover_wait_seconds(self.spec)),
        }
        return ["sh", str(self.config_dir / "redis-start.sh")], env

    def sentinel_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        sentinel_dir = self.root / f"sentinel-{index}"
        sentinel_dir.mkdir(exist_ok=True)
        env = self._env(f"sentinel-{index}") | {
            "SENTINEL_ANNOUNCE_HOST": self.sentinel_host,
            "SENTINEL_PORT": str(self.sentinel_ports[index]),
            "SENTINEL_DIR": str(sentinel_dir),
            "REDIS_BOOTSTRAP_MASTER": f"{self.redis_host(0)}:{self.redis_ports[0]}",
        }
        return ["sh", str(self.config_dir / "sentinel-start.sh")], env

    def run_prestop(self, index: int) -> None:
        _, env = self.redis_command(index)
        subprocess.run(
            ["sh", str(self.config_dir / "redis-prestop.sh")],
            env={"PATH": os.environ["PATH"], **env},
            check=True,
            timeout=30,
        )


class StockRedis(RedisProcesses):
    """Stock Sentinel: plain configs with only what is needed to run (ports, auth, monitor, down-after).

    A restarted server comes back as it was configured (server 0 as a master); Sentinel demotes it later,
    but leaves a restarted replica replicating from whichever server its config names, even another replica.
    """

    chained_replication = True

    def redis_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        data_dir = self.root / f"redis-{index}"
        data_dir.mkdir(exist_ok=True)
        lines = [
            f"port {self.redis_ports[index]}",
            f"dir {data_dir}",
            f'requirepass "{self.password}"',
            f'masterauth "{self.password}"',
        ]
        if index:
            lines.append(f"replicaof {self.redis_host(0)} {self.redis_ports[0]}")
        conf = data_dir / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        return ["redis-server", str(conf)], {}

    def sentinel_command(self, index: int) -> tuple[list[str], dict[str, str]]:
        conf = self.root / f"sentinel-{index}.conf"
        if not conf.exists():  # Sentinel rewrites its config: keep what it learnt across restarts
            conf.write_text(plain_sentinel_conf(self, self.sentinel_ports[index], 0))
        return ["redis-sentinel", str(conf)], {}


def plain_sentinel_conf(processes: RedisProcesses, port: int, master: int) -> str:
    """Only what a sentinel needs to run: its port, auth, server `master` to monitor, the spec's down-after."""
    name, spec = processes.spec.master_name, processes.spec
    master_host, master_port = processes.redis_host(master), processes.redis_ports[master]
    return "\n".join(
        [
            f"port {port}",
            f'requirepass "{processes.password}"',
            f"sentinel monitor {name} {master_host} {master_port} {spec.quorum}",
            f"sentinel down-after-milliseconds {name} {spec.down_after_milliseconds}",
            f'sentinel auth-pass {name} "{processes.password}"',
            "",
        ]
    )


class HostNetwork:
    """One host per Redis server: a network namespace joined to a bridge by a veth pair, the bridge carrying
    the address of the sentinels and tests (the root namespace). `cut` takes a host's link down: its packets
    are dropped without a reset, as in a network partition, so a master cannot tell that its replicas stopped
    hearing it. Needs root and iproute2."""

    def __init__(self, hosts: int) -> None:
        tag = secrets.token_hex(3)
        self._subnet = f"10.77.{random.randrange(256)}"
        self.gateway = f"{self._subnet}.1"
        self._bridge = f"tsbr{tag}"
        self._namespaces = [f"ts{tag}-{i}" for i in range(hosts)]
        self._links = [f"tsv{tag}{i}" for i in range(hosts)]  # interface names: at most 15 characters

    def host(self, index: int) -> str:
        return f"{self._subnet}.{10 + index}"

    def wrap(self, index: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self._namespaces[index], *argv]

    def cut(self, index: int) -> None:
        _ip("link", "set", self._links[index], "down")

    def heal(self, index: int) -> None:
        _ip("link", "set", self._links[index], "up")

    def __enter__(self) -> HostNetwork:
        _ip("link", "add", self._bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self._bridge)
        _ip("link", "set", self._bridge, "up")
        for index, (namespace, link) in enumerate(zip(self._namespaces, self._links, strict=True)):
            _ip("netns", "add", namespace)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", link, "master", self._bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{self.host(index)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        return self

    def __exit__(self, *_: object) -> None:
        for namespace in self._namespaces:
            subprocess.run(["ip", "netns", "del", namespace], check=False)  # also removes its veth pair
        subprocess.run(["ip", "link", "del", self._bridge], check=False)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()} (the partition tests need root and iproute2)")


class TwoMasterChecker:
    """Polls ROLE on every server every 100 ms; records any moment where two servers claim to be master
    (`two_masters`) and, of those, where both accept a write (`violations`)."""

    def __init__(self, processes: RedisProcesses, interval: float = 0.1) -> None:
        self.processes = processes
        self.interval = interval
        self.two_masters: list[list[int]] = []
        self.violations: list[list[int]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="two-master-checker", daemon=True)

    def _accepts_write(self, index: int) -> bool:
        with contextlib.closing(self.processes.server(index, timeout=0.2)) as client:
            try:
                client.set("two-master-checker:probe", str(time.time()))
            except redis.RedisError:
                return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            masters = [i for i in range(self.processes.spec.replicas) if self.processes.role(i) == "master"]
            if len(masters) > 1:
                self.two_masters.append(masters)
            writable = [i for i in masters if self._accepts_write(i)] if len(masters) > 1 else []
            if len(writable) > 1:
                self.violations.append(writable)
            self.polls += 1

    def assert_single_master(self) -> None:
        assert self.polls > 0, "the checker never polled"
        assert self.two_masters == [], "two servers were master at the same time"
        assert self.violations == [], "two masters accepted writes at the same time"

    @contextlib.contextmanager
    def running(self) -> Iterator[TwoMasterChecker]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


@contextlib.contextmanager
def running_redis(
    directory: Path, redis_spec: dict[str, Any], network: HostNetwork | None = None, tls_dir: Path | None = None
) -> Iterator[RenderedRedis]:
    """The rendered servers and sentinels for `redis_spec`, started and torn down (logs printed afterwards,
    which pytest shows only for a failed test); with `tls_dir`, over TLS with the files there."""
    processes = RenderedRedis(directory, stack_for(redis_spec).spec.redis, network=network, tls_dir=tls_dir)
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()
        print(processes.logs())
