"""The shipped alerts, checked and unit-tested with the real promtool (built from the Prometheus Go module by
`hack/cluster.sh build`), joined with the operator's metric names and the runbooks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.dashboard import DASHBOARD
from tests.fixtures.cluster import BIN_DIR, REPO
from tradingstack.metrics import STACK_SERIES

RULES = REPO / "charts" / "tradingstack-operator" / "alerts" / "tradingstack.rules.yaml"
RULE_TESTS = REPO / "tests" / "alerts" / "tradingstack.test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool", path=str(BIN_DIR)) or shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool is not in {BIN_DIR}: build it with `hack/cluster.sh build`", pytrace=False)
    return path


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests_of_every_alert_pass(promtool: str) -> None:
    argv = [promtool, "test", "rules", str(RULE_TESTS)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{alert['alert']}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{alert['alert']}: no case where it stays quiet"


def test_every_alert_links_its_runbook_section() -> None:
    anchors = {re.sub(r"[^a-z0-9-]", "", h.lower().replace(" ", "-")) for h in re.findall(r"^## (.+)$",
               RUNBOOKS.read_text(), re.M)}  # fmt: skip
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"docs/runbooks.md#{alert['alert'].lower()}"), alert["alert"]
        assert alert["alert"].lower() in anchors, f"docs/runbooks.md has no section ## {alert['alert']}"


def test_every_metric_an_alert_reads_is_one_the_operator_exports() -> None:
    # What the operator's registry serves (the per-stack collector yields no family without stacks: its table).
    exported = {family.name for family in REGISTRY.collect()} | {name.removesuffix("_total") for name in STACK_SERIES}
    for alert in alerts():
        for name in re.findall(r"\btradingstack_[a-z_]+", alert["expr"]):
            family = re.sub(r"_(total|count|sum|bucket)$", "", name)
            assert family in exported, f"{alert['alert']} reads {name}, which the operator does not export"


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule; the e2e evaluates them in a real Prometheus.
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(exprs) >= 15
