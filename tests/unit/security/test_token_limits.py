"""LLM token limits: a bucket a minute wide, debited after the fact, and a daily count.

Time is passed in, as for request limits: no clock, no sleeps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelbay.frontends.shared_table import SharedTable
from modelbay.security.limits import RateLimiter
from modelbay.security.principals import ROLE_SCOPES, Principal, Role

BASE = Principal(
    key_id="mb_000000000001",
    key_name="k",
    tenant_id=2,
    tenant="acme",
    role=Role.CONSUMER,
    scopes=ROLE_SCOPES[Role.CONSUMER],
)
MIDNIGHT_IN = 7200.0


def _none_today(_: Principal) -> tuple[int, int]:
    return 0, 0


def _admit(limiter: RateLimiter, p: Principal, now: float) -> bool:
    return limiter.admit_tokens(p, now, MIDNIGHT_IN, _none_today).admitted


def test_no_token_limits_admit_everything_without_headers() -> None:
    limiter = RateLimiter()
    limiter.debit_tokens(BASE, 0.0, 10**12)
    verdict = limiter.admit_tokens(BASE, 0.0, MIDNIGHT_IN, _none_today)
    assert verdict.admitted
    assert verdict.headers() == []


def test_admission_takes_nothing_only_the_debit_does() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=10)
    assert all(_admit(limiter, p, 0.0) for _ in range(100))
    limiter.debit_tokens(p, 0.0, 9)
    verdict = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, _none_today)
    assert verdict.admitted
    assert dict(verdict.headers())[b"x-ratelimit-remaining"] == b"1"
    limiter.debit_tokens(p, 0.0, 1)
    assert not _admit(limiter, p, 0.0)


def test_a_big_debit_refuses_until_the_debt_is_refilled() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=600)  # 10 tokens a second
    assert _admit(limiter, p, 100.0)
    limiter.debit_tokens(p, 100.0, 1000)  # 400 tokens into debt
    refused = limiter.admit_tokens(p, 100.0, MIDNIGHT_IN, _none_today)
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(40.1)  # back to one token
    headers = dict(refused.headers())
    assert headers[b"x-ratelimit-policy"] == b"key-tokens"
    assert headers[b"x-ratelimit-limit"] == b"600"
    assert headers[b"x-ratelimit-remaining"] == b"0"
    assert headers[b"x-ratelimit-reset"] == b"41"
    assert not _admit(limiter, p, 140.0)
    assert _admit(limiter, p, 140.2)


def test_an_idle_bucket_refills_to_a_minutes_worth_and_no_more() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=60)
    limiter.debit_tokens(p, 0.0, 60)
    assert not _admit(limiter, p, 0.0)
    limiter.debit_tokens(p, 3600.0, 60)  # an hour idle holds 60, not 3600
    refused = limiter.admit_tokens(p, 3600.0, MIDNIGHT_IN, _none_today)
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(1.0)


def test_a_debt_never_refuses_for_longer_than_a_day() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=1)
    limiter.debit_tokens(p, 0.0, 10**15)
    refused = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, _none_today)
    assert 86_000 < refused.retry_after <= 86_400
    assert _admit(limiter, p, 86_400.0)


def test_daily_tokens_refuse_until_midnight() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_day=1000)
    assert limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, lambda _: (999, 999)).admitted
    refused = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, lambda _: (1000, 1000))
    assert not refused.admitted
    assert refused.retry_after == MIDNIGHT_IN
    headers = dict(refused.headers())
    assert headers[b"x-ratelimit-policy"] == b"key-tokens-day"
    assert headers[b"x-ratelimit-limit"] == b"1000"


def test_the_tenants_bucket_is_spent_by_any_of_its_keys() -> None:
    limiter = RateLimiter()
    a = replace(BASE, tenant_tokens_per_minute=120)
    b = replace(a, key_id="mb_000000000002")
    limiter.debit_tokens(a, 0.0, 150)
    refused = limiter.admit_tokens(b, 0.0, MIDNIGHT_IN, _none_today)
    assert not refused.admitted
    assert refused.tightest is not None
    assert refused.tightest.name == "tenant-tokens"
    other_tenant = replace(b, tenant_id=3)
    assert _admit(limiter, other_tenant, 0.0)


def test_the_tenants_daily_tokens_count_every_key() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tenant_tokens_per_day=50)
    refused = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, lambda _: (0, 50))
    assert refused.tightest is not None
    assert refused.tightest.name == "tenant-tokens-day"


def test_over_both_limits_the_refusal_names_the_one_that_frees_up_last() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=60, tenant_tokens_per_day=100)
    limiter.debit_tokens(p, 0.0, 100)
    refused = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, lambda _: (100, 100))
    assert refused.tightest is not None
    assert refused.tightest.name == "tenant-tokens-day"
    assert refused.retry_after == MIDNIGHT_IN
    per_minute_only = limiter.admit_tokens(p, 0.0, MIDNIGHT_IN, lambda _: (100, 99))
    assert per_minute_only.tightest is not None
    assert per_minute_only.tightest.name == "key-tokens"


def test_tokens_and_requests_have_buckets_of_their_own() -> None:
    limiter = RateLimiter()
    p = replace(BASE, rate_limit_rps=1.0, tokens_per_minute=60)
    limiter.debit_tokens(p, 0.0, 1000)
    assert limiter.admit(p, 0.0, MIDNIGHT_IN, _none_today).admitted
    assert not limiter.admit(p, 0.0, MIDNIGHT_IN, _none_today).admitted
    assert not _admit(limiter, p, 0.0)


def test_a_changed_limit_starts_a_full_bucket() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tokens_per_minute=10)
    limiter.debit_tokens(p, 0.0, 100)
    assert not _admit(limiter, p, 0.0)
    assert _admit(limiter, replace(p, tokens_per_minute=20), 0.0)


def test_the_buckets_hold_for_every_frontend_sharing_the_table(tmp_path: Path) -> None:
    one = RateLimiter(SharedTable(tmp_path / "table"))
    two = RateLimiter(SharedTable(tmp_path / "table"))
    p = replace(BASE, tokens_per_minute=100, tenant_tokens_per_minute=1000)
    assert _admit(two, p, 0.0)
    one.debit_tokens(p, 0.0, 150)
    refused = two.admit_tokens(p, 0.0, MIDNIGHT_IN, _none_today)
    assert not refused.admitted
    assert refused.tightest is not None
    assert refused.tightest.name == "key-tokens"
    one.forget()  # a limit changed: every frontend's buckets start full
    assert _admit(two, p, 0.0)


_STORED = st.none() | st.integers(min_value=-(2**70), max_value=2**70)


@settings(max_examples=200, deadline=None)
@given(
    key_minute=_STORED,
    tenant_minute=_STORED,
    key_day=_STORED,
    tenant_day=_STORED,
    used=st.integers(min_value=0, max_value=2**64),
    debit=st.integers(min_value=0, max_value=2**64),
    gap=st.floats(min_value=0, max_value=1e6),
)
def test_no_stored_token_limit_makes_a_verdict_or_its_headers_fail(
    key_minute: int | None,
    tenant_minute: int | None,
    key_day: int | None,
    tenant_day: int | None,
    used: int,
    debit: int,
    gap: float,
) -> None:
    limiter = RateLimiter()
    p = replace(
        BASE,
        tokens_per_minute=key_minute,
        tenant_tokens_per_minute=tenant_minute,
        tokens_per_day=key_day,
        tenant_tokens_per_day=tenant_day,
    )
    for t in (0.0, 0.0, gap):
        verdict = limiter.admit_tokens(p, t, 3600, lambda _: (used, used))
        limiter.debit_tokens(p, t, debit)
        headers = dict(verdict.headers())
        if not verdict.admitted:
            assert 0 < verdict.retry_after <= 86_400
        if headers:
            assert 0 <= int(headers[b"x-ratelimit-reset"]) <= 86_400
            assert int(headers[b"x-ratelimit-remaining"]) >= 0
