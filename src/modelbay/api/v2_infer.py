"""The V2 infer hot path as a bare ASGI app: no routing table, no dependency injection.

``InferFastPath`` wraps the FastAPI app and answers ``POST /v2/models/{name}[/versions/
{version}]/infer`` itself (the framework's per-request machinery cost more than the rest
of the request on small models); every other request goes to the app. The FastAPI route
of the same path exists for the OpenAPI schema and calls the same ``answer_infer``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from functools import partial

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.api.auth import caller_of, principal_of
from modelbay.api.errors import retry_after_value
from modelbay.api.headers import SECURITY_HEADERS
from modelbay.errors import ClientDisconnected, InvalidRequest, ModelbayError, PayloadTooLarge
from modelbay.protocols import v2
from modelbay.security.guard import Guard
from modelbay.security.policy import REST_RULES
from modelbay.serving.inference import InferenceService, InferResult

log = logging.getLogger("modelbay.api")

WATCH_AFTER_S = 0.02
"""A request answered within this never watches for its client's disconnect."""

_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_HEADER_LENGTH = v2.HEADER_LENGTH.lower().encode()
_DECODE_IN_THREAD_BYTES = 64 * 1024
_INFER_RULE = REST_RULES[("POST", "/v2/models/{name}/infer")]

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def answer_infer(
    inference: InferenceService,
    name: str,
    ref: str | None,
    body: bytes,
    header_length: str | None,
    disconnected: Callable[[], Awaitable[None]] | None = None,
) -> Answer:
    """Decode, infer and encode one V2 request: (status, headers, body); never raises.

    ``disconnected()`` returns once the client has gone; it is called only when the
    request is decoded and about to run, so a refused request leaves nothing unawaited.
    """
    try:
        length = _header_length(header_length)
        if len(body) > _DECODE_IN_THREAD_BYTES:
            req = await asyncio.to_thread(v2.decode_request, body, length)
        else:
            req = v2.decode_request(body, length)
        wanted = [o.name for o in req.outputs] if req.outputs else None
        work = inference.infer(name, ref, req.inputs, wanted)
        result = await (_unless(disconnected, work) if disconnected is not None else work)
        content, json_length = v2.encode_response(
            model_name=name,
            model_version=str(result.version),
            outputs=result.outputs,
            request=req,
            labels=result.labels,
        )
    except ModelbayError as exc:
        return error_answer(exc)
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s in infer of %s", incident, name)
        return error_answer(ModelbayError(f"internal server error (incident {incident})"))
    if json_length is None:
        return 200, [(b"content-type", v2.JSON_CONTENT_TYPE.encode())], content
    headers = [
        (b"content-type", v2.BINARY_CONTENT_TYPE.encode()),
        (_HEADER_LENGTH, str(json_length).encode()),
    ]
    return 200, headers, content


def error_answer(exc: ModelbayError) -> Answer:
    """The V2 error body ``{"error": ...}``, with ``Retry-After`` when the error has one."""
    headers = [(b"content-type", b"application/json")]
    if exc.retry_after is not None:
        headers.append((b"retry-after", retry_after_value(exc.retry_after).encode()))
    if exc.status >= 500 and exc.status not in (503, 504):
        log.error("%s: %s", type(exc).__name__, exc.message)
    return exc.status, headers, orjson.dumps({"error": exc.message})


class InferFastPath:
    """ASGI middleware: V2 infer requests are answered here, the rest by ``app``."""

    def __init__(self, app: ASGIApp, inference: InferenceService, guard: Guard, max_body: int):
        self.app = app
        self.inference = inference
        self.guard = guard
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _INFER_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        header_length = None
        for key, value in scope["headers"]:
            if key == _HEADER_LENGTH:
                header_length = value.decode("latin-1")
        name, ref = match.group(1), match.group(2)  # the server decoded the path already
        try:
            await self.guard.authorize(principal_of(scope), _INFER_RULE, name, caller_of(scope))
            body = await self._body(receive)
        except ModelbayError as exc:
            await _send(send, error_answer(exc))
            return
        if body is None:
            return  # the client left while sending
        answer = await answer_infer(
            self.inference, name, ref, body, header_length, partial(_disconnect, receive)
        )
        if answer[0] != ClientDisconnected.status:
            await _send(send, answer)

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(
                    f"request body is larger than the limit of {self.max_body} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _disconnect(receive: Receive) -> None:
    # After the body, the next ASGI message is the disconnect, if it ever comes.
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()


async def _unless(
    disconnected: Callable[[], Awaitable[None]], work: Awaitable[InferResult]
) -> InferResult:
    """Await ``work`` but cancel it when the client goes away (a queued request never runs).

    The watch starts only once the request has waited ``WATCH_AFTER_S``: most requests are
    answered sooner, and a timer costs far less than the task that watches (a client gone
    before then is noticed when it starts)."""
    current = asyncio.current_task()
    assert current is not None
    watcher: asyncio.Future[None] | None = None

    def watch() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(disconnected())
        watcher.add_done_callback(lambda w: None if w.cancelled() else current.cancel())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, watch)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher is not None and watcher.done() and not watcher.cancelled():
            current.uncancel()
            raise ClientDisconnected("the client closed the connection before the answer") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _send(send: Send, answer: Answer) -> None:
    status, headers, content = answer
    headers = [*headers, *SECURITY_HEADERS, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _header_length(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.strip().isascii() and raw.strip().isdigit()):
        raise InvalidRequest(f"{v2.HEADER_LENGTH} must be a non-negative integer, got '{raw}'")
    return int(raw)
