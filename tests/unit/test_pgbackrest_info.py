"""Reading `pgbackrest info --output=json` and the verify report.

golden/pgbackrest-info.json was recorded from the component scenario (tests/component/postgres/test_pitr.py,
`RECORD_PGBACKREST_INFO=<path>`): pgBackRest 2.45, a full and a differential backup, WAL archived past the
differential, 1 MB segments. The other cases are edits of it.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tradingstack.contract.pgbackrest_info import parse_info, verify_problems

RECORDED = (Path(__file__).parent / "golden" / "pgbackrest-info.json").read_text()


def recorded() -> list[dict[str, Any]]:
    document: list[dict[str, Any]] = json.loads(RECORDED)
    return copy.deepcopy(document)


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_recorded_info() -> None:
    raw = json.loads(RECORDED)[0]
    full, diff = raw["backup"]
    info = parse_info(RECORDED, "pitr")
    assert info.ok
    assert info.last_full is not None
    assert info.last_full.label == full["label"]
    assert info.last_full.label.endswith("F")
    assert info.last_full.stopped == _at(full["timestamp"]["stop"])
    assert info.last_full.size_bytes == full["info"]["size"]
    assert info.last_full.repo_size_bytes == full["info"]["repository"]["size"]
    assert info.last_diff is not None
    assert info.last_diff.label == diff["label"]
    assert info.last_diff.label.endswith("D")
    assert info.first_recoverable == _at(full["timestamp"]["stop"])
    assert info.last_recoverable == _at(diff["timestamp"]["stop"])
    assert info.wal_max == raw["archive"][0]["max"]
    assert info.archived_past_last_backup


def test_decoded_json_is_accepted_too() -> None:
    assert parse_info(recorded(), "pitr") == parse_info(RECORDED, "pitr")


def test_archive_ending_at_the_last_backup() -> None:
    document = recorded()
    document[0]["archive"][0]["max"] = document[0]["backup"][1]["archive"]["stop"]
    assert not parse_info(document, "pitr").archived_past_last_backup


def test_a_backup_whose_wal_has_been_expired_is_not_a_starting_point() -> None:
    document = recorded()
    diff = document[0]["backup"][1]
    document[0]["archive"][0]["min"] = diff["archive"]["start"]
    assert parse_info(document, "pitr").first_recoverable == _at(diff["timestamp"]["stop"])


def test_a_newer_timeline_sorts_after_any_segment_of_an_older_one() -> None:
    document = recorded()
    document[0]["archive"].append({**document[0]["archive"][0], "min": "000000020000000000000001", "max": None})
    document[0]["archive"][0]["max"] = "00000001FFFFFFFF000000FF"
    document[0]["archive"][1]["max"] = "000000020000000000000003"
    assert parse_info(document, "pitr").wal_max == "000000020000000000000003"


def test_failed_backups_are_ignored() -> None:
    document = recorded()
    document[0]["backup"][1]["error"] = True
    info = parse_info(document, "pitr")
    assert info.last_diff is None
    assert info.last_full is not None
    assert info.last_recoverable == info.last_full.stopped


def test_a_stanza_without_backups() -> None:
    document = recorded()
    document[0]["backup"] = []
    document[0]["status"] = {"code": 2, "message": "no valid backups"}
    info = parse_info(document, "pitr")
    assert not info.ok
    assert info.message == "no valid backups"
    assert (info.last_full, info.first_recoverable, info.last_recoverable) == (None, None, None)
    assert not info.archived_past_last_backup


def test_an_absent_stanza() -> None:
    with pytest.raises(KeyError):
        parse_info(RECORDED, "other")


# Console output of `pgbackrest verify` 2.45 (exit code 0 both times), from the component test's run.
VERIFY_OK = """\
2026-12-03 13:17:03.501 P00   INFO: verify command begin 2.45: --stanza=pitr
2026-12-03 13:17:03.904 P00   INFO: verify command end: completed successfully (420ms)
"""
_INDENT = " " * 36
VERIFY_DAMAGED = "\n".join(
    [
        "2026-12-03 13:17:04.883 P00   INFO: verify command begin 2.45: --stanza=pitr",
        "2026-12-03 13:17:05.037 P01   INFO: invalid checksum '20261203-131651F/pg_data/base/5/2838.lz4'",
        "2026-12-03 13:17:05.275 P00   INFO: stanza: pitr",
        f"{_INDENT}status: error",
        f"{_INDENT}  backup: 20261203-131651F, status: invalid, total files checked: 966, total valid files: 965",
        f"{_INDENT}    checksum invalid: 1",
        "2026-12-03 13:17:05.275 P00   INFO: verify command end: completed successfully (393ms)",
    ]
)


def test_verify_report() -> None:
    assert verify_problems(VERIFY_OK) == []
    assert verify_problems(VERIFY_DAMAGED) == [
        "invalid checksum '20261203-131651F/pg_data/base/5/2838.lz4'",
        "backup: 20261203-131651F, status: invalid, total files checked: 966, total valid files: 965",
        "checksum invalid: 1",
    ]
