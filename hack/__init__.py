"""Developer scripts; audit.py is imported by tests/unit/test_audit.py."""
