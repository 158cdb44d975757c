"""Who is asking: roles, the scopes they grant, and the principal a key resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """What a request needs. Roles grant scopes; a key may be narrowed to fewer."""

    READ = "read"  # model, version, deployment metadata
    INFER = "infer"  # V2 inference
    WRITE = "write"  # push, alias, delete models; deploy
    MANAGE = "manage"  # the tenant's keys, sharing and usage
    ADMIN = "admin"  # tenants, every tenant's resources, audit, metrics


class Role(StrEnum):
    ADMIN = "admin"
    OWNER = "owner"
    DEVELOPER = "developer"
    CONSUMER = "consumer"
    VIEWER = "viewer"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.VIEWER: frozenset({Scope.READ}),
    Role.CONSUMER: frozenset({Scope.READ, Scope.INFER}),
    Role.DEVELOPER: frozenset({Scope.READ, Scope.INFER, Scope.WRITE}),
    Role.OWNER: frozenset({Scope.READ, Scope.INFER, Scope.WRITE, Scope.MANAGE}),
    Role.ADMIN: frozenset(Scope),
}

ROLE_FOR_SCOPE: dict[Scope, Role] = {
    Scope.READ: Role.VIEWER,
    Scope.INFER: Role.CONSUMER,
    Scope.WRITE: Role.DEVELOPER,
    Scope.MANAGE: Role.OWNER,
    Scope.ADMIN: Role.ADMIN,
}
"""The least role granting each scope, for error messages."""


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key: its tenant, role and effective scopes."""

    key_id: str
    key_name: str
    tenant_id: int
    tenant: str
    role: Role
    scopes: frozenset[Scope]
    rate_limit_rps: float | None = None
    daily_quota: int | None = None
    tenant_rate_limit_rps: float | None = None
    tenant_daily_quota: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    tenant_tokens_per_minute: int | None = None
    tenant_tokens_per_day: int | None = None
    account: str | None = None
    """The user or service account the key belongs to, if any."""

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def sees_tenant(self, tenant_id: int) -> bool:
        return self.is_admin or tenant_id == self.tenant_id
