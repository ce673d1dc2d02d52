"""The stack's certificates (`spec.tls`), decided from what is live: which CA signs, which Secrets to create, when
to issue a server certificate anew, and the revisions that roll the servers onto a new certificate: each server kind
(`render.tls.SERVER_KINDS`: PostgreSQL; the Redis servers and the sentinels) has its own certificate, Secret and
revision, so renewing one rolls only that kind's StatefulSets.

Pure: the live Secrets, the clock and the new keys come from the caller (`reconcile.stack`), so every rule is a
unit test with an injected time. The CA Secret is created once and never changed; each server certificate is
issued anew, with the same CA and a new key, when

- fewer than `spec.tls.renewBeforeDays` remain before it expires (or it has expired),
- it is not signed by the stack's CA (the CA Secret was deleted and made again),
- it does not name exactly the DNS names of `render.tls.server_names` of its kind (another cluster domain), or
- it cannot be read at all.

Clients keep working across a renewal: they trust the CA, which does not change. A server loads its new
certificate when its pod restarts, which the changed revision (`Annotation.TLS_REVISION` on the pod templates of
the StatefulSets of its kind: PostgreSQL's, or Redis' and the sentinels') causes, held like any other StatefulSet
template change until maintenance is open (`reconcile.maintenance_gate`). Redis and the sentinels roll one pod at a
time, the master handing over in its preStop hook, as on any other change of their template.

The pgBackRest TLS Secret (pitr, `render.pgbackrest_tls`: its own CA, the database pod's server certificate and
the backup Jobs' client certificate) follows the same rules (`plan_pgbackrest_tls`): both certificates are issued
anew under the same CA when one of them is due, the database pod rolls by `Annotation.PGBACKREST_TLS_REVISION`,
and the backup Jobs read the new client certificate when they start.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tradingstack.api import TradingStack
from tradingstack.contract import Annotation
from tradingstack.contract.pgbackrest import CLIENT_CN, TlsFile
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.kube.actions import MergePatch, Obj
from tradingstack.reconcile.ownership import conflict
from tradingstack.render import pitr, tls
from tradingstack.render.certificates import Authority, dns_names, load_authority, signed_by
from tradingstack.render.common import child_name, template_revision
from tradingstack.render.pgbackrest_tls import CA_KEY, RENEW_BEFORE, TlsKeys, leaf_files, tls_files
from tradingstack.render.secrets import (
    generates_pgbackrest_tls,
    pgbackrest_server_names,
    tls_ca_secret,
    tls_server_secret,
)

NewKey = Callable[[], ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class CertificatePlan:
    secrets: list[Obj] = field(default_factory=list)
    """The CA and server Secrets as they should exist: created when missing, like the other generated Secrets."""
    renewals: list[MergePatch] = field(default_factory=list)
    """The new data of each server Secret whose certificate is issued anew."""
    revisions: dict[tls.ServerKind, str] = field(default_factory=dict)
    """By server kind: the hash of the certificate the pass leaves live (no kind without TLS or while its Secret
    is missing)."""
    reasons: dict[tls.ServerKind, str] = field(default_factory=dict)
    """By server kind: why its certificate is issued anew, for the log and the Event."""
    client_ca: str | None = None
    """The CA certificate (PEM) the Redis clients verify the servers and sentinels with, as Redis' TLS Secret holds
    it (`ca.crt`): what the operator's own Redis client trusts. None without Redis TLS or while there is none."""


def _ours(live: Obj | None, stack: TradingStack) -> Obj | None:
    """`live` if it is the stack's own (a Secret of that name held by anyone else is never used)."""
    return live if conflict(live, stack.name, stack.metadata.uid) is None else None


def _live_authority(live: Obj | None) -> Authority | None:
    cert, key = tls.secret_text(live, TlsSecretKey.CERT), tls.secret_text(live, TlsSecretKey.KEY)
    return load_authority(cert, key) if cert and key else None


def renewal_reason(
    cert_pem: str | None, ca: x509.Certificate, names: list[str], now: datetime, renew_before: timedelta
) -> str | None:
    """Why a server certificate must be issued anew, or None while it is good."""
    if not cert_pem:
        return "it cannot be read"
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return "it cannot be read"
    if not signed_by(certificate, ca):
        return "it is not signed by the stack's CA"
    if sorted(dns_names(certificate)) != sorted(names):
        return "its DNS names are not the Service's"
    remaining = certificate.not_valid_after_utc - now
    if remaining < renew_before:
        return f"it expires at {certificate.not_valid_after_utc.isoformat()}, within {renew_before.days} days"
    return None


def revision(cert_pem: str | None) -> str | None:
    """A short hash of a server certificate (its whole chain as the Secret holds it)."""
    return hashlib.sha256(cert_pem.encode()).hexdigest()[:16] if cert_pem else None


def _users_plan(stack: TradingStack, live_servers: Mapping[tls.ServerKind, Obj | None]) -> CertificatePlan:
    """The user's Secrets: only their revisions, so that a renewal (cert-manager's) rolls the servers."""
    texts = {kind: tls.secret_text(live_servers.get(kind), TlsSecretKey.CERT) for kind in tls.served_kinds(stack)}
    revisions = {kind: rev for kind, cert in texts.items() if (rev := revision(cert)) is not None}
    redis_ca = tls.secret_text(live_servers.get(tls.REDIS), TlsSecretKey.CA) if tls.redis_enabled(stack) else None
    return CertificatePlan(revisions=revisions, client_ca=redis_ca)


def plan_certificates(
    stack: TradingStack,
    live_ca: Obj | None,
    live_servers: Mapping[tls.ServerKind, Obj | None],
    now: datetime,
    new_key: NewKey,
    domain: str,
) -> CertificatePlan:
    """`live_ca`: the Secret `tls.ca_secret_name` as read; `live_servers`: by server kind, the Secret
    `tls.secret_name` of each kind that serves TLS (None or left out if absent)."""
    if not tls.enabled(stack):
        return CertificatePlan()
    if not tls.generated(stack):
        return _users_plan(stack, live_servers)
    ca = _live_authority(_ours(live_ca, stack)) or tls.new_authority(stack, new_key(), now)
    owner = stack.owner_reference()
    renew_before = timedelta(days=stack.spec.tls.renew_before_days)
    secrets, renewals = [tls_ca_secret(stack, owner, ca)], []
    revisions: dict[tls.ServerKind, str] = {}
    reasons: dict[tls.ServerKind, str] = {}
    for kind in tls.served_kinds(stack):
        created = tls_server_secret(stack, owner, kind, ca, new_key(), now, domain)
        secrets.append(created)
        files: Mapping[str, str] = created["stringData"]
        live = _ours(live_servers.get(kind), stack)
        live_cert = tls.secret_text(live, TlsSecretKey.CERT)
        names = tls.server_names(stack, kind, domain)
        reason = None if live is None else renewal_reason(live_cert, ca.certificate, names, now, renew_before)
        if live is not None and reason is None:
            revisions[kind] = revision(live_cert) or ""
            continue
        revisions[kind] = revision(files[TlsSecretKey.CERT]) or ""
        if live is None:  # created in this pass from the very object above
            continue
        data = {key: base64.b64encode(value.encode()).decode() for key, value in files.items()}
        renewals.append(MergePatch("Secret", tls.secret_name(stack, kind), stack.namespace, {"data": data}))
        reasons[kind] = str(reason)
    client_ca = tls.ca_files(ca)[TlsSecretKey.CERT] if tls.redis_enabled(stack) else None
    return CertificatePlan(secrets, renewals, revisions, reasons, client_ca)


@dataclass(frozen=True)
class PgBackRestTlsPlan:
    renewals: list[MergePatch] = field(default_factory=list)
    """The pgBackRest TLS Secret's new data, when its certificates are issued anew."""
    revision: str | None = None
    """The hash of the server certificate the pass leaves live; None without pitr or while the Secret is not the
    stack's."""
    reason: str | None = None
    """Why the certificates are issued anew, for the log and the Event."""


def plan_pgbackrest_tls(
    stack: TradingStack,
    live: Obj | None,
    created: Obj | None,
    now: datetime,
    new_keys: Callable[[], TlsKeys],
    domain: str,
) -> PgBackRestTlsPlan:
    """`live`: the Secret `pitr.tls_secret_name` as read (None if absent); `created`: that Secret as the pass
    creates it when it is absent (`render.secrets.generated_secrets`). Both certificates are issued anew, under the
    same CA, when either is due (`renewal_reason` with `RENEW_BEFORE`); with a new CA when the Secret keeps no
    usable CA key (made before rotation existed, or damaged)."""
    if not generates_pgbackrest_tls(stack):
        return PgBackRestTlsPlan()
    if live is None:  # created in this pass
        return PgBackRestTlsPlan(revision=revision(tls.secret_text(created, TlsFile.SERVER_CERT)))
    if _ours(live, stack) is None:  # never read nor patched: the conflict is reported with the other children
        return PgBackRestTlsPlan()
    server_cert = tls.secret_text(live, TlsFile.SERVER_CERT)
    ca_cert, ca_key = tls.secret_text(live, TlsFile.CA), tls.secret_text(live, CA_KEY)
    ca = load_authority(ca_cert, ca_key) if ca_cert and ca_key else None
    names = pgbackrest_server_names(stack, domain)
    if ca is None:
        reason: str | None = "it keeps no key of its CA"
    else:
        client = renewal_reason(tls.secret_text(live, TlsFile.CLIENT_CERT), ca.certificate, [], now, RENEW_BEFORE)
        server = renewal_reason(server_cert, ca.certificate, names, now, RENEW_BEFORE)
        reason = f"the server certificate: {server}" if server else (client and f"the client certificate: {client}")
    if reason is None:
        return PgBackRestTlsPlan(revision=revision(server_cert))
    keys = new_keys()
    files = leaf_files(ca, names, CLIENT_CN, keys, now) if ca else tls_files(names, CLIENT_CN, keys, now)
    data = {key: base64.b64encode(value.encode()).decode() for key, value in files.items()}
    patch = MergePatch("Secret", pitr.tls_secret_name(stack), stack.namespace, {"data": data})
    return PgBackRestTlsPlan([patch], revision(files[TlsFile.SERVER_CERT]), reason)


def with_pgbackrest_revision(objs: list[Obj], stack: TradingStack, cert_revision: str | None) -> list[Obj]:
    """The rendered objects with the PostgreSQL pod template annotated with the pgBackRest server certificate's
    revision, so a new certificate rolls the database pod (and nothing else: the Jobs read it when they start)."""
    if cert_revision is None:
        return objs
    name = child_name(stack, "postgres")
    return [
        _stamped(obj, cert_revision, Annotation.PGBACKREST_TLS_REVISION)
        if obj["kind"] == "StatefulSet" and obj["metadata"]["name"] == name
        else obj
        for obj in objs
    ]


def serving_statefulsets(stack: TradingStack, kind: tls.ServerKind) -> list[str]:
    """The StatefulSets whose pods serve the certificate of `kind` (none when it serves no TLS): PostgreSQL's, or
    Redis' and the sentinels'."""
    if not tls.serves(stack, kind):
        return []
    components = ["postgres"] if kind == tls.POSTGRES else ["redis", "redis-sentinel"]
    return [child_name(stack, component) for component in components]


def with_certificate_revisions(
    objs: list[Obj], stack: TradingStack, revisions: Mapping[tls.ServerKind, str]
) -> list[Obj]:
    """The rendered objects with the pod templates of each kind's `serving_statefulsets` annotated with the
    revision of that kind's certificate (and their own revision annotation recomputed), so a new certificate rolls
    its servers and no others."""
    by_name = {
        name: cert_revision
        for kind in tls.SERVER_KINDS
        if (cert_revision := revisions.get(kind)) is not None
        for name in serving_statefulsets(stack, kind)
    }
    return [
        _stamped(obj, by_name[obj["metadata"]["name"]])
        if obj["kind"] == "StatefulSet" and obj["metadata"]["name"] in by_name
        else obj
        for obj in objs
    ]


def _stamped(obj: Obj, cert_revision: str, annotation: str = Annotation.TLS_REVISION) -> dict[str, Any]:
    template = dict(obj["spec"]["template"])
    meta = dict(template.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), annotation: cert_revision}
    template["metadata"] = meta
    annotations = {**obj["metadata"].get("annotations", {}), Annotation.REVISION: template_revision(template)}
    return {
        **obj,
        "metadata": {**obj["metadata"], "annotations": annotations},
        "spec": {**obj["spec"], "template": template},
    }
