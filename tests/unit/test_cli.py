"""The `tradingstack` command, run as users run it (a subprocess of the installed console script)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLI = shutil.which("tradingstack", path=str(Path(sys.executable).parent)) or "tradingstack"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, check=False)


def test_render_prints_every_component_of_the_example() -> None:
    result = run("render", "-f", str(ROOT / "examples/quantum-trader.yaml"))
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for service in ("ai-engine", "execution", "risk-safety", "portfolio", "rl-training", "monitoring-health"):
        assert ("Deployment", f"quantum-trader-{service}") in kinds
    assert ("StatefulSet", "quantum-trader-redis") in kinds
    assert ("StatefulSet", "quantum-trader-postgres") in kinds
    assert ("CronJob", "quantum-trader-postgres-backup") in kinds
    assert ("Deployment", "quantum-trader-gateway") in kinds
    assert any(k == "PodDisruptionBudget" for k, _ in kinds)
    assert any(k == "NetworkPolicy" for k, _ in kinds)
    sentinel_conf = [
        text
        for o in objects
        if o["kind"] == "ConfigMap"
        for key, text in o.get("data", {}).items()
        if "sentinel" in key and key.endswith(".conf")
    ]
    assert sentinel_conf and "down-after-milliseconds" in sentinel_conf[0]


def test_bad_quorum_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: trading.quantumtrader.dev/v1alpha1\nkind: TradingStack\n"
        "metadata: {name: qt}\nspec: {redis: {quorum: 5, sentinels: 3}}\n"
    )
    result = run("render", "-f", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["spec.redis.quorum: must be <= sentinels (3)"]
    assert "Traceback" not in result.stderr


def test_unreadable_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = run("render", "-f", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_crd_command_prints_the_generated_crd() -> None:
    result = run("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "tradingstacks.trading.quantumtrader.dev"
