"""The certificates of the pgBackRest TLS server: a CA of its own per stack, the server's certificate (the
database pod, named by its Service) and the client certificate of the backup Jobs.

Issued by `render.certificates`; pure: the keys and the time come from the caller. Generated once into the
Secret `<stack>-pgbackrest-tls` and never rotated (rotation is not implemented: the certificates are valid for
`VALIDITY`; replacing them means deleting the Secret, which the operator then generates anew).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tradingstack.contract.pgbackrest import TlsFile
from tradingstack.render.certificates import authority, leaf, pem, pem_key

VALIDITY = timedelta(days=3650)
"""Ten years: longer than a stack is expected to live without a rebuild, since nothing renews them."""


@dataclass(frozen=True)
class TlsKeys:
    """The three private keys (EC P-256), made by the caller."""

    ca: ec.EllipticCurvePrivateKey
    server: ec.EllipticCurvePrivateKey
    client: ec.EllipticCurvePrivateKey


def tls_files(server_names: Sequence[str], client_cn: str, keys: TlsKeys, now: datetime) -> dict[str, str]:
    """The Secret's files (keys of `contract.pgbackrest.TlsFile`): the CA certificate, the server's certificate
    for `server_names` (DNS SANs; the first is also its CN) and the client's with CN `client_cn`, each with its
    key. The CA key is not kept: nothing signs with it again."""
    if not server_names:
        raise ValueError("the server certificate needs at least one DNS name")
    ca = authority(f"{client_cn} CA", keys.ca, now, VALIDITY)
    # Fixed serials keep this pure: each stack's pgBackRest CA signs these two only.
    server = leaf(ca, server_names[0], keys.server, ExtendedKeyUsageOID.SERVER_AUTH, 2, now, VALIDITY, server_names)
    client = leaf(ca, client_cn, keys.client, ExtendedKeyUsageOID.CLIENT_AUTH, 3, now, VALIDITY)
    return {
        TlsFile.CA: pem(ca.certificate),
        TlsFile.SERVER_CERT: pem(server),
        TlsFile.SERVER_KEY: pem_key(keys.server),
        TlsFile.CLIENT_CERT: pem(client),
        TlsFile.CLIENT_KEY: pem_key(keys.client),
    }
