"""`make chaos`: the fault scenarios at size, then docs/reliability.md from the rows they record.

    python bench/reliability.py [--kills 50] [--stacks 10] [--specs 5000] [--spec-batch 100] [--backup-kills 10]
                                [--redis-rounds 10] [--takeovers 10] [--outages 5] [--fault-seconds 30]

Runs tests/chaos and the adversarial spec test of tests/cluster against the local cluster (hack/cluster.sh up),
the backup faults with a real PostgreSQL (tests/component/postgres/test_backup_faults.py), and the Redis master
losses on the real node's pods (tests/e2e/test_real_containers.py),
with TRADINGSTACK_RELIABILITY_DIR set, so each scenario writes what it ran, injected, checked and found; the
table joins those rows (kept with the test of each in docs/reliability.json; `--only` runs some scenarios again
and replaces only their rows). A failing scenario gets a FAILED row with pytest's message (from its JUnit report), so a
long run still reports what passed, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = [
    "tests/chaos",
    "tests/cluster/test_adversarial.py",
    "tests/component/postgres/test_backup_faults.py",
    "tests/e2e/test_real_containers.py::test_redis_master_loss_keeps_acknowledged_writes",
]
COLUMNS = ("scenario", "runs", "faults", "checked", "result")
RECORD = REPO / "docs" / "reliability.json"
"""The rows of the table with the test each came from, so `--only` can replace some of them."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50, help="operator kills (default 50)")
    parser.add_argument("--stacks", type=int, default=10, help="stacks reconciling while it is killed (default 10)")
    parser.add_argument("--specs", type=int, default=5000, help="generated specs (default 5000)")
    parser.add_argument("--spec-batch", type=int, default=100, help="specs live at once (default 100)")
    parser.add_argument("--backup-kills", type=int, default=10, help="backups with Postgres killed (default 10)")
    parser.add_argument("--redis-rounds", type=int, default=10,
                        help="rounds of Redis master delete + kill on real pods (default 10: 20 faults)")  # fmt: skip
    parser.add_argument("--takeovers", type=int, default=10, help="leader kills taken over (default 10)")
    parser.add_argument("--outages", type=int, default=5, help="control-plane outages (default 5)")
    parser.add_argument("--fault-seconds", type=int, default=30, help="length of each injected API fault (default 30)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO",
                        help="run these scenarios (within SCENARIOS) again, replace only their rows")  # fmt: skip
    args = parser.parse_args()
    if args.only and not all(path.startswith(tuple(SCENARIOS)) for path in args.only):
        parser.error(f"--only takes paths within {SCENARIOS}")
    with tempfile.TemporaryDirectory() as row_dir:
        sizes = {"TRADINGSTACK_CHAOS_KILLS": args.kills, "TRADINGSTACK_CHAOS_STACKS": args.stacks,
                 "TRADINGSTACK_GENERATED_SPECS": args.specs, "TRADINGSTACK_SPEC_BATCH": args.spec_batch,
                 "TRADINGSTACK_CHAOS_BACKUP_KILLS": args.backup_kills,
                 "TRADINGSTACK_CHAOS_TAKEOVERS": args.takeovers,
                 "TRADINGSTACK_CHAOS_REDIS_ROUNDS": args.redis_rounds,
                 "TRADINGSTACK_CHAOS_OUTAGES": args.outages,
                 "TRADINGSTACK_CHAOS_FAULT_SECONDS": args.fault_seconds}  # fmt: skip
        env = {**os.environ, "TRADINGSTACK_RELIABILITY_DIR": row_dir, **{k: str(v) for k, v in sizes.items()}}
        junit = Path(row_dir) / "junit.xml"
        scenarios = args.only or SCENARIOS
        command = [sys.executable, "-m", "pytest", "-s", "--timeout=14400", f"--junitxml={junit}", *scenarios]
        passed = subprocess.run(command, cwd=REPO, env=env, check=False).returncode == 0
        recorded = [json.loads(p.read_text()) for p in sorted(Path(row_dir).glob("*.json"))]
        recorded += failed_rows(junit)
    rerun = (
        f"python bench/reliability.py --kills {args.kills} --stacks {args.stacks} --specs {args.specs}"
        f" --spec-batch {args.spec_batch} --backup-kills {args.backup_kills}"
        f" --redis-rounds {args.redis_rounds} --takeovers {args.takeovers} --outages {args.outages}"
        f" --fault-seconds {args.fault_seconds}" + (f" --only {' '.join(args.only)}" if args.only else "")
    )
    run = {"command": rerun, "at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    if args.only and RECORD.exists():
        kept = json.loads(RECORD.read_text())
        rows = [r for r in kept["rows"] if not r["test"].startswith(tuple(args.only))] + recorded
        runs = [*kept["runs"], run]
    else:
        rows, runs = recorded, [run]
    RECORD.write_text(json.dumps({"runs": runs, "rows": rows}, indent=1) + "\n")
    (REPO / "docs" / "reliability.md").write_text(report(rows, runs))
    return 0 if passed else 1


def failed_rows(junit: Path) -> list[dict[str, str]]:
    """A row per failed or erroring test of the JUnit report: its name and the first line of pytest's message."""
    if not junit.exists():
        return [{"scenario": "(pytest wrote no report)", "runs": "-", "faults": "-", "checked": "-", "test": "-",
                 "result": "FAILED before any test ran"}]  # fmt: skip
    rows = []
    for case in ElementTree.parse(junit).iter("testcase"):  # noqa: S314 - pytest wrote it, in our temp dir
        for problem in [*case.iter("failure"), *case.iter("error")]:
            message = (problem.get("message") or "").strip().splitlines() or [""]
            test = f"{(case.get('classname') or '').replace('.', '/')}.py::{case.get('name')}"
            rows.append({"scenario": test, "runs": "-", "faults": "-", "checked": "-", "test": test,
                         "result": f"FAILED ({problem.tag}): {message[0][:300]}"})  # fmt: skip
    return rows


def report(rows: list[dict[str, str]], runs: list[dict[str, str]]) -> str:
    commands = "; then ".join(f"`{r['command']}` ({r['at']})" for r in runs)
    lines = [
        "# Reliability",
        "",
        f"Written by `make chaos` on the local cluster: {commands}. Every figure below comes from those runs; a",
        "row carries the test it came from. `make test` runs the same scenarios at small counts.",
        "",
        "| " + " | ".join(c.capitalize() for c in (*COLUMNS, "test")) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in (*COLUMNS, "test")) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
