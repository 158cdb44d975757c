"""Security headers on every HTTP answer: no sniffing, no framing, no caching, no referrer,
and a content security policy (strict; the docs and console pages run this server's scripts)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.api.docs import DOCS_CSP

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# Answers are data, but for the API docs page, which runs Swagger UI from this server.
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
CONSOLE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    b"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'",
)
"""The console's pages run only this server's scripts and styles: no inline script or
style, no other origin."""


STATIC_PREFIXES = ("/ui/static/", "/docs/assets/")
_REVALIDATE = (b"cache-control", b"no-cache")


def _csp(path: str) -> tuple[bytes, bytes]:
    if path == "/docs":
        return DOCS_CSP
    if path == "/ui" or path.startswith("/ui/"):
        return CONSOLE_CSP
    return _CSP


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` and the path's CSP."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*SECURITY_HEADERS, _csp(scope["path"])]
        if scope["path"].startswith(STATIC_PREFIXES):
            # Files of this server's version: kept by the browser, revalidated by their ETag.
            extra = [
                _REVALIDATE if name == b"cache-control" else (name, value) for name, value in extra
            ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in extra if h[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
