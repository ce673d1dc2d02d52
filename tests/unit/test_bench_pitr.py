"""The pure parts of bench/bench_pitr.py and of the RPO count it shares with the PITR tests."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest
from bench.bench_pitr import (
    BACKUP,
    DUMP,
    PG_RESTORE,
    RESTORE_FILES,
    RESTORE_PROMOTED,
    TAR,
    UNTAR,
    RpoRun,
    Setup,
    Throughput,
    positive,
    report,
    rows_within,
    speedup,
)
from bench.bench_postgres import MB, Result, Sample

from tests.component.postgres.pitr import Commit, Loss, loss

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _commits(count: int, every: float = 0.5) -> list[Commit]:
    """Row n sent at (n - 1) * every seconds, acknowledged 0.1 s later."""
    return [
        Commit(n, START + timedelta(seconds=(n - 1) * every), START + timedelta(seconds=(n - 1) * every + 0.1))
        for n in range(1, count + 1)
    ]


def test_loss_counts_acknowledged_rows_missing_and_their_span() -> None:
    assert loss(_commits(10), 6) == Loss(4, 2.0)


def test_loss_is_none_when_the_row_in_flight_also_survived() -> None:
    assert loss(_commits(10), 10) == Loss(0, 0.0)
    assert loss(_commits(10), 11) == Loss(0, 0.0)


def test_loss_of_everything_spans_from_the_first_row_sent() -> None:
    assert loss(_commits(3), 0) == Loss(3, 1.1)


def test_rows_within_counts_the_acknowledgements_of_the_last_seconds() -> None:
    assert rows_within(_commits(10), 2.0) == 5
    assert rows_within(_commits(10), 100.0) == 10
    assert rows_within([], 2.0) == 0


def test_speedup_above_one_is_faster() -> None:
    assert speedup(10.0, 4.0) == 2.5


def _result(label: str, *seconds: float) -> Result:
    return Result(label, [Sample(s, s / 2, 10 * MB) for s in seconds])


def _throughput(backup_seconds: float, promoted_seconds: float) -> Throughput:
    return Throughput(
        database_bytes=100 * MB,
        server_version="15.18",
        backups=[_result(BACKUP, backup_seconds, backup_seconds + 1), _result(DUMP, 10.0, 12.0), _result(TAR, 5.0)],
        restores=[
            _result(RESTORE_FILES, 1.0),
            _result(RESTORE_PROMOTED, promoted_seconds),
            _result(PG_RESTORE, 8.0),
            _result(UNTAR, 0.8),
        ],
    )


def _rpo(rows_lost: int, rows_in_window: int) -> RpoRun:
    return RpoRun(25.0, 2000, 2000 - rows_lost, Loss(rows_lost, rows_lost / 100), rows_in_window)


def _setup(scale: int = 70, rpo_runs: int = 5) -> Setup:
    return Setup(scale, 3, rpo_runs, 10, 42, "pgBackRest 2.45")


def test_report_of_a_full_run_has_the_command_figures_and_goals() -> None:
    text = report(_setup(), _throughput(4.0, 3.0), [_rpo(120, 900), _rpo(950, 900)])
    assert text.startswith("# Point-in-time recovery benchmark\n")
    assert (
        "`.venv/bin/python bench/bench_pitr.py --scale 70 --repeat 3 --rpo-runs 5 --archive-timeout 10 --seed 42`"
        in (text)
    )
    # 100 MB in 4 s; 2.5x faster than pg_dump's best (10 s), 13/5 on the medians.
    assert f"| `{BACKUP}` | 4.00 | 4.50 | 25 | 2.25 | 10.0 | 2.50 | 2.44 |" in text
    assert f"`{BACKUP}` vs `{DUMP}`: 2.50x (best), 2.44x (median); goal 2x met" in text
    assert f"`{RESTORE_PROMOTED}` vs `{PG_RESTORE}`: 2.67x (best), 2.67x (median); goal 2x met" in text
    assert "| 1 | 25.0 | 2000 | 1880 | 120 | 1.20 | 900 | yes |" in text
    assert "| 2 | 25.0 | 2000 | 1050 | 950 | 9.50 | 900 | **no** |" in text
    assert "Within the bound in 1 of 2 runs; seconds lost: max 9.50, min\n1.20" in text
    assert "VALIDATION" not in text
    # The disk's ceiling: the uncompressed copy against pg_dump, and the restore's files against the extraction.
    assert f"`{TAR}` (no pg_wal) copies the same files uncompressed and does nothing else: 5.00 s,\n2.00x" in text
    assert f"syncs them (1.00 s; `{UNTAR}`, the same bytes\nwritten uncompressed: 0.80 s)" in text
    assert "compress-type lz4, process-max 2 (restore: 4)" in text
    assert "(client CPU: pgBackRest 2.25 s, pg_dump 5.50 s\nwithout the server's COPY)" in text
    assert "that part alone is 8.00x" in text and "Then the server start until promoted took 2.00 s (medians)" in text


def test_report_says_when_a_goal_is_not_met() -> None:
    text = report(_setup(), _throughput(6.0, 5.0), [_rpo(0, 900)])
    assert f"`{BACKUP}` vs `{DUMP}`: 1.67x (best), 1.69x (median); goal 2x **not met**" in text
    assert f"`{RESTORE_PROMOTED}` vs `{PG_RESTORE}`: 1.60x (best), 1.60x (median); goal 2x **not met**" in text


def test_a_run_below_the_issues_size_is_titled_a_validation_run() -> None:
    for setup in (_setup(scale=2), _setup(rpo_runs=2)):
        first_line = report(setup, _throughput(4.0, 3.0), [_rpo(0, 900)]).splitlines()[0]
        assert "VALIDATION RUN" in first_line
        assert "not the issue's figures" in first_line


def test_counts_and_the_timeout_must_be_at_least_one() -> None:
    assert positive("3") == 3
    with pytest.raises(argparse.ArgumentTypeError):
        positive("0")
