"""The TradingStack object as a whole (metadata + spec), and the owner reference children carry."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tradingstack import API_GROUP, API_VERSION, KIND
from tradingstack.api.base import DNS1035_LABEL, ApiModel
from tradingstack.api.spec import TradingStackSpec

MAX_STACK_NAME = 30
"""Children are named `<stack>-<component>-<ordinal>`; 30 keeps StatefulSet pod names under 63 characters."""


class ObjectMeta(ApiModel):
    """The parts of metadata the operator reads."""

    name: str = Field(pattern=DNS1035_LABEL, max_length=MAX_STACK_NAME)
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    model_config = ApiModel.model_config | {"extra": "ignore"}


class OwnerReference(ApiModel):
    """Owner reference put on every child, passed explicitly to the renderers."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = True
    block_owner_deletion: bool = True

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class TradingStack(ApiModel):
    """A TradingStack object, parsed."""

    api_version: str = f"{API_GROUP}/{API_VERSION}"
    kind: str = KIND
    metadata: ObjectMeta
    spec: TradingStackSpec = Field(default_factory=TradingStackSpec)

    model_config = ApiModel.model_config | {"extra": "ignore"}

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def owner_reference(self) -> OwnerReference:
        return OwnerReference(api_version=self.api_version, kind=self.kind, name=self.name, uid=self.metadata.uid)
