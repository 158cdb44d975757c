"""Rate limits (token buckets) and daily quotas per key and per tenant, as pure state.

``RateLimiter.admit(principal, now, day, used_today)`` decides one request with the time
passed in, so it is tested without a clock. A request is admitted only when every limit
that applies has room, and then it takes from all of them.

The API accepts limits within ``MIN_RATE_RPS``..``MAX_RATE_RPS`` and ``MAX_QUOTA``; a value
stored otherwise (an older release, a hand-edited database) is clamped into that range, so
no stored number can make a decision or its headers fail, nor a refusal last for ever.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from modelbay.frontends.shared_table import SharedTable
from modelbay.security.principals import Principal

MIN_RATE_RPS = 0.01
"""The slowest rate limit: one request per 100 s, so a refusal's wait is at most 100 s."""
MAX_RATE_RPS = 1_000_000.0
MAX_QUOTA = 2**63 - 1
"""The largest daily quota (a signed 64-bit column on every database)."""
_MAX_RESET_S = 86_400.0


def effective_rate(stored: float) -> float:
    """``stored`` clamped into the accepted range; NaN counts as the strictest rate."""
    if math.isnan(stored):
        return MIN_RATE_RPS
    return min(max(stored, MIN_RATE_RPS), MAX_RATE_RPS)


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up for a header: finite, between 0 and a day, whatever came in."""
    if not seconds > 0:  # also NaN
        return 0
    return math.ceil(min(seconds, _MAX_RESET_S))


@dataclass
class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; one request takes one token."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """Seconds until one token is there (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class Limit:
    """One limit's state after a decision, as sent in ``X-RateLimit-*`` headers."""

    name: str
    limit: float
    remaining: int
    reset_s: float


@dataclass(frozen=True)
class Verdict:
    """Admitted or not; ``tightest`` is the refusing limit, or the one with least room."""

    admitted: bool
    tightest: Limit | None
    retry_after: float = 0.0

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.tightest is None:
            return []
        t = self.tightest
        limit = f"{t.limit:g}" if not float(t.limit).is_integer() else str(int(t.limit))
        return [
            (b"x-ratelimit-limit", limit.encode()),
            (b"x-ratelimit-remaining", str(t.remaining).encode()),
            (b"x-ratelimit-reset", str(whole_seconds(t.reset_s)).encode()),
            (b"x-ratelimit-policy", t.name.encode()),
        ]


def burst_of(rate: float) -> float:
    """A bucket lets through one second's worth at once, and at least one request."""
    return max(1.0, rate)


class RateLimiter:
    """Buckets per key and per tenant; daily counts come from ``used_today``.

    With a ``table`` the buckets live there, shared by every frontend of the data
    directory (so a limit holds for the server, not per process); without, in memory.
    """

    def __init__(self, table: SharedTable | None = None) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._table = table

    def admit(
        self,
        p: Principal,
        now: float,
        seconds_to_midnight: float,
        used_today: Callable[[Principal], tuple[int, int]],
    ) -> Verdict:
        """Decide one request of ``p``; ``used_today(p)`` gives (key's, tenant's) count."""
        table = self._table
        if table is None or (p.rate_limit_rps is None and p.tenant_rate_limit_rps is None):
            return self._admit(p, now, seconds_to_midnight, used_today)
        names = [f"k:{p.key_id}", f"t:{p.tenant_id}"]
        with table.locked():
            generation = int((table.get("b/generation") or (0.0, 0.0, 0.0))[0])
            prefix = f"b/{generation}/"
            for name in names:
                shared = table.get(prefix + name)
                if shared is None:
                    self._buckets.pop(name, None)
                else:
                    rate, tokens, updated = shared
                    self._buckets[name] = TokenBucket(rate, burst_of(rate), tokens, updated)
            verdict = self._admit(p, now, seconds_to_midnight, used_today)
            for name in names:
                bucket = self._buckets.get(name)
                if bucket is not None:
                    table.put(prefix + name, bucket.rate, bucket.tokens, bucket.updated)
        return verdict

    def _admit(
        self,
        p: Principal,
        now: float,
        seconds_to_midnight: float,
        used_today: Callable[[Principal], tuple[int, int]],
    ) -> Verdict:
        buckets = self._applicable_buckets(p, now)
        limits: list[Limit] = []
        refusal: tuple[float, Limit] | None = None
        for name, bucket in buckets:
            limit = Limit(name, bucket.rate, int(bucket.tokens), bucket.wait())
            limits.append(limit)
            if bucket.tokens < 1 and (refusal is None or limit.reset_s > refusal[0]):
                refusal = (limit.reset_s, limit)
        if p.daily_quota is not None or p.tenant_daily_quota is not None:
            key_used, tenant_used = used_today(p)
            for name, quota, used in (
                ("key-day", p.daily_quota, key_used),
                ("tenant-day", p.tenant_daily_quota, tenant_used),
            ):
                if quota is None:
                    continue
                quota = max(0, min(quota, MAX_QUOTA))
                limit = Limit(name, quota, max(0, quota - used), seconds_to_midnight)
                limits.append(limit)
                if used >= quota and (refusal is None or limit.reset_s > refusal[0]):
                    refusal = (limit.reset_s, limit)
        if refusal is not None:
            return Verdict(False, refusal[1], refusal[0])
        for _, bucket in buckets:
            bucket.tokens -= 1
        after = [Limit(t.name, t.limit, max(0, t.remaining - 1), t.reset_s) for t in limits]
        tightest = min(after, key=lambda t: t.remaining / max(t.limit, 1)) if after else None
        return Verdict(True, tightest)

    def forget(self) -> None:
        """Drop every bucket, e.g. after a limit changed (they refill from full)."""
        self._buckets.clear()
        if self._table is not None:
            with self._table.locked():  # every frontend's buckets restart from full
                generation = (self._table.get("b/generation") or (0.0, 0.0, 0.0))[0]
                self._table.put("b/generation", generation + 1, 0.0, 0.0)

    def _applicable_buckets(self, p: Principal, now: float) -> list[tuple[str, TokenBucket]]:
        found = []
        for name, key, rate in (
            ("key", f"k:{p.key_id}", p.rate_limit_rps),
            ("tenant", f"t:{p.tenant_id}", p.tenant_rate_limit_rps),
        ):
            if rate is None:
                continue
            rate = effective_rate(rate)
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate:
                bucket = TokenBucket(rate, burst_of(rate), burst_of(rate), now)
                self._buckets[key] = bucket
            bucket.refill(now)
            found.append((name, bucket))
        return found
