"""Real nginx with the rendered nginx.conf in front of demo-service processes on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.component.health.processes import (
    POLL_INTERVAL,
    STARTUP_TIMEOUT,
    DemoService,
    http_status,
    start_demo_service,
    stop,
)
from tests.support import free_port, wait_for
from tradingstack.api import TradingStack
from tradingstack.render.gateway import nginx_conf

ROUTED_SERVICES = ("ai-engine", "execution", "risk-safety")


def nginx_binary() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx not found: install nginx-light (hack/install-prereqs.sh)")
    return binary


def runtime_dir() -> Path:
    """A private directory for nginx's pid and temp files. Traversable by all: when the tests run as root,
    nginx's workers run as nobody."""
    path = Path(tempfile.mkdtemp(prefix="tradingstack-nginx-"))
    path.chmod(0o755)
    return path


def nginx_test(stack: TradingStack, upstream_host: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the stack's rendered configuration; the result's stderr has nginx's verdict."""
    directory = runtime_dir()
    try:
        conf_path = directory / "nginx.conf"
        conf_path.write_text(nginx_conf(stack, upstream_host=upstream_host, runtime_dir=str(directory)))
        return subprocess.run(
            [nginx_binary(), "-t", "-p", str(directory), "-e", "stderr", "-c", str(conf_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Gateway:
    port: int
    access_log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def stack_for(services: dict[str, DemoService], gateway_port: int, **gateway: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "local", "namespace": "component"},
            "spec": {
                "services": [
                    {"name": name, "image": "demo-service", "port": service.port} for name, service in services.items()
                ],
                "gateway": {"port": gateway_port, **gateway},
            },
        }
    )


@pytest.fixture(scope="module")
def demo_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DemoService]]:
    log_dir = tmp_path_factory.mktemp("demo-services")
    services: dict[str, DemoService] = {}
    try:
        for name in ROUTED_SERVICES:
            services[name] = start_demo_service(name, log_dir)
        yield services
    finally:
        for service in services.values():
            service.stop()


@pytest.fixture
def start_gateway(demo_services: dict[str, DemoService]) -> Iterator[Callable[..., Gateway]]:
    """Starts nginx (foreground: the rendered config says `daemon off`) with the rendered nginx.conf, upstreams
    on 127.0.0.1; keyword arguments go to spec.gateway."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(**gateway: Any) -> Gateway:
        directory = runtime_dir()
        port = free_port()
        conf = nginx_conf(
            stack_for(demo_services, port, **gateway), upstream_host="127.0.0.1", runtime_dir=str(directory)
        )
        (directory / "nginx.conf").write_text(conf)
        access_log = directory / "access.log"
        with access_log.open("wb") as log_file:
            process = subprocess.Popen(
                [nginx_binary(), "-p", str(directory), "-e", "stderr", "-c", str(directory / "nginx.conf")],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        started.append((process, directory))
        gateway_ = Gateway(port, access_log)

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"nginx exited {process.returncode}: {access_log.read_text()}")
            return http_status(f"{gateway_.url}/healthz") == 200

        wait_for(answers, what=f"nginx on port {port}", timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL)
        return gateway_

    yield start
    for process, directory in started:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)
