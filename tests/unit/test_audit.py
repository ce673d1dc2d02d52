"""make audit: the checkers' findings against docs/security-accepted.yaml (hack/audit.py, hack/audit.sh).

The parsers read recorded output of kube-score v1.20.0 and checkov 3.3.30 (tests/unit/audit/, trimmed); the last
test runs the whole audit on the current render, so that `make test` fails on a new finding or a stale acceptance.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.audit import Accepted, Finding, checkov_findings, compare, kube_score_findings, load_accepted, report_lines

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).parent / "audit"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def test_kube_score_keeps_only_the_critical_checks() -> None:
    findings = kube_score_findings(recorded("kube-score.json"))
    assert [(f.check, f.object) for f in findings] == [
        ("container-image-pull-policy", "Deployment/trading/quantum-trader-gateway"),
        ("pod-probes-identical", "Deployment/trading/quantum-trader-gateway"),
        ("service-targets-pod", "Service/trading/quantum-trader-redis-master"),
    ]
    assert findings[0].message == "ImagePullPolicy is not set to Always"


def test_kube_score_ignores_a_skipped_check() -> None:
    scored = {
        "type_meta": {"kind": "Deployment"},
        "object_meta": {"name": "d", "namespace": "n"},
        "checks": [{"check": {"id": "x", "name": "X"}, "grade": 1, "skipped": True, "comments": []}],
    }
    assert kube_score_findings([scored]) == []


def test_checkov_counts_every_failed_check_and_spells_objects_like_kube_score() -> None:
    findings = checkov_findings(recorded("checkov.json"))
    operator = "Deployment/tradingstack-system/tradingstack-operator"
    assert [(f.checker, f.check, f.object) for f in findings] == [
        ("checkov", "CKV_K8S_38", operator),
        ("checkov", "CKV_K8S_43", operator),
    ]


def test_checkov_reads_one_report_per_framework() -> None:
    one = recorded("checkov.json")
    assert len(checkov_findings([one, one])) == 2 * len(checkov_findings(one)) == 4


FINDING = Finding("kube-score", "pod-probes-identical", "Deployment/trading/quantum-trader-gateway")


def accept(check: str = FINDING.check, obj: str = FINDING.object, checker: str = "kube-score") -> Accepted:
    return Accepted(checker, check, obj, "why")


def test_an_accepted_finding_passes_and_a_pattern_covers_many_objects() -> None:
    other = Finding("kube-score", FINDING.check, "StatefulSet/trading/quantum-trader-redis")
    assert compare([FINDING, other], [accept(obj="*")], {"kube-score"}).ok


def test_a_finding_nobody_accepted_fails() -> None:
    verdict = compare([FINDING], [accept(check="another")], {"kube-score"})
    assert verdict.new == [FINDING]
    assert next(iter(report_lines(verdict))).startswith("NEW kube-score pod-probes-identical Deployment/trading/")


def test_the_same_check_of_another_checker_is_not_covered() -> None:
    assert compare([FINDING], [accept(checker="checkov")], {"kube-score", "checkov"}).new == [FINDING]


def test_an_acceptance_that_matches_nothing_is_stale() -> None:
    stale = accept(obj="Deployment/trading/gone")
    verdict = compare([FINDING], [accept(), stale], {"kube-score"})
    assert verdict.new == []
    assert verdict.stale == [stale]
    assert "STALE" in next(iter(report_lines(verdict)))


def test_acceptances_of_a_checker_that_did_not_run_are_not_stale() -> None:
    assert compare([], [accept(checker="checkov")], {"kube-score"}).ok


def test_every_acceptance_gives_a_reason() -> None:
    entry = {"checker": "checkov", "check": "CKV_K8S_43", "object": "*"}
    with pytest.raises(ValueError, match="without a reason"):
        load_accepted({"accepted": [entry]})
    assert load_accepted({"accepted": [{**entry, "reason": " pinned "}]})[0].reason == "pinned"


def test_the_accepted_list_parses() -> None:
    entries = load_accepted(yaml.safe_load((REPO / "docs" / "security-accepted.yaml").read_text()))
    assert {e.checker for e in entries} == {"kube-score", "checkov"}


def test_make_audit_finds_nothing_new_and_nothing_stale() -> None:
    # hack/audit.sh names the install command (make prereqs) when a checker is missing: this test fails then.
    result = subprocess.run(
        [str(REPO / "hack" / "audit.sh")], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"hack/audit.sh failed:\n{result.stdout}\n{result.stderr}"
