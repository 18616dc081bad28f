"""Basic auth, the admin POST guard and the response headers of the dashboard.

* Basic auth is on when ``NEXUS_WEB_USER`` and ``NEXUS_WEB_PASSWORD`` are both set (one
  without the other is a configuration error); every route needs it then, ``/metrics``
  included. Credentials are compared in constant time.
* A POST (the admin actions) must carry the app's CSRF token (form field ``csrf_token`` or
  header ``X-CSRF-Token``) and must not come from another origin: an ``Origin`` (or, without
  one, ``Referer``) naming another scheme/host/port, or ``Sec-Fetch-Site: cross-site``, is
  refused with 403 before the token is even looked at.
* Every response says ``nosniff``, may not be framed, and has a Content-Security-Policy that
  allows scripts, styles and connections from the dashboard's own origin only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus.errors import NexusConfigError

USER_ENV = "NEXUS_WEB_USER"
PASSWORD_ENV = "NEXUS_WEB_PASSWORD"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def credentials_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) when basic auth is configured, else None."""
    env = os.environ if env is None else env
    user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
    if not user and not password:
        return None
    if not user or not password:
        raise NexusConfigError(
            f"set both {USER_ENV} and {PASSWORD_ENV} for basic auth, or neither", value=None
        )
    return user, password


def _authorized(header: str | None, expected: tuple[str, str]) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, password = decoded.partition(":")
    user_ok = hmac.compare_digest(user.encode(), expected[0].encode())
    password_ok = hmac.compare_digest(password.encode(), expected[1].encode())
    return user_ok and password_ok


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_origin(request: Request) -> bool:
    """Whether a request names another origin than the one it was sent to."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == "null" or _origin_of(origin) != own
    referer = request.headers.get("referer")
    return referer is not None and _origin_of(referer) != own


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class GuardMiddleware:
    """Basic auth (when configured) and the security headers; plain ASGI, so streamed
    responses (the live events) pass through untouched."""

    def __init__(self, app: ASGIApp, *, credentials: tuple[str, str] | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in present
                ]
            await send(message)

        if self.credentials is not None:
            header = Headers(scope=scope).get("authorization")
            if not _authorized(header, self.credentials):
                refusal = PlainTextResponse(
                    "authentication required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="nexus", charset="UTF-8"'},
                )
                await refusal(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
