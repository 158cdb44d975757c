"""API keys: only a hash is stored, secrets resolve to principals, revocation and expiry
take effect, and the first start makes exactly one admin key."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from modelbay.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from modelbay.registry.tables import ApiKeyRow, utcnow
from modelbay.security import authn as authn_module
from modelbay.security.authn import ADMIN_KEY_FILE, Authenticator, bootstrap_admin
from modelbay.security.keys import KeyStore, StoredKey
from modelbay.security.principals import Role, Scope
from modelbay.security.tokens import hash_secret, key_id_of


@pytest.fixture
def keys(engine: Engine) -> KeyStore:
    store = KeyStore(engine)
    store.create_tenant("acme")
    return store


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_the_hash_of_a_secret_is_stored(keys: KeyStore, engine: Engine) -> None:
    record, secret = keys.create_key(tenant="acme", role=Role.DEVELOPER, name="ci")
    assert key_id_of(secret) == record.key_id
    assert secret.startswith(record.key_id + "_")
    with engine.connect() as c:
        row = c.execute(select(ApiKeyRow)).one()
    assert secret not in [str(v) for v in row]
    assert row.secret_hash == hash_secret(secret)
    assert record.scopes == [Scope.INFER, Scope.READ, Scope.WRITE]


def test_secret_resolves_to_its_principal(keys: KeyStore) -> None:
    _, secret = keys.create_key(tenant="acme", role=Role.CONSUMER, name="app")
    principal = Authenticator(keys).resolve(secret)
    assert (principal.tenant, principal.role) == ("acme", Role.CONSUMER)
    assert principal.can(Scope.INFER)
    assert not principal.can(Scope.WRITE)


def test_wrong_secret_with_a_known_key_id_is_refused(keys: KeyStore) -> None:
    record, secret = keys.create_key(tenant="acme", role=Role.ADMIN, name="root")
    forged = f"{record.key_id}_{'A' * 43}"
    with pytest.raises(Unauthenticated, match="invalid API key"):
        Authenticator(keys).resolve(forged)
    with pytest.raises(Unauthenticated, match="invalid API key"):
        Authenticator(keys).resolve("not-a-key-at-all")


def test_revoked_key_is_refused_at_once_after_forget(keys: KeyStore) -> None:
    record, secret = keys.create_key(tenant="acme", role=Role.OWNER, name="ops")
    authn = Authenticator(keys)
    authn.resolve(secret)
    keys.revoke_key(record.key_id)
    authn.forget()
    with pytest.raises(Unauthenticated, match="has been revoked"):
        authn.resolve(secret)
    assert keys.get_key(record.key_id).status == "revoked"


def test_revocation_reaches_a_cache_within_its_ttl(keys: KeyStore) -> None:
    record, secret = keys.create_key(tenant="acme", role=Role.OWNER, name="ops")
    clock = Clock()
    authn = Authenticator(keys, clock=clock)
    authn.resolve(secret)
    keys.revoke_key(record.key_id)  # on another server: this cache is not told
    authn.resolve(secret)
    clock.now = 6.0
    with pytest.raises(Unauthenticated, match="revoked"):
        authn.resolve(secret)


def test_expired_key_is_refused(keys: KeyStore) -> None:
    past = utcnow() - timedelta(seconds=1)
    record, secret = keys.create_key(tenant="acme", role=Role.VIEWER, name="t", expires_at=past)
    with pytest.raises(Unauthenticated, match="expired"):
        Authenticator(keys).resolve(secret)
    assert keys.get_key(record.key_id).status == "expired"


def test_scopes_narrow_a_role_but_never_widen_it(keys: KeyStore) -> None:
    _, secret = keys.create_key(
        tenant="acme", role=Role.DEVELOPER, name="push-only", scopes=[Scope.WRITE]
    )
    principal = Authenticator(keys).resolve(secret)
    assert principal.scopes == frozenset({Scope.WRITE})
    with pytest.raises(InvalidRequest, match="does not grant scope"):
        keys.create_key(tenant="acme", role=Role.CONSUMER, name="x", scopes=[Scope.WRITE])


def test_owner_grants_up_to_owner_in_its_own_tenant_only(keys: KeyStore) -> None:
    keys.create_tenant("other")
    _, secret = keys.create_key(tenant="acme", role=Role.OWNER, name="boss")
    owner = Authenticator(keys).resolve(secret)
    keys.check_grant(owner, "acme", Role.OWNER)
    with pytest.raises(Forbidden, match="cannot create or revoke admin keys"):
        keys.check_grant(owner, "acme", Role.ADMIN)
    with pytest.raises(NotFound, match="tenant 'other' not found"):
        keys.check_grant(owner, "other", Role.CONSUMER)


def test_tenant_names_are_unique_and_checked(keys: KeyStore) -> None:
    with pytest.raises(Conflict):
        keys.create_tenant("acme")
    with pytest.raises(InvalidRequest, match="invalid tenant name"):
        keys.create_tenant("Bad Name")
    with pytest.raises(NotFound):
        keys.create_key(tenant="nobody", role=Role.VIEWER, name="x")


def test_token_limits_reach_records_and_principals_and_can_be_removed(keys: KeyStore) -> None:
    tenant = keys.create_tenant("llm-team", tokens_per_minute=5000, tokens_per_day=10**9)
    assert (tenant.tokens_per_minute, tenant.tokens_per_day) == (5000, 10**9)
    record, secret = keys.create_key(
        tenant="llm-team", role=Role.CONSUMER, name="chat", tokens_per_minute=100
    )
    assert (record.tokens_per_minute, record.tokens_per_day) == (100, None)
    keys.update_tenant("llm-team", tokens_per_day=None)
    stored = keys.lookup(secret)
    assert stored is not None
    p = stored.principal
    assert (p.tokens_per_minute, p.tokens_per_day) == (100, None)
    assert (p.tenant_tokens_per_minute, p.tenant_tokens_per_day) == (5000, None)
    cleared = keys.clear_key_limits(record.key_id)
    assert (cleared.tokens_per_minute, cleared.tokens_per_day) == (None, None)


def test_first_start_creates_one_admin_key_in_a_private_file(
    keys: KeyStore, tmp_path: Path
) -> None:
    bootstrap_admin(keys, tmp_path, None)
    path = tmp_path / ADMIN_KEY_FILE
    secret = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Authenticator(keys).resolve(secret).is_admin
    bootstrap_admin(keys, tmp_path, None)  # a restart keeps the key
    assert path.read_text().strip() == secret
    assert [k.role for k in keys.list_keys()].count(Role.ADMIN) == 1


def test_env_admin_key_replaces_the_previous_env_key(keys: KeyStore, tmp_path: Path) -> None:
    bootstrap_admin(keys, tmp_path, "first-admin-key-0123456789")
    authn = Authenticator(keys)
    assert authn.resolve("first-admin-key-0123456789").is_admin
    bootstrap_admin(keys, tmp_path, "second-admin-key-0123456789")
    authn.forget()
    assert authn.resolve("second-admin-key-0123456789").is_admin
    with pytest.raises(Unauthenticated, match="revoked"):
        authn.resolve("first-admin-key-0123456789")
    assert not (tmp_path / ADMIN_KEY_FILE).exists()


def test_the_last_active_admin_key_cannot_be_revoked(keys: KeyStore) -> None:
    first, _ = keys.create_key(tenant="acme", role=Role.ADMIN, name="first")
    with pytest.raises(Conflict, match="last active admin key"):
        keys.revoke_key(first.key_id)
    keys.create_key(tenant="acme", role=Role.ADMIN, name="second")
    assert keys.revoke_key(first.key_id).status == "revoked"


def test_a_flood_of_unknown_tokens_keeps_valid_keys_cached(
    keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache-full of random tokens (10,000) used to clear the one cache, valid keys with it.
    monkeypatch.setattr(authn_module, "_MAX_CACHED", 100)
    _, secret = keys.create_key(tenant="default", role=Role.VIEWER, name="v")
    lookups: list[str] = []
    original = keys.lookup

    def counted(token: str) -> StoredKey | None:
        lookups.append(token)
        return original(token)

    keys.lookup = counted  # type: ignore[method-assign]
    authn = Authenticator(keys)
    authn.resolve(secret)
    forged = secret[:-4] + "AAAA"  # a real key id with a wrong secret
    for i in range(150):
        with pytest.raises(Unauthenticated):
            authn.resolve(f"mb_{i:012x}_{'x' * 40}" if i % 2 else f"{forged}{i}")
    lookups.clear()
    assert authn.cached(secret) == (True, authn.resolve(secret))
    assert lookups == []
