"""The stack's certificates (`spec.tls`), decided from what is live: which CA signs, which Secrets to create, when
to issue the server certificate anew, and the revision that rolls the servers (PostgreSQL, the Redis servers and the
sentinels) onto a new certificate.

Pure: the live Secrets, the clock and the new keys come from the caller (`reconcile.stack`), so every rule is a
unit test with an injected time. The CA Secret is created once and never changed; the server certificate is
issued anew, with the same CA and a new key, when

- fewer than `spec.tls.renewBeforeDays` remain before it expires (or it has expired),
- it is not signed by the stack's CA (the CA Secret was deleted and made again),
- it does not name every DNS name of `render.tls.server_names` (another cluster domain, Redis turned on), or
- it cannot be read at all.

Clients keep working across a renewal: they trust the CA, which does not change. A server loads its new
certificate when its pod restarts, which the changed revision (`Annotation.TLS_REVISION` on the pod templates of
the PostgreSQL, Redis and Sentinel StatefulSets) causes, held like any other StatefulSet template change until
maintenance is open (`reconcile.maintenance_gate`). Redis and the sentinels roll one pod at a time, the master
handing over in its preStop hook, as on any other change of their template.
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
from tradingstack.contract.tls import TlsSecretKey
from tradingstack.kube.actions import MergePatch, Obj
from tradingstack.reconcile.ownership import conflict
from tradingstack.render import tls
from tradingstack.render.certificates import Authority, dns_names, load_authority, signed_by
from tradingstack.render.common import child_name, template_revision
from tradingstack.render.secrets import tls_secrets

NewKey = Callable[[], ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class CertificatePlan:
    secrets: list[Obj] = field(default_factory=list)
    """The CA and server Secrets as they should exist: created when missing, like the other generated Secrets."""
    renewals: list[MergePatch] = field(default_factory=list)
    """The server Secret's new data, when its certificate is issued anew."""
    revision: str | None = None
    """The hash of the server certificate the pass leaves live; None without TLS or while there is none."""
    reason: str | None = None
    """Why the certificate is issued anew, for the log and the Event."""
    client_ca: str | None = None
    """The CA certificate (PEM) the clients verify the servers with, as the server Secret holds it (`ca.crt`): what
    the operator's own Redis client trusts. None without TLS or while there is none."""


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
    """A short hash of the server certificate (its whole chain as the Secret holds it)."""
    return hashlib.sha256(cert_pem.encode()).hexdigest()[:16] if cert_pem else None


def plan_certificates(
    stack: TradingStack,
    live_ca: Obj | None,
    live_server: Obj | None,
    now: datetime,
    new_key: NewKey,
    domain: str,
) -> CertificatePlan:
    """`live_ca`, `live_server`: the Secrets `tls.ca_secret_name` and `tls.secret_name` as read (None if absent)."""
    if not tls.enabled(stack):
        return CertificatePlan()
    server = _ours(live_server, stack) if tls.generated(stack) else live_server
    if not tls.generated(stack):  # the user's Secret: only its revision, so that a renewal rolls the server
        cert, ca_pem = (tls.secret_text(server, key) for key in (TlsSecretKey.CERT, TlsSecretKey.CA))
        return CertificatePlan(revision=revision(cert), client_ca=ca_pem)
    ca = _live_authority(_ours(live_ca, stack)) or tls.new_authority(stack, new_key(), now)
    owner = stack.owner_reference()
    secrets = tls_secrets(stack, owner, ca, new_key(), now, domain)
    created: Mapping[str, str] = secrets[1]["stringData"]
    if server is None:  # created in this pass from the very objects above
        return CertificatePlan(
            secrets=secrets, revision=revision(created[TlsSecretKey.CERT]), client_ca=created[TlsSecretKey.CA]
        )
    live_cert = tls.secret_text(server, TlsSecretKey.CERT)
    renew_before = timedelta(days=stack.spec.tls.renew_before_days)
    reason = renewal_reason(live_cert, ca.certificate, tls.server_names(stack, domain), now, renew_before)
    if reason is None:
        return CertificatePlan(secrets=secrets, revision=revision(live_cert), client_ca=created[TlsSecretKey.CA])
    data = {key: base64.b64encode(value.encode()).decode() for key, value in created.items()}
    patch = MergePatch("Secret", tls.secret_name(stack), stack.namespace, {"data": data})
    return CertificatePlan(secrets, [patch], revision(created[TlsSecretKey.CERT]), reason, created[TlsSecretKey.CA])


def serving_statefulsets(stack: TradingStack) -> list[str]:
    """The StatefulSets whose pods serve the certificate: PostgreSQL's, Redis' and the sentinels' (each with TLS)."""
    names = [child_name(stack, "postgres")] if tls.postgres_enabled(stack) else []
    redis = [child_name(stack, "redis"), child_name(stack, "redis-sentinel")] if tls.redis_enabled(stack) else []
    return names + redis


def with_certificate_revision(objs: list[Obj], stack: TradingStack, cert_revision: str | None) -> list[Obj]:
    """The rendered objects with the pod templates of `serving_statefulsets` annotated with the certificate's
    revision (and their own revision annotation recomputed), so a new certificate rolls the servers."""
    if cert_revision is None:
        return objs
    names = set(serving_statefulsets(stack))
    return [_stamped(obj, cert_revision) if _is_serving(obj, names) else obj for obj in objs]


def _is_serving(obj: Obj, names: set[str]) -> bool:
    return bool(obj["kind"] == "StatefulSet" and obj["metadata"]["name"] in names)


def _stamped(obj: Obj, cert_revision: str) -> dict[str, Any]:
    template = dict(obj["spec"]["template"])
    meta = dict(template.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), Annotation.TLS_REVISION: cert_revision}
    template["metadata"] = meta
    annotations = {**obj["metadata"].get("annotations", {}), Annotation.REVISION: template_revision(template)}
    return {
        **obj,
        "metadata": {**obj["metadata"], "annotations": annotations},
        "spec": {**obj["spec"], "template": template},
    }
