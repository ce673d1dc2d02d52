"""The gateway's unit tests moved to tests/unit/components/test_gateway.py; this name stays importable because
the component tier (tests/component/gateway) builds its stack with the same `example_stack`."""

from tests.unit.components.test_gateway import example_stack

__all__ = ["example_stack"]
