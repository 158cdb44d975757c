"""ASGI middleware refusing request bodies over the configured size with 413, early."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.api.errors import error_response
from modelbay.errors import PayloadTooLarge


class BodyLimit:
    """Checks Content-Length up front and counts streamed bytes for chunked bodies."""

    def __init__(self, app: ASGIApp, *, default: int, uploads: int, upload_suffix: str):
        self.app = app
        self.default = default
        self.uploads = uploads
        self.upload_suffix = upload_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads if scope["path"].endswith(self.upload_suffix) else self.default
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(limit, scope["path"])(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


def _too_large(limit: int, path: str) -> ASGIApp:
    return error_response(413, f"request body is larger than the limit of {limit} bytes", path=path)
