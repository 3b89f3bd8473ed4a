"""Helpers shared by tests/unit/test_storage.py and tests/system/test_storage.py."""

from __future__ import annotations

from urllib.parse import quote

SECRET = "p@ss:w/rd"  # every character that must be percent-encoded in a URL

ENCODED = quote(SECRET, safe="")
