"""API access for the operator, on lightkube's async client with one field manager for everything applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, codecs
from lightkube.codecs import resource_registry
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import GenericNamespacedResource, create_api_info, create_namespaced_resource
from lightkube.operators import BinaryOperator, SequenceOperator
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from tradingstack import API_GROUP, API_VERSION, KIND, PLURAL
from tradingstack.components import owned_kinds
from tradingstack.errors import ApiPermanentError, ApiTemporaryError, NotLeaderError
from tradingstack.kube.actions import FIELD_MANAGER as FIELD_MANAGER  # noqa: PLC0414
from tradingstack.kube.actions import RESTART_FIELD_MANAGER as RESTART_FIELD_MANAGER  # noqa: PLC0414

# ChildKey and Obj are re-exported: the callers of the client import them from here, as before they moved.
from tradingstack.kube.actions import ChildKey as ChildKey  # noqa: PLC0414
from tradingstack.kube.actions import EventType, key_of
from tradingstack.kube.actions import Obj as Obj  # noqa: PLC0414

TradingStackResource = create_namespaced_resource(API_GROUP, API_VERSION, KIND, PLURAL)

CHILD_KINDS: dict[str, Any] = {use.kind: resource_registry.load(use.api_version, use.kind) for use in owned_kinds()}
"""lightkube's resource class of every kind the components own (`tradingstack.components`)."""


class LeaseDocument(GenericNamespacedResource):
    """coordination.k8s.io/v1 Lease as a plain dict: lightkube's Lease model writes a MicroTime with no fraction
    as "...:00Z" when its microseconds are 0, which the API server refuses (it wants exactly six digits).
    Not registered, so codecs keep loading Leases as the model elsewhere."""

    _api_info = create_api_info("coordination.k8s.io", "v1", "Lease", "leases", verbs=["get", "post", "put"])


def _lease_document(namespace: str, name: str, spec: Obj, resource_version: str | None = None) -> LeaseDocument:
    metadata = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version  # replace only if nobody wrote it since we read it
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
    document: LeaseDocument = LeaseDocument.from_dict(lease)
    return document


EVENT_MESSAGE_LIMIT = 1024

_TEMPORARY_CODES = {408, 409, 429, 500, 502, 503, 504}


def _converted(err: Exception) -> Exception:
    if isinstance(err, ApiError):
        code = int(err.status.code or 0)
        message = f"{code} {err.status.reason}: {err.status.message}"
        if code in _TEMPORARY_CODES:
            return ApiTemporaryError(message, delay=5 if code != 429 else 15, code=code)
        return ApiPermanentError(message, code)
    return ApiTemporaryError(f"API server unreachable: {type(err).__name__}: {err}", delay=5)


@asynccontextmanager
async def _api_errors() -> AsyncIterator[None]:
    try:
        yield
    except (ApiError, httpx2.HTTPError, OSError) as err:
        raise _converted(err) from err


def _as_dict(obj: Any) -> Obj:
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


class Kube:
    """Thin async facade over the API; every method converts client errors into domain errors.

    `may_write`, when given, is asked before every write to the stacks' objects: a leader that lost its Lease
    must not write even from a reconcile pass that was already under way (the Lease methods are not fenced).
    """

    def __init__(
        self, client: AsyncClient, may_write: Callable[[], bool] | None = None, kubeconfig_user: str | None = None
    ) -> None:
        self._client = client
        self._may_write = may_write
        self.kubeconfig_user = kubeconfig_user
        """The user entry of the kubeconfig's current context (a local name), when there is one."""

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, *, user_agent: str | None = None, may_write: Callable[[], bool] | None = None
    ) -> Kube:
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        client = AsyncClient(config=config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(30.0))
        if user_agent:
            # lightkube has no option for it; the audit log tells two operators apart by their User-Agent.
            client._client._client.headers["User-Agent"] = user_agent
        selected = config.get()
        return cls(client, may_write, selected.context.user if selected is not None else None)

    def _fence(self) -> None:
        if self._may_write is not None and not self._may_write():
            raise NotLeaderError("not the leader: write not sent", delay=1)

    async def close(self) -> None:
        await self._client.close()

    async def list_children(
        self, namespace: str, selector: Mapping[str, str], kinds: Iterable[str]
    ) -> dict[ChildKey, Obj]:
        """The children of a stack of these kinds, by kind and name, read with one LIST per kind."""
        batches = await asyncio.gather(*(self.list_objects(kind, namespace, selector) for kind in kinds))
        return {key_of(obj): obj for batch in batches for obj in batch}

    async def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply of a plain dict: partial objects (a restart stamp) are fine, the server merges."""
        self._fence()
        meta = obj["metadata"]
        async with _api_errors():
            applied = await self._client.patch(
                CHILD_KINDS[obj["kind"]],
                meta["name"],
                obj,
                namespace=meta["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=True,
            )
        return {**_as_dict(applied), "kind": obj["kind"]}

    async def create(self, obj: Obj) -> Obj | None:
        """Creates the object and returns it (with its generated name, if any); None when it already exists
        (create-only objects such as generated Secrets are never updated)."""
        self._fence()
        try:
            async with _api_errors():
                created = await self._client.create(codecs.from_dict(obj))
        except ApiTemporaryError as err:
            if err.code == 409:
                return None
            raise
        return {**_as_dict(created), "kind": obj["kind"]}

    async def _get_or_none(self, resource: Any, name: str, namespace: str) -> Obj | None:
        """The object, or None when it does not exist (404); other errors converted as everywhere."""
        try:
            async with _api_errors():
                return _as_dict(await self._client.get(resource, name, namespace=namespace))
        except ApiPermanentError as err:
            if err.code == 404:
                return None
            raise

    async def get(self, kind: str, name: str, namespace: str) -> Obj | None:
        found = await self._get_or_none(CHILD_KINDS[kind], name, namespace)
        return None if found is None else {**found, "kind": kind}

    async def list_objects(self, kind: str, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        async with _api_errors():
            return [
                {**_as_dict(item), "kind": kind}
                async for item in self._client.list(CHILD_KINDS[kind], namespace=namespace, labels=dict(selector))
            ]

    async def annotate_stack(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self._fence()
        async with _api_errors():
            await self._client.patch(
                TradingStackResource,
                name,
                {"metadata": {"annotations": dict(annotations)}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )

    async def delete(self, kind: str, name: str, namespace: str) -> None:
        self._fence()
        try:
            async with _api_errors():
                await self._client.delete(CHILD_KINDS[kind], name, namespace=namespace)
        except ApiPermanentError as err:
            if err.code != 404:
                raise

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        """Replaces the whole status (a merge patch would keep map entries that disappeared, e.g. a removed
        service); a JSON patch needs no resourceVersion, so it never conflicts with spec edits."""
        self._fence()
        async with _api_errors():
            await self._client.patch(
                TradingStackResource.Status,
                name,
                [{"op": "add", "path": "/status", "value": status}],
                namespace=namespace,
                patch_type=PatchType.JSON,
            )

    async def patch_labels(self, kind: str, name: str, namespace: str, labels: Mapping[str, str | None]) -> None:
        await self.merge_patch(kind, name, namespace, {"metadata": {"labels": dict(labels)}})

    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of fields the operator does not apply (labels it moves, owner references)."""
        self._fence()
        async with _api_errors():
            await self._client.patch(
                CHILD_KINDS[kind], name, dict(patch), namespace=namespace, patch_type=PatchType.MERGE
            )

    async def merge_patch_stack(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of a TradingStack (`tradingstack halt` and `resume` set and remove spec.halt)."""
        self._fence()
        async with _api_errors():
            await self._client.patch(
                TradingStackResource, name, dict(patch), namespace=namespace, patch_type=PatchType.MERGE
            )

    async def whoami(self) -> str | None:
        """The user name the API server authenticates this client as (a SelfSubjectReview, which every
        authenticated user may create); None when it cannot say (an older server, an error)."""
        try:
            async with _api_errors():
                review = await self._client.create(SelfSubjectReview())
        except (ApiTemporaryError, ApiPermanentError):
            return None
        info = review.status.userInfo if review.status is not None else None
        return info.username if info is not None and info.username else None

    async def get_stack(self, namespace: str, name: str) -> Obj | None:
        return await self._get_or_none(TradingStackResource, name, namespace)

    async def warning_events(self, namespace: str, name: str) -> list[Obj]:
        """Warning Events about the TradingStack `name`."""
        selector: dict[str, str | BinaryOperator | SequenceOperator] = {
            "involvedObject.kind": KIND,
            "involvedObject.name": name,
            "type": "Warning",
        }
        async with _api_errors():
            return [_as_dict(e) async for e in self._client.list(Event, namespace=namespace, fields=selector)]

    async def post_event(self, about: Mapping[str, Any], event_type: EventType, reason: str, message: str) -> None:
        """Posts a core/v1 Event about `about` (a TradingStack): `kubectl describe` and `get events` show it."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": about["apiVersion"],
                    "kind": about["kind"],
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid"),
                },
                "type": event_type,
                "reason": reason,
                "message": message[:EVENT_MESSAGE_LIMIT],
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
        )

    async def get_lease(self, namespace: str, name: str) -> Obj | None:
        return await self._get_or_none(LeaseDocument, name, namespace)

    async def create_lease(self, namespace: str, name: str, spec: Obj) -> Obj | None:
        """Creates the Lease; None when another operator created it first (409)."""
        return await self._write_lease(self._client.create(_lease_document(namespace, name, spec)))

    async def replace_lease(self, namespace: str, name: str, spec: Obj, resource_version: str) -> Obj | None:
        """Replaces the Lease if it is still at `resource_version`; None when someone wrote it since (409)."""
        return await self._write_lease(self._client.replace(_lease_document(namespace, name, spec, resource_version)))

    async def _write_lease(self, request: Awaitable[Any]) -> Obj | None:
        try:
            async with _api_errors():
                return _as_dict(await request)
        except ApiTemporaryError as err:
            if err.code == 409:
                return None
            raise
