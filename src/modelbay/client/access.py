"""The SDK's access calls: who a key is, tenants, API keys, usage, and who may see a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

from modelbay.security.tokens import KEY_ID, key_id_for

JsonCall = Callable[..., dict[str, Any]]
"""``(method, path, **httpx_kwargs)`` answering the response's JSON object."""


class AccessCalls:
    """The /api/v1 tenant, key, usage and model-access endpoints, mixed into ``Client``."""

    _json: JsonCall

    def whoami(self) -> dict[str, Any]:
        """The caller's key: ``{key_id, key_name, tenant, role, scopes}``."""
        return self._json("GET", "/api/v1/whoami")

    # -- tenants --------------------------------------------------------------------------

    def create_tenant(
        self,
        name: str,
        rate_limit_rps: float | None = None,
        daily_quota: int | None = None,
        tokens_per_minute: int | None = None,
        tokens_per_day: int | None = None,
        max_jobs: int | None = None,
        training_seconds_per_day: float | None = None,
    ) -> dict[str, Any]:
        """Create a tenant (admin); a limit left ``None`` means unlimited."""
        body = _given(
            name=name,
            rate_limit_rps=rate_limit_rps,
            daily_quota=daily_quota,
            tokens_per_minute=tokens_per_minute,
            tokens_per_day=tokens_per_day,
            max_jobs=max_jobs,
            training_seconds_per_day=training_seconds_per_day,
        )
        return self._json("POST", "/api/v1/tenants", json=body)

    def list_tenants(self) -> list[dict[str, Any]]:
        """Every tenant with its limits (admin)."""
        return _items(self._json("GET", "/api/v1/tenants"), "tenants")

    def get_tenant(self, name: str) -> dict[str, Any]:
        """One tenant's record: name, limits, creation time."""
        return self._json("GET", _path("tenants", name))

    def update_tenant(self, name: str, **limits: float | None) -> dict[str, Any]:
        """Change ``rate_limit_rps``, ``daily_quota``, ``tokens_per_minute``,
        ``tokens_per_day``, ``max_jobs`` or ``training_seconds_per_day`` (admin); ``None``
        removes a limit."""
        return self._json("PATCH", _path("tenants", name), json=limits)

    # -- accounts -------------------------------------------------------------------------

    def create_account(self, tenant: str, name: str, kind: str = "user") -> dict[str, Any]:
        """Create a user or service (``kind``) account in ``tenant`` for keys to act for."""
        body = {"name": name, "kind": str(kind)}
        return self._json("POST", _path("tenants", tenant, "accounts"), json=body)

    def list_accounts(self, tenant: str) -> list[dict[str, Any]]:
        """The users and service accounts of ``tenant``, with their active key counts."""
        return _items(self._json("GET", _path("tenants", tenant, "accounts")), "accounts")

    def disable_account(self, tenant: str, name: str) -> dict[str, Any]:
        """Disable an account and revoke all its keys at once."""
        return self._json("DELETE", _path("tenants", tenant, "accounts", name))

    # -- keys -----------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        role: str,
        tenant: str | None = None,
        scopes: Iterable[str] | None = None,
        rate_limit_rps: float | None = None,
        daily_quota: int | None = None,
        expires_in: str | None = None,
        account: str | None = None,
        tokens_per_minute: int | None = None,
        tokens_per_day: int | None = None,
    ) -> dict[str, Any]:
        """Create an API key; its record includes ``secret``, which no later call returns.

        ``tenant`` defaults to the caller's, ``scopes`` narrow the role's, ``expires_in``
        is a lifetime such as "30m", "12h", "90d" or "4w" (default: never expires), and
        ``account`` names the tenant's user or service account the key acts for. Limits
        left ``None`` (requests per second and per day, LLM tokens per minute and per
        day) mean unlimited.
        """
        body = _given(
            name=name,
            role=str(role),
            tenant=tenant,
            scopes=None if scopes is None else [str(s) for s in scopes],
            rate_limit_rps=rate_limit_rps,
            daily_quota=daily_quota,
            tokens_per_minute=tokens_per_minute,
            tokens_per_day=tokens_per_day,
            expires_in=expires_in,
            account=account,
        )
        return self._json("POST", "/api/v1/keys", json=body)

    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The keys of the caller's tenant (admins: every tenant's, or ``tenant``'s)."""
        params = _given(tenant=tenant)
        return _items(self._json("GET", "/api/v1/keys", params=params), "keys")

    def get_key(self, key: str) -> dict[str, Any]:
        """One key's record (never its secret), given its id or its secret."""
        return self._json("GET", _path("keys", as_key_id(key)))

    def revoke_key(self, key: str) -> dict[str, Any]:
        """Revoke a key, given its id or its secret; returns the revoked record."""
        return self._json("DELETE", _path("keys", as_key_id(key)))

    # -- usage ----------------------------------------------------------------------------

    def usage(
        self,
        tenant: str | None = None,
        key_id: str | None = None,
        since: date | str | None = None,
        until: date | str | None = None,
    ) -> list[dict[str, Any]]:
        """Requests, compute seconds and LLM tokens (``prompt_tokens``,
        ``completion_tokens``) per key and UTC day, ``since`` to ``until`` inclusive."""
        params = _given(tenant=tenant, key_id=key_id, since=_day(since), until=_day(until))
        return _items(self._json("GET", "/api/v1/usage", params=params), "usage")

    # -- model access ---------------------------------------------------------------------

    def set_model_access(
        self, name: str, visibility: str, shared_with: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Make a model "private" or "public" and share it with exactly ``shared_with``."""
        body = {"visibility": str(visibility), "shared_with": list(shared_with)}
        return self._json("PUT", _path("models", name, "access"), json=body)


def as_key_id(key: str) -> str:
    """The id of a key given as its id or as its secret, whatever the secret's form."""
    # Only ids go into URLs: a secret there would end up in access logs.
    return key if KEY_ID.match(key) else key_id_for(key)


def _path(collection: str, name: str, *parts: str) -> str:
    return "/".join(["/api/v1", collection, quote(name, safe=""), *parts])


def _given(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _day(value: date | str | None) -> str | None:
    return f"{value:%Y-%m-%d}" if isinstance(value, date) else value


def _items(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [dict(item) for item in doc.get(key, [])]
