"""A real Prometheus (built from its Go module by `hack/cluster.sh build`) as a host process on 127.0.0.1 that
scrapes pods of the real node by their IPs and evaluates the chart's alert rules."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.cluster import BIN_DIR, wait_for
from tests.support import free_port

SCRAPE_SECONDS = 5
"""Scrape and rule evaluation interval: an alert fires within its `for` plus about one interval."""


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:  # noqa: S310 - loopback
            document = json.load(response)
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", query=expr)["result"])

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self._get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == alertname and a["state"] == "firing"]  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_prometheus(workdir: Path, targets: Mapping[str, list[str]], rules: Path) -> Prometheus:
    """`targets`: job name -> host:port list, scraped at /metrics."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (workdir / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN_DIR / "prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process)
    expected = sum(len(a) for a in targets.values())

    def scraping() -> bool:
        try:
            return len(prometheus.query("up == 1")) == expected
        except OSError:  # not listening yet
            return False

    try:
        wait_for(scraping, timeout=90, interval=2,
                 what=f"Prometheus scraping {expected} targets (log: {workdir / 'prometheus.log'})")  # fmt: skip
    except BaseException:
        prometheus.stop()
        raise
    return prometheus
