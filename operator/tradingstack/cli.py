"""The `tradingstack` command: render manifests, print the CRD, run the operator, operate backups, restarts and
maintenance overrides, halt and resume a stack (the kill switch).

Bad input ends with exit code 2 and one line per problem naming the field; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml
from prometheus_client import start_http_server
from pydantic import ValidationError

from tradingstack import KIND, handlers, ops, replica
from tradingstack.api import TradingStack, describe
from tradingstack.api.crd import render_crd_yaml
from tradingstack.api.spec import check_cidr
from tradingstack.components import render
from tradingstack.contract import Annotation, ExitCode, OperatorEnv
from tradingstack.contract.termination import BackupListing, PitrListing, RestoreResult, ToolFailure
from tradingstack.errors import ApiPermanentError, ApiTemporaryError
from tradingstack.kube.client import Kube
from tradingstack.logs import setup_json_logging
from tradingstack.overview import overview_text
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN


class InvalidInputError(Exception):
    """Input the user must fix; each line names a field or a file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_stacks(path: Path) -> list[TradingStack]:
    """Every TradingStack document in a YAML file (other kinds are ignored)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInputError([f"{path}: {err}"]) from err
    stacks: list[TradingStack] = []
    problems: list[str] = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != KIND:
            continue
        name = (document.get("metadata") or {}).get("name", "?")
        try:
            stacks.append(TradingStack.model_validate(document))
        except ValidationError as err:
            problems += [f"{line}" if len(documents) == 1 else f"{name}: {line}" for line in describe(err)]
    if problems:
        raise InvalidInputError(problems)
    if not stacks:
        raise InvalidInputError([f"{path}: no {KIND} document found"])
    return stacks


def dump_yaml(objects: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, width=120, explicit_start=True)


def _cmd_render(args: argparse.Namespace) -> int:
    manifests: list[dict[str, Any]] = []
    for loaded in load_stacks(args.file):
        stack = loaded
        if args.namespace:
            namespaced = loaded.metadata.model_copy(update={"namespace": args.namespace})
            stack = loaded.model_copy(update={"metadata": namespaced})
        manifests += render(stack, stack.owner_reference(), args.cluster_domain, args.dns_cidrs)
    sys.stdout.write(dump_yaml(manifests))
    return 0


def _cmd_crd(_: argparse.Namespace) -> int:
    sys.stdout.write(render_crd_yaml())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    setup_json_logging(args.log_level)
    # One line per HTTP request and per handled watch event would drown the operator's own lines.
    for noisy in ("httpx2", "kopf.objects"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    start_http_server(args.metrics_port)
    # Exact namespace names need no scanning: kopf then neither lists namespaces nor watches CRDs, which a
    # namespace-scoped ServiceAccount may not do (each refusal would be retried for about a minute at start-up).
    exact_namespaces = bool(args.namespace) and not any(set(ns) & set("*?[!") for ns in args.namespace)
    memo = kopf.Memo(
        resync_seconds=args.resync_seconds,
        read_data_plane=args.read_data_plane,
        scanning=not exact_namespaces,
        cluster_domain=args.cluster_domain,
        dns_cidrs=args.dns_cidrs,
    )
    operator_args: dict[str, Any] = {
        "clusterwide": not args.namespace,
        "namespaces": args.namespace or (),
        # No kopf peering: one operator at a time, either the only replica or the Lease holder.
        "standalone": True,
        "liveness_endpoint": f"http://0.0.0.0:{args.health_port}/healthz",
        "memo": memo,
        "registry": handlers.registry,
    }
    if not args.leader_election:
        kopf.run(**operator_args)
        return 0
    return replica.run_elected(
        operator_args, _leader_election_namespace(args), args.leader_election_id, args.health_port
    )


def _leader_election_namespace(args: argparse.Namespace) -> str:
    if args.leader_election_namespace:
        return str(args.leader_election_namespace)
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if args.namespace and len(args.namespace) == 1:
        return str(args.namespace[0])
    raise InvalidInputError(["--leader-election-namespace: required (no POD_NAMESPACE and not one --namespace)"])


def _with_kube(operation: Callable[[Kube], Awaitable[int]]) -> int:
    async def run() -> int:
        kube = Kube.from_kubeconfig()
        try:
            return await operation(kube)
        finally:
            await kube.close()

    try:
        return asyncio.run(run())
    except (ops.OperationError, ApiTemporaryError, ApiPermanentError) as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.FAILED


def _cmd_restart(args: argparse.Namespace) -> int:
    async def restart(kube: Kube) -> int:
        value = await ops.trigger_restart(kube, args.namespace, args.stack)
        print(f"restart run requested for {args.namespace}/{args.stack} ({Annotation.RESTART_NOW}={value})")
        print(f"follow it with: kubectl get ts {args.stack} -n {args.namespace} -o jsonpath='{{.status.restarts}}'")
        return 0

    return _with_kube(restart)


def _cmd_apply_now(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise InvalidInputError(["--reason: must not be empty (it is recorded in the MaintenanceOverride Event)"])

    async def apply_now(kube: Kube) -> int:
        value = await ops.apply_now(kube, args.namespace, args.stack, args.reason)
        print(f"maintenance open for 60 minutes for {args.namespace}/{args.stack} ({Annotation.APPLY_NOW}={value})")
        print(f"see: kubectl get ts {args.stack} -n {args.namespace} -o jsonpath='{{.status.maintenance}}'")
        return 0

    return _with_kube(apply_now)


def _cmd_postgres_switchover(args: argparse.Namespace) -> int:
    async def switchover(kube: Kube) -> int:
        value = await ops.request_switchover(kube, args.namespace, args.stack, args.to)
        target = args.to or "the best replica"
        print(f"switchover to {target} requested for {args.namespace}/{args.stack} ({Annotation.SWITCHOVER}={value})")
        print(f"follow it with: kubectl get ts {args.stack} -n {args.namespace} -o jsonpath='{{.status.postgres}}'")
        return 0

    return _with_kube(switchover)


def _postgres_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    postgres_cmd = commands.add_parser("postgres", help="operate a stack's Patroni cluster (postgres.instances > 1)")
    postgres_commands = postgres_cmd.add_subparsers(dest="postgres_command", required=True)
    switchover_cmd = postgres_commands.add_parser(
        "switchover", help="switch the Patroni leader over to a replica (a short write pause, no failover)"
    )
    switchover_cmd.add_argument("stack", help="TradingStack name")
    switchover_cmd.add_argument("--to", help="the member pod to lead (default: the replica Patroni finds best)")
    switchover_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    switchover_cmd.set_defaults(handler=_cmd_postgres_switchover)


HALT_REASON_MAX = 1024
"""spec.halt.reason's limit (the CRD refuses longer)."""


def halt_reason(value: str) -> str:
    """--reason: 1..1024 characters once stripped."""
    reason = value.strip()
    if not reason:
        raise InvalidInputError(["--reason: must not be empty"])
    if len(reason) > HALT_REASON_MAX:
        raise InvalidInputError([f"--reason: at most {HALT_REASON_MAX} characters ({len(reason)} given)"])
    return reason


def _cmd_halt(args: argparse.Namespace) -> int:
    reason = halt_reason(args.reason)

    async def halt(kube: Kube) -> int:
        by = await ops.halt_stack(kube, args.namespace, args.stack, reason, args.requested_by)
        print(f"halt requested for {args.namespace}/{args.stack} by {by or 'unknown'}: {reason}")
        print(f"follow it with: kubectl get ts {args.stack} -n {args.namespace} -o jsonpath='{{.status.halt}}'")
        return 0

    return _with_kube(halt)


def _cmd_resume(args: argparse.Namespace) -> int:
    async def resume(kube: Kube) -> int:
        if await ops.resume_stack(kube, args.namespace, args.stack):
            print(f"resume requested for {args.namespace}/{args.stack}: the haltable services scale back up")
        else:
            print(f"{args.namespace}/{args.stack} is not halted: nothing to do")
        return 0

    return _with_kube(resume)


def _cmd_status(args: argparse.Namespace) -> int:
    async def status(kube: Kube) -> int:
        document = await ops.stack_overview(kube, args.namespace, args.stack)
        if args.output == "json":
            print(json.dumps(document, indent=2, sort_keys=True))
        else:
            sys.stdout.write(overview_text(document, datetime.now(UTC)))
        return 0

    return _with_kube(status)


def _report(outcome: ops.JobOutcome) -> int:
    if outcome.succeeded:
        return ExitCode.OK
    failure = outcome.result if isinstance(outcome.result, ToolFailure) else None
    error = failure.error if failure else "no result reported (see the Job's pod)"
    print(f"Job {outcome.name} failed: {error}", file=sys.stderr)
    return ExitCode.REFUSED if failure and failure.refused else ExitCode.FAILED


def _cmd_backup_list(args: argparse.Namespace) -> int:
    async def backup_list(kube: Kube) -> int:
        outcome = await ops.list_backups(kube, args.namespace, args.stack, args.timeout, args.cluster_domain)
        if outcome.succeeded:
            listing = (
                outcome.result if isinstance(outcome.result, BackupListing) else BackupListing(backups=[], total=0)
            )
            print(f"{'NAME':<40} {'TIME':<26} {'SIZE':>14} VERIFIED")
            for backup in (entry.model_dump(mode="json", by_alias=True) for entry in listing.backups):
                print(f"{backup['name']:<40} {backup['time']:<26} {backup['sizeBytes']:>14} {backup['verified']}")
            print(f"{len(listing.backups)} of {listing.total} backups shown")
        code = _report(outcome)
        pitr = await ops.list_pitr_backups(kube, args.namespace, args.stack, args.timeout)
        if pitr is None:
            return code
        if pitr.succeeded and isinstance(pitr.result, PitrListing):
            print()
            print(pitr_listing_text(pitr.result))
        return max(code, _report(pitr))

    return _with_kube(backup_list)


def pitr_listing_text(listing: PitrListing) -> str:
    """The pgBackRest base backups, newest first, under the window a point-in-time restore can reach."""
    window = (
        f"recoverable from {_utc(listing.recoverable_from)} to at least {_utc(listing.recoverable_to)}"
        if listing.recoverable_from and listing.recoverable_to
        else "no recoverable window yet"
    )
    lines = [
        f"pgBackRest base backups: {window}",
        f"{'LABEL':<34} {'TYPE':<5} {'STOPPED':<21} {'REPO':>4} {'SIZE':>14}",
    ]
    lines += [
        f"{b.label:<34} {b.type:<5} {_utc(b.stopped):<21} {b.repo:>4} {b.size_bytes:>14}" for b in listing.backups
    ]
    lines.append(f"{len(listing.backups)} of {listing.total} base backups shown")
    return "\n".join(lines)


def _utc(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else "-"


def rfc3339(text: str) -> datetime:
    """A time with a UTC offset (`Z` or `+01:00`): a recovery target without one would depend on a clock's zone."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +HH:MM)")
    return at.astimezone(UTC)


def restore_to_time_plan(stack: str, target: datetime) -> str:
    """What a point-in-time restore does. It never rewinds a running stack in place (that would discard every
    write after the target on the live database): a new stack restores from the repository and replays to it."""
    when = target.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f"A point-in-time restore of {stack} to {when} creates a NEW stack; {stack} itself is not changed.\n"
        f"Copy {stack}'s spec into a new TradingStack (same spec.postgres.pitr repository) and set:\n"
        f'  spec:\n    postgres:\n      restore:\n        targetTime: "{when}"\n'
        "Its database is restored from the newest base backup that ended before that time, replays archived WAL\n"
        "up to the last commit before it, then promotes. Nothing was done."
    )


def _cmd_backup_restore(args: argparse.Namespace) -> int:
    if args.target_time is not None:
        print(restore_to_time_plan(args.stack, args.target_time))
        return ExitCode.OK

    async def backup_restore(kube: Kube) -> int:
        outcome = await ops.restore_backup(
            kube, args.namespace, args.stack, args.source, args.force, args.timeout, args.cluster_domain
        )
        if outcome.succeeded:
            restored = outcome.result.restored if isinstance(outcome.result, RestoreResult) else args.source
            print(f"restored {restored} (Job {outcome.name})")
        return _report(outcome)

    return _with_kube(backup_restore)


def _cidr_list(value: str) -> tuple[str, ...]:
    cidrs = tuple(c.strip() for c in value.split(",") if c.strip())
    for cidr in cidrs:
        try:
            check_cidr(cidr)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err
    return cidrs


def _dns_cidrs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dns-cidrs",
        type=_cidr_list,
        default=os.environ.get(OperatorEnv.DNS_CIDRS, ""),  # a string default goes through `type` too
        help="comma-separated networks where the cluster DNS answers, for the stacks' NetworkPolicies (default: env"
        f" {OperatorEnv.DNS_CIDRS}, else the k8s-app=kube-dns pods of kube-system)",
    )


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    """The cluster settings the renderer needs: its DNS domain and where its DNS answers."""
    _cluster_domain_option(parser)
    _dns_cidrs_option(parser)


def _cluster_domain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-domain",
        default=DEFAULT_CLUSTER_DOMAIN,
        help=f"the cluster's DNS domain, in the names pods use to reach each other (default {DEFAULT_CLUSTER_DOMAIN})",
    )


def _backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup_cmd = commands.add_parser("backup", help="list or restore a stack's Postgres backups")
    backup_commands = backup_cmd.add_subparsers(dest="backup_command", required=True)
    list_cmd = backup_commands.add_parser("list", help="list the backups on the stack's backup volume")
    restore_cmd = backup_commands.add_parser(
        "restore", help="restore a backup into the stack's database (refuses a non-empty one without --force)"
    )
    source = restore_cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="`latest` (newest verified) or a name")
    source.add_argument(
        "--target-time",
        type=rfc3339,
        help="pgBackRest point-in-time restore to this RFC 3339 time: prints how to do it, changes nothing",
    )
    restore_cmd.add_argument("--force", action="store_true", help="replace a database that is not empty")
    for sub, default_timeout in ((list_cmd, 300), (restore_cmd, 3600)):
        sub.add_argument("stack", help="TradingStack name")
        sub.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
        sub.add_argument("--timeout", type=float, default=default_timeout, help="seconds to wait for the Job")
        _cluster_domain_option(sub)
    list_cmd.set_defaults(handler=_cmd_backup_list)
    restore_cmd.set_defaults(handler=_cmd_backup_restore)


def _halt_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`halt` and `resume`: the kill switch (spec.halt)."""
    halt_cmd = commands.add_parser(
        "halt", help="kill switch: stop the stack's haltable services and cut their egress now (sets spec.halt)"
    )
    halt_cmd.add_argument("stack", help="TradingStack name")
    halt_cmd.add_argument("--reason", required=True, help="why (recorded in status.halt and the Halted Event)")
    halt_cmd.add_argument(
        "--requested-by", help="who (default: the user the API server knows, else the kubeconfig user, else $USER)"
    )
    halt_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    halt_cmd.set_defaults(handler=_cmd_halt)

    resume_cmd = commands.add_parser("resume", help="lift a halt: the haltable services scale back up")
    resume_cmd.add_argument("stack", help="TradingStack name")
    resume_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    resume_cmd.set_defaults(handler=_cmd_resume)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    render_cmd = commands.add_parser("render", help="print the manifests a TradingStack file renders to")
    render_cmd.add_argument("-f", "--file", type=Path, required=True, help="YAML file with TradingStack documents")
    render_cmd.add_argument("-n", "--namespace", help="namespace to render into (default: the file's or default)")
    _cluster_options(render_cmd)
    render_cmd.set_defaults(handler=_cmd_render)

    run_cmd = commands.add_parser("run", help="run the operator against the current kubeconfig")
    scope = run_cmd.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run_cmd.add_argument("--metrics-port", type=int, default=9102, help="Prometheus metrics port (default 9102)")
    run_cmd.add_argument("--health-port", type=int, default=8080, help="liveness endpoint port (default 8080)")
    run_cmd.add_argument(
        "--resync-seconds", type=float, default=30.0, help="re-check every stack this often (default 30)"
    )
    run_cmd.add_argument(
        "--no-data-plane-reads",
        dest="read_data_plane",
        action="store_false",
        help="do not read the services' /health documents nor ask the Redis sentinels nor Patroni's REST API (for "
        "an operator that cannot reach the pod network; status then shows health UNKNOWN, no Redis master, no "
        "Patroni members, and no switchover is carried out)",
    )
    run_cmd.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    run_cmd.add_argument(
        "--leader-election",
        action="store_true",
        help="run as one of several replicas: only the holder of the Lease tradingstack-operator reconciles",
    )
    run_cmd.add_argument(
        "--leader-election-namespace",
        help="namespace of the Lease (default: env POD_NAMESPACE, else the one --namespace)",
    )
    run_cmd.add_argument(
        "--leader-election-id",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's identity in the Lease (default: env POD_NAME, else hostname-pid)",
    )
    _cluster_options(run_cmd)
    run_cmd.set_defaults(handler=_cmd_run)

    restart_cmd = commands.add_parser("restart", help="start a restart run of a stack's services now")
    restart_cmd.add_argument("stack", help="TradingStack name")
    restart_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    restart_cmd.set_defaults(handler=_cmd_restart)

    apply_now_cmd = commands.add_parser(
        "apply-now",
        help="open a stack's maintenance for 60 minutes (windows and freezes overridden), recorded with a reason",
    )
    apply_now_cmd.add_argument("stack", help="TradingStack name")
    apply_now_cmd.add_argument("--reason", required=True, help="why (shown in the MaintenanceOverride Event)")
    apply_now_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    apply_now_cmd.set_defaults(handler=_cmd_apply_now)
    _halt_commands(commands)

    status_cmd = commands.add_parser("status", help="one screen with the state of a stack (also: kubectl tradingstack)")
    status_cmd.add_argument("stack", help="TradingStack name")
    status_cmd.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    status_cmd.add_argument("-o", "--output", choices=["text", "json"], default="text", help="format (default text)")
    status_cmd.set_defaults(handler=_cmd_status)

    _backup_commands(commands)
    _postgres_commands(commands)

    crd_cmd = commands.add_parser("crd", help="print the TradingStack CustomResourceDefinition")
    crd_cmd.set_defaults(handler=_cmd_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except InvalidInputError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return ExitCode.INVALID
    return result


if __name__ == "__main__":
    raise SystemExit(main())
