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
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.component.postgres.pitr import STANZA_CREATED
from tests.e2e.helpers import ChartInstaller
from tests.e2e.s3 import s3_for_pods
from tests.e2e.test_chart_install import stack_status
from tests.e2e.test_real_containers import Stack, kill_container, pod_ready, run_cronjob
from tests.fixtures.cluster import Cluster, CommandError, wait_for
from tests.fixtures.operator import wait_for_condition
from tradingstack.api import TradingStack
from tradingstack.components.observe import STATEFULSET_REVISION_LABEL
from tradingstack.contract import OPERATOR_APP_NAME, Label, Patroni, SecretKey
from tradingstack.contract.patroni_cluster import RUNNING_STATES
from tradingstack.render import patroni, pitr
from tradingstack.render.common import POSTGRES_PORT, child_name
from tradingstack.render.postgres import PITR_DIFF, PITR_FULL, secret_name

# The first test also waits for the module's stack: three members started one after the other (OrderedReady),
# the replicas from a base backup, on a node the earlier modules loaded.
pytestmark = [pytest.mark.cluster, pytest.mark.real_containers, pytest.mark.timeout(900)]
NAME = "ha"
INSTANCES = 3
READY_TIMEOUT = 420
SETTLE_TIMEOUT = 240
"""A lost leader's lock lapses after ttl (30 s) and a replica takes it at its next loop (loop_wait 10 s, its DCS
calls retrying up to retry_timeout 10 s); the old leader then restarts, rewinds and streams again."""
POLL_SECONDS = 0.1
WRITE_BEFORE_SECONDS = 5
"""The writer commits this long before each fault and after the cluster settled again."""
WRITER_LIMIT_SECONDS = 540
"""The writer stops by itself after this, whatever happens to the test."""
SWITCHOVER_PAUSE_LIMIT = 10.0
TABLE = "e2e_ticks"
ROWS_QUERY = f"SELECT n FROM {TABLE} WHERE run = %s"  # noqa: S608 - a constant table name


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

    def api_pod(self) -> str:
        pods = [p for p in self.stack.service_pods("api") if p["status"].get("phase") == "Running"]
        assert pods, f"no running api pod: {[p['metadata']['name'] for p in self.stack.service_pods('api')]}"
        return str(pods[0]["metadata"]["name"])


@pytest.fixture(scope="module")
def ha(cluster: Cluster, real_node: list[str], images: None, crd: None) -> Iterator[Ha]:
    installer = ChartInstaller(cluster)
    try:
        namespace = installer.namespace("e2e-patroni")
        # One operator replica: the node has 2 CPUs (see test_real_containers.start_example).
        installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
        document = stack_document(namespace)
        handle = Ha(Stack(cluster, namespace, real_node), TradingStack.model_validate(document))
        cluster.apply(document, namespace=namespace)
        try:
            wait_for_condition(cluster, namespace, NAME, "Ready", "True", READY_TIMEOUT)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{diagnose(handle)}") from err
        yield handle
    finally:
        installer.cleanup()


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
dsn = make_conninfo(os.environ["DATABASE_URL"], connect_timeout=2, tcp_user_timeout=2000, keepalives=1,
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
    """The WRITER in the api pod, through `kubectl exec`, until `stop` (a file it looks for in its /tmp)."""

    def __init__(self, ha: Ha) -> None:
        self.ha, self.pod, self.run = ha, ha.api_pod(), uuid.uuid4().hex[:8]
        self.stop_file = f"/tmp/e2e-writer-{self.run}"
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Writer:
        cluster = self.ha.cluster
        self.process = subprocess.Popen(
            [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "-n", self.ha.namespace,
             "exec", self.pod, "--", "python3", "-c", WRITER.format(table=TABLE), self.run, self.stop_file,
             str(WRITER_LIMIT_SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self

    def stop(self) -> Written:
        assert self.process is not None
        if self.process.poll() is None:
            self.ha.stack.kubectl("exec", self.pod, "--", "python3", "-c", f"open({self.stop_file!r}, 'w').close()")
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, f"the writer in {self.pod} exited {self.process.returncode}: {err[-2000:]}"
        result = json.loads(out.strip().splitlines()[-1])
        acknowledged = [(int(n), float(t)) for n, t in result["acknowledged"]]
        return Written(self.run, acknowledged, int(result["attempts"]), dict(result["errors"]))

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


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
        document = pitr_document(ha.namespace, s3, restore=False)
        cluster = Ha(ha.stack, TradingStack.model_validate(document))
        ha.cluster.apply(document, namespace=ha.namespace)
        try:
            try:
                wait_for_condition(ha.cluster, ha.namespace, PITR_NAME, "Ready", "True", READY_TIMEOUT)
            except AssertionError as err:
                raise AssertionError(f"{err}\n{diagnose(cluster)}") from err
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
