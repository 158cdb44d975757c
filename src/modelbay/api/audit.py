"""Audit of the control plane: every change through /api/ is recorded, and queryable."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbay.api.context import ContextDep
from modelbay.security.audit import AuditEvent, AuditLog

log = logging.getLogger("modelbay.audit")

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_SEQ = 2**63 - 1  # a 64-bit SQL integer; a larger ``before`` overflows the query


class AuditPage(BaseModel):
    events: list[AuditEvent]


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None


@router.get("", summary="Audit events, newest first")
def list_events(
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=_MAX_SEQ, description="page back from this seq")
    ] = None,
) -> AuditPage:
    return AuditPage(events=ctx.audit.events(limit=limit, before=before))


@router.get("/verify", summary="Check the audit chain; names the first altered event")
def verify(ctx: ContextDep) -> AuditVerification:
    report = ctx.audit.verify()
    return AuditVerification(
        ok=report.ok,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
    )


def note_target(request: Request, **fields: Any) -> None:
    """Add what a change created (its name, a key's id) to its audit event's target."""
    current = getattr(request.state, "audit_target", {})
    request.state.audit_target = {**current, **fields}


class AuditTrail:
    """ASGI middleware: after each change under /api/, append who/what/target/result/from."""

    def __init__(self, app: ASGIApp, audit: AuditLog):
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _CHANGES
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            await self._record(scope, status)

    async def _record(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "endpoint", None)
        action = (
            f"{endpoint.__module__.rsplit('.', 1)[-1]}.{endpoint.__name__}"
            if endpoint is not None
            else f"{scope['method']} {scope['path']}"
        )
        target: dict[str, Any] = dict(scope.get("path_params") or {})
        target.update(scope.get("state", {}).get("audit_target", {}))
        client = scope.get("client")
        actor = str(scope.get("modelbay.actor", "anonymous"))
        try:
            await asyncio.to_thread(
                self.audit.append,
                actor=actor,
                action=action,
                target=target,
                result=status,
                client=client[0] if client else None,
            )
        except Exception:  # the change happened; losing its record must be loud
            log.exception("could not write the audit event for %s %s", action, target)
