"""The certificates of the pgBackRest TLS server: a CA of its own per stack, the server's certificate (the
database pod, named by its Service) and the client certificate of the backup Jobs.

Issued by `render.certificates`; pure: the keys and the time come from the caller. Generated into the Secret
`<stack>-pgbackrest-tls`, which also keeps the CA's key (`CA_KEY`, mounted nowhere: the pods mount the files of
their side only, by item) so that `reconcile.tls` can issue the two certificates anew under the same CA before
they expire (`LEAF_VALIDITY`, `RENEW_BEFORE`): a backup Job started before or after a renewal and the server before
or after its restart all trust the one CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tradingstack.contract.pgbackrest import TlsFile
from tradingstack.render.certificates import Authority, authority, leaf, pem, pem_key

CA_VALIDITY = timedelta(days=3650)
"""Ten years: the server and client certificates are renewed under it."""

LEAF_VALIDITY = timedelta(days=365)
"""The server's and the client's certificates."""

RENEW_BEFORE = timedelta(days=30)
"""Both are issued anew when fewer days than this remain; the database pod's restart that loads the server's new
certificate is held until maintenance is open, which this margin leaves room for."""

CA_KEY: Final = "ca.key"
"""Key of the CA's private key in the Secret: never one of the files a pod mounts (`TlsFile`)."""

SERVER, CLIENT = 0, 1
"""Offsets of the two leaves' serial numbers (issued at the same instant under one CA)."""


@dataclass(frozen=True)
class TlsKeys:
    """The three private keys (EC P-256), made by the caller."""

    ca: ec.EllipticCurvePrivateKey
    server: ec.EllipticCurvePrivateKey
    client: ec.EllipticCurvePrivateKey


def new_authority(client_cn: str, key: ec.EllipticCurvePrivateKey, now: datetime) -> Authority:
    return authority(f"{client_cn} CA", key, now, CA_VALIDITY)


def tls_files(server_names: Sequence[str], client_cn: str, keys: TlsKeys, now: datetime) -> dict[str, str]:
    """The Secret's data with a new CA: `leaf_files` signed by it."""
    return leaf_files(new_authority(client_cn, keys.ca, now), server_names, client_cn, keys, now)


def leaf_files(
    ca: Authority, server_names: Sequence[str], client_cn: str, keys: TlsKeys, now: datetime
) -> dict[str, str]:
    """The Secret's data (keys of `contract.pgbackrest.TlsFile` and `CA_KEY`): the CA certificate and key, the
    server's certificate for `server_names` (DNS SANs; the first is also its CN) and the client's with CN
    `client_cn`, each with its key (`keys.server`, `keys.client`; `keys.ca` is not used), valid `LEAF_VALIDITY`
    from `now`. Serials: the issue time in microseconds and the leaf, unique under the CA."""
    if not server_names:
        raise ValueError("the server certificate needs at least one DNS name")
    serial = int(now.timestamp() * 1_000_000) * 2
    server_usage, client_usage = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    server = leaf(ca, server_names[0], keys.server, server_usage, serial + SERVER, now, LEAF_VALIDITY, server_names)
    client = leaf(ca, client_cn, keys.client, client_usage, serial + CLIENT, now, LEAF_VALIDITY)
    return {
        TlsFile.CA: pem(ca.certificate),
        CA_KEY: pem_key(ca.key),
        TlsFile.SERVER_CERT: pem(server),
        TlsFile.SERVER_KEY: pem_key(keys.server),
        TlsFile.CLIENT_CERT: pem(client),
        TlsFile.CLIENT_KEY: pem_key(keys.client),
    }
