"""The backup tool against a real PostgreSQL: round trip, retention, damage, failures, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from psycopg import sql

from tests.component.postgres.conftest import BackupTool, table_fingerprints
from tests.component.postgres.server import PostgresServer

pytestmark = pytest.mark.component

BACKUP_INFO_FIELDS = {"time", "name", "sizeBytes", "checksum", "verified"}


def _damage(archive: Path) -> None:
    """Flip bytes in the middle of the archive, inside table data, where the table of contents still reads."""
    content = bytearray(archive.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 16] = bytes(b ^ 0xFF for b in content[middle : middle + 16])
    archive.write_bytes(bytes(content))


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_backup_then_drop_then_restore_gives_back_identical_tables(
    tool: BackupTool, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    before = table_fingerprints(postgres_server, tool.database)
    assert before["pgbench_accounts"][0] == 200_000
    termination_log = tmp_path / "termination-log"
    termination_log.touch()

    [result] = tool.ok("backup", "--termination-log", str(termination_log))

    assert set(result) == BACKUP_INFO_FIELDS
    assert result["verified"] is True
    archive = tool.directory / f"{result['name']}.dump"
    assert result["sizeBytes"] == archive.stat().st_size
    assert result["checksum"] == f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()}"
    assert json.loads(termination_log.read_text()) == result
    [listed] = tool.ok("list")
    assert listed["database"] == tool.database
    assert listed["serverVersion"].split(".")[0] == postgres_server.bin_dir.parent.name

    with postgres_server.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(tool.database)))
    [restored] = tool.ok("restore", "--from", "latest")

    assert restored == {"restored": result["name"], "database": tool.database}
    assert table_fingerprints(postgres_server, tool.database) == before


def test_restore_check_restores_into_a_scratch_database_and_removes_it(
    tool: BackupTool, postgres_server: PostgresServer
) -> None:
    [result] = tool.ok("backup", "--restore-check")
    assert result["verified"] is True
    assert tool.ok("verify", "--restore-check") == [{"name": result["name"], "verified": True}]
    with postgres_server.connect("postgres") as conn:
        leftovers = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'tradingstack_verify_%'")
        assert leftovers.fetchall() == []


def test_retention_keeps_the_last_three_of_five(tool: BackupTool) -> None:
    created = [tool.ok("backup", "--no-verify")[0]["name"] for _ in range(4)]
    [last] = tool.ok("backup", "--keep-last", "3")  # one result line: the pruned names go to stderr
    created.append(last["name"])

    assert tool.names() == list(reversed(created[-3:]))
    assert sorted(p.name for p in tool.directory.iterdir()) == sorted(
        f"{name}{suffix}" for name in created[-3:] for suffix in (".dump", ".json")
    )


def test_prune_never_deletes_the_newest_verified_backup(tool: BackupTool) -> None:
    verified = tool.ok("backup")[0]["name"]
    unverified = [tool.ok("backup", "--no-verify")[0]["name"] for _ in range(3)]

    pruned = tool.ok("prune", "--keep-last", "2")

    assert tool.names() == [unverified[2], unverified[1], verified]
    assert pruned == [{"pruned": unverified[0]}]


def test_damaged_archive_is_detected_and_never_counts_as_the_newest_good_backup(
    tool: BackupTool, postgres_server: PostgresServer
) -> None:
    before = table_fingerprints(postgres_server, tool.database)
    names = [tool.ok("backup")[0]["name"] for _ in range(3)]
    damaged, good = names[2], names[1]
    _damage(tool.directory / f"{damaged}.dump")

    verification = tool.run("verify")

    assert verification.returncode == 1
    results = {r["name"]: r for r in map(json.loads, verification.stdout.splitlines())}
    assert results[damaged]["verified"] is False
    assert "checksum mismatch" in results[damaged]["error"]
    assert [results[n]["verified"] for n in names[:2]] == [True, True]
    by_name = {entry["name"]: entry for entry in tool.ok("list")}
    assert by_name[damaged]["verified"] is False

    tool.ok("prune", "--keep-last", "1")
    assert tool.names() == [damaged, good]

    with postgres_server.connect(tool.database) as conn:
        conn.execute("DELETE FROM pgbench_accounts WHERE aid % 2 = 0")
    [restored] = tool.ok("restore", "--from", "latest", "--force")
    assert restored["restored"] == good
    assert table_fingerprints(postgres_server, tool.database) == before


def test_restore_of_a_damaged_archive_fails_before_touching_the_database_and_marks_it_unverified(
    tool: BackupTool, postgres_server: PostgresServer
) -> None:
    before = table_fingerprints(postgres_server, tool.database)
    name = tool.ok("backup")[0]["name"]
    _damage(tool.directory / f"{name}.dump")

    completed = tool.run("restore", "--from", name, "--force")

    assert completed.returncode == 1
    assert "checksum mismatch" in completed.stderr
    assert table_fingerprints(postgres_server, tool.database) == before
    assert tool.ok("list")[0]["verified"] is False
    no_good_backup = tool.run("restore", "--from", "latest", "--force")
    assert no_good_backup.returncode == 1
    assert "no verified backup" in no_good_backup.stderr


@pytest.mark.parametrize(
    "failure",
    [
        {"PGPASSWORD": "wrong-password"},
        {"PGPORT": "1"},  # nothing listens there: the same as a stopped server
        {"PGDATABASE": "no_such_database"},
    ],
    ids=["wrong-password", "server-unreachable", "missing-database"],
)
def test_failed_backup_exits_non_zero_and_leaves_previous_backups_intact(
    tool: BackupTool, tmp_path: Path, failure: dict[str, str]
) -> None:
    previous = tool.ok("backup")[0]["name"]
    files_before = _files(tool.directory)
    termination_log = tmp_path / "termination-log"
    termination_log.touch()

    completed = tool.run("backup", "--keep-last", "1", "--termination-log", str(termination_log), **failure)

    assert completed.returncode == 1
    assert completed.stdout == ""
    assert _files(tool.directory) == files_before
    assert tool.names() == [previous]
    assert "error" in json.loads(termination_log.read_text())
    assert "wrong-password" not in completed.stderr + termination_log.read_text()


def test_failure_during_the_dump_leaves_no_partial_backup(tool: BackupTool, postgres_server: PostgresServer) -> None:
    previous = tool.ok("backup")[0]["name"]
    files_before = _files(tool.directory)
    # pg_dump cannot read a table the role has no privilege on: it fails after starting the archive.
    with postgres_server.connect(tool.database) as conn:
        conn.execute("CREATE ROLE backup_reader LOGIN PASSWORD 'reader'")
        conn.execute("GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO backup_reader")
    try:
        completed = tool.run("backup", PGUSER="backup_reader", PGPASSWORD="reader")
    finally:
        with postgres_server.connect(tool.database) as conn:
            conn.execute("DROP OWNED BY backup_reader")
            conn.execute("DROP ROLE backup_reader")

    assert completed.returncode == 1
    assert "pg_dump exited" in completed.stderr
    assert _files(tool.directory) == files_before
    assert tool.names() == [previous]


def test_restore_into_a_non_empty_database_is_refused_without_force(
    tool: BackupTool, postgres_server: PostgresServer
) -> None:
    before = table_fingerprints(postgres_server, tool.database)
    tool.ok("backup")
    with postgres_server.connect(tool.database) as conn:
        conn.execute("DELETE FROM pgbench_accounts WHERE aid <= 1000")
    changed = table_fingerprints(postgres_server, tool.database)
    assert changed != before

    refused = tool.run("restore", "--from", "latest")
    assert refused.returncode == 3
    assert "not empty" in refused.stderr
    assert table_fingerprints(postgres_server, tool.database) == changed

    assert tool.ok("restore", "--from", "latest", "--if-empty")[0]["skipped"] == "database is not empty"
    assert table_fingerprints(postgres_server, tool.database) == changed

    tool.ok("restore", "--from", "latest", "--force")
    assert table_fingerprints(postgres_server, tool.database) == before


def test_restore_into_an_existing_empty_database(tool: BackupTool, postgres_server: PostgresServer) -> None:
    before = table_fingerprints(postgres_server, tool.database)
    name = tool.ok("backup")[0]["name"]
    with postgres_server.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(tool.database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tool.database)))

    tool.ok("restore", "--from", name, "--if-empty")

    assert table_fingerprints(postgres_server, tool.database) == before


def test_bootstrap_restore_is_a_no_op_on_a_database_with_data_even_without_backups(
    tool: BackupTool, postgres_server: PostgresServer
) -> None:
    before = table_fingerprints(postgres_server, tool.database)

    [skipped] = tool.ok("restore", "--from", "latest", "--if-empty")

    assert skipped["skipped"] == "database is not empty"
    assert table_fingerprints(postgres_server, tool.database) == before


def test_list_and_restore_leave_their_result_as_the_termination_message(tool: BackupTool, tmp_path: Path) -> None:
    """`tradingstack backup list|restore` read these from the Job's pod status (no access to logs needed)."""
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    for _ in range(3):
        tool.ok("backup")
    tool.ok("list", "--termination-log", str(termination_log))
    listed = json.loads(termination_log.read_text())
    assert listed["total"] == 3 and [b["name"] for b in listed["backups"]] == tool.names()
    assert set(listed["backups"][0]) == {"name", "time", "sizeBytes", "verified"}

    refused = tool.run("restore", "--from", "latest", "--termination-log", str(termination_log))
    assert refused.returncode == 3
    assert json.loads(termination_log.read_text())["refused"] is True
    tool.ok("restore", "--from", "latest", "--force", "--termination-log", str(termination_log))
    assert json.loads(termination_log.read_text()) == {"database": tool.database, "restored": tool.names()[0]}
