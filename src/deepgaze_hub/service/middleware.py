"""HTTP hardening around the whole application: security headers on every response, HEAD requests.

`HttpHardening` is a plain ASGI middleware (it wraps the error handlers too, so 4xx/5xx answers
carry the same headers):

* every response gets `SECURITY_HEADERS` (unless the route set them itself): no MIME sniffing,
  no framing, no referrer, and a Content-Security-Policy that lets the page load only its own
  script, style and images (plus ``data:``/``blob:`` images the page makes from API answers);
* ``HEAD`` on any ``GET`` route is answered like the ``GET`` (status and headers, including
  Content-Length) without a body.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The page has no inline script or style: everything comes from /static on the same origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


class HttpHardening:
    """ASGI middleware: `SECURITY_HEADERS` on every HTTP response, ``HEAD`` served as a bodiless ``GET``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                message = {**message, "headers": headers.raw}
            elif message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_hardened)
