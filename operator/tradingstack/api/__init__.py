"""The TradingStack API: pydantic models of spec and status, and the CRD generated from them."""

from tradingstack.api.errors import describe
from tradingstack.api.resource import MAX_STACK_NAME, ObjectMeta, OwnerReference, TradingStack
from tradingstack.api.spec import (
    DEFAULT_RESTART_ORDER,
    BackupSpec,
    EnvVar,
    GatewaySpec,
    HaltSpec,
    HealthSpec,
    PostgresSpec,
    RedisSpec,
    RestartsSpec,
    RestoreSpec,
    ServiceSpec,
    StorageSpec,
    TradingStackSpec,
)
from tradingstack.api.status import (
    CONDITION_TYPES,
    BackupInfo,
    Condition,
    HaltStatus,
    RedisStatus,
    RestartsStatus,
    ServiceStatus,
    TradingStackStatus,
)

__all__ = [
    "CONDITION_TYPES",
    "DEFAULT_RESTART_ORDER",
    "MAX_STACK_NAME",
    "BackupInfo",
    "BackupSpec",
    "Condition",
    "EnvVar",
    "GatewaySpec",
    "HaltSpec",
    "HaltStatus",
    "HealthSpec",
    "ObjectMeta",
    "OwnerReference",
    "PostgresSpec",
    "RedisSpec",
    "RedisStatus",
    "RestartsSpec",
    "RestartsStatus",
    "RestoreSpec",
    "ServiceSpec",
    "ServiceStatus",
    "StorageSpec",
    "TradingStack",
    "TradingStackSpec",
    "TradingStackStatus",
    "describe",
]
