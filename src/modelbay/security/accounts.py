"""Users and service accounts of a tenant: the named principals API keys act for.

An account groups keys: a person's laptop and CI keys, or a service's keys across
rotations. Disabling an account revokes every key it has, at once.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelbay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from modelbay.registry.tables import AccountRow, ApiKeyRow, TenantRow, as_utc, utcnow
from modelbay.security.principals import Principal, Role

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class AccountKind(StrEnum):
    USER = "user"
    SERVICE = "service"


class AccountRecord(BaseModel):
    """An account as served, with how many of its keys are active."""

    name: str
    kind: AccountKind
    tenant: str
    status: str
    active_keys: int
    created_at: datetime
    disabled_at: datetime | None


def check_account_name(name: str) -> str:
    if not ACCOUNT_NAME.match(name):
        raise InvalidRequest(
            f"invalid account name '{name}': use 1-128 letters, digits, '.', '_', '@', '+' "
            "or '-', starting with a letter or digit (an e-mail address works)",
            param="name",
        )
    return name


def account_row(s: Session, tenant: TenantRow, name: str) -> AccountRow:
    row = s.scalar(
        select(AccountRow).where(AccountRow.tenant_id == tenant.id, AccountRow.name == name)
    )
    if row is None:
        raise NotFound(f"account '{name}' not found in tenant '{tenant.name}'", param="account")
    return row


class AccountStore:
    """Create, list and disable a tenant's accounts."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(self, tenant: str, name: str, kind: AccountKind) -> AccountRecord:
        check_account_name(name)
        try:
            with self._sessions.begin() as s:
                row = AccountRow(tenant=tenant_row(s, tenant), name=name, kind=kind.value)
                s.add(row)
                s.flush()
                return _record(s, row)
        except IntegrityError:
            raise Conflict(
                f"tenant '{tenant}' already has an account '{name}'", param="name"
            ) from None

    def list(self, tenant: str) -> list[AccountRecord]:
        with self._sessions.begin() as s:
            home = tenant_row(s, tenant)
            rows = s.scalars(
                select(AccountRow).where(AccountRow.tenant_id == home.id).order_by(AccountRow.name)
            )
            return [_record(s, r) for r in rows]

    def disable(self, tenant: str, name: str, by: Principal) -> AccountRecord:
        """Disable an account and revoke its active keys (only admins touch admin keys)."""
        with self._sessions.begin() as s:
            row = account_row(s, tenant_row(s, tenant), name)
            keys = _active_keys(s, row)
            if any(k.role == Role.ADMIN.value for k in keys) and not by.is_admin:
                raise Forbidden(
                    f"account '{name}' holds admin keys; only an admin may disable it",
                    param="name",
                )
            now = utcnow()
            for key in keys:
                key.revoked_at = now
            if row.disabled_at is None:
                row.disabled_at = now
            s.flush()
            return _record(s, row)


def tenant_row(s: Session, name: str) -> TenantRow:
    """A tenant by name, or 404."""
    row = s.scalar(select(TenantRow).where(TenantRow.name == name))
    if row is None:
        raise NotFound(f"tenant '{name}' not found", param="tenant")
    return row


def _active_keys(s: Session, row: AccountRow) -> list[ApiKeyRow]:
    return list(
        s.scalars(
            select(ApiKeyRow).where(ApiKeyRow.account_id == row.id, ApiKeyRow.revoked_at.is_(None))
        )
    )


def _record(s: Session, row: AccountRow) -> AccountRecord:
    return AccountRecord(
        name=row.name,
        kind=AccountKind(row.kind),
        tenant=row.tenant.name,
        status="disabled" if row.disabled_at else "active",
        active_keys=len(_active_keys(s, row)),
        created_at=as_utc(row.created_at),
        disabled_at=as_utc(row.disabled_at) if row.disabled_at else None,
    )
