"""One place mapping errors to HTTP answers: ``{"error": "..."}`` with the right status."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.constants import REF_PREFIX
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.errors import ModelbayError
from modelbay.security.limits import whole_seconds

log = logging.getLogger("modelbay.api")

_MEANINGS = {
    400: "Malformed request: a bad name, field, tensor or header",
    401: "No API key, or an unknown, expired or revoked one",
    403: "The key's role does not allow this",
    404: "Unknown model, version, alias, file or deployment",
    409: "Already exists, or still in use",
    413: "Body or upload over the configured limit",
    422: "Invalid fields, or an unsupported or unsafe model artifact",
    429: "Queue full, rate limit or quota: retry after Retry-After seconds",
    503: "The model cannot serve right now",
    504: "The request's deadline ran out before it could run",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
}


class ErrorBody(BaseModel):
    """Every error answer: a message naming the bad field and what would have been valid."""

    error: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors a route can answer, each an ``ErrorBody``."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {"model": ErrorBody, "description": _MEANINGS[status]}
        if status == 429:
            responses[status]["headers"] = _RETRY_AFTER
    return responses


OPENAI_PREFIX = "/v1/"
"""Paths of the OpenAI API, whose errors take OpenAI's nested body."""


def error_body(
    status: int, message: str, path: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": message}``, or under ``/v1/`` OpenAI's ``{"error": {"message", "type",
    "param", "code"}}`` (which its clients parse)."""
    if path.startswith(OPENAI_PREFIX):
        from modelbay.protocols.openai import error_body as openai_error

        return openai_error(status, message, param, code)
    return {"error": message}


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    path: str = "",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = error_body(status, message, path, param, code)
    return JSONResponse(body, status_code=status, headers=headers)


def retry_after_value(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so clients never come back too early
    (and at most a day later, whatever ``seconds`` is)."""
    return str(max(1, whole_seconds(seconds)))


class OpaqueServerErrors:
    """ASGI middleware for what runs outside FastAPI's own error handling: an exception that
    escapes is logged with an incident id and answered as an opaque 500, if nothing was sent
    yet."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("unhandled error %s on %s %s", incident, scope["method"], scope["path"])
            if not started:
                answer = error_response(
                    500, f"internal server error (incident {incident})", path=scope["path"]
                )
                await answer(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors keep their status; validation errors name fields; the rest is opaque."""
    _document_validation_errors(app)

    @app.exception_handler(ModelbayError)
    async def _modelbay(request: Request, exc: ModelbayError) -> JSONResponse:
        if exc.status >= 500 and exc.status not in (503, 504):
            log.error("%s: %s", type(exc).__name__, exc.message)
        headers = None
        if exc.retry_after is not None:
            headers = {"Retry-After": retry_after_value(exc.retry_after)}
        if exc.status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="modelbay"'}
        return error_response(
            exc.status,
            exc.message,
            headers,
            path=request.url.path,
            param=exc.param,
            code=exc.code,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        first: str | None = None
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            first = first or where.split(".")[0] or None
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        message = "invalid request: " + "; ".join(problems)
        if request.url.path.startswith(OPENAI_PREFIX):  # OpenAI answers 400 for bad values
            return error_response(400, message, path=request.url.path, param=first)
        return error_response(422, message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ModelbayError):
            # FastAPI answers 400 for any error while reading a body, BodyLimit's 413 too.
            return await _modelbay(request, exc.__cause__)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {"Allow": _allowed_methods(request)}
        return error_response(exc.status_code, str(exc.detail), headers, path=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
        return error_response(
            500, f"internal server error (incident {incident})", path=request.url.path
        )


def _allowed_methods(request: Request) -> str:
    """Every method of the path: Starlette's 405 names only the first route that matched it."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def _document_validation_errors(app: FastAPI) -> None:
    """FastAPI documents each 422 as its own ``HTTPValidationError``; ``_validation`` answers
    an ``ErrorBody``, so the schema says that (FastAPI's documented way to extend it)."""
    generate = app.openapi
    theirs = {"$ref": REF_PREFIX + "HTTPValidationError"}
    ours = {"$ref": REF_PREFIX + "ErrorBody"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            answer = operation["responses"].get("422", {})
            body = answer.get("content", {}).get("application/json", {})
            if body.get("schema") == theirs:
                body["schema"] = ours
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
