"""An S3 server for the pods of the real node: versitygw as a host process on the pod bridge's gateway address,
behind a selector-less Service of the test namespace (its DNS name is the endpoint pgBackRest checks the
certificate against), with the access keys and the CA in a Secret. Traffic stays on this machine: the pods
reach the host through their own bridge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.component.postgres.s3 import running_s3
from tests.fixtures.cluster import Cluster

HOST_ADDRESS = "10.244.0.1"
"""The gateway of real node 0's pod bridge (hack/node.sh `gateway_of 0`), where the host's add-ons answer pods."""
SERVICE = "e2e-s3"
BUCKET = "pgbackrest"


@contextmanager
def s3_for_pods(cluster: Cluster, namespace: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """A running S3 server the stack's pods can use; yields the `spec.postgres.pitr.s3` that points at it."""
    host = f"{SERVICE}.{namespace}.svc.cluster.local"
    with running_s3(workdir, BUCKET, host=host, address=HOST_ADDRESS) as s3:
        port = s3.repo.port
        assert s3.repo.ca_file is not None
        ca = Path(s3.repo.ca_file).read_text()
        cluster.kubectl("-n", namespace, "create", "secret", "generic", SERVICE, f"--from-literal=id={s3.access_key}",
                        f"--from-literal=secret={s3.secret_key}", f"--from-literal=ca.crt={ca}")  # fmt: skip
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE},
                   "spec": {"ports": [{"name": "https", "port": port, "targetPort": port}]}}  # fmt: skip
        endpoints = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": SERVICE, "labels": {"kubernetes.io/service-name": SERVICE,
                                                      "endpointslice.kubernetes.io/managed-by": "tradingstack-e2e"}},
            "addressType": "IPv4", "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [HOST_ADDRESS], "conditions": {"ready": True}}],
        }  # fmt: skip
        cluster.apply(service, namespace=namespace)
        cluster.apply(endpoints, namespace=namespace)
        try:
            yield {
                "endpoint": host, "port": port, "bucket": BUCKET, "uriStyle": "path",
                "caSecret": {"name": SERVICE, "key": "ca.crt"},
                "accessKeyId": {"name": SERVICE, "key": "id"}, "secretAccessKey": {"name": SERVICE, "key": "secret"},
                "egress": [{"cidr": f"{HOST_ADDRESS}/32", "ports": [{"port": port}]}],
            }  # fmt: skip
        finally:
            cluster.kubectl("-n", namespace, "delete", "service,endpointslice,secret", SERVICE, "--wait=false",
                            check=False)  # fmt: skip
