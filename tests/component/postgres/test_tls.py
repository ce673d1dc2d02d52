"""`spec.tls` with a real PostgreSQL: the server runs the rendered TLS settings and pg_hba.conf with a certificate
the operator's builder issued (`render.tls`, `render.secrets.tls_server_secret`), and a client connects as the rendered
service container's DATABASE_URL says (`sslmode=verify-full`, the CA file).

The clients connect to 127.0.0.1 (`hostaddr`) while verifying the certificate against the Service's DNS name
(`host`), as a pod resolving `<stack>-postgres.<namespace>.svc.cluster.local` would. Plain TCP from another
address is refused: a raw startup message from 127.0.0.2 gets pg_hba's refusal.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.component.postgres.server import SUPERUSER, PostgresServer, initialized_cluster
from tests.kubelet import resolved_env
from tradingstack.api import TradingStack
from tradingstack.contract import PostgresEnv
from tradingstack.contract.tls import POSTGRES_CA_FILE, VERIFY_FULL, LibpqTlsEnv, TlsSecretKey
from tradingstack.render import tls
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN
from tradingstack.render.secrets import tls_server_secret
from tradingstack.render.services import render_services

pytestmark = pytest.mark.component

STACK = TradingStack.model_validate(
    {
        "metadata": {"name": "quant", "namespace": "trading", "uid": "u"},
        "spec": {
            "tls": {"enabled": True},
            "services": [{"name": "api", "image": "example/api:1", "port": 8000, "uses": ["postgres"]}],
        },
    }
)
SERVICE_HOST = tls.server_names(STACK, tls.POSTGRES, DEFAULT_CLUSTER_DOMAIN)[0]


def _issue(now: datetime) -> dict[str, str]:
    """PostgreSQL's TLS Secret's files as the operator generates them (a new CA)."""
    ca = tls.new_authority(STACK, ec.generate_private_key(ec.SECP256R1()), now)
    key = ec.generate_private_key(ec.SECP256R1())
    secret = tls_server_secret(STACK, STACK.owner_reference(), tls.POSTGRES, ca, key, now)
    files: dict[str, str] = secret["stringData"]
    return files


def _write(path: Path, text: str, server_user: str | None, mode: int) -> None:
    """As the pod's Secret volume has them: root's (ours), readable by the server user's group."""
    path.write_text(text)
    gid = pwd.getpwnam(server_user).pw_gid if server_user else os.getgid()
    os.chown(path, os.getuid(), gid)
    path.chmod(mode if server_user else 0o600)


@dataclass
class TlsServer:
    server: PostgresServer
    ca_file: Path
    base: Path


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    with initialized_cluster() as cluster:
        run_as = cluster.server.run_as
        tls_dir, hba_dir = cluster.base / "tls", cluster.base / "hba"
        for directory in (tls_dir, hba_dir):
            directory.mkdir(mode=0o755)
        for name, text in _issue(datetime.now(UTC)).items():
            _write(tls_dir / name, text, run_as, tls.SECRET_FILE_MODE)
        for name, text in tls.hba_files().items():
            _write(hba_dir / name, text, run_as, 0o444)
        args = tls.server_args(STACK, directory=str(tls_dir), hba_dir=str(hba_dir))
        assert args[::2] == ["-c"] * (len(args) // 2)
        # Listening on 127.0.0.2 as well: a client from there is not the pod itself.
        cluster.start(*args[1::2], "listen_addresses=127.0.0.1,127.0.0.2")
        yield TlsServer(cluster.server, tls_dir / TlsSecretKey.CA, cluster.base)


def _service_env() -> dict[str, str]:
    (deployment,) = [m for m in render_services(STACK, STACK.owner_reference()) if m["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert os.path.dirname(POSTGRES_CA_FILE) in mounts
    return resolved_env(container, secret=lambda name, key: f"postgresql://{SUPERUSER}:pw@{SERVICE_HOST}:5432/trading")


def _connect(server: TlsServer, **options: Any) -> psycopg.Connection[tuple[Any, ...]]:
    params: dict[str, Any] = {
        "host": SERVICE_HOST,
        "hostaddr": "127.0.0.1",
        "port": server.server.port,
        "user": SUPERUSER,
        "password": server.server.password,
        "dbname": "postgres",
        "connect_timeout": 10,
        **options,
    }
    return psycopg.connect(**params)


def test_the_services_dsn_connects_with_verify_full(tls_server: TlsServer) -> None:
    env = _service_env()
    assert env[LibpqTlsEnv.SSLMODE] == VERIFY_FULL
    assert env[LibpqTlsEnv.SSLROOTCERT] == POSTGRES_CA_FILE
    url = urlsplit(env[PostgresEnv.URL])
    assert url.hostname == SERVICE_HOST
    assert parse_qs(url.query) == {"sslmode": [VERIFY_FULL], "sslrootcert": [POSTGRES_CA_FILE]}
    # The URL as the service uses it; only the CA's path is the test's copy and the address 127.0.0.1.
    dsn = env[PostgresEnv.URL].replace(POSTGRES_CA_FILE, str(tls_server.ca_file))
    with psycopg.connect(
        dsn, hostaddr="127.0.0.1", port=tls_server.server.port, password=tls_server.server.password, dbname="postgres"
    ) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("name", tls.server_names(STACK, tls.POSTGRES, DEFAULT_CLUSTER_DOMAIN))
def test_every_service_name_is_verified(tls_server: TlsServer, name: str) -> None:
    with _connect(tls_server, host=name, sslmode=VERIFY_FULL, sslrootcert=str(tls_server.ca_file)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_foreign_ca_is_refused(tls_server: TlsServer) -> None:
    foreign = tls_server.base / "foreign-ca.crt"
    foreign.write_text(_issue(datetime.now(UTC))[TlsSecretKey.CA])
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        _connect(tls_server, sslmode=VERIFY_FULL, sslrootcert=str(foreign))


def test_another_host_name_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        _connect(tls_server, host="postgres.elsewhere", sslmode=VERIFY_FULL, sslrootcert=str(tls_server.ca_file))


def _startup_reply(source: str, port: int) -> bytes:
    """A plain (no SSLRequest) protocol 3.0 startup message from `source`; the server's first reply."""
    body = struct.pack("!i", 196608) + b"user\0" + SUPERUSER.encode() + b"\0database\0postgres\0\0"
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.2", port))
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        return sock.recv(4096)


def test_plain_tcp_from_another_address_is_refused(tls_server: TlsServer) -> None:
    reply = _startup_reply("127.0.0.2", tls_server.server.port)
    assert reply[:1] == b"E"
    assert b"no pg_hba.conf entry" in reply and b"no encryption" in reply


def test_plain_tcp_from_the_pod_itself_is_allowed(tls_server: TlsServer) -> None:
    """The exporter and the probes of the server's own pod connect to 127.0.0.1 without TLS."""
    with _connect(tls_server, host="127.0.0.1", sslmode="disable") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)


def test_tls_from_another_address_is_accepted(tls_server: TlsServer) -> None:
    """The `hostssl` line: a TLS client from another address (a pod) gets in; a startup from there without TLS
    does not (above)."""
    reply = _startup_reply_ssl("127.0.0.2", tls_server.server.port)
    assert reply == b"S"


def _startup_reply_ssl(source: str, port: int) -> bytes:
    """An SSLRequest from `source`: the server answers `S` when it serves TLS."""
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.2", port))
        sock.sendall(struct.pack("!ii", 8, 80877103))
        return sock.recv(1)
