"""pgBackRest's repo2 on an S3-compatible server (versitygw on 127.0.0.1, TLS with a CA file), next to repo1."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.component.postgres.pitr import (
    Writer,
    archiving_server,
    assert_commits_go_on_while_archiving_fails,
    assert_the_archive_catches_up,
    restored,
    restored_seqs,
)
from tests.component.postgres.s3 import running_s3
from tests.support import free_port
from tradingstack.contract.pgbackrest_info import parse_info
from tradingstack.render import pgbackrest

pytestmark = pytest.mark.component


def test_a_backup_in_s3_restores_every_commit_archived(tmp_path: Path) -> None:
    with running_s3(tmp_path) as s3, archiving_server(s3) as tool:
        with tool.connect() as conn:
            writer = Writer(conn)
            writer.start()
            writer.wait_rows(50)
            tool.ok(pgbackrest.backup_command(tool.settings, "full", repo=2))
            writer.wait_rows(len(writer.commits) + 100)
            writer.stop()
            # check switches WAL and waits for it in both repositories: every acknowledged commit is archived.
            tool.ok(pgbackrest.check_command(tool.settings))
        committed = len(writer.commits)
        info = parse_info(tool.info(), tool.settings.stanza)
        assert info.last_full is not None
        tool.cluster.stop()
        shutil.rmtree(tool.cluster.data)
        with restored(tool, repo=2):
            assert restored_seqs(tool) == list(range(1, committed + 1))


def test_commits_go_on_while_s3_is_unreachable(tmp_path: Path) -> None:
    with running_s3(tmp_path) as s3, archiving_server(s3) as tool, tool.connect() as conn:
        # The same configuration file, now naming a loopback port nothing listens on: archive-push reads it anew
        # for every segment. Short timeouts: each push and check otherwise retries the refused connection longer.
        closed = dataclasses.replace(tool.settings.repo2_s3, port=free_port()) if tool.settings.repo2_s3 else None
        tool.with_settings(repo2_s3=closed, push_timeout_seconds=3, io_timeout_seconds=1)
        writer = Writer(conn)
        writer.start()
        try:
            assert_commits_go_on_while_archiving_fails(tool, writer)
        finally:
            tool.with_settings()
        assert_the_archive_catches_up(tool, writer)
