"""pitr in the rendered stack (render.pitr, render.postgres, render.secrets, render.network) and its spec rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from pydantic import ValidationError

from tests import netpol
from tradingstack.api import TradingStack
from tradingstack.api.crd import build_crd
from tradingstack.components import render
from tradingstack.contract.pgbackrest import CIPHER_PASS_KEY, CLIENT_CN, PgBackRestEnv, PitrToolCommand, TlsFile
from tradingstack.reconcile.stack import new_tls_keys
from tradingstack.render import pitr
from tradingstack.render.certificates import load_authority
from tradingstack.render.common import Cluster
from tradingstack.render.network import render_network_policies
from tradingstack.render.pgbackrest_tls import CA_KEY, LEAF_VALIDITY
from tradingstack.render.secrets import generated_secret_names, generated_secrets, referenced_secret_keys

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
S3 = {
    "endpoint": "s3.example.com",
    "bucket": "backups",
    "accessKeyId": {"name": "s3-keys", "key": "id"},
    "secretAccessKey": {"name": "s3-keys", "key": "secret"},
}


def stack(**postgres: Any) -> TradingStack:
    return TradingStack.model_validate(
        {"metadata": {"name": "quant", "namespace": "trading", "uid": "u-1"}, "spec": {"postgres": postgres}}
    )


def with_pitr(**pitr_spec: Any) -> TradingStack:
    return stack(pitr={"enabled": True, **pitr_spec})


def objects(s: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(s, s.owner_reference())}


def pod(s: TradingStack) -> dict[str, Any]:
    spec: dict[str, Any] = objects(s)["StatefulSet", "quant-postgres"]["spec"]["template"]["spec"]
    return spec


def container(s: TradingStack, name: str) -> dict[str, Any]:
    return next(c for c in pod(s)["containers"] if c["name"] == name)


def config(s: TradingStack, key: str) -> str:
    return str(objects(s)["ConfigMap", "quant-postgres-pgbackrest"]["data"][key])


def test_pitr_is_off_by_default_and_renders_nothing_of_pgbackrest() -> None:
    plain = stack()
    rendered = objects(plain)
    assert not [key for key in rendered if "pgbackrest" in key[1] or "pitr" in key[1]]
    assert "args" not in container(plain, "postgres")
    assert [c["name"] for c in pod(plain)["containers"]] == ["postgres"]
    ports = rendered["Service", "quant-postgres"]["spec"]["ports"]
    assert [p["name"] for p in ports] == ["postgres"]
    assert generated_secret_names(plain) == ["quant-redis", "quant-postgres"]


def test_the_two_configuration_variants() -> None:
    s = with_pitr(s3=S3)
    db, job = config(s, pitr.DB_CONFIG), config(s, pitr.JOB_CONFIG)
    assert "tls-server-port=8432" in db and "tls-server-auth=pgbackrest-client=quant" in db
    assert "tls-server-key-file=/etc/pgbackrest/tls/server.key" in db
    assert "pg1-host" not in db
    assert "tls-server" not in job
    assert "pg1-host=quant-postgres.trading.svc.cluster.local\npg1-host-type=tls\npg1-host-port=8432\n" in job
    assert "pg1-host-cert-file=/etc/pgbackrest/tls/client.crt" in job
    for text in (db, job):
        assert "repo1-path=/backups/pgbackrest" in text
        assert "repo2-path=/pgbackrest/trading/quant" in text  # unique per namespace and stack
        assert "repo1-cipher-type=aes-256-cbc" in text and "repo2-cipher-type=aes-256-cbc" in text
        assert "archive-async=y" in text and "archive-push-queue-max=4294967296" in text


def test_process_max_restore_process_max_and_compression_reach_both_configurations_and_the_sidecar_limit() -> None:
    default = with_pitr()
    for key in (pitr.DB_CONFIG, pitr.JOB_CONFIG):
        assert "process-max=2\ncompress-type=lz4\n" in config(default, key)
        assert "\n[global:restore]\nprocess-max=4\n" in config(default, key)
    assert container(default, pitr.SIDECAR_NAME)["resources"]["limits"]["cpu"] == "2"
    tuned = with_pitr(processMax=4, restoreProcessMax=8, compressType="zst")
    for key in (pitr.DB_CONFIG, pitr.JOB_CONFIG):
        assert "process-max=4\ncompress-type=zst\n" in config(tuned, key)
        assert "\n[global:restore]\nprocess-max=8\n" in config(tuned, key)
    # The backup Jobs' processes read and compress the files in the sidecar: one CPU each.
    assert container(tuned, pitr.SIDECAR_NAME)["resources"]["limits"] == {"cpu": "4", "memory": "256Mi"}


def test_s3_alone_has_no_repo1_and_no_node_affinity() -> None:
    s = with_pitr(volume=False, s3=S3 | {"path": "/mine", "caSecret": {"name": "s3-ca", "key": "ca.pem"}})
    job = config(s, pitr.JOB_CONFIG)
    assert (
        "repo1-" not in job and "repo2-path=/mine" in job and "repo2-storage-ca-file=/etc/pgbackrest/s3-ca.crt" in job
    )
    cronjob = objects(s)["CronJob", "quant-postgres-pitr-full"]
    assert "affinity" not in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "backups" not in [m["name"] for m in container(s, "postgres")["volumeMounts"]]
    sources = next(v for v in pod(s)["volumes"] if v["name"] == pitr.CONFIG_VOLUME)["projected"]["sources"]
    assert {"key": "ca.pem", "path": "s3-ca.crt"} in sources[-1]["secret"]["items"]


def test_the_server_archives_with_pgbackrest_env_from_the_secrets() -> None:
    s = with_pitr(s3=S3, archiveTimeoutSeconds=30)
    server = container(s, "postgres")
    args = server["args"]
    assert args[0] == "postgres"
    assert "archive_command=pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=quant archive-push %p" in args
    assert "archive_timeout=30s" in args and "archive_mode=on" in args
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in server["env"]}
    assert env[PgBackRestEnv.PG1_USER] == {"name": "quant-postgres", "key": "username"}
    assert env[PgBackRestEnv.REPO1_CIPHER_PASS] == {"name": "quant-pgbackrest", "key": CIPHER_PASS_KEY}
    assert env[PgBackRestEnv.REPO2_S3_KEY_SECRET] == {"name": "s3-keys", "key": "secret"}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert mounts["/etc/pgbackrest"] == pitr.CONFIG_VOLUME and mounts["/backups"] == "backups"
    assert mounts["/var/spool/pgbackrest"] == pitr.SPOOL_VOLUME and mounts["/tmp"] == "tmp"  # lock path under /tmp


def test_without_encryption_no_passphrase_env_and_no_passphrase_secret() -> None:
    s = with_pitr(encrypt=False)
    names = [e["name"] for e in container(s, "postgres")["env"]]
    assert PgBackRestEnv.REPO1_CIPHER_PASS not in names
    assert "repo1-cipher-type" not in config(s, pitr.DB_CONFIG)
    assert "quant-pgbackrest" not in generated_secret_names(s)


def test_the_sidecar_runs_the_builders_commands_as_the_tls_server() -> None:
    s = with_pitr()
    sidecar = container(s, pitr.SIDECAR_NAME)
    assert sidecar["command"] == ["sh", f"{pitr.SCRIPTS_DIR}/{pitr.SIDECAR_SCRIPT}"]
    assert sidecar["ports"] == [{"name": "pgbackrest", "containerPort": 8432, "protocol": "TCP"}]
    assert sidecar["image"] == s.spec.postgres.image
    script = config(s, pitr.SIDECAR_SCRIPT)
    assert "until pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=quant stanza-create; do" in script
    assert "SELECT pg_reload_conf()" in script
    # Only a primary creates the stanza (a Patroni replica's sidecar waits for its promotion); the server serves.
    assert script.index("pg_is_in_recovery()") < script.index("stanza-create; do")
    assert script.rstrip().endswith("exec pgbackrest --config=/etc/pgbackrest/pgbackrest.conf server")
    assert "@" not in script.replace("@...@", "")
    shared = {m["name"] for m in sidecar["volumeMounts"]}
    assert {"data", "run", "tmp", pitr.CONFIG_VOLUME, "backups"} <= shared
    service_ports = objects(s)["Service", "quant-postgres"]["spec"]["ports"]
    assert {"name": "pgbackrest", "port": 8432, "targetPort": "pgbackrest", "protocol": "TCP"} in service_ports


def test_each_side_mounts_only_its_own_key() -> None:
    s = with_pitr()
    db_items = next(v for v in pod(s)["volumes"] if v["name"] == pitr.CONFIG_VOLUME)["projected"]["sources"][1]
    job_pod = objects(s)["CronJob", "quant-postgres-pitr-diff"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    job_items = next(v for v in job_pod["volumes"] if v["name"] == pitr.CONFIG_VOLUME)["projected"]["sources"][1]
    assert [i["key"] for i in db_items["secret"]["items"]] == [TlsFile.CA, TlsFile.SERVER_CERT, TlsFile.SERVER_KEY]
    assert [i["key"] for i in job_items["secret"]["items"]] == [TlsFile.CA, TlsFile.CLIENT_CERT, TlsFile.CLIENT_KEY]


def test_backup_cronjobs_run_the_tool_beside_the_database() -> None:
    s = with_pitr(fullSchedule="0 3 * * 0", timeZone="Europe/Oslo")
    rendered = objects(s)
    full = rendered["CronJob", "quant-postgres-pitr-full"]["spec"]
    assert (full["schedule"], full["timeZone"], full["concurrencyPolicy"]) == ("0 3 * * 0", "Europe/Oslo", "Forbid")
    template = full["jobTemplate"]["spec"]["template"]
    tool = template["spec"]["containers"][0]
    assert tool["args"] == [
        PitrToolCommand.BACKUP,
        "--type=full",
        "--config=/etc/pgbackrest/pgbackrest.conf",
        "--stanza=quant",
    ]
    assert tool["terminationMessagePolicy"] == "FallbackToLogsOnError"
    affinity = template["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity == [
        {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {
                "matchLabels": {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "quant"}
            },
        }
    ]
    # The pg_dump backups share the volume, so they need the node too.
    dump = rendered["CronJob", "quant-postgres-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert dump["affinity"] == template["spec"]["affinity"]
    diff = rendered["CronJob", "quant-postgres-pitr-diff"]["spec"]
    assert diff["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][1] == "--type=diff"
    status = rendered["CronJob", "quant-postgres-pitr-archive"]["spec"]
    assert (
        status["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0] == PitrToolCommand.ARCHIVE_STATUS
    )
    assert status["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 300 and status["startingDeadlineSeconds"] <= 240


def test_no_diff_cronjob_without_a_diff_schedule() -> None:
    names = {name for kind, name in objects(with_pitr(diffSchedule=None)) if kind == "CronJob"}
    assert names == {"quant-postgres-backup", "quant-postgres-pitr-full", "quant-postgres-pitr-archive"}


def test_restore_from_the_repository_is_an_init_container_only_when_asked() -> None:
    assert "initContainers" not in pod(with_pitr())
    assert pitr.RESTORE_SCRIPT not in objects(with_pitr())["ConfigMap", "quant-postgres-pgbackrest"]["data"]
    latest = stack(pitr={"enabled": True}, restore={"from": "latest"})
    init = pod(latest)["initContainers"]
    assert [c["name"] for c in init] == [pitr.RESTORE_INIT_NAME]
    assert init[0]["command"][-1] == "/var/lib/postgresql/data/pgdata"
    assert ("Job", "quant-postgres-restore") not in objects(latest)  # no pg_dump restore besides it
    script = config(latest, pitr.RESTORE_SCRIPT)
    assert "--stanza=quant --delta restore" in script and "--type=time" not in script
    timed = stack(pitr={"enabled": True}, restore={"targetTime": "2026-12-01T10:30:00+01:00"})
    assert "--delta --type=time '--target=2026-12-01 09:30:00.000000+00' --target-action=promote restore" in config(
        timed, pitr.RESTORE_SCRIPT
    )


def test_a_named_pg_dump_backup_is_still_restored_by_the_job_with_pitr_on() -> None:
    named = stack(pitr={"enabled": True}, restore={"from": "b-20261201"})
    assert "initContainers" not in pod(named)
    assert ("Job", "quant-postgres-restore") in objects(named)


def test_the_pgbackrest_port_is_open_to_the_backup_jobs_only() -> None:
    def labels(s: TradingStack, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/instance": s.name, "trading.quantumtrader.dev/stack": s.name,
                "app.kubernetes.io/name": name}  # fmt: skip

    for s, open_to_jobs in ((stack(), False), (with_pitr(), True)):
        policies = render_network_policies(s, s.owner_reference(), Cluster())
        server = netpol.pod("db", s.namespace, labels(s, "postgres"))
        jobs = netpol.pod("job", s.namespace, labels(s, "postgres-backup"))
        service = netpol.pod("svc", s.namespace, labels(s, "some-service"))
        assert netpol.allowed(policies, jobs, server, 8432) is open_to_jobs
        assert not netpol.allowed(policies, service, server, 8432)


def test_the_s3_networks_are_reachable_from_the_database_and_the_backup_jobs() -> None:
    s3 = {"endpoint": "s3.example.net", "bucket": "backups", "accessKeyId": {"name": "s3", "key": "id"},
          "secretAccessKey": {"name": "s3", "key": "secret"},
          "egress": [{"cidr": "192.0.2.0/24", "ports": [{"port": 443}]}]}  # fmt: skip
    s = stack(pitr={"enabled": True, "volume": False, "s3": s3})
    policies = render_network_policies(s, s.owner_reference(), Cluster())
    common = {"app.kubernetes.io/instance": s.name, "trading.quantumtrader.dev/stack": s.name}
    for name in ("postgres", "postgres-backup"):
        assert netpol.allowed(policies, netpol.pod(name, s.namespace, {**common, "app.kubernetes.io/name": name}),
                       netpol.address("192.0.2.10"), 443)  # fmt: skip
    service = netpol.pod("svc", s.namespace, {**common, "app.kubernetes.io/name": "some-service"})
    assert not netpol.allowed(policies, service, netpol.address("192.0.2.10"), 443)


def test_generated_secrets_hold_the_passphrase_and_certificates_for_the_service_name() -> None:
    s = with_pitr(s3=S3)
    secrets = {
        x["metadata"]["name"]: x
        for x in generated_secrets(s, s.owner_reference(), lambda: "pp", "corp.example", new_tls_keys, NOW)
    }
    assert generated_secret_names(s) == list(secrets)
    assert secrets["quant-pgbackrest"]["stringData"] == {CIPHER_PASS_KEY: "pp"}
    tls = secrets["quant-pgbackrest-tls"]
    assert tls["metadata"]["annotations"]  # retained like the other generated Secrets
    files = tls["stringData"]
    server = x509.load_pem_x509_certificate(files[TlsFile.SERVER_CERT].encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert names[0] == "quant-postgres.trading.svc.corp.example"
    client = x509.load_pem_x509_certificate(files[TlsFile.CLIENT_CERT].encode())
    assert client.subject.rfc4514_string() == f"CN={CLIENT_CN}"
    ca = x509.load_pem_x509_certificate(files[TlsFile.CA].encode())
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert server.not_valid_after_utc == client.not_valid_after_utc == NOW + LEAF_VALIDITY
    assert ca.not_valid_after_utc == NOW + timedelta(days=3650)
    # The CA's key is kept for renewals (reconcile.tls), and mounted in no pod: each side mounts its files by item.
    assert load_authority(files[TlsFile.CA], files[CA_KEY]) is not None
    for job in (False, True):
        (source,) = [x for x in pitr.config_volume(s, job)["projected"]["sources"] if "secret" in x]
        assert CA_KEY not in {item["key"] for item in source["secret"]["items"]}
    assert referenced_secret_keys(s)["s3-keys"] == ("id", "secret")


def test_the_tls_secret_needs_injected_keys_and_time() -> None:
    s = with_pitr()
    with pytest.raises(ValueError, match="new_tls_keys"):
        generated_secrets(s, s.owner_reference(), lambda: "pp")


@pytest.mark.parametrize(
    ("postgres", "message"),
    [
        ({"pitr": {"enabled": True, "volume": False}}, "needs a repository"),
        ({"restore": {"targetTime": "2026-12-01T10:00:00Z"}}, "targetTime needs pitr.enabled"),
        (
            {"pitr": {"enabled": True}, "restore": {"from": "b-1", "targetTime": "2026-12-01T10:00:00Z"}},
            "from must be latest",
        ),
        ({"pitr": {"enabled": True}, "restore": {"targetTime": "2026-12-01T10:00:00"}}, "time zone"),
        ({"pitr": {"enabled": True, "s3": S3 | {"endpoint": "10.0.0.7"}}}, "endpoint"),
        ({"pitr": {"enabled": True, "processMax": 0}}, "processMax"),
        ({"pitr": {"enabled": True, "restoreProcessMax": 33}}, "restoreProcessMax"),
        ({"pitr": {"enabled": True, "compressType": "bz2"}}, "compressType"),
    ],
)
def test_the_models_refuse(postgres: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        stack(**postgres)


def test_the_crd_carries_the_same_rules_as_cel() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    postgres = schema["properties"]["spec"]["properties"]["postgres"]
    rules = {v["message"]: v["rule"] for v in postgres["x-kubernetes-validations"]}
    assert "restore.targetTime needs pitr.enabled" in rules
    pitr_rules = [v["message"] for v in postgres["properties"]["pitr"]["x-kubernetes-validations"]]
    assert pitr_rules == ["pitr needs a repository: volume, s3 or both"]
    restore = postgres["properties"]["restore"]
    assert restore["properties"]["targetTime"]["format"] == "date-time"
    assert [v["message"] for v in restore["x-kubernetes-validations"]] == [
        "targetTime recovers from the pgBackRest repository: from must be latest"
    ]


@pytest.mark.parametrize(("quantity", "size"), [("4Gi", 4 << 30), ("1.5k", 1500), ("512Mi", 512 << 20), ("1", 1)])
def test_the_queue_limit_reaches_pgbackrest_in_bytes(quantity: str, size: int) -> None:
    assert f"archive-push-queue-max={size}\n" in config(with_pitr(archivePushQueueMax=quantity), pitr.DB_CONFIG)


def test_encrypt_is_fixed_while_pitr_is_enabled() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [v["rule"] for v in schema["properties"]["spec"]["x-kubernetes-validations"]]
    encrypt = [r for r in rules if "encrypt" in r]
    assert len(encrypt) == 1 and "oldSelf.postgres.pitr.enabled" in encrypt[0]
