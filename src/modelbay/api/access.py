"""Tenants, API keys, usage and ``whoami`` under /api/v1 (who may call what: policy.py)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import AppContext, ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.fields import (
    NAME_LENGTH,
    TENANT_LENGTH,
    DailyQuota,
    MaxJobs,
    Name,
    RateLimitRps,
    TenantName,
    TokensPerDay,
    TokensPerMinute,
    TrainingSecondsPerDay,
    query_text,
    text,
)
from modelbay.errors import InvalidRequest, NotFound
from modelbay.frontends.epochs import USAGE_SETTLE_S, Domain
from modelbay.registry.tables import utcnow
from modelbay.security.accounts import AccountKind, AccountRecord
from modelbay.security.keys import KeyRecord, TenantRecord
from modelbay.security.principals import Principal, Role, Scope
from modelbay.security.usage import UsageRecord

router = APIRouter(prefix="/api/v1", tags=["access"])

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DAY = r"^\d{4}-\d{2}-\d{2}$"


class WhoAmI(BaseModel):
    key_id: str
    key_name: str
    account: str | None
    tenant: str
    role: Role
    scopes: list[Scope]

    @classmethod
    def of(cls, principal: Principal, **more: Any) -> Self:
        return cls(
            key_id=principal.key_id,
            key_name=principal.key_name,
            account=principal.account,
            tenant=principal.tenant,
            role=principal.role,
            scopes=sorted(principal.scopes),
            **more,
        )


class TenantCreate(BaseModel):
    name: TenantName = Field(description="1-64 lowercase letters, digits, '_' or '-'")
    rate_limit_rps: RateLimitRps | None = None
    daily_quota: DailyQuota | None = None
    tokens_per_minute: TokensPerMinute | None = None
    tokens_per_day: TokensPerDay | None = None
    max_jobs: MaxJobs | None = None
    training_seconds_per_day: TrainingSecondsPerDay | None = None


class TenantUpdate(BaseModel):
    """Limits to change; an omitted field stays, null removes the limit."""

    rate_limit_rps: RateLimitRps | None = None
    daily_quota: DailyQuota | None = None
    tokens_per_minute: TokensPerMinute | None = None
    tokens_per_day: TokensPerDay | None = None
    max_jobs: MaxJobs | None = None
    training_seconds_per_day: TrainingSecondsPerDay | None = None


class TenantList(BaseModel):
    tenants: list[TenantRecord]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, description="What the key is for")
    role: Role
    tenant: TenantName | None = Field(default=None, description="Default: the caller's tenant")
    account: Name | None = Field(
        default=None, description="The tenant's user or service account the key acts for"
    )
    scopes: list[Scope] | None = Field(
        default=None, description="Narrow the role to these scopes; default: all it grants"
    )
    rate_limit_rps: RateLimitRps | None = None
    daily_quota: DailyQuota | None = None
    tokens_per_minute: TokensPerMinute | None = None
    tokens_per_day: TokensPerDay | None = None
    expires_in: Annotated[str, text(32)] | None = Field(
        default=None,
        description="Lifetime such as 30m, 12h, 90d or 4w, at most ten years; default: none",
    )


class CreatedKey(KeyRecord):
    secret: str = Field(description="The API key itself; shown this once, never stored")


class AccountCreate(BaseModel):
    name: Name = Field(description="A person (e.g. an e-mail address) or a service")
    kind: AccountKind = AccountKind.USER


class AccountList(BaseModel):
    accounts: list[AccountRecord]


class KeyList(BaseModel):
    keys: list[KeyRecord]


class UsageList(BaseModel):
    usage: list[UsageRecord]


@router.get("/whoami", summary="The caller's key, tenant and role")
def whoami(principal: PrincipalDep) -> WhoAmI:
    return WhoAmI.of(principal)


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant (admin)",
    responses=error_responses(400, 409),
)
def create_tenant(ctx: ContextDep, request: Request, body: TenantCreate) -> TenantRecord:
    note_target(request, tenant=body.name)
    return ctx.keys.create_tenant(
        body.name,
        rate_limit_rps=body.rate_limit_rps,
        daily_quota=body.daily_quota,
        tokens_per_minute=body.tokens_per_minute,
        tokens_per_day=body.tokens_per_day,
        max_jobs=body.max_jobs,
        training_seconds_per_day=body.training_seconds_per_day,
    )


@router.get("/tenants", summary="List tenants (admin)")
def list_tenants(ctx: ContextDep) -> TenantList:
    return TenantList(tenants=ctx.keys.list_tenants())


@router.get("/tenants/{name}", summary="Get a tenant", responses=error_responses(404))
def get_tenant(ctx: ContextDep, name: str) -> TenantRecord:
    return ctx.keys.get_tenant(name)


@router.patch(
    "/tenants/{name}",
    summary="Change a tenant's limits (admin)",
    responses=error_responses(400, 404),
)
def update_tenant(ctx: ContextDep, name: str, body: TenantUpdate) -> TenantRecord:
    record = ctx.keys.update_tenant(name, **body.model_dump(exclude_unset=True))
    _limits_changed(ctx)
    return record


@router.post(
    "/tenants/{name}/accounts",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user or service account in a tenant",
    responses=error_responses(400, 404, 409),
)
def create_account(
    ctx: ContextDep, request: Request, name: str, body: AccountCreate
) -> AccountRecord:
    note_target(request, account=body.name)
    return ctx.accounts.create(name, body.name, body.kind)


@router.get(
    "/tenants/{name}/accounts",
    summary="List a tenant's users and service accounts",
    responses=error_responses(404),
)
def list_accounts(ctx: ContextDep, name: str) -> AccountList:
    return AccountList(accounts=ctx.accounts.list(name))


@router.delete(
    "/tenants/{name}/accounts/{account}",
    summary="Disable an account and revoke all its keys",
    responses=error_responses(403, 404),
)
def disable_account(
    ctx: ContextDep, principal: PrincipalDep, name: str, account: str
) -> AccountRecord:
    record = ctx.accounts.disable(name, account, by=principal)
    ctx.guard.forget_principals()
    ctx.epochs.bump(Domain.ACCESS)
    return record


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; its secret is in this answer only",
    responses=error_responses(400, 403, 404, 409, 422),
)
def create_key(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: KeyCreate
) -> CreatedKey:
    tenant = body.tenant or principal.tenant
    note_target(request, tenant=tenant, role=body.role.value)
    ctx.keys.check_grant(principal, tenant, body.role)
    record, secret = ctx.keys.create_key(
        tenant=tenant,
        role=body.role,
        name=body.name,
        scopes=body.scopes,
        rate_limit_rps=body.rate_limit_rps,
        daily_quota=body.daily_quota,
        tokens_per_minute=body.tokens_per_minute,
        tokens_per_day=body.tokens_per_day,
        expires_at=_expiry(body.expires_in),
        created_by=principal.key_id,
        account=body.account,
    )
    note_target(request, key_id=record.key_id)
    return CreatedKey(**record.model_dump(), secret=secret)


@router.get(
    "/keys",
    summary="List API keys (of the caller's tenant; admins: all or one)",
    responses=error_responses(404),
)
def list_keys(
    ctx: ContextDep,
    principal: PrincipalDep,
    tenant: Annotated[str | None, query_text(TENANT_LENGTH, "Only this tenant's keys")] = None,
) -> KeyList:
    return KeyList(keys=ctx.keys.list_keys(_tenant_filter(principal, tenant)))


@router.get("/keys/{key_id}", summary="Get an API key", responses=error_responses(404))
def get_key(ctx: ContextDep, key_id: str) -> KeyRecord:
    return ctx.keys.get_key(key_id)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key (at once on this server)",
    responses=error_responses(403, 404),
)
def revoke_key(ctx: ContextDep, principal: PrincipalDep, key_id: str) -> KeyRecord:
    target = ctx.keys.get_key(key_id)
    ctx.keys.check_grant(principal, target.tenant, target.role)  # owners cannot touch admins
    record = ctx.keys.revoke_key(key_id)
    ctx.guard.forget_principals()
    ctx.epochs.bump(Domain.ACCESS)
    return record


@router.get(
    "/usage",
    summary="Requests, compute seconds and LLM tokens per key and UTC day",
    responses=error_responses(404),
)
def usage(
    ctx: ContextDep,
    principal: PrincipalDep,
    tenant: Annotated[str | None, query_text(TENANT_LENGTH, "Only this tenant")] = None,
    key_id: Annotated[str | None, query_text(NAME_LENGTH, "Only this key")] = None,
    since: Annotated[str | None, Query(pattern=_DAY, description="First day, YYYY-MM-DD")] = None,
    until: Annotated[str | None, Query(pattern=_DAY, description="Last day, YYYY-MM-DD")] = None,
) -> UsageList:
    name = _tenant_filter(principal, tenant)
    tenant_id = ctx.keys.tenant_id(name) if name is not None else None
    if ctx.settings.workers > 1:  # the other frontends write what they counted first
        ctx.epochs.bump(Domain.USAGE)
        time.sleep(USAGE_SETTLE_S)
    return UsageList(
        usage=ctx.guard.meter.report(tenant_id=tenant_id, key_id=key_id, since=since, until=until)
    )


def _tenant_filter(principal: Principal, tenant: str | None) -> str | None:
    """Admins see every tenant (or the one asked for); others only their own."""
    if principal.is_admin:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise NotFound(f"tenant '{tenant}' not found", param="tenant")
    return principal.tenant


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidRequest(
            f"invalid expires_in '{text}': use a positive number and a unit s, m, h, d or w, "
            "e.g. 90d",
            param="expires_in",
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > 10 * 365 * 86400:
        raise InvalidRequest("expires_in is over ten years", param="expires_in")
    return utcnow() + timedelta(seconds=seconds)


def _limits_changed(ctx: AppContext) -> None:
    ctx.guard.forget_principals()  # principals carry the tenant's limits
    ctx.epochs.bump(Domain.ACCESS)
    ctx.guard.limiter.forget()
