"""On-demand Jobs of the backup tool's pgBackRest subcommands, made from the stack's pitr-backup CronJob.

The CronJob's pod already has everything a pgBackRest command of the stack needs: the image, the rendered
pgbackrest.conf, the repository volume, the secret env and the libpq env. A Job from its template, with the
subcommand swapped, therefore reaches the same repository, as `kubectl create job --from=cronjob/...` would.

Pure: a CronJob manifest (as read from the cluster or rendered) in, a Job manifest out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from tradingstack.contract.pgbackrest import PitrToolCommand
from tradingstack.render.common import Manifest

INFO_TTL_SECONDS = 3600
"""A listing is read once, by the CLI that created it."""

_KEPT_OPTIONS = ("--config", "--stanza", "--termination-log")
"""The pitr-backup options every pitr subcommand takes; the others (`--type`, `--repo`) are backup's own."""


def runs_pitr_backup(cronjob: Manifest) -> bool:
    """The stack's pitr-backup CronJob: one of its containers runs the backup tool's `pitr-backup`."""
    return any(PitrToolCommand.BACKUP in _argv(c) for c in _containers(cronjob))


def info_job(cronjob: Manifest) -> Manifest:
    """A `pitr-info` Job from a pitr-backup CronJob's template (labels and owner too). Create it, do not apply
    it (it has generateName); its result is the `PitrListing` in its pod's termination message."""
    template = copy.deepcopy(cronjob["spec"]["jobTemplate"])
    spec = template["spec"]
    for container in spec["template"]["spec"]["containers"]:
        for field in ("command", "args"):
            if PitrToolCommand.BACKUP in container.get(field, []):
                container[field] = _as_info(container[field])
    meta = cronjob["metadata"]
    metadata: dict[str, Any] = {
        "generateName": f"{meta['name']}-info-",
        "namespace": meta["namespace"],
        "labels": dict(meta.get("labels", {})),
        "ownerReferences": copy.deepcopy(meta.get("ownerReferences", [])),
    }
    job_spec = {**spec, "backoffLimit": 0, "ttlSecondsAfterFinished": INFO_TTL_SECONDS}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def _as_info(argv: list[str]) -> list[str]:
    """`... pitr-backup --type=full --config=X --stanza=Y` -> `... pitr-info --config=X --stanza=Y`."""
    at = argv.index(PitrToolCommand.BACKUP)
    return [*argv[:at], PitrToolCommand.INFO, *_kept(argv[at + 1 :])]


def _kept(options: list[str]) -> Iterable[str]:
    tokens = iter(options)
    for token in tokens:
        if token.split("=", 1)[0] in _KEPT_OPTIONS:
            yield token
            value = None if "=" in token else next(tokens, None)  # `--config X`: the value is the next token
            if value is not None:
                yield value


def _containers(cronjob: Manifest) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return containers


def _argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]
