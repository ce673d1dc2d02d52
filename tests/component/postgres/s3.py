"""An S3-compatible server on 127.0.0.1 for pgBackRest's repo2: versitygw (posix backend) built from its Go module
by hack/gobuild/versitygw, with a self-signed certificate (pgBackRest speaks S3 over TLS only)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.cluster import BIN_DIR
from tests.support import free_port, wait_for
from tradingstack.contract.pgbackrest import PgBackRestEnv
from tradingstack.render.pgbackrest import S3Repo

HOST = "localhost"
"""Not 127.0.0.1: pgBackRest 2.45 matches the certificate against DNS names only. /etc/hosts maps it to 127.0.0.1."""


@dataclass(frozen=True)
class S3Server:
    repo: S3Repo
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The env pgBackRest reads repo2's credentials from."""
        return {PgBackRestEnv.REPO2_S3_KEY: self.access_key, PgBackRestEnv.REPO2_S3_KEY_SECRET: self.secret_key}


def _versitygw() -> str:
    path = shutil.which("versitygw", path=str(BIN_DIR)) or shutil.which("versitygw")
    if path is None:
        pytest.fail(f"versitygw is not in {BIN_DIR}: build it from hack/gobuild/versitygw", pytrace=False)
    return path


def _certificate(directory: Path, host: str) -> tuple[Path, Path]:
    cert, key = directory / "s3-cert.pem", directory / "s3-key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={host}"]
    extension = ["-addext", f"subjectAltName=DNS:{host}"]
    subprocess.run([*request, *extension, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _listening(port: int, log: Path) -> bool:
    return f"port {port}" in log.read_text(errors="replace")


@contextmanager
def running_s3(
    directory: Path, bucket: str = "pgbackrest", host: str = HOST, address: str = "127.0.0.1"
) -> Iterator[S3Server]:
    """versitygw serving `directory`/data, with one bucket, on `address` with a certificate for the DNS name
    `host`; stopped afterwards."""
    cert, key = _certificate(directory, host)
    data, sidecar = directory / "s3-data", directory / "s3-meta"
    (data / bucket).mkdir(parents=True)  # a top-level directory is a bucket of the posix backend
    sidecar.mkdir()  # metadata in files rather than xattrs, whatever the file system
    port = free_port()
    access, secret = "tradingstack", secrets.token_urlsafe(16)
    log = directory / "s3.log"
    argv = [_versitygw(), "--access", access, "--secret", secret, "--port", f"{address}:{port}"]
    argv += ["--cert", str(cert), "--key", str(key), "posix", "--sidecar", str(sidecar), str(data)]
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is None and _listening(port, log), timeout=20, interval=0.1, what="versitygw")
        repo = S3Repo(host, bucket, "us-east-1", path="/repo", port=port, uri_style="path", ca_file=str(cert))
        yield S3Server(repo, access, secret)
    finally:
        process.terminate()
        process.wait(timeout=10)
