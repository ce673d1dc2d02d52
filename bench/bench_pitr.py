"""Point-in-time recovery with pgBackRest as the operator renders it: backup and restore throughput against
`pg_dump -Fc` and `pg_restore -j2`, and the rows a lost data volume costs (RPO), in one run (GitHub issue 16).

    python bench/bench_pitr.py [--scale 70] [--repeat 3] [--rpo-runs 5] [--archive-timeout 10] [--seed N]
        [--output docs/benchmarks/pitr.md]

Throughput: a server archiving WAL to a posix repository (the PITR tests' fixture with the operator's values:
16 MB WAL segments, PostgreSQL's durability defaults, process-max, timeouts and compression as rendered), a
pgbench database at `--scale` (70 is about 1 GB). `--repeat` rounds of a pgBackRest full backup and a
`pg_dump -Fc`, interleaved; then `--repeat` rounds of a pgBackRest restore into an empty data directory, timed
to the end of the restore command and to the restored server's promotion, each followed by
`createdb` + `pg_restore -j2` of the dump into that server.

RPO: `--rpo-runs` fresh archiving servers, each with a full backup and a writer committing a numbered row
every 10 ms; after a random time (seeded, the seed is in the report) the data volume is lost (see
`pitr.lose_data_volume`), the repository is restored to latest and the rows missing are counted.

Restore to a timestamp is not measured here: tests/component/postgres/test_pitr.py proves it returns exactly the
rows committed before the target.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_postgres import (  # noqa: E402
    DATABASE,
    MB,
    Result,
    Sample,
    _archive_size,
    _children_cpu,
    _interleaved,
    _pg_dump,
    _sample,
)
from tests.component.postgres.pitr import (  # noqa: E402
    Commit,
    Loss,
    PgBackRest,
    Writer,
    archiving_server,
    lose_data_volume,
    loss,
    ready_segments,
    restore_files,
    restored,
    restored_seqs,
    start_restored,
)
from tests.component.postgres.server import PostgresServer  # noqa: E402
from tests.support import wait_for  # noqa: E402
from tradingstack.api.spec import PitrSpec  # noqa: E402
from tradingstack.render import pgbackrest  # noqa: E402
from tradingstack.render.pgbackrest import PgBackRestSettings  # noqa: E402

FULL_SCALE = 70
FULL_RPO_RUNS = 5
"""The issue's size (pgbench scale 70, about 1 GB) and number of RPO runs: less is a validation run."""
SPEEDUP_GOAL = 2.0
"""The issue's goal for both backup and restore, against pg_dump -Fc and pg_restore -j2."""
RESTORED_DATABASE = "bench_restored"
LONG_SECONDS = 3600.0
"""Limit of one backup or restore at full size on a loaded machine: only a hang should reach it."""

BACKUP = "pgbackrest backup --type=full"
DUMP = "pg_dump -Fc"
RESTORE_FILES = "pgbackrest restore (files)"
RESTORE_PROMOTED = "pgbackrest restore + recovery until promoted"
PG_RESTORE = "createdb + pg_restore -j2"
TAR = "tar -c of the data directory + sync"
UNTAR = "tar -x of that + sync"


SPEC_DEFAULTS = PitrSpec()
RENDERED_DEFAULTS: dict[str, Any] = {
    "process_max": SPEC_DEFAULTS.process_max,
    "restore_process_max": SPEC_DEFAULTS.restore_process_max,
    "compress_type": SPEC_DEFAULTS.compress_type,
    **{
        field.name: field.default
        for field in dataclasses.fields(PgBackRestSettings)
        if field.name in ("push_timeout_seconds", "io_timeout_seconds")
    },
}
"""What render.pitr.settings renders by default (`spec.postgres.pitr`'s processMax, restoreProcessMax and
compressType; the timeouts it leaves at their defaults) where the PITR tests' fixture has its own values for
quick tests."""


def _operator_values(archive_timeout: int) -> dict[str, Any]:
    """`archiving_server` arguments that make the fixture's server the operator's: the rendered defaults, the
    image's initdb with 16 MB WAL segments, and PostgreSQL's durability defaults (fsync on: a restore's writes
    are then synced on both sides)."""
    return {"initdb_args": (), "server_settings": (), "archive_timeout_seconds": archive_timeout, **RENDERED_DEFAULTS}


def _sync() -> None:
    subprocess.run(["sync"], check=True)


def _tar(data: Path) -> Callable[[Path], Path]:
    """The disk's ceiling for a backup: one uncompressed copy of the files pgBackRest copies (the data directory
    without pg_wal), written as a tar file and synced."""

    def run(workdir: Path) -> Path:
        archive = workdir / "data.tar"
        subprocess.run(["tar", "-cf", str(archive), "--exclude=./pg_wal", "-C", str(data), "."], check=True)
        _sync()
        return archive

    return run


def _untar(archive: Path) -> Callable[[Path], Path]:
    """The disk's ceiling for a restore: that tar file extracted into an empty directory and synced."""

    def run(workdir: Path) -> Path:
        target = workdir / "data"
        target.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
        _sync()
        return archive

    return run


def _newest_full_backup(tool: PgBackRest) -> Path:
    """The newest full backup's directory in repo1 (labels such as 20261204-182400F sort by time)."""
    backups = tool.repo1 / "backup" / tool.settings.stanza
    return max(path for path in backups.iterdir() if path.name.endswith("F"))


def _full_backup(tool: PgBackRest) -> Callable[[Path], Path]:
    def run(_workdir: Path) -> Path:
        tool.ok(pgbackrest.backup_command(tool.settings, "full"), timeout=LONG_SECONDS)
        return _newest_full_backup(tool)

    return run


def _pg_restore(server: PostgresServer, dump: Path) -> Callable[[Path], Path]:
    def run(_workdir: Path) -> Path:
        env = server.env(RESTORED_DATABASE)
        subprocess.run([str(server.bin_dir / "createdb"), RESTORED_DATABASE], env=env, check=True)
        subprocess.run(
            [str(server.bin_dir / "pg_restore"), "-j2", f"--dbname={RESTORED_DATABASE}", str(dump)], env=env, check=True
        )
        return dump

    return run


def _restore_round(tool: PgBackRest, dump: Path, tar: Path) -> dict[str, Sample]:
    """A pgBackRest restore to latest into an empty data directory (server stopped), then pg_restore of `dump`
    into the restored server; the data directory is deleted afterwards; then the disk's ceiling, `tar` extracted.
    Input bytes: the backup, the dump, the tar file."""
    backup_bytes = _archive_size(_newest_full_backup(tool))
    cpu, started = _children_cpu(), time.perf_counter()
    restore_files(tool, timeout=LONG_SECONDS)
    files = Sample(time.perf_counter() - started, _children_cpu() - cpu, backup_bytes)
    start_restored(tool)
    promoted = Sample(time.perf_counter() - started, _children_cpu() - cpu, backup_bytes)
    # Into the restored server: its settings (archive_mode off) are then the same for both restores.
    dumped = _sample(_pg_restore(tool.cluster.server, dump))
    tool.cluster.stop()
    shutil.rmtree(tool.cluster.data)
    return {RESTORE_FILES: files, RESTORE_PROMOTED: promoted, PG_RESTORE: dumped, UNTAR: _sample(_untar(tar))}


def _restore_rounds(tool: PgBackRest, dump: Path, tar: Path, rounds: int) -> list[Result]:
    samples: dict[str, list[Sample]] = {}
    for round_number in range(rounds):
        for label, sample in _restore_round(tool, dump, tar).items():
            samples.setdefault(label, []).append(sample)
        print(f"restore round {round_number + 1}/{rounds} done", file=sys.stderr)
    return [Result(label, runs) for label, runs in samples.items()]


@dataclass(frozen=True)
class Throughput:
    database_bytes: int
    server_version: str
    backups: list[Result]
    restores: list[Result]


def _throughput(scale: int, repeat: int, archive_timeout: int) -> Throughput:
    with archiving_server(**_operator_values(archive_timeout)) as tool:
        server = tool.cluster.server
        print(f"pgbench --initialize --scale={scale}", file=sys.stderr)
        server.pgbench_database(DATABASE, scale=scale)
        with server.connect(DATABASE) as conn:
            row = conn.execute("SELECT pg_database_size(current_database()), current_setting('server_version')")
            size, version = row.fetchone() or (0, "unknown")
            # Neither the first backup's checkpoint nor its wait for WAL should pay for pgbench's writes.
            conn.execute("CHECKPOINT")
        wait_for(lambda: ready_segments(tool) == 0, timeout=LONG_SECONDS, interval=1, what="pgbench's WAL archived")
        data = tool.cluster.data
        backups = _interleaved({BACKUP: _full_backup(tool), DUMP: _pg_dump(server, "-Fc"), TAR: _tar(data)}, repeat)
        workdir = Path(tempfile.mkdtemp(prefix="bench-pitr-dump-"))
        try:
            dump = _pg_dump(server, "-Fc")(workdir)
            tool.cluster.stop()
            tar = _tar(data)(workdir)
            shutil.rmtree(data)
            restores = _restore_rounds(tool, dump, tar, repeat)
        finally:
            shutil.rmtree(workdir)
    return Throughput(int(size), str(version), backups, restores)


@dataclass(frozen=True)
class RpoRun:
    crash_after_seconds: float
    """Writing time from the writer's start to the loss of the volume."""
    acknowledged: int
    restored: int
    loss: Loss
    rows_in_window: int
    """Acknowledged rows of the last archive_timeout seconds before the loss: the issue's bound."""


def rows_within(commits: list[Commit], seconds: float) -> int:
    """Commits acknowledged in the last `seconds` before the last acknowledgement (that one included)."""
    if not commits:
        return 0
    since = commits[-1].acknowledged.timestamp() - seconds
    return sum(1 for commit in commits if commit.acknowledged.timestamp() >= since)


def _rpo_run(archive_timeout: int, crash_after: float) -> RpoRun:
    with archiving_server(**_operator_values(archive_timeout)) as tool, tool.connect() as conn:
        tool.ok(pgbackrest.backup_command(tool.settings, "full"))
        writer = Writer(conn, limit_seconds=crash_after + 60)
        writer.start()
        time.sleep(crash_after)
        if writer.error is not None:
            raise RuntimeError(f"the writer failed before the crash: {writer.error}")
        lose_data_volume(tool)
        writer.stop()
        with restored(tool) as server:
            seqs = restored_seqs(server)
    if seqs != list(range(1, len(seqs) + 1)):
        raise RuntimeError(f"restored rows are not 1..{len(seqs)}: a gap in the restored history")
    commits = writer.commits
    lost = loss(commits, len(seqs))
    return RpoRun(crash_after, len(commits), len(seqs), lost, rows_within(commits, archive_timeout))


def _rpo_runs(runs: int, archive_timeout: int, rng: random.Random) -> list[RpoRun]:
    """Each run loses the volume after 2 to 4 archive_timeout periods of writing: past the backup's own WAL
    switch, at an arbitrary phase of the archive_timeout cycle."""
    results = []
    for run_number in range(runs):
        results.append(_rpo_run(archive_timeout, rng.uniform(2 * archive_timeout, 4 * archive_timeout)))
        print(f"RPO run {run_number + 1}/{runs}: {results[-1].loss}", file=sys.stderr)
    return results


@dataclass(frozen=True)
class Setup:
    scale: int
    repeat: int
    rpo_runs: int
    archive_timeout: int
    seed: int
    pgbackrest_version: str

    @property
    def validation(self) -> bool:
        return self.scale < FULL_SCALE or self.rpo_runs < FULL_RPO_RUNS

    def command(self) -> str:
        return (
            f".venv/bin/python bench/bench_pitr.py --scale {self.scale} --repeat {self.repeat}"
            f" --rpo-runs {self.rpo_runs} --archive-timeout {self.archive_timeout} --seed {self.seed}"
        )


def speedup(baseline_seconds: float, seconds: float) -> float:
    """How many times faster than the baseline: above 1 is faster."""
    return baseline_seconds / seconds


def _result(results: list[Result], label: str) -> Result:
    return next(result for result in results if result.label == label)


def _throughput_rows(results: list[Result], baseline: Result, database_bytes: int) -> str:
    return "\n".join(
        f"| `{r.label}` | {r.best.seconds:.2f} | {r.median_seconds:.2f} | {database_bytes / MB / r.best.seconds:.0f}"
        f" | {r.cpu_seconds:.2f} | {r.best.archive_bytes / MB:.1f}"
        f" | {speedup(baseline.best.seconds, r.best.seconds):.2f}"
        f" | {speedup(baseline.median_seconds, r.median_seconds):.2f} |"
        for r in results
    )


def _goal(candidate: Result, baseline: Result) -> str:
    best = speedup(baseline.best.seconds, candidate.best.seconds)
    median = speedup(baseline.median_seconds, candidate.median_seconds)
    met = "met" if best >= SPEEDUP_GOAL else "**not met**"
    return (
        f"`{candidate.label}` vs `{baseline.label}`: {best:.2f}x (best), {median:.2f}x (median); "
        f"goal {SPEEDUP_GOAL:.0f}x {met}"
    )


def _backup_why(throughput: Throughput, backup: Result, dump: Result, tar: Result) -> str:
    """Why pg_dump is hard to beat on pgbench, with this run's figures, and the disk's ceiling."""
    return (
        f"Why: `{DUMP}` reads rows with COPY and gzips them; pgbench_accounts' filler is 84 blanks a row, which\n"
        f"compresses to nearly nothing ({throughput.database_bytes / MB:.0f} MB of database, a"
        f" {dump.best.archive_bytes / MB:.1f} MB dump), and it reads no index.\n"
        "pgBackRest copies every page of the cluster (tables, indexes, free space, the other databases), checksums\n"
        "and compresses each file and syncs each file it writes into the repository; before copying it waits for\n"
        "a checkpoint, after it for the WAL to be archived (client CPU: pgBackRest"
        f" {backup.cpu_seconds:.2f} s, pg_dump {dump.cpu_seconds:.2f} s\nwithout the server's COPY).\n"
        f"Ceiling: `{TAR}` (no pg_wal) copies the same files uncompressed and does nothing else:"
        f" {tar.best.seconds:.2f} s,\n{speedup(dump.best.seconds, tar.best.seconds):.2f}x `{DUMP}` (best): what"
        " copying the files costs on this disk, without checksums, compression, a sync per file or a checkpoint."
    )


def _restore_why(restores: list[Result], pg_restore: Result) -> str:
    """Where a restore's time goes, with this run's figures."""
    files, promoted, untar = (_result(restores, label) for label in (RESTORE_FILES, RESTORE_PROMOTED, UNTAR))
    return (
        f"Why: `{PG_RESTORE}` inserts every row, writes WAL for it and builds the indexes.\n"
        f"pgBackRest writes the files back, decompressed, and syncs them ({files.best.seconds:.2f} s; `{UNTAR}`,"
        f" the same bytes\nwritten uncompressed: {untar.best.seconds:.2f} s): that part alone is"
        f" {speedup(pg_restore.best.seconds, files.best.seconds):.2f}x `{PG_RESTORE}` (best).\n"
        f"Then the server start until promoted took {promoted.median_seconds - files.median_seconds:.2f} s"
        " (medians): PostgreSQL first\nsyncs the whole data directory (a restored"
        " backup starts as a crash recovery), fetches the WAL through pgBackRest's\narchive-get, replays it,"
        " looks for a newer timeline's history and checkpoints before it promotes."
    )


def _rpo_rows(runs: list[RpoRun]) -> str:
    return "\n".join(
        f"| {n} | {run.crash_after_seconds:.1f} | {run.acknowledged} | {run.restored} | {run.loss.rows}"
        f" | {run.loss.seconds:.2f} | {run.rows_in_window}"
        f" | {'yes' if run.loss.rows <= run.rows_in_window else '**no**'} |"
        for n, run in enumerate(runs, start=1)
    )


def report(setup: Setup, throughput: Throughput, rpo: list[RpoRun]) -> str:
    """The Markdown section; a run below the issue's size says so in its title and first line."""
    backups, restores = throughput.backups, throughput.restores
    dump, pg_restore = _result(backups, DUMP), _result(restores, PG_RESTORE)
    lost_seconds = [run.loss.seconds for run in rpo]
    within = sum(1 for run in rpo if run.loss.rows <= run.rows_in_window)
    title = "Point-in-time recovery benchmark"
    if setup.validation:
        title += f": VALIDATION RUN (scale {setup.scale}, {setup.rpo_runs} RPO runs): not the issue's figures"
    timeout = setup.archive_timeout
    return f"""# {title}

Reproduce: `{setup.command()}`

- Date: {datetime.now(UTC):%Y-%m-%d}; machine: {platform.machine()}, {os.cpu_count()} cores shared with other
  builds and test runs (compare within this run only)
- PostgreSQL {throughput.server_version}, {setup.pgbackrest_version}; local server on 127.0.0.1 with 16 MB WAL
  segments and PostgreSQL's durability defaults (fsync on), archiving with the rendered configuration
  (`render.pgbackrest.config_text` with the spec's defaults: repo1 posix, aes-256-cbc,
  compress-type {RENDERED_DEFAULTS["compress_type"]}, process-max {RENDERED_DEFAULTS["process_max"]} \
(restore: {RENDERED_DEFAULTS["restore_process_max"]}), async archive-push) and archive_timeout {timeout} s
- pgBackRest runs on the database host against a local repository; the operator's backup Jobs reach the server
  through pgBackRest's TLS server instead, which is not measured here
- Database: pgbench scale {setup.scale}, {throughput.database_bytes / MB:.0f} MB (`pg_database_size`); MB/s =
  that size / best time (pgBackRest copies the whole cluster, a few MB more)
- {setup.repeat} rounds each, interleaved within a round; client CPU is the median user+system time of the
  commands (not the server's)

## Backup

| Command | Best s | Median s | MB/s | Client CPU s | Archive MB | vs `{DUMP}` (best) | vs `{DUMP}` (median) |
|---|---:|---:|---:|---:|---:|---:|---:|
{_throughput_rows(backups, dump, throughput.database_bytes)}

{_goal(_result(backups, BACKUP), dump)}.

{_backup_why(throughput, _result(backups, BACKUP), dump, _result(backups, TAR))}

## Restore

pgBackRest restores the newest full backup into an empty data directory, the server is started on it
(archive_mode off) and replays the archive to its end; timed once to the end of the restore command (files)
and once until the server accepts connections and has promoted (`pg_is_in_recovery()` false), which is when
it can serve. `{PG_RESTORE}` restores a `{DUMP}` of the database into a new database of that restored server;
it ends with the database usable. `{UNTAR}` extracts the uncompressed copy of the backup table's `tar` row
into an empty directory: the disk's ceiling for writing the data directory back. Input MB: the backup in the
repository, the dump, the tar file.

| Command | Best s | Median s | MB/s | Client CPU s | Input MB | vs `{PG_RESTORE}` (best) | vs `{PG_RESTORE}` (median) |
|---|---:|---:|---:|---:|---:|---:|---:|
{_throughput_rows(restores, pg_restore, throughput.database_bytes)}

{_goal(_result(restores, RESTORE_PROMOTED), pg_restore)} (the goal is judged on the time until promoted).

{_restore_why(restores, pg_restore)}

## RPO of a lost data volume

{len(rpo)} runs (seed {setup.seed}). Each: a fresh archiving server and a full backup; a writer commits a
numbered row, one transaction each, then waits 10 ms; after a random time of 2 to 4 archive_timeout periods the
volume is lost: immediate stop (nothing more is flushed or archived), `rm -rf` of the data directory and of the
spool's contents (an emptyDir in the pod). Then pgBackRest restores to latest and the server replays the
archive. Rows lost = acknowledged rows - rows restored (these are always 1..n); seconds = from the last restored
row's acknowledgement to the last acknowledged one. Bound: the rows acknowledged in the last archive_timeout
({timeout} s) before the loss.

| Run | Crash after s | Acknowledged | Restored | Rows lost | Seconds lost | Rows of the last {timeout} s | Within |
|---|---:|---:|---:|---:|---:|---:|---|
{_rpo_rows(rpo)}

Within the bound in {within} of {len(rpo)} runs; seconds lost: max {max(lost_seconds):.2f}, min
{min(lost_seconds):.2f} (archive_timeout {timeout} s).

Restore to a timestamp: not measured here; tests/component/postgres/test_pitr.py
(`test_restore_to_a_time_between_two_commits_keeps_exactly_the_earlier_ones`) restores to a time between two
commits and gets exactly the rows committed before it.
"""


def _pgbackrest_version() -> str:
    return subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=True).stdout.strip()


def positive(text: str) -> int:
    """An argparse type: every count and the timeout must be at least 1 (the report needs one run of each)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=positive, default=FULL_SCALE, help="pgbench scale (70 is about 1 GB)")
    parser.add_argument("--repeat", type=positive, default=3, help="rounds of the backups and of the restores")
    parser.add_argument("--rpo-runs", type=positive, default=FULL_RPO_RUNS)
    parser.add_argument("--archive-timeout", type=positive, default=10, help="seconds (the spec's minimum is 10)")
    parser.add_argument("--seed", type=int, default=None, help="of the crash times (default: a random one)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "pitr.md")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"RPO seed {seed}", file=sys.stderr)
    setup = Setup(args.scale, args.repeat, args.rpo_runs, args.archive_timeout, seed, _pgbackrest_version())
    throughput = _throughput(args.scale, args.repeat, args.archive_timeout)
    rpo = _rpo_runs(args.rpo_runs, args.archive_timeout, random.Random(seed))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(setup, throughput, rpo))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
