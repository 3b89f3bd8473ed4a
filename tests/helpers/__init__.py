"""Helpers shared by tests in tests/unit/ and tests/system/."""
