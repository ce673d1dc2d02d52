"""Real processes for the component tests: the demo trading service and redis-server, on 127.0.0.1.

Shared by tests/component/health and tests/component/gateway.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.support import free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
DEMO_SERVICE_DIR = REPO / "images" / "demo-service"
STARTUP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
"""Local processes answer within milliseconds: poll quickly, with a generous deadline."""


def http_status(url: str) -> int | None:
    """Status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1 only
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class DemoService:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (each must parse: the service logs JSON only)."""
        text = self.log_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        stop(self.process)


def start_demo_service(name: str, log_dir: Path, **env: str) -> DemoService:
    """Start `python -m demo_service` as a process and wait until /health/live answers."""
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    process_env = {
        **os.environ,
        "PYTHONPATH": str(DEMO_SERVICE_DIR),
        "SERVICE_NAME": name,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        **env,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo_service"], env=process_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    service = DemoService(name, port, process, log_path)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"demo service {name} exited {process.returncode}: {log_path.read_text()}")
        return http_status(f"{service.url}/health/live") == 200

    try:
        wait_for(answers, what=f"demo service {name} on port {port}", timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL)
    except BaseException:
        service.stop()
        raise
    return service


@dataclass
class RedisServer:
    port: int
    password: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        assert redis_server, "redis-server not found: install redis-server (hack/install-prereqs.sh)"
        self.process = subprocess.Popen(
            [
                redis_server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            self._answers, what=f"redis-server on port {self.port}", timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL
        )

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
