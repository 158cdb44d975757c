"""The web console at ``/ui``: its page and files, served from this package, and its
sign-in, which exchanges an API key for an HttpOnly session cookie (see
``security.console_sessions``). Everything else the console does goes through the REST API,
under the same rules as any client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.staticfiles import StaticFiles

from modelbay.api.access import WhoAmI
from modelbay.api.auth import SESSION, caller_of, principal_of, session_cookie
from modelbay.api.context import ContextDep
from modelbay.errors import Forbidden, Unauthenticated
from modelbay.frontends.epochs import Domain
from modelbay.security.console_sessions import COOKIE
from modelbay.security.principals import Principal

STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
ASSETS = "/ui/static"
router = APIRouter(include_in_schema=False)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=512)


class ConsoleWho(WhoAmI):
    csrf_token: str
    expires_at: str


@router.get("/ui")
@router.get("/ui/")
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.post("/ui/sign-in")
async def sign_in(body: SignIn, request: Request, ctx: ContextDep) -> JSONResponse:
    """Check the key (refusals are audited as any wrong key's) and start a session."""
    _same_origin(request)
    guard = ctx.guard
    assert guard.sessions is not None
    caller = caller_of(request.scope)
    principal = await guard.authenticate(body.api_key, caller)
    guard.admit(principal)
    token, csrf, expires_at = await asyncio.to_thread(
        guard.sessions.start, principal.key_id, ctx.settings.console_session_ttl_s, caller.client
    )
    await asyncio.to_thread(
        ctx.audit.append,
        actor=principal.key_id,
        action="console.sign_in",
        target={"tenant": principal.tenant},
        result=200,
        client=caller.client,
    )
    answer = JSONResponse(_who(principal, csrf, expires_at.isoformat()).model_dump())
    answer.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.get("/ui/session")
def current(request: Request) -> ConsoleWho:
    """Who the session's cookie signs in, with its CSRF token (the console asks on load)."""
    held = request.scope.get(SESSION)
    principal = principal_of(request.scope)
    if held is None or principal is None:
        raise Unauthenticated("no console session: sign in with an API key")
    _, session = held
    return _who(principal, session.csrf_token, session.expires_at.isoformat())


@router.delete("/ui/session", status_code=204)
async def sign_out(request: Request, ctx: ContextDep) -> Response:
    """End the session (on every frontend), and tell the browser to drop its cookie."""
    cookie = session_cookie(request.scope["headers"])
    principal = principal_of(request.scope)
    if request.scope.get(SESSION) is None or cookie is None or principal is None:
        raise Unauthenticated("no console session to sign out of")
    assert ctx.guard.sessions is not None
    await asyncio.to_thread(ctx.guard.sessions.end, cookie)
    ctx.epochs.bump(Domain.ACCESS)
    await asyncio.to_thread(
        ctx.audit.append,
        actor=principal.key_id,
        action="console.sign_out",
        target={"tenant": principal.tenant},
        result=204,
        client=caller_of(request.scope).client,
    )
    answer = Response(status_code=204)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def _same_origin(request: Request) -> None:
    """Refuse a sign-in posted by another site's page (it would sign the browser in as the
    other site's key); browsers send ``Origin`` with every POST."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        raise Forbidden("sign in from this server's own console page")


def assets() -> StaticFiles:
    return StaticFiles(directory=str(STATIC))


def _who(principal: Principal, csrf: str, expires_at: str) -> ConsoleWho:
    return ConsoleWho.of(principal, csrf_token=csrf, expires_at=expires_at)
