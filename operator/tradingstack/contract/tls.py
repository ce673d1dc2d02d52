"""Names the stack's TLS (`spec.tls`) shares between the operator, the Secrets, the PostgreSQL server and its
clients: the Secret keys (cert-manager's, so a Certificate's Secret can be given as is), where the files are
mounted in the pods, and the libpq settings the clients get.

`render.tls` mounts the Secret at these paths and writes them into the server's arguments and the clients' env;
libpq (the services, the backup tool) and the server read them there.
"""

from __future__ import annotations

from typing import Final


class TlsSecretKey:
    """Keys of a server's TLS Secret (`<stack>-postgres-tls`, `<stack>-redis-tls`, or the user's
    `spec.tls.postgresSecretName`, `redisSecretName`) and of the generated CA Secret (`<stack>-tls-ca`: `CERT` and
    `KEY` only), as cert-manager names them."""

    CERT: Final = "tls.crt"
    KEY: Final = "tls.key"
    CA: Final = "ca.crt"


SERVER_DIR: Final = "/etc/tradingstack/tls"
"""A server's own TLS Secret (PostgreSQL's, or Redis' in the Redis and Sentinel pods), mounted whole (files named
as `TlsSecretKey`)."""

CLIENT_DIR: Final = "/etc/tradingstack/tls-ca"
"""Only the CA certificates (`TlsSecretKey.CA`) of the servers' TLS Secrets a client connects to, mounted in the
clients' containers, one file per server kind (the two Secrets may come from different CAs with `issuer: secret`)."""

POSTGRES_CA_FILE: Final = f"{CLIENT_DIR}/postgres-{TlsSecretKey.CA}"
"""The CA file the clients verify PostgreSQL with (`sslrootcert`): `ca.crt` of PostgreSQL's TLS Secret."""

REDIS_CA_FILE: Final = f"{CLIENT_DIR}/redis-{TlsSecretKey.CA}"
"""The CA file the clients verify the Redis servers and sentinels with (`REDIS_TLS_CA_FILE`): `ca.crt` of Redis'
TLS Secret."""

VERIFY_FULL: Final = "verify-full"
"""The clients' sslmode: the server's certificate must chain to the CA and name the host connected to."""


class LibpqTlsEnv:
    """libpq's documented environment defaults for TLS, injected by `render.tls` into every container that connects
    to the stack's PostgreSQL (with `spec.tls`); read by libpq itself (psycopg, pg_dump, psql, pg_isready)."""

    SSLMODE: Final = "PGSSLMODE"
    SSLROOTCERT: Final = "PGSSLROOTCERT"
