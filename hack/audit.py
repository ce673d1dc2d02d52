"""Compare the external checkers' findings on the rendered manifests with the accepted list (`make audit`).

    python hack/audit.py --accepted docs/security-accepted.yaml kube-score=ks.json checkov=checkov.json

Fails (exit 1) on a high/critical finding that no accepted entry covers, and on an accepted entry that matches
no finding any more (a stale acceptance would hide the next regression of the same check on the same object).
The parsers and the comparison are pure functions; tests/unit/test_audit.py feeds them recorded checker output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

# kube-score's grades (scorecard.Grade): only CRITICAL counts; WARNING (5) is advice below high.
KUBE_SCORE_CRITICAL = 1


@dataclass(frozen=True, order=True)
class Finding:
    checker: str
    check: str
    # "Kind/namespace/name", the same spelling for every checker so that one accepted list reads alike.
    object: str
    message: str = ""


@dataclass(frozen=True)
class Accepted:
    checker: str
    check: str
    # An fnmatch pattern: one reason may cover every object of a kind (e.g. "Job/*").
    object: str
    reason: str

    def covers(self, finding: Finding) -> bool:
        return (
            self.checker == finding.checker and self.check == finding.check and fnmatchcase(finding.object, self.object)
        )


def kube_score_findings(report: list[dict[str, Any]]) -> list[Finding]:
    """The CRITICAL checks of `kube-score score -o json` (a list of scored objects)."""
    return sorted(
        Finding("kube-score", check["check"]["id"], _kube_score_object(scored), _kube_score_message(check))
        for scored in report
        for check in scored.get("checks") or []
        if not check.get("skipped") and check.get("grade") == KUBE_SCORE_CRITICAL
    )


def _kube_score_object(scored: dict[str, Any]) -> str:
    meta = scored.get("object_meta") or {}
    return f"{scored['type_meta']['kind']}/{meta.get('namespace') or '-'}/{meta['name']}"


def _kube_score_message(check: dict[str, Any]) -> str:
    comments = check.get("comments") or []
    return "; ".join(sorted({c.get("summary", "") for c in comments})) or check["check"].get("name", "")


def checkov_findings(report: dict[str, Any] | list[dict[str, Any]]) -> list[Finding]:
    """The failed checks of `checkov -o json` (one report per framework; a list when there are several).

    Without a Prisma Cloud key checkov reports no severities (`severity: null`), so every failed check counts as
    high: the accepted list then says which ones stay and why.
    """
    reports = report if isinstance(report, list) else [report]
    return sorted(
        Finding("checkov", failed["check_id"], _checkov_object(failed["resource"]), failed.get("check_name", ""))
        for one in reports
        for failed in one.get("results", {}).get("failed_checks") or []
    )


def _checkov_object(resource: str) -> str:
    # checkov names a Kubernetes resource "Kind.namespace.name"; names have no dots, namespaces neither.
    kind, namespace, name = resource.split(".", 2)
    return f"{kind}/{namespace}/{name}"


PARSERS = {"kube-score": kube_score_findings, "checkov": checkov_findings}


def load_accepted(document: dict[str, Any]) -> list[Accepted]:
    """The `accepted:` entries of docs/security-accepted.yaml; each must give its one-line reason."""
    entries = [
        Accepted(e["checker"], e["check"], e["object"], e.get("reason", "").strip()) for e in document["accepted"]
    ]
    missing = [e for e in entries if not e.reason]
    if missing:
        raise ValueError(f"accepted entries without a reason: {missing}")
    return entries


@dataclass(frozen=True)
class Verdict:
    new: list[Finding]
    stale: list[Accepted]

    @property
    def ok(self) -> bool:
        return not self.new and not self.stale


def compare(findings: Iterable[Finding], accepted: list[Accepted], checkers: set[str]) -> Verdict:
    """New: findings no entry covers. Stale: entries of a checker that ran and that cover no finding."""
    findings = list(findings)
    new = [f for f in findings if not any(a.covers(f) for a in accepted)]
    stale = [a for a in accepted if a.checker in checkers and not any(a.covers(f) for f in findings)]
    return Verdict(sorted(set(new)), stale)


def report_lines(verdict: Verdict) -> Iterator[str]:
    for f in verdict.new:
        yield f"NEW {f.checker} {f.check} {f.object}: {f.message}"
    for a in verdict.stale:
        yield f"STALE {a.checker} {a.check} {a.object}: accepted but no longer found; remove it"


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accepted", type=Path, required=True, help="the accepted-findings YAML")
    parser.add_argument("reports", nargs="+", metavar="CHECKER=JSON", help=f"checker one of {sorted(PARSERS)}")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    findings: list[Finding] = []
    checkers: set[str] = set()
    for spec in args.reports:
        checker, _, path = spec.partition("=")
        findings += PARSERS[checker](json.loads(Path(path).read_text()))
        checkers.add(checker)
    verdict = compare(findings, load_accepted(yaml.safe_load(args.accepted.read_text())), checkers)
    for line in report_lines(verdict):
        print(line)
    print(f"audit: {len(findings)} high/critical findings, {len(verdict.new)} new, {len(verdict.stale)} stale")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
