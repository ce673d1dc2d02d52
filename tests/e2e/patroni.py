"""The e2e suite's view of a Patroni cluster on real pods (tests/e2e/test_patroni.py, test_patroni_node_loss.py):
the stack's names for its objects (`Ha`), when the cluster counts as settled (`observe`), a checker that no two
servers accept writes at once (`PrimaryChecker`), a writer of numbered commits (`Writer`) and what it saw
(`Written`), and the Events and status the operator records.

The checker runs in this process: its connections to the pod IPs (5432) pass the NetworkPolicies unjudged because
the tests' own clients run as root on the node's host (hack/node.sh, chain TS-NETPOL; docs/cluster.md), so it
needs no `kubectl exec` per poll and survives every pod the scenarios kill. It asks `SELECT pg_is_in_recovery()`,
the servers' own answer, rather than Patroni's `/cluster` or the role labels, which are the DCS's view of one
leader key and cannot show two servers accepting writes.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.e2e.test_chart_install import stack_status
from tests.e2e.test_real_containers import Stack, pod_ready
from tests.fixtures.cluster import Cluster, CommandError, wait_for
from tests.fixtures.operator import wait_for_condition
from tradingstack.api import TradingStack
from tradingstack.contract import OPERATOR_APP_NAME, Label, Patroni, PostgresEnv, SecretKey
from tradingstack.contract.patroni_cluster import RUNNING_STATES
from tradingstack.render import patroni
from tradingstack.render.common import POSTGRES_PORT, child_name
from tradingstack.render.postgres import secret_name

SETTLE_TIMEOUT = 240
"""A lost leader's lock lapses after ttl (30 s) and a replica takes it at its next loop (loop_wait 10 s, its DCS
calls retrying up to retry_timeout 10 s); the old leader then restarts, rewinds and streams again."""
POLL_SECONDS = 0.1
WRITE_BEFORE_SECONDS = 5
"""The writer commits this long before each fault and after the cluster settled again."""
WRITER_LIMIT_SECONDS = 540
"""The writer stops by itself after this, whatever happens to the test."""
TABLE = "e2e_ticks"
ROWS_QUERY = f"SELECT n FROM {TABLE} WHERE run = %s"  # noqa: S608 - a constant table name


@dataclass
class Ha:
    """The module's stack, and the names its renderers give the Patroni cluster's objects."""

    stack: Stack
    model: TradingStack

    @property
    def cluster(self) -> Cluster:
        return self.stack.cluster

    @property
    def namespace(self) -> str:
        return self.stack.namespace

    @property
    def members(self) -> list[str]:
        """The StatefulSet's pods, `<stack>-postgres-<ordinal>`."""
        return [f"{child_name(self.model, patroni.COMPONENT)}-{i}" for i in range(self.model.spec.postgres.instances)]

    @property
    def selector(self) -> str:
        """The members' pods, by the scope label Patroni finds them by."""
        return f"{Label.POSTGRES_CLUSTER}={patroni.scope(self.model)}"

    @property
    def read_write_service(self) -> str:
        return child_name(self.model, patroni.COMPONENT)

    @property
    def replicas_service(self) -> str:
        return child_name(self.model, patroni.REPLICAS_SERVICE)

    def credentials(self) -> dict[str, str]:
        data = self.cluster.kubectl_json("get", "secret", secret_name(self.model), "-n", self.namespace)["data"]
        return {key: base64.b64decode(data[key]).decode() for key in (SecretKey.USERNAME, SecretKey.PASSWORD)}

    def connect(self, ip: str, credentials: dict[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection from this host to one member's server (its pod IP), bounded in every wait."""
        return psycopg.connect(
            host=ip,
            port=POSTGRES_PORT.number,
            dbname=self.model.spec.postgres.database,
            user=credentials[SecretKey.USERNAME],
            password=credentials[SecretKey.PASSWORD],
            sslmode="disable",
            connect_timeout=2,
            tcp_user_timeout=1000,
            options="-c statement_timeout=2000",
            autocommit=True,
        )

    def read_write_dsn(self) -> str:
        """The read-write Service's ClusterIP, as libpq parameters for a client on this host."""
        service = self.cluster.kubectl_json("get", "service", self.read_write_service, "-n", self.namespace)
        credentials = self.credentials()
        return make_conninfo(
            host=service["spec"]["clusterIP"],
            port=POSTGRES_PORT.number,
            dbname=self.model.spec.postgres.database,
            user=credentials[SecretKey.USERNAME],
            password=credentials[SecretKey.PASSWORD],
        )

    def api_pod(self) -> str:
        pods = [p for p in self.stack.service_pods("api") if p["status"].get("phase") == "Running"]
        assert pods, f"no running api pod: {[p['metadata']['name'] for p in self.stack.service_pods('api')]}"
        return str(pods[0]["metadata"]["name"])


def diagnose(ha: Ha) -> str:
    """What a failed wait leaves to read: the stack's conditions and status.postgres, each member's pod (role,
    readiness, restarts) with the tail of its log, and the operator's log tail."""
    lines = []
    result = ha.cluster.kubectl("get", "tradingstack", ha.model.name, "-n", ha.namespace, "-o", "json", check=False)
    if result.returncode == 0:
        status = json.loads(result.stdout).get("status", {})
        conditions = {c["type"]: f"{c['status']} {c.get('reason', '')}" for c in status.get("conditions", [])}
        lines.append(f"conditions: {conditions}; status.postgres: {json.dumps(status.get('postgres', {}))}")
    for pod in ha.stack.pods(ha.selector):
        name = pod["metadata"]["name"]
        restarts = {c["name"]: c["restartCount"] for c in pod["status"].get("containerStatuses", [])}
        lines.append(
            f"--- {name}: phase {pod['status'].get('phase')}, ready {pod_ready(pod)}, role "
            f"{pod['metadata']['labels'].get(Label.POSTGRES_ROLE)}, deleting "
            f"{bool(pod['metadata'].get('deletionTimestamp'))}, restarts {restarts}"
        )
        lines.append(ha.stack.kubectl("logs", name, "-c", "postgres", "--tail=25", check=False).rstrip())
    lines.append("--- operator")
    operator = ["logs", "-l", f"{Label.NAME}={OPERATOR_APP_NAME}", "--tail=40"]
    lines.append(ha.stack.kubectl(*operator, check=False).rstrip())
    return "\n".join(lines)


def apply_stack(stack: Stack, document: dict[str, Any], timeout: float) -> Ha:
    """Applies a Patroni stack's document and waits until it is Ready; a timeout's message has `diagnose`."""
    handle = Ha(stack, TradingStack.model_validate(document))
    stack.cluster.apply(document, namespace=stack.namespace)
    try:
        wait_for_condition(stack.cluster, stack.namespace, handle.model.name, "Ready", "True", timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnose(handle)}") from err
    return handle


def ready_endpoints(ha: Ha, service: str) -> list[str]:
    """The pods behind a Service's ready endpoints (EndpointSlices), sorted."""
    slices = ha.cluster.kubectl_json(
        "get", "endpointslices", "-n", ha.namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return sorted(
        e["targetRef"]["name"]
        for s in slices
        for e in s.get("endpoints") or []
        if e.get("targetRef") and (e.get("conditions") or {}).get("ready") is not False
    )


@dataclass(frozen=True)
class Settled:
    leader: str
    replicas: list[str]
    ips: dict[str, str]


def observe(ha: Ha, credentials: dict[str, str]) -> tuple[Settled | None, str]:
    """The cluster as the pods, the Services, the operator's status and the leader's server show it: Settled
    when they all agree on one leader and two streaming replicas; and what was seen, for a failure message."""
    pods = ha.stack.pods(ha.selector)
    roles = {p["metadata"]["name"]: p["metadata"]["labels"].get(Label.POSTGRES_ROLE) for p in pods}
    ready = {p["metadata"]["name"]: pod_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods}
    ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods}
    leaders = sorted(name for name, role in roles.items() if role == Patroni.LEADER_ROLE)
    replicas = sorted(name for name, role in roles.items() if role == Patroni.REPLICA_ROLE)
    read_write, read_only = ready_endpoints(ha, ha.read_write_service), ready_endpoints(ha, ha.replicas_service)
    postgres = stack_status(ha.cluster, ha.namespace, ha.model.name).get("postgres", {})
    status_replicas = {r["name"]: r.get("state") for r in postgres.get("replicas", [])}
    members = {n: (roles[n], ready[n]) for n in sorted(roles)}
    seen = (
        f"pods (role, ready): {members}; {ha.read_write_service} -> "
        f"{read_write}; {ha.replicas_service} -> {read_only}; status.postgres.leader {postgres.get('leader')}, "
        f"replicas {status_replicas}"
    )
    shape = len(leaders) == 1 and len(replicas) == len(ha.members) - 1
    if sorted(roles) != ha.members or not all(ready.values()) or not shape:
        return None, seen
    leader = leaders[0]
    if read_write != [leader] or read_only != replicas:
        return None, seen
    if postgres.get("leader") != leader or sorted(status_replicas) != replicas:
        return None, seen
    if not all(state in RUNNING_STATES for state in status_replicas.values()):
        return None, seen
    try:
        with ha.connect(ips[leader], credentials) as conn:
            rows = conn.execute("SELECT application_name, state, sync_state FROM pg_stat_replication").fetchall()
    except psycopg.Error as err:
        return None, f"{seen}; pg_stat_replication on {leader}: {type(err).__name__}: {err}"
    seen = f"{seen}; pg_stat_replication on {leader}: {rows}"
    if sorted(name for name, state, _ in rows if state == "streaming") != replicas:
        return None, seen
    if ha.model.spec.postgres.synchronous and [sync for *_, sync in rows].count("sync") != 1:
        return None, seen
    return Settled(leader, replicas, {name: str(ip) for name, ip in ips.items()}), seen


def wait_settled(ha: Ha, what: str, timeout: float = SETTLE_TIMEOUT, leader_not: str | None = None) -> Settled:
    """Until `observe` finds the cluster settled (led by another member than `leader_not`); on timeout the
    message has the last observation and `diagnose`."""
    credentials = ha.credentials()
    last = {"seen": "nothing observed"}

    def settled() -> Settled | None:
        found, last["seen"] = observe(ha, credentials)
        return None if found is None or found.leader == leader_not else found

    try:
        return wait_for(settled, timeout=timeout, interval=2, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlast seen: {last['seen']}\n{diagnose(ha)}") from err


class PrimaryChecker:
    """Every POLL_SECONDS each member's server answers `SELECT pg_is_in_recovery()` over a connection from this
    host to its pod IP (one thread per member: a dead member's timeouts do not delay the others; the pod IPs are
    read again every second, so a re-created pod is polled at its new address). Each member's consecutive
    "not in recovery" answers form a run [first, last]; two members' runs that overlap mean both servers accepted
    writes at the same time. An answer that fails ends the run."""

    def __init__(self, ha: Ha) -> None:
        self.ha, self.credentials = ha, ha.credentials()
        self.ips: dict[str, str] = {}
        self.runs: dict[str, list[list[float]]] = {name: [] for name in ha.members}
        self.answers = dict.fromkeys(ha.members, 0)
        self.errors: dict[str, str] = {}
        self._open: dict[str, list[float] | None] = dict.fromkeys(ha.members)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._discover, daemon=True)] + [
            threading.Thread(target=self._poll, args=(name,), daemon=True) for name in ha.members
        ]
        self.started = time.monotonic()

    def __enter__(self) -> PrimaryChecker:
        self._read_ips()
        for thread in self._threads:
            thread.start()
        try:
            wait_for(lambda: all(self.answers.values()), timeout=30, interval=0.5, what="every member answering")
        except AssertionError as err:
            self.__exit__()
            raise AssertionError(
                f"{err}: the checker reaches the members' pod IPs from this host (as root: docs/cluster.md); "
                f"ips {self.ips}, answers {self.answers}, errors {self.errors}"
            ) from err
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _read_ips(self) -> None:
        pods = self.ha.stack.pods(self.ha.selector)
        # Terminating pods too: a leader that is shutting down may still accept writes.
        self.ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods if p["status"].get("podIP")}

    def _discover(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._read_ips()
            except (CommandError, subprocess.TimeoutExpired):
                continue  # the last addresses stay

    def _answer(self, name: str, primary: bool | None) -> None:
        now = time.monotonic()
        if primary is not None:
            self.answers[name] += 1
        current = self._open[name]
        if not primary:
            self._open[name] = None
        elif current is None:
            run = [now, now]
            self._open[name] = run
            self.runs[name].append(run)
        else:
            current[1] = now

    def _poll(self, name: str) -> None:
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        ip: str | None = None
        retry_at = 0.0
        next_poll = time.monotonic()
        while not self._stop.wait(max(0.0, next_poll - time.monotonic())):
            next_poll += POLL_SECONDS
            if self.ips.get(name) != ip:
                if conn is not None:
                    conn.close()
                conn, ip = None, self.ips.get(name)
            if ip is None or (conn is None and time.monotonic() < retry_at):
                self._answer(name, None)
                continue
            try:
                if conn is None:
                    conn = self.ha.connect(ip, self.credentials)
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                self._answer(name, row is not None and row[0] is False)
            except psycopg.Error as err:
                self.errors[name] = f"{ip}: {type(err).__name__}: {str(err).strip()[:200]}"
                self._answer(name, None)
                if conn is not None:
                    conn.close()
                conn, retry_at = None, time.monotonic() + 0.5
            next_poll = max(next_poll, time.monotonic())
        if conn is not None:
            conn.close()

    def overlaps(self) -> list[str]:
        """Each pair of runs of two members that overlap, in seconds since the checker started."""
        found = []
        names = sorted(self.runs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for ra in self.runs[a]:
                    for rb in self.runs[b]:
                        if max(ra[0], rb[0]) <= min(ra[1], rb[1]):
                            found.append(f"{a} {self._span(ra)} and {b} {self._span(rb)}")
        return found

    def _span(self, run: list[float]) -> str:
        return f"out of recovery {run[0] - self.started:.2f}-{run[1] - self.started:.2f} s"

    def assert_one_primary(self) -> None:
        seconds = time.monotonic() - self.started
        summary = f"{self.answers} answers in {seconds:.0f} s, runs {self._runs_summary()}, last errors {self.errors}"
        assert not self.overlaps(), f"two servers accepted writes at once: {self.overlaps()}; {summary}"
        # The checker did look: every member answered, on average at least every other poll of the run.
        assert sum(self.answers.values()) >= 0.5 * seconds / POLL_SECONDS, summary
        print(f"checker: {summary}")

    def _runs_summary(self) -> dict[str, list[str]]:
        return {name: [self._span(run) for run in runs] for name, runs in self.runs.items()}


WRITER = """
import json, os, sys, time
import psycopg
from psycopg.conninfo import make_conninfo

run, stop, limit = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
# Through the read-write Service (the DATABASE_URL the operator injected); no wait unbounded: a connection to a
# server that died without a reset fails within 2 s.
dsn = make_conninfo(os.environ["{database_url}"], connect_timeout=2, tcp_user_timeout=2000, keepalives=1,
                    keepalives_idle=1, keepalives_interval=1, keepalives_count=2, application_name="e2e-writer")
acknowledged, errors, conn, n, created = [], dict(), None, 0, False
while not os.path.exists(stop) and time.monotonic() < limit:
    n += 1
    try:
        if conn is None:
            conn = psycopg.connect(dsn, autocommit=True)
        if not created:
            conn.execute("CREATE TABLE IF NOT EXISTS {table} (run text, n integer, PRIMARY KEY (run, n))")
            created = True
        conn.execute("INSERT INTO {table} (run, n) VALUES (%s, %s)", (run, n))
        acknowledged.append([n, time.time()])
    except psycopg.Error as err:
        key = type(err).__name__ + ": " + (str(err).strip().splitlines() or [""])[0][:160]
        errors[key] = errors.get(key, 0) + 1
        if conn is not None:
            conn.close()
        conn = None
        time.sleep(0.05)
    time.sleep(0.02)
print(json.dumps({{"acknowledged": acknowledged, "attempts": n, "errors": errors}}))
"""


@dataclass
class Written:
    """What the writer saw: the numbers whose commit was acknowledged, each with the wall clock of its
    acknowledgement (the node's clock is this host's), the attempts and the errors by message."""

    run: str
    acknowledged: list[tuple[int, float]]
    attempts: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def numbers(self) -> set[int]:
        return {n for n, _ in self.acknowledged}

    def longest_pause(self) -> tuple[float, float]:
        """The longest time between two consecutive acknowledged commits, and when it began."""
        times = [t for _, t in self.acknowledged]
        return max(((b - a, a) for a, b in itertools.pairwise(times)), default=(0.0, 0.0))

    def first_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first commit acknowledged after it."""
        return next((t - moment for _, t in self.acknowledged if t > moment), None)

    def describe(self) -> str:
        pause, at = self.longest_pause()
        return (
            f"{len(self.acknowledged)} of {self.attempts} commits acknowledged, longest pause {pause:.2f} s "
            f"(from {time.strftime('%H:%M:%S', time.localtime(at))}), errors {self.errors}"
        )


class Writer:
    """The WRITER until `stop` (a file it looks for in its /tmp): in the api pod through `kubectl exec`, with the
    DATABASE_URL the operator injected; or, given `dsn`, in a process on this host, whose connections to the
    read-write Service's ClusterIP kube-proxy serves as a pod's (it outlives the loss of any node)."""

    def __init__(self, ha: Ha, dsn: str | None = None) -> None:
        self.ha, self.dsn, self.run = ha, dsn, uuid.uuid4().hex[:8]
        self.pod = None if dsn else ha.api_pod()
        self.stop_file = f"/tmp/e2e-writer-{self.run}"
        self.process: subprocess.Popen[str] | None = None

    @property
    def where(self) -> str:
        return self.pod or "this host"

    def __enter__(self) -> Writer:
        cluster = self.ha.cluster
        script = [
            "-c",
            WRITER.format(table=TABLE, database_url=PostgresEnv.URL),
            self.run,
            self.stop_file,
            str(WRITER_LIMIT_SECONDS),
        ]
        if self.dsn is None:
            argv = [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "-n", self.ha.namespace,
                    "exec", str(self.pod), "--", "python3", *script]  # fmt: skip
            env = None
        else:
            argv, env = [sys.executable, *script], {**os.environ, PostgresEnv.URL: self.dsn}
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def stop(self) -> Written:
        assert self.process is not None
        if self.process.poll() is None:
            if self.pod is None:
                Path(self.stop_file).touch()
            else:
                self.ha.stack.kubectl("exec", self.pod, "--", "python3", "-c", f"open({self.stop_file!r}, 'w').close()")
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, (
            f"the writer in {self.where} exited {self.process.returncode}: {err[-2000:]}"
        )
        result = json.loads(out.strip().splitlines()[-1])
        acknowledged = [(int(n), float(t)) for n, t in result["acknowledged"]]
        return Written(self.run, acknowledged, int(result["attempts"]), dict(result["errors"]))

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        if self.pod is None:
            Path(self.stop_file).unlink(missing_ok=True)


def leader_rows(ha: Ha, settled: Settled, run: str) -> set[int]:
    """The writer's numbers of `run` present on the settled leader."""
    with ha.connect(settled.ips[settled.leader], ha.credentials()) as conn:
        return {row[0] for row in conn.execute(ROWS_QUERY, (run,)).fetchall()}


def assert_commits_kept(ha: Ha, settled: Settled, written: Written, fault_at: float) -> None:
    """Every acknowledged commit is on the leader, and each replica has caught up with all of the leader's rows;
    the writer committed before the fault and again after it."""
    before = [n for n, t in written.acknowledged if t < fault_at]
    assert len(before) >= 50, f"the writer hardly committed before the fault: {written.describe()}"
    assert written.first_after(fault_at) is not None, f"no commit after the fault: {written.describe()}"
    credentials = ha.credentials()
    present = leader_rows(ha, settled, written.run)
    missing = sorted(written.numbers - present)
    assert not missing, (
        f"acknowledged commits missing on the leader {settled.leader}: {missing[:20]} ({len(missing)} of "
        f"{len(written.numbers)}; {len(present)} rows); {written.describe()}"
    )

    for replica in settled.replicas:
        counts: list[int] = []

        def caught_up(replica: str = replica, counts: list[int] = counts) -> bool:
            with ha.connect(settled.ips[replica], credentials) as conn:
                counts.append(len(conn.execute(ROWS_QUERY, (written.run,)).fetchall()))
            return counts[-1] == len(present)

        try:
            wait_for(caught_up, timeout=60, interval=1, what=f"{replica} with the leader's {len(present)} rows")
        except AssertionError as err:
            raise AssertionError(f"{err}; it had {counts[-3:]} rows") from err


def stack_events(ha: Ha, reason: str) -> list[dict[str, Any]]:
    events = ha.cluster.kubectl_json("get", "events", "-n", ha.namespace,
                                     "--field-selector", f"involvedObject.name={ha.model.name}")["items"]  # fmt: skip
    return [e for e in events if e.get("reason") == reason]


def wait_event(ha: Ha, reason: str, kind: str, names: list[str], known: set[str]) -> dict[str, Any]:
    """A new Event (uid not in `known`) of `reason` and `kind` whose message names each of `names`."""

    def found() -> dict[str, Any] | None:
        return next((e for e in stack_events(ha, reason) if e["metadata"]["uid"] not in known and e["type"] == kind
                     and all(n in e.get("message", "") for n in names)), None)  # fmt: skip

    try:
        return wait_for(found, timeout=120, interval=2, what=f"a {kind} {reason} Event naming {names}")
    except AssertionError as err:
        seen = [(e["type"], e.get("message")) for e in stack_events(ha, reason)]
        raise AssertionError(f"{err}; {reason} Events: {seen}") from err


def event_uids(ha: Ha) -> set[str]:
    events = ha.cluster.kubectl_json("get", "events", "-n", ha.namespace)["items"]
    return {e["metadata"]["uid"] for e in events}


def postgres_status(ha: Ha) -> dict[str, Any]:
    return dict(stack_status(ha.cluster, ha.namespace, ha.model.name).get("postgres", {}))


def wait_failover_recorded(ha: Ha, old: str, new: str, planned: bool) -> dict[str, Any]:
    """status.postgres.lastFailover from `old` to `new` (the operator writes it when it sees the new leader)."""
    last: dict[str, Any] = {}

    def recorded() -> dict[str, Any] | None:
        last.update(postgres_status(ha).get("lastFailover") or {})
        return dict(last) if (last.get("from"), last.get("to")) == (old, new) else None

    try:
        failover = wait_for(recorded, timeout=60, interval=2, what=f"status.postgres.lastFailover {old} -> {new}")
    except AssertionError as err:
        raise AssertionError(f"{err}; lastFailover: {last}") from err
    assert failover["planned"] is planned, failover
    return failover


def container_restarts(ha: Ha, pod: str, container: str = "postgres") -> int:
    found = ha.cluster.kubectl_json("get", "pod", pod, "-n", ha.namespace)
    return int(next(c["restartCount"] for c in found["status"]["containerStatuses"] if c["name"] == container))


def pod_uid(ha: Ha, pod: str) -> str | None:
    result = ha.cluster.kubectl("get", "pod", pod, "-n", ha.namespace, "-o", "json", check=False)
    return str(json.loads(result.stdout)["metadata"]["uid"]) if result.returncode == 0 else None


def cli(ha: Ha, *args: str) -> str:
    """`tradingstack <args> -n <namespace>` as a user runs it, with the cluster's kubeconfig (as tests/e2e/halt)."""
    argv = [sys.executable, "-m", "tradingstack.cli", *args, "-n", ha.namespace]
    result = subprocess.run(argv, env=ha.cluster.env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"tradingstack {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout
