"""The Guard: LLM token calls (refusals name the limit, tokens used are metered), and the
database reads behind its key cache."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.pausing import Pause

from modelbay.errors import Unauthenticated
from modelbay.security.access import ResourceDirectory
from modelbay.security.audit import AuditLog
from modelbay.security.authn import CACHE_TTL_S, Authenticator
from modelbay.security.guard import Caller, Guard, RateLimited
from modelbay.security.keys import KeyStore, StoredKey
from modelbay.security.limits import RateLimiter
from modelbay.security.principals import Principal, Role
from modelbay.security.usage import UsageMeter, seconds_to_midnight

DAY1 = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY1)


@pytest.fixture
def keys(engine: Engine) -> KeyStore:
    return KeyStore(engine)


def guard_of(engine: Engine, keys: KeyStore, clock: Clock, tmp_path: Path) -> Guard:
    return Guard(
        Authenticator(keys),
        ResourceDirectory(engine),
        RateLimiter(),
        UsageMeter(engine, clock),
        AuditLog(engine, tmp_path / "audit.head"),
    )


@pytest.fixture
def guard(engine: Engine, keys: KeyStore, clock: Clock, tmp_path: Path) -> Guard:
    return guard_of(engine, keys, clock, tmp_path)


def principal_of(keys: KeyStore, role: Role = Role.CONSUMER, **limits: int) -> Principal:
    """The principal of a new key of tenant acme with ``limits``, as authentication gives it."""
    _, secret = keys.create_key(tenant="acme", role=role, name="llm", **limits)
    stored = keys.lookup(secret)
    assert stored is not None
    return stored.principal


def test_a_key_over_its_tokens_per_minute_gets_a_429_naming_the_limit(
    guard: Guard, keys: KeyStore, clock: Clock
) -> None:
    keys.create_tenant("acme")
    p = principal_of(keys, tokens_per_minute=600)
    guard.admit_tokens(p)
    guard.add_tokens(p, prompt_tokens=900, completion_tokens=100)
    with pytest.raises(RateLimited) as refused:
        guard.admit_tokens(p)
    assert refused.value.status == 429
    assert refused.value.message == (
        f"key '{p.key_id}' has used its 600 tokens per minute; retry after 40.1 s"
    )
    assert refused.value.retry_after == pytest.approx(40.1)
    assert dict(refused.value.verdict.headers())[b"x-ratelimit-policy"] == b"key-tokens"
    clock.now += 41
    guard.admit_tokens(p)


def test_a_tenants_daily_tokens_are_spent_by_all_its_keys_until_midnight(
    guard: Guard, keys: KeyStore, clock: Clock
) -> None:
    keys.create_tenant("acme", tokens_per_day=1000)
    a, b = principal_of(keys), principal_of(keys)
    assert (a.tenant_tokens_per_day, a.tokens_per_day) == (1000, None)
    guard.add_tokens(a, 600, 0)
    guard.admit_tokens(b)
    guard.add_tokens(b, 300, 100)
    with pytest.raises(RateLimited) as refused:
        guard.admit_tokens(a)
    assert "tenant 'acme' has used its daily quota of 1000 tokens" in refused.value.message
    assert refused.value.retry_after == seconds_to_midnight(clock.now)
    clock.now += seconds_to_midnight(clock.now)
    guard.admit_tokens(a)


def test_admin_keys_are_limited_by_tokens_too(guard: Guard, keys: KeyStore) -> None:
    keys.create_tenant("acme")
    admin = principal_of(keys, Role.ADMIN, tokens_per_minute=10)
    assert admin.is_admin
    guard.add_tokens(admin, 10, 0)
    with pytest.raises(RateLimited):
        guard.admit_tokens(admin)


def test_tokens_used_are_in_usage_and_still_count_after_a_restart(
    engine: Engine, guard: Guard, keys: KeyStore, clock: Clock, tmp_path: Path
) -> None:
    keys.create_tenant("acme")
    p = principal_of(keys, tokens_per_day=100)
    guard.add_tokens(p, 60, 40)
    [row] = guard.meter.report(key_id=p.key_id)
    assert (row.prompt_tokens, row.completion_tokens) == (60, 40)
    restarted = guard_of(engine, keys, clock, tmp_path)
    with pytest.raises(RateLimited, match="daily quota of 100 tokens"):
        restarted.admit_tokens(p)


def test_negative_token_counts_are_a_programming_error(guard: Guard, keys: KeyStore) -> None:
    keys.create_tenant("acme")
    with pytest.raises(ValueError, match="negative"):
        guard.add_tokens(principal_of(keys), -1, 0)


class CountingKeys(KeyStore):
    """The real key store, counting its database lookups."""

    lookups = 0

    def lookup(self, token: str) -> StoredKey | None:
        self.lookups += 1
        return super().lookup(token)


def test_a_key_in_use_is_read_once_per_miss_and_renewed_before_it_expires(
    engine: Engine, clock: Clock, tmp_path: Path
) -> None:
    # Each request in flight when the cached key expired read it again: 64 clients, 64
    # database reads in the same millisecond, every five seconds.
    keys = CountingKeys(engine)
    keys.create_tenant("acme")
    _, secret = keys.create_key(tenant="acme", role=Role.CONSUMER, name="hot")
    authenticator = Authenticator(keys, clock)
    guard = Guard(
        authenticator,
        ResourceDirectory(engine),
        RateLimiter(),
        UsageMeter(engine, clock),
        AuditLog(engine, tmp_path / "audit.head"),
    )
    caller = Caller(client="127.0.0.1", action="model.infer", target={})

    async def main() -> None:
        many = [guard.authenticate(secret, caller) for _ in range(64)]
        assert {p.tenant for p in await asyncio.gather(*many)} == {"acme"}
        assert keys.lookups == 1  # one read for all 64

        clock.now += CACHE_TTL_S * 0.4  # young: served from the cache, nothing read
        await guard.authenticate(secret, caller)
        assert keys.lookups == 1

        clock.now += CACHE_TTL_S * 0.3  # past half its life: served, and read in the background
        await guard.authenticate(secret, caller)
        deadline = time.monotonic() + 5
        while guard.flights.running(("key", secret)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert keys.lookups == 2

        clock.now += CACHE_TTL_S * 0.6  # the first read is now older than the TTL
        assert authenticator.cached(secret)[0]  # but the renewed entry is fresh
        await asyncio.gather(*(guard.authenticate(secret, caller) for _ in range(64)))
        assert keys.lookups == 2  # nobody waited for the database

    asyncio.run(main())


class PausedKeys(KeyStore):
    """The real key store, whose lookup can be paused after its read."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.pause = Pause()

    def lookup(self, token: str) -> StoredKey | None:
        found = super().lookup(token)
        self.pause.hit()
        return found


def test_a_key_read_before_its_revocation_is_not_cached_after_it(
    engine: Engine, clock: Clock
) -> None:
    # With keys renewed in the background, a read could begin before a revocation on this
    # server and land after it, caching the key as valid for another five seconds.
    keys = PausedKeys(engine)
    keys.create_tenant("acme")
    record, secret = keys.create_key(tenant="acme", role=Role.CONSUMER, name="leaving")
    authenticator = Authenticator(keys, clock)
    keys.pause.armed = True
    renewal = threading.Thread(target=authenticator.refresh, args=(secret,))
    renewal.start()
    assert keys.pause.read.wait(5)  # it has read the key, still valid
    keys.revoke_key(record.key_id)
    authenticator.forget()  # what revoking through the API does on this server
    keys.pause.go.set()
    renewal.join(5)
    assert authenticator.cached(secret) == (False, None)
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticator.resolve(secret)
