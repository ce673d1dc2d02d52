"""The adversarial run's batching (tests/fixtures/spec_batches.py) and its incremental audit-log reads: each spec's
outcome is read back from one kubectl apply of its batch, and a long run reads each audit line once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.operator import OPERATOR_USERNAME, audit_offset, write_requests, write_requests_after
from tests.fixtures.spec_batches import applied, batches, refusals
from tests.fixtures.specs import SpecGenerator, spec_schema
from tradingstack.api.crd import build_crd

# What kubectl 1.36 prints for `kubectl apply -o name -f -` of a List in which two of four objects are refused.
STDOUT = """tradingstack.trading.quantumtrader.dev/gen-0
tradingstack.trading.quantumtrader.dev/h-every-store-off
"""
STDERR = """Warning: a warning about nothing in particular
Error from server (Invalid): error when creating "STDIN": TradingStack.trading.quantumtrader.dev "gen-1" is invalid: \
spec.redis.quorum: Invalid value: "integer": must be <= sentinels
Error from server (Forbidden): error when creating "STDIN": tradingstacks.trading.quantumtrader.dev "h-fifty-services" \
is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: too many services
  (a continuation line)
"""
BATCH = ["gen-0", "gen-1", "h-every-store-off", "h-fifty-services"]


def test_batches_keep_the_order_and_every_item() -> None:
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([], 3) == []
    names = [f"gen-{seed}" for seed in range(5030)]
    assert [name for batch in batches(names, 100) for name in batch] == names
    with pytest.raises(ValueError, match="at least 1"):
        batches([1], 0)


def test_each_spec_of_a_batch_gets_its_outcome_from_kubectl_output() -> None:
    accepted = applied(STDOUT) & set(BATCH)
    why = refusals(STDERR, BATCH)
    refused = {name: why.get(name, "") for name in BATCH if name not in accepted}

    assert accepted == {"gen-0", "h-every-store-off"}
    assert set(refused) == {"gen-1", "h-fifty-services"}
    assert "is invalid" in refused["gen-1"] and "quorum" in refused["gen-1"]
    assert "denied" in refused["h-fifty-services"]
    assert refused["h-fifty-services"].endswith("(a continuation line)")
    assert not any("warning about nothing" in text for text in refused.values())


def test_a_refused_spec_kubectl_said_nothing_about_fails_the_check() -> None:
    """kubectl failing as a whole (say, the API server unreachable): no spec is accepted and no refusal reads as
    the API server's, so the test's check fails instead of counting them as refused."""
    stderr = "error: unable to connect to the server: connection refused\n"
    refused = {name: refusals(stderr, BATCH).get(name, "") for name in BATCH if name not in applied("")}
    assert not all("is invalid" in text or "denied" in text for text in refused.values())


def test_the_schema_built_once_is_never_changed_by_generating_from_it() -> None:
    """The CRD schema is built once per process: generating must leave it as built, or seeds would drift."""
    spec_schema.cache_clear()
    first = [SpecGenerator(seed).spec() for seed in range(50)]
    assert spec_schema() == build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert [SpecGenerator(seed).spec() for seed in range(50)] == first


def _event(namespace: str, name: str, user: str = OPERATOR_USERNAME) -> str:
    return json.dumps({
        "stage": "ResponseComplete", "verb": "patch", "user": {"username": user}, "responseStatus": {"code": 200},
        "objectRef": {"resource": "deployments", "namespace": namespace, "name": name},
    })  # fmt: skip


def test_audit_reads_after_an_offset_see_only_later_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_event("ns", "before") + "\n" + _event("other", "x") + "\n")
    mark = audit_offset(log)
    with log.open("a") as out:
        out.write(_event("ns", "after") + "\n" + _event("ns", "by-someone", user="admin") + "\n")
    assert [w["name"] for w in write_requests(log, "ns", 0)] == ["before", "after"]
    with log.open("a") as out:
        out.write(_event("ns", "half-written")[:-10])  # the API server is still writing this line

    assert [w["name"] for w in write_requests_after(log, "ns", mark)] == ["after"]
    with log.open("a") as out:
        out.write("\n")
    assert audit_offset(log) == log.stat().st_size
