"""A Patroni cluster (`spec.postgres.instances` > 1): its configuration, pods, Services, RBAC and flows."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.psa import restricted_violations
from tests.unit.components.test_postgres import example_stack
from tests.unit.test_render_pitr import S3
from tradingstack.api import TradingStack
from tradingstack.api.spec import PITR_CLUSTER_REPOSITORY
from tradingstack.components.rbac import namespaced_rules
from tradingstack.contract import Label, Patroni, PatroniEnv
from tradingstack.render import patroni, pitr
from tradingstack.render.common import PATRONI_PORT
from tradingstack.render.flows import OPERATOR, Network, component_pods, stack_flows
from tradingstack.render.postgres import PGDATA, dsn, render_postgres

REPO = Path(__file__).resolve().parents[3]
PITR_S3 = {"enabled": True, "volume": False, "s3": S3}


def _objects(stack: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in render_postgres(stack, stack.owner_reference())}


def _config(stack: TradingStack) -> dict[str, Any]:
    data = _objects(stack)[("ConfigMap", "quant-postgres-patroni")]["data"]
    config: dict[str, Any] = json.loads(data[patroni.CONFIG_FILE])
    return config


def _pod(stack: TradingStack) -> dict[str, Any]:
    template: dict[str, Any] = _objects(stack)[("StatefulSet", "quant-postgres")]["spec"]["template"]
    return template


def test_one_instance_renders_no_patroni_object() -> None:
    kinds = {kind for kind, _ in _objects(example_stack())}
    assert kinds.isdisjoint({"ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget"})
    assert "command" not in _pod(example_stack())["spec"]["containers"][0]


def test_the_configuration_names_the_scope_namespace_labels_and_the_stacks_data_directory() -> None:
    config = _config(example_stack(instances=3))
    assert config["scope"] == "quant-postgres"
    assert config["kubernetes"] == {
        "use_endpoints": False,
        "bypass_api_service": False,
        "labels": {Label.NAME: "postgres", Label.INSTANCE: "quant"},
        "scope_label": Label.POSTGRES_CLUSTER,
        "role_label": Label.POSTGRES_ROLE,
    }
    assert config["postgresql"]["data_dir"] == PGDATA
    assert config["bootstrap"]["post_bootstrap"] == "createdb trading --maintenance-db"
    dcs = config["bootstrap"]["dcs"]
    # A leader cut off from the API server demotes itself before its lock expires.
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]


@pytest.mark.parametrize("synchronous", [False, True])
def test_synchronous_mode_follows_the_spec_and_is_never_strict(synchronous: bool) -> None:
    dcs = _config(example_stack(instances=2, synchronous=synchronous))["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is synchronous
    assert dcs["synchronous_mode_strict"] is False


def test_the_pods_run_patroni_with_their_own_account_and_carry_the_scope_patroni_selects_by() -> None:
    stack = example_stack(instances=3)
    statefulset = _objects(stack)[("StatefulSet", "quant-postgres")]
    assert statefulset["spec"]["replicas"] == 3
    template = statefulset["spec"]["template"]
    config = _config(stack)
    selected = {**config["kubernetes"]["labels"], config["kubernetes"]["scope_label"]: config["scope"]}
    assert selected.items() <= template["metadata"]["labels"].items()
    assert selected.items() >= statefulset["spec"]["selector"]["matchLabels"].items()
    pod = template["spec"]
    assert restricted_violations(pod) == []
    assert pod["serviceAccountName"] == "quant-postgres" and pod["automountServiceAccountToken"] is True
    server = pod["containers"][0]
    assert server["command"][-2:] == ["patroni", f"{patroni.CONFIG_DIR}/{patroni.CONFIG_FILE}"]
    assert server["command"][0] == "dumb-init"  # the first process, so Patroni gets SIGTERM (next test)
    assert server["readinessProbe"]["httpGet"] == {"path": Patroni.READINESS_PATH, "port": "patroni"}
    assert server["livenessProbe"]["httpGet"] == {"path": Patroni.LIVENESS_PATH, "port": "patroni"}
    env = {e["name"]: e for e in server["env"]}
    assert env[PatroniEnv.POD_IP]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env[PatroniEnv.NAME]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[PatroniEnv.POSTGRES_CONNECT]["value"] == f"$({PatroniEnv.POD_IP}):5432"
    secret = env[PatroniEnv.REPLICATION_PASSWORD]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "quant-postgres", "key": "password"}


def test_the_kubelets_stop_signal_reaches_patroni_as_sigterm() -> None:
    """The kubelet stops a container with its image's STOPSIGNAL; dumb-init, the first process, must rewrite exactly
    that signal into SIGTERM (Patroni's shutdown, which releases the leader lock) and pass it to Patroni alone."""
    dockerfile = (REPO / "images" / "postgres" / "Dockerfile").read_text()
    stop = re.search(r"^STOPSIGNAL (\w+)$", dockerfile, re.MULTILINE)
    assert stop is not None and signal.Signals[stop.group(1)] == patroni.IMAGE_STOP_SIGNAL
    assert re.search(r"\bdumb-init\b", dockerfile.split("apt-get install", 1)[1].split("&&", 1)[0])
    command = patroni.command()
    rewrites = dict(command[i + 1].split(":") for i, arg in enumerate(command) if arg == "--rewrite")
    assert rewrites == {str(patroni.IMAGE_STOP_SIGNAL.value): str(signal.SIGTERM.value)}
    assert "--single-child" in command


def test_a_changed_configuration_rolls_the_pods() -> None:
    off, on = (_pod(example_stack(instances=2, synchronous=s))["metadata"]["annotations"] for s in (False, True))
    assert off != on


def test_the_read_write_service_selects_the_leader_and_the_read_only_one_the_replicas() -> None:
    objects = _objects(example_stack(instances=3, metrics={"enabled": True}))
    leader = objects[("Service", "quant-postgres")]["spec"]
    replicas = objects[("Service", "quant-postgres-replicas")]["spec"]
    assert leader["selector"][Label.POSTGRES_ROLE] == Patroni.LEADER_ROLE == "master"
    assert replicas["selector"][Label.POSTGRES_ROLE] == Patroni.REPLICA_ROLE
    assert [p["name"] for p in leader["ports"]] == ["postgres", "metrics"]
    assert [p["name"] for p in replicas["ports"]] == ["postgres"]
    # The dsn keeps naming the read-write Service.
    assert "@quant-postgres.trading.svc.cluster.local:5432/" in dsn(example_stack(instances=3), "pw", "cluster.local")


def test_the_role_grants_exactly_what_patronis_kubernetes_dcs_calls_and_the_operator_holds_it() -> None:
    objects = _objects(example_stack(instances=3))
    role = objects[("Role", "quant-postgres")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]},
    ]
    binding = objects[("RoleBinding", "quant-postgres")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "quant-postgres"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "quant-postgres", "namespace": "trading"}]
    assert objects[("ServiceAccount", "quant-postgres")]["automountServiceAccountToken"] is False
    # RBAC escalation: the operator can create this Role only while it holds every verb it grants.
    held = {(u.group, u.plural): u.verbs for u in namespaced_rules()}
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= held[("", rule["resources"][0])]


def test_the_flows_let_the_members_replicate_and_reach_the_api_server_and_the_operator_reach_them() -> None:
    server = component_pods("postgres")
    flows = {(f.source, f.destination, t.port) for f in stack_flows(example_stack(instances=3)) for t in f.targets}
    assert {(server, server, 5432), (server, server, 8008), (OPERATOR, server, PATRONI_PORT.number)} <= flows
    assert {(server, Network("0.0.0.0/0"), port) for port in (443, 6443)} <= flows
    single = {(f.source, f.destination) for f in stack_flows(example_stack())}
    assert (server, server) not in single


@pytest.mark.parametrize(
    ("postgres", "message"),
    [
        ({"synchronous": True}, "synchronous needs instances of 2 or more"),
        ({"instances": 3, "pitr": {"enabled": True, "volume": True}}, re.escape(PITR_CLUSTER_REPOSITORY)),
        ({"instances": 3, "pitr": {"enabled": True, "volume": True, "s3": S3}}, re.escape(PITR_CLUSTER_REPOSITORY)),
        ({"instances": 6}, "less than or equal to 5"),
        ({"instances": 0}, "greater than or equal to 1"),
    ],
)
def test_the_spec_refuses_what_this_release_cannot_run(postgres: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        example_stack(**postgres)


def test_a_cluster_archives_from_the_leader_and_every_member_has_the_sidecar() -> None:
    stack = example_stack(instances=3, pitr=PITR_S3, restore={"from": "nightly-1"})
    pod = _pod(stack)["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"postgres", pitr.SIDECAR_NAME}
    assert "initContainers" not in pod, "a restore from pg_dump runs as a Job, not from the repository"
    server = containers["postgres"]
    assert {m["name"] for m in pitr.mounts()} <= {m["name"] for m in server["volumeMounts"]}
    assert {e["name"] for e in pitr.env(stack, "quant-postgres")} <= {e["name"] for e in server["env"]}
    # Before Patroni, the member pushes what its server left unarchived (a lost leader's last segments).
    assert server["command"] == [*patroni.STOP_COMMAND, *pitr.pending_command(PGDATA), *patroni.command()[-2:]]
    assert pitr.scripts_mount() in server["volumeMounts"]
    files = _objects(stack)[("ConfigMap", pitr.config_map_name(stack))]["data"]
    pending = files[pitr.PENDING_SCRIPT]
    assert "--no-archive-async --io-timeout=10 archive-push" in pending and pending.rstrip().endswith('exec "$@"')
    postgresql = _config(stack)["postgresql"]
    # A standby never pushes into the repository (pgBackRest's backup refuses archive_mode always).
    assert postgresql["parameters"]["archive_mode"] == "on"
    assert "--stanza=quant archive-push %p" in postgresql["parameters"]["archive_command"]
    assert postgresql["recovery_conf"]["restore_command"].endswith('--stanza=quant archive-get %f "%p"')
    # The pod rolls when the archive settings change, as the single server's does.
    hashed = _pod(example_stack(instances=3, pitr=PITR_S3 | {"archiveTimeoutSeconds": 30}))
    assert hashed["metadata"]["annotations"] != _pod(stack)["metadata"]["annotations"]
    plain = _config(example_stack(instances=3))["postgresql"]
    assert "archive_mode" not in plain["parameters"] and "recovery_conf" not in plain
    assert _pod(example_stack(instances=3))["spec"]["containers"][0]["command"] == patroni.command()
    single = render_postgres(example_stack(pitr=PITR_S3), example_stack().owner_reference())
    single_files = next(m for m in single if m["metadata"]["name"] == pitr.config_map_name(stack))["data"]
    assert pitr.PENDING_SCRIPT not in single_files


@pytest.mark.parametrize("target", [None, "2026-12-01T09:30:00Z"])
def test_a_restore_from_the_repository_is_the_first_members_bootstrap(target: str | None) -> None:
    restore = {"from": "latest", **({"targetTime": target} if target else {})}
    stack = example_stack(instances=3, pitr=PITR_S3, restore=restore)
    bootstrap = _config(stack)["bootstrap"]
    assert bootstrap["method"] == patroni.RESTORE_METHOD
    assert bootstrap[patroni.RESTORE_METHOD] == {
        "command": " ".join(pitr.restore_script_command(PGDATA)),
        "no_params": True,
        # pgBackRest's recovery settings (archive-get, the target) stay for the server's recovery.
        "keep_existing_recovery_conf": True,
    }
    assert "initdb" not in bootstrap and "post_bootstrap" not in bootstrap, "the database comes with the restore"
    assert "initContainers" not in _pod(stack)["spec"], "one member restores, the others copy it"
    script = _objects(stack)[("ConfigMap", pitr.config_map_name(stack))]["data"][pitr.RESTORE_SCRIPT]
    assert ("--type=time" in script) is (target is not None)
    assert "method" not in _config(example_stack(instances=3, pitr=PITR_S3))["bootstrap"]


def test_going_from_one_instance_to_a_cluster_changes_no_immutable_field_of_the_statefulset() -> None:
    # The API server refuses a change of these: 1 -> N must be an update of the same StatefulSet.
    one, three = (_objects(example_stack(instances=n))[("StatefulSet", "quant-postgres")]["spec"] for n in (1, 3))
    for immutable in ("selector", "serviceName", "volumeClaimTemplates"):
        assert one[immutable] == three[immutable], immutable
