"""One place mapping errors to HTTP answers: ``{"error": "..."}`` with the right status."""

from __future__ import annotations

import logging
import math
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from modelbay.errors import ModelbayError

log = logging.getLogger("modelbay.api")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def retry_after_value(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so clients never come back too early."""
    return str(max(1, math.ceil(seconds)))


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors keep their status; validation errors name fields; the rest is opaque."""

    @app.exception_handler(ModelbayError)
    async def _modelbay(_: Request, exc: ModelbayError) -> JSONResponse:
        if exc.status >= 500 and exc.status not in (503, 504):
            log.error("%s: %s", type(exc).__name__, exc.message)
        headers = None
        if exc.retry_after is not None:
            headers = {"Retry-After": retry_after_value(exc.retry_after)}
        return error_response(exc.status, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid request: " + "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
        return error_response(500, f"internal server error (incident {incident})")
