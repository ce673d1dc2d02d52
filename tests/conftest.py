"""Shared pytest configuration: fixtures for each test tier live in tests/fixtures/ as plugins."""

pytest_plugins: list[str] = [
    "tests.fixtures.cluster",
    "tests.fixtures.operator",
    "tests.fixtures.leaders",
    "tests.fixtures.reliability",
]
