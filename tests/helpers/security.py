"""Helpers shared by tests/unit/test_security.py and tests/system/test_security.py."""

from __future__ import annotations

import uuid
from urllib.parse import quote, quote_plus

# '@', ':' and '/' must be percent-encoded in a URL: both spellings are searched for.
PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}@:/"

# A password in the query string (libpq and pymysql take one there too); '&' and '=' as well.
QUERY_PASSWORD = f"Qp-{uuid.uuid4().hex[:12]}@:/&="

FORMS = {
    form
    for secret in (PASSWORD, QUERY_PASSWORD)
    for form in (secret, quote(secret, safe=""), quote_plus(secret), secret[:15])
}


def leaked(text: str) -> list[str]:
    return [form for form in FORMS if form in text]
