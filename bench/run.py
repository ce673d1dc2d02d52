"""`make bench`: runs every benchmark in turn and writes docs/benchmarks.md from their reports.

Each bench script writes its own section under docs/benchmarks/ with its figures and the command that
reproduces them; this joins them. `--only NAME...` runs a subset (the other sections are kept as they are).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = REPO / "docs" / "benchmarks"
BENCHES = {
    "operator": ["bench/bench_operator.py"],
    "restarts": ["bench/bench_restarts.py"],
    "redis": ["bench/bench_redis.py"],
    "postgres": ["bench/bench_postgres.py"],
    # Defaults: pgbench scale 70 (about 1 GB), 3 rounds, 5 RPO runs at archive_timeout 10 s.
    "pitr": ["bench/bench_pitr.py"],
    "real-pods": ["bench/bench_real_pods.py"],
    "halt": ["bench/bench_halt.py"],
    "failover": ["bench/bench_failover.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=sorted(BENCHES),
                        help="benchmarks to run (none: only rebuild docs/benchmarks.md from the sections)")  # fmt: skip
    args = parser.parse_args()
    for name in args.only:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, *BENCHES[name]], cwd=REPO, check=True)
    write_report()
    return 0


def write_report() -> None:
    sections = [(SECTIONS / f"{name}.md").read_text().strip() for name in BENCHES if (SECTIONS / f"{name}.md").exists()]
    (REPO / "docs" / "benchmarks.md").write_text(
        "# Benchmarks\n\nWritten by `make bench` (bench/run.py); each section names the command that reproduces it.\n"
        "Machine: 2 cores, 24 GiB, shared; wall times vary between runs, so compare the ratios measured in one run.\n\n"
        + "\n\n".join(sections)
        + "\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
