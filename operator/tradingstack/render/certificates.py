"""X.509 certificates the operator issues itself: a CA of its own and the leaf certificates it signs (EC P-256,
SHA-256). Used for the pgBackRest TLS server (`render.pgbackrest_tls`) and the stack's TLS (`render.tls`).

Pure: the keys, the serial numbers and the time come from the caller, so a test gets the same files twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLOCK_SKEW = timedelta(minutes=5)
"""notBefore lies this far back, so a node whose clock is slightly behind accepts a fresh certificate."""


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and the key that signs with it."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


COMMON_NAME_MAX = 64
"""RFC 5280's upper bound of a common name (ub-common-name). Clients verify the SANs, so a longer name (a long
namespace and stack name) is cut rather than refused."""


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:COMMON_NAME_MAX])])


def _builder(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )


def authority(common_name: str, key: ec.EllipticCurvePrivateKey, now: datetime, validity: timedelta) -> Authority:
    """A self-signed CA that signs leaf certificates only (path length 0); serial 1."""
    certificate = (
        _builder(common_name, key, name(common_name), key, 1, now, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def leaf(
    ca: Authority,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    serial: int,
    now: datetime,
    validity: timedelta,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for `usage` (server or client auth) signed by `ca`; `dns_names` become its SANs. Serials
    need only be unique per CA."""
    builder = (
        _builder(subject, key, ca.certificate.subject, ca.key, serial, now, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True
        )  # digitalSignature, keyAgreement: what ECDHE-ECDSA needs
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return builder.sign(ca.key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    encoded = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return encoded.decode()


def load_authority(cert_pem: str, key_pem: str) -> Authority | None:
    """The CA of PEM files (a generated CA Secret's), or None when they are not an EC CA and its key."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except ValueError:
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        return None
    return Authority(certificate, key)


def dns_names(certificate: x509.Certificate) -> list[str]:
    """The DNS SANs of a certificate (none without the extension)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.DNSName))


def signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    """`certificate` carries a valid signature of `ca`'s key and names it as issuer."""
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
