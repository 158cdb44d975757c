"""Tenants and API keys in the registry database; only the sha256 of a secret is stored.

Secrets and key ids are made in ``tokens.py``. Secrets are 256 random bits, so one sha256
suffices (no slow hash is needed against guessing); hashes are compared in constant time.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelbay.errors import Conflict, Forbidden, InvalidRequest, NotFound, UnknownReference
from modelbay.registry.tables import ApiKeyRow, TenantRow, as_utc, utcnow
from modelbay.security.accounts import account_row, tenant_row
from modelbay.security.principals import ROLE_SCOPES, Principal, Role, Scope
from modelbay.security.tokens import hash_secret, key_id_for, new_token

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
BOOTSTRAP_NAME = "bootstrap-admin"
LIMIT_FIELDS = ("rate_limit_rps", "daily_quota", "tokens_per_minute", "tokens_per_day")
"""The limits of a tenant or key; ``None`` in any means unlimited."""
ENV_ADMIN_NAME = "admin (MODELBAY_ADMIN_KEY)"


def check_tenant_name(name: str) -> str:
    if not TENANT_NAME.match(name):
        raise InvalidRequest(
            f"invalid tenant name '{name}': use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit",
            param="name",
        )
    return name


class TenantRecord(BaseModel):
    """A tenant as served; limits of None mean unlimited."""

    name: str
    rate_limit_rps: float | None
    daily_quota: int | None
    tokens_per_minute: int | None
    tokens_per_day: int | None
    max_jobs: int | None = None
    training_seconds_per_day: float | None = None
    created_at: datetime


class KeyRecord(BaseModel):
    """An API key as served: never its secret."""

    key_id: str
    name: str
    tenant: str
    account: str | None
    role: Role
    scopes: list[Scope]
    rate_limit_rps: float | None
    daily_quota: int | None
    tokens_per_minute: int | None
    tokens_per_day: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None
    created_at: datetime
    status: str


@dataclass(frozen=True)
class StoredKey:
    """What authentication needs of a key row, detached from the session."""

    key_id: str
    secret_hash: str
    principal: Principal
    expires_at: datetime | None
    revoked_at: datetime | None

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(token))


class KeyStore:
    """Tenants and keys: create, list, revoke, and look a secret up."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # tenants

    def create_tenant(
        self,
        name: str,
        *,
        rate_limit_rps: float | None = None,
        daily_quota: int | None = None,
        tokens_per_minute: int | None = None,
        tokens_per_day: int | None = None,
        max_jobs: int | None = None,
        training_seconds_per_day: float | None = None,
    ) -> TenantRecord:
        check_tenant_name(name)
        try:
            with self._sessions.begin() as s:
                row = TenantRow(
                    name=name,
                    rate_limit_rps=rate_limit_rps,
                    daily_quota=daily_quota,
                    tokens_per_minute=tokens_per_minute,
                    tokens_per_day=tokens_per_day,
                    max_jobs=max_jobs,
                    training_seconds_per_day=training_seconds_per_day,
                )
                s.add(row)
                s.flush()
                return _tenant_record(row)
        except IntegrityError:
            raise Conflict(f"tenant '{name}' already exists", param="name") from None

    def list_tenants(self) -> list[TenantRecord]:
        with self._sessions.begin() as s:
            rows = s.scalars(select(TenantRow).order_by(TenantRow.name))
            return [_tenant_record(r) for r in rows]

    def get_tenant(self, name: str) -> TenantRecord:
        with self._sessions.begin() as s:
            return _tenant_record(tenant_row(s, name))

    def tenant_id(self, name: str) -> int:
        with self._sessions.begin() as s:
            return tenant_row(s, name).id

    def update_tenant(self, name: str, **limits: Any) -> TenantRecord:
        with self._sessions.begin() as s:
            row = tenant_row(s, name)
            for field, value in limits.items():
                setattr(row, field, value)
            s.flush()
            return _tenant_record(row)

    # keys

    def create_key(
        self,
        *,
        tenant: str,
        role: Role,
        name: str,
        scopes: list[Scope] | None = None,
        rate_limit_rps: float | None = None,
        daily_quota: int | None = None,
        tokens_per_minute: int | None = None,
        tokens_per_day: int | None = None,
        expires_at: datetime | None = None,
        created_by: str | None = None,
        token: str | None = None,
        account: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key, of ``account`` (a user or service account of the tenant) if given;
        returns its record and its secret, which is not kept."""
        if scopes is not None:
            extra = set(scopes) - ROLE_SCOPES[role]
            if extra:
                raise InvalidRequest(
                    f"role '{role}' does not grant scope(s) {', '.join(sorted(extra))}; "
                    f"it grants {', '.join(sorted(ROLE_SCOPES[role]))}",
                    param="scopes",
                )
        if token is None:
            key_id, token = new_token()
        else:
            key_id = key_id_for(token)
        with self._sessions.begin() as s:
            home = tenant_row(s, tenant)
            account_of = None
            if account is not None:
                try:
                    account_of = account_row(s, home, account)
                except NotFound as exc:  # named in the body, not the URL: 422
                    raise UnknownReference(exc.message, param="account") from None
            if account_of is not None and account_of.disabled_at is not None:
                raise Conflict(f"account '{account}' is disabled", param="account")
            row = ApiKeyRow(
                key_id=key_id,
                secret_hash=hash_secret(token),
                name=name,
                tenant=home,
                role=role.value,
                scopes=[str(x) for x in scopes] if scopes is not None else None,
                rate_limit_rps=rate_limit_rps,
                daily_quota=daily_quota,
                tokens_per_minute=tokens_per_minute,
                tokens_per_day=tokens_per_day,
                expires_at=expires_at,
                created_by=created_by,
                account=account_of,
            )
            s.add(row)
            s.flush()
            return _key_record(row), token

    def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        with self._sessions.begin() as s:
            query = select(ApiKeyRow).options(
                selectinload(ApiKeyRow.tenant), selectinload(ApiKeyRow.account)
            )
            if tenant is not None:
                query = query.where(ApiKeyRow.tenant_id == tenant_row(s, tenant).id)
            return [_key_record(r) for r in s.scalars(query.order_by(ApiKeyRow.created_at))]

    def get_key(self, key_id: str) -> KeyRecord:
        with self._sessions.begin() as s:
            return _key_record(_key_row(s, key_id))

    def clear_key_limits(self, key_id: str) -> KeyRecord:
        """Remove every limit of a key (``modelbay admin reset-limits``)."""
        with self._sessions.begin() as s:
            row = _key_row(s, key_id)
            for field in LIMIT_FIELDS:
                setattr(row, field, None)
            s.flush()
            return _key_record(row)

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
        with self._sessions.begin() as s:
            row = _key_row(s, key_id)
            if row.revoked_at is None:
                if row.role == Role.ADMIN.value and self._active_admins(s) == [row.key_id]:
                    raise Conflict(
                        f"'{key_id}' is the last active admin key; create another admin key "
                        "before revoking it",
                        param="key_id",
                    )
                row.revoked_at = utcnow()
            s.flush()
            return _key_record(row)

    def lookup(self, token: str) -> StoredKey | None:
        """The key a secret belongs to, revoked and expired ones included; None if unknown."""
        return self.lookup_id(key_id_for(token))

    def lookup_id(self, key_id: str) -> StoredKey | None:
        """The key of that id, revoked and expired ones included; None if unknown."""
        with self._sessions.begin() as s:
            query = (
                select(ApiKeyRow)
                .where(ApiKeyRow.key_id == key_id)
                .options(selectinload(ApiKeyRow.tenant))
            )
            row = s.scalar(query)
            if row is None:
                return None
            return StoredKey(
                key_id=row.key_id,
                secret_hash=row.secret_hash,
                principal=_principal(row),
                expires_at=as_utc(row.expires_at) if row.expires_at else None,
                revoked_at=row.revoked_at,
            )

    def has_active_admin(self) -> bool:
        with self._sessions.begin() as s:
            return bool(self._active_admins(s))

    @staticmethod
    def _active_admins(s: Session) -> list[str]:
        now = utcnow()
        rows = s.scalars(
            select(ApiKeyRow).where(
                ApiKeyRow.role == Role.ADMIN.value, ApiKeyRow.revoked_at.is_(None)
            )
        )
        return [r.key_id for r in rows if r.expires_at is None or as_utc(r.expires_at) > now]

    def ensure_env_admin(self, token: str) -> bool | None:
        """Make ``token`` an admin key of the default tenant, revoking an earlier
        ``MODELBAY_ADMIN_KEY``: True if it was created now, False if it existed, None if
        this very key was revoked (it stays revoked)."""
        digest = hash_secret(token)
        with self._sessions.begin() as s:
            for row in s.scalars(select(ApiKeyRow).where(ApiKeyRow.name == ENV_ADMIN_NAME)):
                if row.secret_hash == digest:
                    return False if row.revoked_at is None else None
                if row.revoked_at is None:
                    row.revoked_at = utcnow()
        self.create_key(tenant="default", role=Role.ADMIN, name=ENV_ADMIN_NAME, token=token)
        return True

    def check_grant(self, granter: Principal, tenant: str, role: Role) -> None:
        """An owner may hand out (and revoke) roles up to owner in its own tenant; only
        admins more."""
        if role is Role.ADMIN and not granter.is_admin:
            raise Forbidden(
                f"key '{granter.key_id}' (role {granter.role}) cannot create or revoke admin keys",
                param="role",
            )
        if not granter.is_admin and tenant != granter.tenant:
            raise NotFound(f"tenant '{tenant}' not found", param="tenant")


def _key_row(s: Session, key_id: str) -> ApiKeyRow:
    row = s.scalar(
        select(ApiKeyRow).where(ApiKeyRow.key_id == key_id).options(selectinload(ApiKeyRow.tenant))
    )
    if row is None:
        raise NotFound(f"API key '{key_id}' not found", param="key_id")
    return row


def _tenant_record(row: TenantRow) -> TenantRecord:
    return TenantRecord(
        name=row.name,
        rate_limit_rps=row.rate_limit_rps,
        daily_quota=row.daily_quota,
        tokens_per_minute=row.tokens_per_minute,
        tokens_per_day=row.tokens_per_day,
        max_jobs=row.max_jobs,
        training_seconds_per_day=row.training_seconds_per_day,
        created_at=as_utc(row.created_at),
    )


def _scopes(row: ApiKeyRow) -> frozenset[Scope]:
    granted = ROLE_SCOPES[Role(row.role)]
    if row.scopes is None:
        return granted
    return granted & {Scope(x) for x in row.scopes}


def _status(row: ApiKeyRow) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
        return "expired"
    return "active"


def _key_record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        name=row.name,
        tenant=row.tenant.name,
        account=row.account.name if row.account else None,
        role=Role(row.role),
        scopes=sorted(_scopes(row)),
        rate_limit_rps=row.rate_limit_rps,
        daily_quota=row.daily_quota,
        tokens_per_minute=row.tokens_per_minute,
        tokens_per_day=row.tokens_per_day,
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        status=_status(row),
    )


def _principal(row: ApiKeyRow) -> Principal:
    return Principal(
        key_id=row.key_id,
        key_name=row.name,
        account=row.account.name if row.account else None,
        tenant_id=row.tenant_id,
        tenant=row.tenant.name,
        role=Role(row.role),
        scopes=_scopes(row),
        rate_limit_rps=row.rate_limit_rps,
        daily_quota=row.daily_quota,
        tenant_rate_limit_rps=row.tenant.rate_limit_rps,
        tenant_daily_quota=row.tenant.daily_quota,
        tokens_per_minute=row.tokens_per_minute,
        tokens_per_day=row.tokens_per_day,
        tenant_tokens_per_minute=row.tenant.tokens_per_minute,
        tenant_tokens_per_day=row.tenant.tokens_per_day,
    )
