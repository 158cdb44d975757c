"""Token buckets and daily quotas decide with the time passed in: no clock, no sleeps."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from modelbay.api.errors import retry_after_value
from modelbay.security.limits import MIN_RATE_RPS, RateLimiter
from modelbay.security.principals import ROLE_SCOPES, Principal, Role

BASE = Principal(
    key_id="mb_000000000001",
    key_name="k",
    tenant_id=2,
    tenant="acme",
    role=Role.CONSUMER,
    scopes=ROLE_SCOPES[Role.CONSUMER],
)


def _nothing_used(_: Principal) -> tuple[int, int]:
    return 0, 0


def test_no_limits_admit_everything_without_headers() -> None:
    limiter = RateLimiter()
    for i in range(1000):
        verdict = limiter.admit(BASE, float(i) / 1000, 3600, _nothing_used)
        assert verdict.admitted
        assert verdict.headers() == []


def test_key_bucket_admits_its_burst_then_refuses_with_retry_after() -> None:
    limiter = RateLimiter()
    p = replace(BASE, rate_limit_rps=2.0)
    assert limiter.admit(p, 100.0, 3600, _nothing_used).admitted
    assert limiter.admit(p, 100.0, 3600, _nothing_used).admitted
    refused = limiter.admit(p, 100.0, 3600, _nothing_used)
    assert not refused.admitted
    assert refused.retry_after == 0.5
    headers = dict(refused.headers())
    assert headers[b"x-ratelimit-limit"] == b"2"
    assert headers[b"x-ratelimit-remaining"] == b"0"
    assert headers[b"x-ratelimit-reset"] == b"1"
    assert headers[b"x-ratelimit-policy"] == b"key"
    # half a second later one token is back
    assert limiter.admit(p, 100.5, 3600, _nothing_used).admitted
    assert not limiter.admit(p, 100.5, 3600, _nothing_used).admitted


def test_tenant_bucket_is_shared_by_the_tenants_keys() -> None:
    limiter = RateLimiter()
    a = replace(BASE, tenant_rate_limit_rps=1.0)
    b = replace(a, key_id="mb_000000000002")
    assert limiter.admit(a, 10.0, 3600, _nothing_used).admitted
    refused = limiter.admit(b, 10.0, 3600, _nothing_used)
    assert not refused.admitted
    assert refused.tightest is not None
    assert refused.tightest.name == "tenant"


def test_refused_request_takes_no_token_from_other_limits() -> None:
    limiter = RateLimiter()
    p = replace(BASE, rate_limit_rps=1.0, tenant_rate_limit_rps=5.0)
    assert limiter.admit(p, 0.0, 3600, _nothing_used).admitted
    for _ in range(3):
        assert not limiter.admit(p, 0.0, 3600, _nothing_used).admitted
    other = replace(p, key_id="mb_000000000009", rate_limit_rps=None)
    admitted = sum(limiter.admit(other, 0.0, 3600, _nothing_used).admitted for _ in range(10))
    assert admitted == 4  # the tenant's 5 minus the one admitted request


def test_daily_quota_refuses_until_midnight() -> None:
    limiter = RateLimiter()
    p = replace(BASE, daily_quota=3)
    verdict = limiter.admit(p, 0.0, 7200.0, lambda _: (2, 2))
    assert verdict.admitted
    assert dict(verdict.headers())[b"x-ratelimit-remaining"] == b"0"
    refused = limiter.admit(p, 0.0, 7200.0, lambda _: (3, 3))
    assert not refused.admitted
    assert refused.retry_after == 7200.0
    assert dict(refused.headers())[b"x-ratelimit-policy"] == b"key-day"


def test_tenant_quota_counts_every_key_of_the_tenant() -> None:
    limiter = RateLimiter()
    p = replace(BASE, tenant_daily_quota=10)
    assert limiter.admit(p, 0.0, 60.0, lambda _: (0, 9)).admitted
    refused = limiter.admit(p, 0.0, 60.0, lambda _: (0, 10))
    assert refused.tightest is not None
    assert refused.tightest.name == "tenant-day"


def test_changed_rate_starts_a_new_bucket() -> None:
    limiter = RateLimiter()
    slow = replace(BASE, rate_limit_rps=1.0)
    assert limiter.admit(slow, 0.0, 60, _nothing_used).admitted
    assert not limiter.admit(slow, 0.0, 60, _nothing_used).admitted
    fast = replace(slow, rate_limit_rps=10.0)
    assert limiter.admit(fast, 0.0, 60, _nothing_used).admitted


def test_a_subnormal_stored_rate_refuses_with_finite_headers() -> None:
    # 5e-324 per second once made the reset time infinite and every header build raise.
    limiter = RateLimiter()
    p = replace(BASE, tenant_rate_limit_rps=5e-324)
    assert limiter.admit(p, 0.0, 3600, _nothing_used).admitted
    refused = limiter.admit(p, 0.0, 3600, _nothing_used)
    assert not refused.admitted
    assert refused.retry_after == 1 / MIN_RATE_RPS  # the slowest accepted rate
    assert dict(refused.headers())[b"x-ratelimit-reset"] == b"100"
    assert retry_after_value(refused.retry_after) == "100"


_STORED_RATES = st.none() | st.floats(allow_nan=True, allow_infinity=True)
_STORED_QUOTAS = st.none() | st.integers(min_value=-(2**70), max_value=2**70)


@settings(max_examples=300, deadline=None)
@given(
    key_rate=_STORED_RATES,
    tenant_rate=_STORED_RATES,
    key_quota=_STORED_QUOTAS,
    tenant_quota=_STORED_QUOTAS,
    used=st.integers(min_value=0, max_value=2**64),
    now=st.floats(min_value=0, max_value=1e9),
    gap=st.floats(min_value=0, max_value=1e6),
)
def test_no_stored_limit_makes_a_verdict_or_its_headers_fail(
    key_rate: float | None,
    tenant_rate: float | None,
    key_quota: int | None,
    tenant_quota: int | None,
    used: int,
    now: float,
    gap: float,
) -> None:
    limiter = RateLimiter()
    p = replace(
        BASE,
        rate_limit_rps=key_rate,
        tenant_rate_limit_rps=tenant_rate,
        daily_quota=key_quota,
        tenant_daily_quota=tenant_quota,
    )
    for t in (now, now, now + gap):
        verdict = limiter.admit(p, t, 3600, lambda _: (used, used))
        headers = dict(verdict.headers())
        if not verdict.admitted:
            assert 0 < verdict.retry_after <= 86_400
            assert 1 <= int(retry_after_value(verdict.retry_after)) <= 86_400
        if headers:
            assert 0 <= int(headers[b"x-ratelimit-reset"]) <= 86_400
            assert int(headers[b"x-ratelimit-remaining"]) >= 0
