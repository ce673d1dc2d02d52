"""A Patroni cluster (`spec.postgres.instances` > 1) in whole reconcile passes (the in-memory API server of
test_pass.py): Patroni's lock ConfigMaps follow deletionPolicy; the members are read from a Patroni REST API on
127.0.0.1 that answers the captured `/cluster` document of real Patroni 3.0.2 (the component tests run the client
against real members) and carries out a switchover; the status, Events and the switchover annotation."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from tests.unit.test_pass import NOW, ApiServer
from tradingstack import ops
from tradingstack.api import TradingStackStatus
from tradingstack.cli import _cmd_postgres_switchover, build_parser
from tradingstack.components.observe import STATEFULSET_REVISION_LABEL
from tradingstack.contract import Annotation, Label, Patroni, format_switchover_request, parse_switchover_request
from tradingstack.errors import DeletionPendingError
from tradingstack.kube.client import Kube
from tradingstack.reconcile.patroni_fence import STALE_LEADER_REASON
from tradingstack.reconcile.retention import patroni_lock_patches
from tradingstack.reconcile.stack import StackReconciler

CAPTURED = Path(__file__).parent / "fixtures" / "patroni_cluster.json"
SCOPE = "quant-postgres"
LOCKS = [f"{SCOPE}-{suffix}" for suffix in ("config", "leader", "failover", "sync")]
OWNER = {"apiVersion": "trading.quantumtrader.dev/v1alpha1", "kind": "TradingStack", "name": "quant", "uid": "uid-1"}


def body(policy: str = "Retain", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": "quant", "namespace": "trading", "uid": "uid-1", "generation": 1,
                     "annotations": annotations},
        "spec": {
            "deletionPolicy": policy,
            "redis": {"enabled": False},
            "postgres": {"instances": 3, "backup": {"enabled": False}},
            "services": [{"name": "api", "image": "ghcr.io/quantumtrader/demo-service:0.1.0", "port": 8000}],
        },
    }  # fmt: skip


def lock(name: str, *owners: Mapping[str, Any]) -> dict[str, Any]:
    """A ConfigMap as Patroni writes it: its labels, no stack label."""
    labels = {Label.NAME: "postgres", Label.INSTANCE: "quant", Label.POSTGRES_CLUSTER: SCOPE}
    meta: dict[str, Any] = {"name": name, "namespace": "trading", "labels": labels}
    if owners:
        meta["ownerReferences"] = [dict(o) for o in owners]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def pod(name: str, revision: str = "r1") -> dict[str, Any]:
    labels = {Label.STACK: "quant", Label.NAME: "postgres", Label.COMPONENT: "postgres", Label.POSTGRES_CLUSTER: SCOPE,
              STATEFULSET_REVISION_LABEL: revision}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "trading", "labels": labels},
            "status": {"phase": "Running", "podIP": "127.0.0.1"}}  # fmt: skip


class PatchingApiServer(ApiServer):
    """Applies merge patches of owner references and of spec fields (a scale-down), so that a second pass sees
    them."""

    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None:
        await super().merge_patch(kind, name, namespace, patch)
        for part in ("metadata", "spec"):
            if (kind, name) in self.objects and part in patch:
                self.objects[(kind, name)][part].update(copy.deepcopy(patch[part]))


# Lock ConfigMaps and deletionPolicy: pure.


def test_with_delete_the_locks_get_the_stack_as_owner_but_not_as_controller() -> None:
    patches = patroni_lock_patches([lock(n) for n in [*LOCKS, "quant-postgres-patroni"]], LOCKS, OWNER, delete=True)
    assert [p.name for p in patches] == LOCKS  # the rendered configuration is not a lock
    ref = patches[0].patch["metadata"]["ownerReferences"]
    assert ref == [{**OWNER, "controller": False, "blockOwnerDeletion": False}]
    owned = lock(LOCKS[0], ref[0])
    assert patroni_lock_patches([owned], LOCKS, OWNER, delete=True) == []


def test_with_retain_the_locks_lose_the_stacks_reference_and_keep_others() -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-x"}
    earlier = {**OWNER, "uid": "uid-0"}  # an earlier stack of the same name
    live = lock(LOCKS[1], {**OWNER, "controller": False}, other, earlier)
    patches = patroni_lock_patches([live], LOCKS, OWNER, delete=False)
    assert [p.patch for p in patches] == [{"metadata": {"ownerReferences": [other]}}]
    assert patroni_lock_patches([lock(LOCKS[1])], LOCKS, OWNER, delete=False) == []
    # With Delete the earlier stack's reference gives way to this stack's.
    (replaced,) = patroni_lock_patches([lock(LOCKS[1], earlier)], LOCKS, OWNER, delete=True)
    assert [r["uid"] for r in replaced.patch["metadata"]["ownerReferences"]] == ["uid-1"]


# Whole passes.


async def one_pass(api: ApiServer, stack: Mapping[str, Any], port: int = 9) -> TradingStackStatus:
    api.calls.clear()
    reconciler = StackReconciler(
        cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=True, patroni_port=port
    )
    return await reconciler.reconcile({**stack, "status": api.status} if api.status else stack)


async def test_a_pass_makes_the_locks_follow_the_policy_and_release_does_at_deletion() -> None:
    api = PatchingApiServer({("ConfigMap", name): lock(name) for name in LOCKS})
    await one_pass(api, body("Delete"))
    assert sorted(call[2] for call in api.calls if call[:2] == ("patch", "ConfigMap")) == sorted(LOCKS)
    await one_pass(api, body("Delete"))
    assert [call for call in api.calls if call[:2] == ("patch", "ConfigMap")] == []
    # The policy at deletion decides: Retain now, the locks stay with the data.
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False)
    await reconciler.release(body("Retain"))
    assert sorted(call[2] for call in api.calls if call[:2] == ("patch", "ConfigMap")) == sorted(LOCKS)
    assert all("ownerReferences" not in api.objects[("ConfigMap", n)]["metadata"] or
               api.objects[("ConfigMap", n)]["metadata"]["ownerReferences"] == [] for n in LOCKS)  # fmt: skip


async def test_deleting_with_delete_stops_the_members_before_it_deletes_the_locks() -> None:
    """A running member re-creates a lock ConfigMap that garbage collection removed (then without an owner, so it
    would stay): the release scales the StatefulSet to 0 and keeps the finalizer until no member pod is left, and
    only then deletes the locks itself. Other ConfigMaps of the same labels are not touched."""
    api = PatchingApiServer({("ConfigMap", name): lock(name) for name in [*LOCKS, "quant-postgres-unrelated"]})
    await one_pass(api, body("Delete"))
    members = [f"{SCOPE}-{i}" for i in range(3)]
    api.objects.update({("Pod", name): pod(name) for name in members})
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False)

    api.calls.clear()
    with pytest.raises(DeletionPendingError, match="stopping the Patroni members"):
        await reconciler.release(body("Delete"))
    assert ("patch", "StatefulSet", SCOPE) in api.calls
    assert api.objects[("StatefulSet", SCOPE)]["spec"]["replicas"] == 0
    assert not [call for call in api.calls if call[0] == "delete"]

    del api.objects[("Pod", members[2])]  # the StatefulSet stops them one by one
    api.calls.clear()
    with pytest.raises(DeletionPendingError, match=f"{members[0]}, {members[1]} to stop"):
        await reconciler.release(body("Delete"))
    assert not [call for call in api.calls if call[0] in ("delete", "patch")]

    for name in members[:2]:
        del api.objects[("Pod", name)]
    api.calls.clear()
    await reconciler.release(body("Delete"))
    assert sorted(call[2] for call in api.calls if call[:2] == ("delete", "ConfigMap")) == sorted(LOCKS)
    assert ("ConfigMap", "quant-postgres-unrelated") in api.objects


async def test_deleting_with_retain_leaves_the_members_to_garbage_collection_and_keeps_the_locks() -> None:
    api = PatchingApiServer({("ConfigMap", name): lock(name) for name in LOCKS})
    await one_pass(api, body("Retain"))
    api.objects[("Pod", f"{SCOPE}-0")] = pod(f"{SCOPE}-0")
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False)
    api.calls.clear()
    await reconciler.release(body("Retain"))
    assert not [call for call in api.calls if call[0] == "delete" or call[1] == "StatefulSet"]


class FakePatroni:
    """Patroni's REST API as the members answer it: the captured `/cluster` document with the current leader;
    POST /switchover makes the candidate lead. (The real members are the component tests'.)"""

    def __init__(self) -> None:
        self.leader = "quant-postgres-1"
        self.switchovers: list[dict[str, Any]] = []
        self.restarts = 0
        self.api: ApiServer | None = None
        self.status_at_restart: dict[str, Any] | None = None
        """The stack's status on the API server when a restart was asked for."""

    def cluster(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(CAPTURED.read_text())
        for member in document["members"]:
            member["role"] = "leader" if member["name"] == self.leader else "replica"
            if member["role"] == "leader":
                member.pop("lag", None)
            else:
                member.setdefault("lag", 0)
        return document

    async def get_cluster(self, _: web.Request) -> web.Response:
        return web.json_response(self.cluster())

    async def post_restart(self, _: web.Request) -> web.Response:
        self.restarts += 1
        self.status_at_restart = copy.deepcopy(self.api.status) if self.api else None
        return web.Response(text="restarted successfully")

    async def post_switchover(self, request: web.Request) -> web.Response:
        asked = await request.json()
        self.switchovers.append(asked)
        self.leader = asked["candidate"]
        return web.Response(text=f'Successfully switched over to "{asked["candidate"]}"')


@contextlib.asynccontextmanager
async def patroni_stack() -> AsyncIterator[tuple[FakePatroni, PatchingApiServer, int]]:
    """A fake Patroni on 127.0.0.1 (in the test's own event loop), an API server with the three members' pods,
    and the fake's port."""
    fake = FakePatroni()
    api = PatchingApiServer({("Pod", f"{SCOPE}-{i}"): pod(f"{SCOPE}-{i}") for i in range(3)})
    fake.api = api
    app = web.Application()
    app.router.add_get("/cluster", fake.get_cluster)
    app.router.add_post("/switchover", fake.post_switchover)
    app.router.add_post("/restart", fake.post_restart)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield fake, api, runner.addresses[0][1]
    finally:
        await runner.cleanup()


def events(api: ApiServer) -> list[tuple[str, str]]:
    return [(call[1], call[2]) for call in api.calls if call[0] == "event"]


async def test_the_status_shows_the_members_and_a_failover_is_a_warning() -> None:
    async with patroni_stack() as (fake, api, port):
        status = await one_pass(api, body(), port)
        fake.leader = "quant-postgres-2"  # Patroni failed over by itself
        failed_over = await one_pass(api, body(), port)
    assert status.postgres.leader == "quant-postgres-1"
    assert [(m.name, m.lag_bytes) for m in status.postgres.replicas] == [
        ("quant-postgres-0", 0),
        ("quant-postgres-2", 0),
    ]
    ready = next(c for c in status.conditions if c.type == "PostgresReady")
    assert (ready.status, ready.reason) == ("True", "LeaderRunning")
    assert ("Warning", "PostgresFailover") in events(api)
    assert failed_over.postgres.last_failover is not None and not failed_over.postgres.last_failover.planned


async def test_a_requested_switchover_is_recorded_then_asked_then_a_normal_event() -> None:
    trigger = format_switchover_request(NOW, "quant-postgres-2")
    async with patroni_stack() as (fake, api, port):
        await one_pass(api, body(), port)
        status = await one_pass(api, body(**{Annotation.SWITCHOVER: trigger}), port)
        switched_events = events(api)
        await one_pass(api, body(**{Annotation.SWITCHOVER: trigger}), port)  # acted on once
    assert fake.switchovers == [{"leader": "quant-postgres-1", "candidate": "quant-postgres-2"}]
    # The record reached the API server before Patroni was asked; the pass's last status has it cleared.
    recorded = [s for s in api.statuses if s.get("postgres", {}).get("switchover")]
    assert recorded and recorded[0]["postgres"]["switchover"]["candidate"] == "quant-postgres-2"
    assert ("Normal", "PostgresSwitchover") in switched_events
    assert status.postgres.leader == "quant-postgres-2" and status.postgres.switchover is None
    assert status.postgres.last_failover is not None and status.postgres.last_failover.planned
    assert status.postgres.handled_switchover == trigger
    assert len(fake.switchovers) == 1 and events(api) == []


async def test_a_restart_run_restarts_a_replica_first_through_patroni() -> None:
    async with patroni_stack() as (fake, api, port):
        await one_pass(api, body(), port)
        status = await one_pass(api, body(**{Annotation.RESTART_NOW: "now"}), port)
    assert fake.restarts == 1 and fake.switchovers == []
    assert status.restarts.in_progress == "postgres" and status.restarts.members_done == ["quant-postgres-0"]
    assert ("Normal", "RestartingPostgres") in events(api)
    # The members done reached the API server before Patroni was asked.
    assert fake.status_at_restart is not None
    assert fake.status_at_restart["restarts"]["membersDone"] == ["quant-postgres-0"]


async def test_a_new_pod_template_rolls_the_replicas_then_switches_over_then_rolls_the_old_leader() -> None:
    """The StatefulSet (updateStrategy OnDelete) reports a new revision: each pass deletes one member's pod, the
    StatefulSet controller (played here) re-creates it from the new template; the leader is switched over first."""
    async with patroni_stack() as (fake, api, port):
        await one_pass(api, body(), port)
        statefulset = api.objects[("StatefulSet", SCOPE)]
        assert statefulset["spec"]["updateStrategy"] == {"type": "OnDelete"}
        statefulset["status"] = {"updateRevision": "r2"}
        steps: list[str] = []
        for _ in range(6):
            switchovers = len(fake.switchovers)
            await one_pass(api, body(), port)
            deleted = [call[2] for call in api.calls if call[:2] == ("delete", "Pod")]
            steps += [f"delete {name}" for name in deleted]
            steps += [f"switchover to {asked['candidate']}" for asked in fake.switchovers[switchovers:]]
            for name in deleted:
                api.objects[("Pod", name)] = pod(name, "r2")
        rolled = [
            api.objects[("Pod", f"{SCOPE}-{i}")]["metadata"]["labels"][STATEFULSET_REVISION_LABEL] for i in range(3)
        ]
    assert steps[:4] == [
        "delete quant-postgres-0",
        "delete quant-postgres-2",
        "switchover to quant-postgres-0",
        "delete quant-postgres-1",
    ]
    assert rolled == ["r2", "r2", "r2"] and len(steps) == 4  # then nothing more to do
    assert fake.switchovers == [{"leader": "quant-postgres-1", "candidate": "quant-postgres-0"}]


# `tradingstack postgres switchover STACK [--to POD]`: the annotation the pass above acts on.


def leader_lock(holder: str) -> dict[str, Any]:
    document = lock(f"{SCOPE}-leader")
    document["metadata"]["annotations"] = {Patroni.LOCK_HOLDER_ANNOTATION: holder, "ttl": "30"}
    return document


def labelled_leader(name: str, ip: str = "127.0.0.1") -> dict[str, Any]:
    document = pod(name)
    document["metadata"]["labels"][Label.POSTGRES_ROLE] = Patroni.LEADER_ROLE
    document["status"]["podIP"] = ip
    return document


@pytest.mark.parametrize(("lost_ip", "removed"), [("127.0.0.2", True), ("127.0.0.1", False)])
async def test_a_leader_label_is_removed_from_a_member_that_lost_the_lock_and_does_not_answer(
    lost_ip: str, removed: bool
) -> None:
    """quant-postgres-1's pod is still labelled leader, quant-postgres-2 holds the lock (and is labelled too). When
    1's Patroni does not answer (its pod IP 127.0.0.2, where nothing listens) its label is removed and a Warning
    names both; when it answers (a demoted leader about to label itself) nothing is written."""
    async with patroni_stack() as (fake, api, port):
        fake.leader = "quant-postgres-2"
        api.objects[("Pod", "quant-postgres-1")] = labelled_leader("quant-postgres-1", lost_ip)
        api.objects[("Pod", "quant-postgres-2")] = labelled_leader("quant-postgres-2")
        api.objects[("ConfigMap", f"{SCOPE}-leader")] = leader_lock("quant-postgres-2")
        await one_pass(api, body(), port)
    labels = [call[2] for call in api.calls if call[:2] == ("labels", "Pod")]
    stale = [e for e in events(api) if e[1] == STALE_LEADER_REASON]
    assert (labels, stale) == ((["quant-postgres-1"], [("Warning", STALE_LEADER_REASON)]) if removed else ([], []))


def test_the_parser_takes_the_stack_the_member_and_the_namespace() -> None:
    args = build_parser().parse_args(["postgres", "switchover", "quant", "--to", "quant-postgres-2", "-n", "trading"])
    assert (args.stack, args.to, args.namespace, args.handler) == (
        "quant", "quant-postgres-2", "trading", _cmd_postgres_switchover,
    )  # fmt: skip
    assert build_parser().parse_args(["postgres", "switchover", "quant"]).to is None


class Stacks:
    def __init__(self, instances: int) -> None:
        self.instances, self.annotations = instances, dict[str, str]()

    async def get_stack(self, namespace: str, name: str) -> dict[str, Any] | None:
        stack = body()
        stack["spec"]["postgres"]["instances"] = self.instances
        return stack if name == "quant" else None

    async def annotate_stack(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotations.update(annotations)


async def test_the_command_sets_the_annotation_the_operator_parses() -> None:
    kube = Stacks(3)
    value = await ops.request_switchover(cast(Kube, kube), "trading", "quant", "quant-postgres-2", now=NOW)
    assert kube.annotations == {Annotation.SWITCHOVER: value}
    assert parse_switchover_request(value) == (NOW, "quant-postgres-2")
    assert parse_switchover_request(await ops.request_switchover(cast(Kube, kube), "trading", "quant", None, NOW)) == (
        NOW, None,
    )  # fmt: skip
    with pytest.raises(ops.OperationError, match="one Postgres instance"):
        await ops.request_switchover(cast(Kube, Stacks(1)), "trading", "quant", None, NOW)
    with pytest.raises(ops.OperationError, match="not found"):
        await ops.request_switchover(cast(Kube, kube), "trading", "ghost", None, NOW)
