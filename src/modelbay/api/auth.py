"""REST authentication and authorization: one middleware and one route dependency.

``Gatekeeper`` (outermost) resolves the API key of every request to a principal, applies
rate limits and quotas, counts usage and adds ``X-RateLimit-*`` headers; requests without
a key reach only public paths. ``authorize_route``, a dependency of the whole app, looks
the matched route up in ``security.policy`` and asks the ``Guard``. The V2 infer fast
path calls ``Guard.authorize`` with the same rule.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.constants import REF_PREFIX
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.api.errors import error_body, error_responses, retry_after_value
from modelbay.api.headers import SECURITY_HEADERS
from modelbay.errors import Forbidden, ModelbayError, NotFound, Unauthenticated
from modelbay.security.access import Rule
from modelbay.security.console_sessions import COOKIE, CSRF_HEADER, SAFE_METHODS
from modelbay.security.guard import Caller, Guard, RateLimited
from modelbay.security.policy import PUBLIC_PREFIXES, exempt_from_limits
from modelbay.security.principals import Principal

PRINCIPAL = "modelbay.principal"
SESSION = "modelbay.console_session"
"""Set when the request came with a console session's cookie: (cookie value, session)."""
_BEARER = "bearer "
_KEY_HEADERS = (b"api-key", b"x-api-key")


def principal_of(scope: Scope) -> Principal | None:
    principal: Principal | None = scope.get(PRINCIPAL)
    return principal


def caller_of(scope: Scope) -> Caller:
    client = scope.get("client")
    return Caller(
        client=client[0] if client else None,
        action=f"{scope['method']} {scope['path']}",
        target={"method": scope["method"], "path": scope["path"]},
    )


def session_cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The console session's cookie value, if the request carries one."""
    prefix = COOKIE + "="
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix) :]
    return None


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer``, ``api-key`` or ``x-api-key``; raises 401
    for an ``Authorization`` header of another scheme."""
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[: len(_BEARER)].lower() != _BEARER:
                raise Unauthenticated("Authorization must be 'Bearer <API key>'")
            return text[len(_BEARER) :].strip()
        if name in _KEY_HEADERS:
            return value.decode("latin-1").strip()
    return None


class Gatekeeper:
    """ASGI middleware: key → principal, limits, usage; 401 and 429 are answered here."""

    def __init__(self, app: ASGIApp, guard: Guard, public: frozenset[str]):
        self.app = app
        self.guard = guard
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:  # no name has one; PostgreSQL would refuse the lookup
            await _refuse(send, NotFound("not found: no resource name contains a NUL"), [], "")
            return
        if scope["path"] in self.public or scope["path"].startswith(PUBLIC_PREFIXES):
            # Probes and schema readers: never refused, whatever key they carry or its limits.
            await self.app(scope, receive, send)
            return
        keyed = False  # once a key was presented, Guard.authenticate audits its refusal
        try:
            token = bearer_token(scope["headers"])
            cookie = session_cookie(scope["headers"]) if token is None else None
            if token is None and cookie is None:
                raise Unauthenticated(
                    "this route needs an API key: send 'Authorization: Bearer <key>'"
                )
            keyed = True
            if token is not None:
                principal = await self.guard.authenticate(token, caller_of(scope))
            else:
                assert cookie is not None
                principal = await self._console_session(scope, cookie)
            verdict = self.guard.admit(
                principal, exempt=exempt_from_limits(principal, scope["path"])
            )
        except RateLimited as exc:
            await _refuse(send, exc, exc.verdict.headers(), scope["path"])
            return
        except Forbidden as exc:  # a console change without its session's CSRF token
            await _refuse(send, exc, [], scope["path"])
            return
        except Unauthenticated as exc:
            if not keyed:
                await self.guard.record_refusal(None, exc, caller_of(scope))
            www = [(b"www-authenticate", b'Bearer realm="modelbay"')]
            await _refuse(send, exc, www, scope["path"])
            return
        scope[PRINCIPAL] = principal
        scope["modelbay.actor"] = principal.key_id
        limit_headers = verdict.headers()

        async def with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, with_limits if limit_headers else send)
        finally:
            self.guard.add_seconds(principal, time.perf_counter() - started)

    async def _console_session(self, scope: Scope, cookie: str) -> Principal:
        """The principal of a console session; a change must carry its CSRF token."""
        session = await self.guard.authenticate_session(cookie, caller_of(scope))
        if scope["method"] not in SAFE_METHODS and not session.csrf_matches(
            _header(scope["headers"], CSRF_HEADER)
        ):
            exc = Forbidden(
                "a change made with a console session needs its CSRF token in 'X-CSRF-Token'"
            )
            await self.guard.record_refusal(session.principal, exc, caller_of(scope))
            raise exc
        scope[SESSION] = (cookie, session)
        return session.principal


async def _refuse(
    send: Send, exc: ModelbayError, extra: list[tuple[bytes, bytes]], path: str
) -> None:
    body = orjson.dumps(error_body(exc.status, exc.message, path, exc.param, exc.code))
    headers = [(b"content-type", b"application/json"), *extra, *SECURITY_HEADERS]
    if exc.retry_after is not None:
        headers.append((b"retry-after", retry_after_value(exc.retry_after).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def authorize_route(request: Request) -> None:
    """App-wide dependency: the matched route's rule, checked by the ``Guard``."""
    route: APIRoute = request.scope["route"]
    rules: dict[tuple[str, str], Rule] = request.app.state.rules
    rule = rules[(request.method, route.path)]
    name: Any = None
    if rule.resource is not None:
        if rule.from_body:
            name = await _body_field(request, rule.param)
        else:
            name = request.path_params.get(rule.param)
    guard: Guard = request.app.state.guard
    await guard.authorize(
        principal_of(request.scope),
        rule,
        name if isinstance(name, str) else None,
        caller_of(request.scope),
    )


async def _body_field(request: Request, field: str) -> Any:
    try:
        body = await request.json()
    except ValueError:
        return None  # the route's own validation answers a malformed body
    return body.get(field) if isinstance(body, dict) else None


async def _principal(request: Request) -> Principal:
    principal = principal_of(request.scope)
    if principal is None:
        raise Unauthenticated("this route needs an API key: send 'Authorization: Bearer <key>'")
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def document_security(app: FastAPI, rules: dict[tuple[str, str], Rule]) -> None:
    """Declare the bearer scheme in the OpenAPI schema, on every operation that needs a
    key, with the 401, 403 and 429 answers it can then get."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer mb_...` (or `api-key`, `x-api-key`)",
        }
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                rule = rules.get((method.upper(), path.replace("{path}", "{path:path}")))
                if rule is None or rule.public:
                    operation["security"] = []
                    continue
                operation["security"] = [{"apiKey": []}]
                statuses = [401, 403, 429] if rule.scope is not None else [401, 429]
                for status, answer in error_responses(*statuses).items():
                    operation["responses"].setdefault(str(status), _as_schema(answer))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _as_schema(answer: dict[str, Any]) -> dict[str, Any]:
    """``error_responses`` gives FastAPI's form (a model); the schema needs a reference."""
    documented: dict[str, Any] = {
        "description": answer["description"],
        "content": {"application/json": {"schema": {"$ref": REF_PREFIX + "ErrorBody"}}},
    }
    if "headers" in answer:
        documented["headers"] = answer["headers"]
    return documented


def unguarded_routes(routes: list[BaseRoute], rules: dict[tuple[str, str], Rule]) -> list[str]:
    """``METHOD path`` of each API route without a rule (the app refuses to start then)."""
    missing = []
    for route in routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                if (method, route.path) not in rules:
                    missing.append(f"{method} {route.path}")
    return missing
