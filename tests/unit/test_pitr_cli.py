"""`tradingstack backup list` and `restore --target-time` for pgBackRest: the info Job, the listing, the plan."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from tests.unit.test_pitr_tool import T0, backup
from tradingstack import cli, ops
from tradingstack.contract import Label
from tradingstack.contract.termination import PitrListing
from tradingstack.kube.client import Kube
from tradingstack.render.pitr_jobs import INFO_TTL_SECONDS, info_job, runs_pitr_backup

OWNER = [{"apiVersion": "tradingstack.io/v1alpha1", "kind": "TradingStack", "name": "qt", "uid": "u-1"}]


def cronjob(name: str, command: list[str], args: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "backup", "image": "tool:1", "command": command, "env": [{"name": "PGHOST"}]}
    if args is not None:
        container["args"] = args
    pod = {"spec": {"restartPolicy": "Never", "containers": [container], "volumes": [{"name": "repo"}]}}
    return {
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "trading", "labels": {Label.STACK: "qt"}, "ownerReferences": OWNER},
        "spec": {"schedule": "0 1 * * 0", "jobTemplate": {"spec": {"backoffLimit": 2, "template": pod}}},
    }


PITR = cronjob(
    "qt-postgres-pitr-full",
    ["python3", "-m", "tradingstack.backup", "pitr-backup", "--type=full", "--config=/etc/pb/pb.conf", "--stanza=qt"],
)
DUMP = cronjob("qt-postgres-backup", ["python3", "-m", "tradingstack.backup", "backup", "--keep-last=7"])


def test_an_info_job_is_the_backup_cronjobs_pod_running_pitr_info() -> None:
    before = copy.deepcopy(PITR)
    job = info_job(PITR)
    assert before == PITR  # the CronJob is left as it was
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "python3", "-m", "tradingstack.backup", "pitr-info", "--config=/etc/pb/pb.conf", "--stanza=qt",
    ]  # fmt: skip
    assert container["env"] == [{"name": "PGHOST"}]
    assert job["spec"]["template"]["spec"]["volumes"] == [{"name": "repo"}]
    assert job["metadata"] == {
        "generateName": "qt-postgres-pitr-full-info-",
        "namespace": "trading",
        "labels": {Label.STACK: "qt"},
        "ownerReferences": OWNER,
    }
    assert (job["kind"], job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (
        "Job", 0, INFO_TTL_SECONDS,
    )  # fmt: skip


def test_the_subcommand_may_be_in_args_with_options_as_separate_tokens() -> None:
    split = cronjob(
        "qt-pitr", ["python3", "-m", "tradingstack.backup"], ["pitr-backup", "--repo", "2", "--stanza", "qt"]
    )
    [container] = info_job(split)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "tradingstack.backup"]
    assert container["args"] == ["pitr-info", "--stanza", "qt"]


def test_only_a_cronjob_running_pitr_backup_counts() -> None:
    assert runs_pitr_backup(PITR)
    assert not runs_pitr_backup(DUMP)
    archive = cronjob("qt-archive", ["python3", "-m", "tradingstack.backup", "pitr-archive-status", "--stanza=qt"])
    assert not runs_pitr_backup(archive)


class CronJobsKube:
    def __init__(self, cronjobs: list[dict[str, Any]]) -> None:
        self.cronjobs = cronjobs
        self.selectors: list[tuple[str, str, dict[str, str]]] = []

    async def list_objects(self, kind: str, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        self.selectors.append((kind, namespace, selector))
        return self.cronjobs


async def test_backup_list_runs_pitr_info_only_for_a_stack_with_a_pitr_backup_cronjob(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[dict[str, Any]] = []

    async def run_tool_job(kube: Kube, job: dict[str, Any], timeout_seconds: float) -> ops.JobOutcome:
        ran.append(job)
        return ops.JobOutcome("qt-postgres-pitr-full-info-x", True, None)

    monkeypatch.setattr(ops, "run_tool_job", run_tool_job)
    assert await ops.list_pitr_backups(cast(Kube, CronJobsKube([DUMP])), "trading", "qt", 60) is None
    assert ran == []
    kube = CronJobsKube([DUMP, PITR])
    outcome = await ops.list_pitr_backups(cast(Kube, kube), "trading", "qt", 60)
    assert outcome is not None
    assert ran == [info_job(PITR)]
    assert kube.selectors == [("CronJob", "trading", {Label.STACK: "qt"})]


def test_the_pitr_listing_shows_the_window_and_the_backups_newest_first() -> None:
    listing = PitrListing(
        backups=[backup("20261204-110000F_20261204-120000D", "diff"), backup()],
        total=3,
        recoverable_from=datetime(2026, 12, 1, 1, 0, 5, tzinfo=UTC),
        recoverable_to=T0,
    )
    lines = cli.pitr_listing_text(listing).splitlines()
    assert lines[0] == "pgBackRest base backups: recoverable from 2026-12-01T01:00:05Z to at least 2026-12-04T12:00:00Z"
    assert lines[2].split() == ["20261204-110000F_20261204-120000D", "diff", "2026-12-04T12:00:00Z", "1", "30000000"]
    assert lines[-1] == "2 of 3 base backups shown"
    empty = PitrListing(backups=[], total=0, recoverable_from=None, recoverable_to=None)
    assert cli.pitr_listing_text(empty).splitlines()[0] == "pgBackRest base backups: no recoverable window yet"


def test_restore_to_a_time_parses_rfc3339_and_only_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["backup", "restore", "qt", "--target-time", "2026-12-04T10:00:00.25+01:00"])
    assert args.target_time == datetime(2026, 12, 4, 9, 0, 0, 250000, tzinfo=UTC)
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert 'targetTime: "2026-12-04T09:00:00.250000Z"' in out
    assert "creates a NEW stack; qt itself is not changed" in out
    assert out.rstrip().endswith("Nothing was done.")


@pytest.mark.parametrize(
    "argv",
    [
        ["--target-time", "2026-12-04T10:00:00"],  # no offset
        ["--target-time", "yesterday"],
        ["--target-time", "2026-12-04T10:00:00Z", "--from", "latest"],
        [],
    ],
)
def test_restore_needs_one_source_and_a_time_with_an_offset(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["backup", "restore", "qt", *argv])
    assert exited.value.code == 2
