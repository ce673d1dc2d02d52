"""The pgBackRest builder: configuration file, server settings, commands. The component tests in
tests/component/postgres/test_pitr.py run the same output against a real server and pgBackRest."""

from __future__ import annotations

import configparser
import shlex
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tradingstack.contract.pgbackrest import CONFIG_PATH, REPO1_PATH, PgBackRestEnv, cipher_pass_env
from tradingstack.render import pgbackrest
from tradingstack.render.pgbackrest import PgBackRestSettings, PgHost, S3Repo, TlsFiles, TlsServer

BASE = PgBackRestSettings(stanza="quant", pg_data="/var/lib/postgresql/data/pgdata")
S3 = S3Repo(endpoint="s3.internal", bucket="pg-archive", region="eu-north-1", port=9000, uri_style="path")

FILES = TlsFiles(ca_file="/tls/ca.crt", cert_file="/tls/x.crt", key_file="/tls/x.key")
PG_HOST = PgHost(host="quant-postgres.trading.svc.cluster.local", port=8432, files=FILES)


def parsed(settings: PgBackRestSettings) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(pgbackrest.config_text(settings))
    return {section: dict(parser[section]) for section in parser.sections()}


def test_config_of_the_defaults() -> None:
    assert parsed(BASE) == {
        "global": {
            "repo1-type": "posix",
            "repo1-path": REPO1_PATH,
            "repo1-retention-full": "2",
            "process-max": "1",
            "compress-type": "lz4",
            "archive-async": "y",
            "spool-path": "/var/spool/pgbackrest",
            "lock-path": "/tmp/pgbackrest",
            "archive-timeout": "60",
            "io-timeout": "60",
            "start-fast": "y",
            "log-level-console": "info",
            "log-level-file": "off",
        },
        "quant": {
            "pg1-path": "/var/lib/postgresql/data/pgdata",
            "pg1-port": "5432",
            "pg1-socket-path": "/var/run/postgresql",
            "pg1-user": "postgres",
        },
    }


def test_repo2_s3_and_cipher_on_both_repositories() -> None:
    settings = replace(
        BASE, repo2_s3=replace(S3, verify_tls=False, ca_file="/etc/ssl/s3-ca.pem"), cipher_type="aes-256-cbc"
    )
    config = parsed(settings)["global"]
    assert {k: v for k, v in config.items() if k.startswith("repo2-")} == {
        "repo2-type": "s3",
        "repo2-path": "/pgbackrest",
        "repo2-s3-endpoint": "s3.internal",
        "repo2-s3-bucket": "pg-archive",
        "repo2-s3-region": "eu-north-1",
        "repo2-s3-uri-style": "path",
        "repo2-storage-port": "9000",
        "repo2-storage-verify-tls": "n",
        "repo2-storage-ca-file": "/etc/ssl/s3-ca.pem",
        "repo2-retention-full": "2",
        "repo2-cipher-type": "aes-256-cbc",
    }
    assert config["repo1-cipher-type"] == "aes-256-cbc"


def test_no_secret_in_the_configuration() -> None:
    """Passphrases and keys come from env; an option of that name in the file would override nothing and leak."""
    text = pgbackrest.config_text(replace(BASE, repo2_s3=S3, cipher_type="aes-256-cbc"))
    for env in (PgBackRestEnv.REPO1_CIPHER_PASS, PgBackRestEnv.REPO2_S3_KEY, PgBackRestEnv.REPO2_S3_KEY_SECRET):
        option = env.removeprefix("PGBACKREST_").lower().replace("_", "-")
        assert option not in text
    assert cipher_pass_env(2) == PgBackRestEnv.REPO2_CIPHER_PASS


def test_optional_process_options() -> None:
    config = parsed(replace(BASE, log_path="/var/log/pgbackrest", archive_push_queue_max="1GiB", process_max=4))
    assert config["global"]["log-path"] == "/var/log/pgbackrest"
    assert config["global"]["log-level-file"] == "detail"
    assert config["global"]["archive-push-queue-max"] == "1GiB"
    assert config["global"]["process-max"] == "4"
    assert "global:restore" not in config


def test_the_restore_command_has_its_own_process_max_in_its_section() -> None:
    text = pgbackrest.config_text(replace(BASE, process_max=2, restore_process_max=6))
    config = parsed(replace(BASE, process_max=2, restore_process_max=6))
    assert config["global"]["process-max"] == "2"
    assert config["global:restore"] == {"process-max": "6"}
    # pgBackRest reads [global], then [global:<command>], then the stanza's sections.
    assert text.index("[global:restore]") < text.index("[quant]")


def test_postgres_settings_ship_wal_to_the_stanza() -> None:
    settings = replace(BASE, archive_timeout_seconds=30)
    assert pgbackrest.postgres_settings(settings) == {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"pgbackrest --config={CONFIG_PATH} --stanza=quant archive-push %p",
        "archive_timeout": "30s",
    }
    assert pgbackrest.postgres_args(settings)[:4] == ["-c", "wal_level=replica", "-c", "archive_mode=on"]


def test_archive_command_is_shell_safe_and_the_conf_quotes_it() -> None:
    settings = replace(BASE, config_path="/etc/pg backrest/it's.conf")
    command = pgbackrest.archive_command(settings)
    assert shlex.split(command) == [*pgbackrest.command(settings, "archive-push"), "%p"]
    line = next(line for line in pgbackrest.postgres_conf(settings).splitlines() if line.startswith("archive_command"))
    assert line == "archive_command = '" + command.replace("'", "''") + "'"


def test_commands() -> None:
    prefix = ["pgbackrest", f"--config={CONFIG_PATH}", "--stanza=quant"]
    assert pgbackrest.stanza_create_command(BASE) == [*prefix, "stanza-create"]
    assert pgbackrest.check_command(BASE) == [*prefix, "check"]
    assert pgbackrest.backup_command(BASE, "full") == [*prefix, "--type=full", "backup"]
    assert pgbackrest.backup_command(BASE, "diff", repo=2) == [*prefix, "--repo=2", "--type=diff", "backup"]
    assert pgbackrest.verify_command(BASE) == [*prefix, "verify"]
    assert pgbackrest.info_command(BASE) == [*prefix, "--output=json", "info"]


def test_restore_to_the_end_of_the_archive() -> None:
    assert pgbackrest.restore_command(BASE)[-1] == "restore"
    assert not any(arg.startswith(("--type", "--target")) for arg in pgbackrest.restore_command(BASE))
    assert "--delta" in pgbackrest.restore_command(BASE, delta=True)


def test_restore_to_a_time_promotes_at_the_target_in_utc() -> None:
    oslo = timezone(timedelta(hours=1))
    command = pgbackrest.restore_command(BASE, datetime(2026, 12, 3, 14, 5, 6, 7008, tzinfo=oslo))
    assert command[-4:] == [
        "--type=time",
        "--target=2026-12-03 13:05:06.007008+00",
        "--target-action=promote",
        "restore",
    ]
    assert pgbackrest.format_target_time(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02 00:00:00.000000+00"


def test_a_target_without_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        pgbackrest.restore_command(BASE, datetime(2026, 12, 3, 13, 0))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stanza": "quant main"}, "stanza"),
        ({"stanza": ""}, "stanza"),
        ({"stanza": "-x"}, "stanza"),
        ({"pg_data": "relative/pgdata"}, "absolute"),
        ({"repo1_path": "/repo\nrepo1-path=/elsewhere"}, "spans lines"),
        ({"repo2_s3": replace(S3, bucket="b\n[other]")}, "spans lines"),
        ({"process_max": 0}, "at least 1"),
        ({"restore_process_max": 0}, "at least 1"),
        ({"retention_full": 0}, "at least 1"),
        ({"archive_timeout_seconds": 0}, "at least 1"),
        ({"io_timeout_seconds": 0}, "at least 1"),
        ({"repo1_path": None}, "at least one repository"),
        ({"pg_host": replace(PG_HOST, host="db\npg1-host=evil")}, "spans lines"),
    ],
)
def test_invalid_settings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(BASE, **changes)


def test_restore_from_one_repository() -> None:
    assert pgbackrest.restore_command(BASE, repo=2)[3:] == ["--repo=2", "restore"]


def test_restore_of_a_named_backup_set() -> None:
    target = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    command = pgbackrest.restore_command(BASE, target, repo=1, backup_set="20261203-125900F", delta=True)
    assert command[3:6] == ["--repo=1", "--set=20261203-125900F", "--delta"]
    assert command[-1] == "restore"


def test_the_database_host_serves_tls_to_the_named_clients_only() -> None:
    server = TlsServer(files=FILES, port=8432, auth=(("jobs", "quant"), ("other", "quant")))
    settings = replace(BASE, tls_server=server)
    text = pgbackrest.config_text(settings)
    # A repeated key is how pgBackRest takes a list: one line per client.
    assert "tls-server-auth=jobs=quant\ntls-server-auth=other=quant\n" in text
    options = parsed(replace(settings, tls_server=replace(server, auth=(("jobs", "quant"),))))["global"]
    assert {k: v for k, v in options.items() if k.startswith("tls-")} == {
        "tls-server-address": "*",
        "tls-server-port": "8432",
        "tls-server-ca-file": "/tls/ca.crt",
        "tls-server-cert-file": "/tls/x.crt",
        "tls-server-key-file": "/tls/x.key",
        "tls-server-auth": "jobs=quant",
    }
    assert "pg1-host" not in text
    assert pgbackrest.server_command(settings) == ["pgbackrest", f"--config={CONFIG_PATH}", "server"]


def test_server_command_needs_tls_server_settings() -> None:
    with pytest.raises(ValueError, match="tls_server"):
        pgbackrest.server_command(BASE)


def test_a_repository_host_reaches_pg1_over_tls() -> None:
    stanza = parsed(replace(BASE, pg_host=PG_HOST))["quant"]
    assert list(stanza)[:6] == [
        "pg1-host",
        "pg1-host-type",
        "pg1-host-port",
        "pg1-host-ca-file",
        "pg1-host-cert-file",
        "pg1-host-key-file",
    ]
    assert stanza["pg1-host"] == PG_HOST.host and stanza["pg1-host-type"] == "tls"
    assert stanza["pg1-host-key-file"] == "/tls/x.key"
    assert stanza["pg1-path"] == BASE.pg_data


def test_s3_alone_renders_no_repo1() -> None:
    options = parsed(replace(BASE, repo1_path=None, repo2_s3=S3, cipher_type="aes-256-cbc"))["global"]
    assert not [k for k in options if k.startswith("repo1-")]
    assert options["repo2-type"] == "s3" and options["repo2-cipher-type"] == "aes-256-cbc"
