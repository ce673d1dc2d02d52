"""The certificates of the pgBackRest TLS server: a CA of its own per stack, the server's certificate (the
database pod, named by its Service) and the client certificate of the backup Jobs.

Pure: the keys and the time come from the caller, so a test gets the same files twice. Generated once into the
Secret `<stack>-pgbackrest-tls` and never rotated (rotation is not implemented: the certificates are valid for
`VALIDITY`; replacing them means deleting the Secret, which the operator then generates anew).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tradingstack.contract.pgbackrest import TlsFile

VALIDITY = timedelta(days=3650)
"""Ten years: longer than a stack is expected to live without a rebuild, since nothing renews them."""

CLOCK_SKEW = timedelta(minutes=5)
"""notBefore lies this far back, so a node whose clock is slightly behind accepts a fresh certificate."""


@dataclass(frozen=True)
class TlsKeys:
    """The three private keys (EC P-256), made by the caller."""

    ca: ec.EllipticCurvePrivateKey
    server: ec.EllipticCurvePrivateKey
    client: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    now: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        # Serials need only be unique per CA, and each stack has its own: fixed numbers keep this pure.
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )


def _leaf(builder: x509.CertificateBuilder, usage: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True
        )  # digitalSignature, keyAgreement: what ECDHE-ECDSA needs
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    encoded = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return encoded.decode()


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def tls_files(server_names: Sequence[str], client_cn: str, keys: TlsKeys, now: datetime) -> dict[str, str]:
    """The Secret's files (keys of `contract.pgbackrest.TlsFile`): the CA certificate, the server's certificate
    for `server_names` (DNS SANs; the first is also its CN) and the client's with CN `client_cn`, each with its
    key. The CA key is not kept: nothing signs with it again."""
    if not server_names:
        raise ValueError("the server certificate needs at least one DNS name")
    ca_cn = f"{client_cn} CA"
    ca = (
        _certificate(ca_cn, keys.ca, ca_cn, keys.ca, 1, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(keys.ca, hashes.SHA256())
    )
    server = (
        _leaf(_certificate(server_names[0], keys.server, ca_cn, keys.ca, 2, now), ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]), critical=False)
        .sign(keys.ca, hashes.SHA256())
    )
    client = _leaf(_certificate(client_cn, keys.client, ca_cn, keys.ca, 3, now), ExtendedKeyUsageOID.CLIENT_AUTH).sign(
        keys.ca, hashes.SHA256()
    )
    return {
        TlsFile.CA: _pem(ca),
        TlsFile.SERVER_CERT: _pem(server),
        TlsFile.SERVER_KEY: _pem_key(keys.server),
        TlsFile.CLIENT_CERT: _pem(client),
        TlsFile.CLIENT_KEY: _pem_key(keys.client),
    }
