"""The door in front of the dashboard: a WSGI middleware that wraps the whole application.

It stands in front of every route (the API, the single-page app, static files, artifacts),
so whatever the dashboard serves later is behind it too. In order, it refuses:

- a request without the configured credentials (401, with ``WWW-Authenticate``);
- on a loopback dashboard without credentials, a request naming a host other than loopback
  (a web page that rebinds its own name to 127.0.0.1 must not read the studies);
- in read-only mode, any method but GET and HEAD (403): optuna-dashboard changes the database
  only through other methods (deleting, renaming, notes, ``tell``, artifacts, migrations);
- with writes allowed, a write sent by another site's page (403), since a browser attaches
  cached basic-auth credentials to cross-site requests.

Secrets are compared in constant time and never appear in a response or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

READ_METHODS = frozenset({"GET", "HEAD"})
REALM = "hpsearch dashboard"


@dataclass(frozen=True)
class Credentials:
    """Who may use the dashboard: a user and password (basic auth), a bearer token, or both."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def accepts(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header value carries these credentials."""
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.token is not None:
            return _same(value, self.token)
        if scheme == "basic" and self.user is not None and self.password is not None:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, colon, password = decoded.partition(":")
            # Both compared every time, so the timing does not tell which one was wrong.
            same_user = _same(user, self.user)
            same_password = _same(password, self.password)
            return bool(colon) and same_user and same_password
        return False

    def challenges(self) -> list[tuple[str, str]]:
        """The ``WWW-Authenticate`` headers of a 401: one per scheme configured."""
        found = []
        if self.password is not None:
            found.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        if self.token is not None:
            found.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
        return found


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def guard(
    app: WSGIApplication,
    *,
    credentials: Credentials | None,
    allow_writes: bool,
    loopback_hosts_only: bool = False,
) -> WSGIApplication:
    """``app`` behind the checks above; ``loopback_hosts_only`` for a dashboard with no sign-in."""

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if credentials is not None and not credentials.accepts(
            str(environ.get("HTTP_AUTHORIZATION", ""))
        ):
            reason = "sign-in required: HTTP basic auth or a bearer token"
            return _refuse(start_response, "401 Unauthorized", reason, credentials.challenges())
        if loopback_hosts_only and not _names_loopback(str(environ.get("HTTP_HOST", ""))):
            reason = "this dashboard answers only to localhost, 127.0.0.1 or [::1]"
            return _refuse(start_response, "403 Forbidden", reason)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method not in READ_METHODS and not allow_writes:
            reason = (
                f"read-only dashboard: {method} would change the database "
                "(hpsearch dashboard --allow-writes allows changes)"
            )
            return _refuse(start_response, "403 Forbidden", reason)
        if method not in READ_METHODS and _cross_site(environ):
            reason = f"{method} from another site's page refused"
            return _refuse(start_response, "403 Forbidden", reason)
        return app(environ, start_response)

    return guarded


def _names_loopback(host_header: str) -> bool:
    host = urlsplit(f"//{host_header}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cross_site(environ: WSGIEnvironment) -> bool:
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:  # not sent by a browser's page (curl, scripts)
        return False
    return urlsplit(str(origin)).netloc.lower() != str(environ.get("HTTP_HOST", "")).lower()


def _refuse(
    start_response: StartResponse,
    status: str,
    reason: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode("utf-8") + b"\n"
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *(extra or []),
    ]
    start_response(status, headers)
    return [body]
