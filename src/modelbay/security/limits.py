"""Rate limits (token buckets) and daily quotas per key and per tenant, as pure state.

``RateLimiter.admit(principal, now, day, used_today)`` decides one request with the time
passed in, so it is tested without a clock. A request is admitted only when every limit
that applies has room, and then it takes from all of them.

LLM tokens have limits of their own: a bucket of ``tokens_per_minute`` (refilled at a
60th of that a second) and ``tokens_per_day``. A request's tokens are known only once it
ran, so ``admit_tokens`` takes nothing and ``debit_tokens`` takes what it used afterwards,
into debt if need be: the next request waits until the bucket holds a token again.

The API accepts limits within ``MIN_RATE_RPS``..``MAX_RATE_RPS`` and ``MAX_QUOTA``; a value
stored otherwise (an older release, a hand-edited database) is clamped into that range, so
no stored number can make a decision or its headers fail, nor a refusal last for ever.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from modelbay.frontends.shared_table import SharedTable
from modelbay.security.principals import Principal

MIN_RATE_RPS = 0.01
"""The slowest rate limit: one request per 100 s, so a refusal's wait is at most 100 s."""
MAX_RATE_RPS = 1_000_000.0
MAX_QUOTA = 2**63 - 1
"""The largest daily quota or token limit (a signed 64-bit column on every database)."""
_MAX_RESET_S = 86_400.0

_Spec = tuple[str, str, float | None]
"""(limit name, bucket name, rate per second or None when the limit is not set)."""


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
    """``rate`` tokens a second, holding at most ``burst``; a request takes one token, or
    (LLM tokens) what it used, afterwards."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """Seconds until one token is there (0 when one is; at most a day, see ``debit``)."""
        return 0.0 if self.tokens >= 1 else min((1 - self.tokens) / self.rate, _MAX_RESET_S)

    def debit(self, used: float) -> None:
        """Take ``used`` tokens, into debt if need be; a debt is capped at a day's refill,
        so no bucket refuses for longer than a day."""
        self.tokens = max(self.tokens - used, 1 - self.rate * _MAX_RESET_S)


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


def minute_burst(rate: float) -> float:
    """A token bucket holds a minute's worth: its ``tokens_per_minute``."""
    return float(round(rate * 60))


def effective_count(stored: int) -> int:
    """A stored token limit clamped into 1..``MAX_QUOTA``."""
    return min(max(stored, 1), MAX_QUOTA)


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
        specs = _request_rates(p)
        with self._shared(specs, burst_of):
            buckets = self._applicable_buckets(specs, now, burst_of)
            limits = [(_bucket_limit(name, b, b.rate), b.tokens < 1) for name, b in buckets]
            if p.daily_quota is not None or p.tenant_daily_quota is not None:
                key_used, tenant_used = used_today(p)
                limits += _quota_limits(
                    ("key-day", p.daily_quota, key_used),
                    ("tenant-day", p.tenant_daily_quota, tenant_used),
                    seconds_to_midnight,
                )
            verdict = _decide(limits, taken=1)
            if verdict.admitted:
                for _, bucket in buckets:
                    bucket.tokens -= 1
            return verdict

    def admit_tokens(
        self,
        p: Principal,
        now: float,
        seconds_to_midnight: float,
        tokens_today: Callable[[Principal], tuple[int, int]],
    ) -> Verdict:
        """Whether ``p`` may start a request that uses LLM tokens: each token bucket that
        applies holds one, and today's tokens (``tokens_today(p)``: key's, tenant's) are
        under each daily limit. Takes nothing: ``debit_tokens`` does, afterwards."""
        specs = _token_rates(p)
        with self._shared(specs, minute_burst):
            buckets = self._applicable_buckets(specs, now, minute_burst)
        limits = [(_bucket_limit(name, b, b.burst), b.tokens < 1) for name, b in buckets]
        if p.tokens_per_day is not None or p.tenant_tokens_per_day is not None:
            key_used, tenant_used = tokens_today(p)
            limits += _quota_limits(
                ("key-tokens-day", p.tokens_per_day, key_used),
                ("tenant-tokens-day", p.tenant_tokens_per_day, tenant_used),
                seconds_to_midnight,
            )
        return _decide(limits, taken=0)

    def debit_tokens(self, p: Principal, now: float, used: int) -> None:
        """Take the ``used`` tokens of a request of ``p`` from its token buckets."""
        specs = _token_rates(p)
        with self._shared(specs, minute_burst):
            for _, bucket in self._applicable_buckets(specs, now, minute_burst):
                bucket.debit(used)

    def forget(self) -> None:
        """Drop every bucket, e.g. after a limit changed (they refill from full)."""
        self._buckets.clear()
        if self._table is not None:
            with self._table.locked():  # every frontend's buckets restart from full
                generation = (self._table.get("b/generation") or (0.0, 0.0, 0.0))[0]
                self._table.put("b/generation", generation + 1, 0.0, 0.0)

    @contextmanager
    def _shared(self, specs: list[_Spec], burst: Callable[[float], float]) -> Iterator[None]:
        """With a table and a limit set: hold its lock, load the buckets of ``specs``
        from it before the block and store them back after."""
        table = self._table
        if table is None or all(rate is None for _, _, rate in specs):
            yield  # no lock on the common path
            return
        names = [name for _, name, _ in specs]
        with table.locked():
            generation = int((table.get("b/generation") or (0.0, 0.0, 0.0))[0])
            prefix = f"b/{generation}/"
            for name in names:
                shared = table.get(prefix + name)
                if shared is None:
                    self._buckets.pop(name, None)
                else:
                    rate, tokens, updated = shared
                    self._buckets[name] = TokenBucket(rate, burst(rate), tokens, updated)
            yield
            for name in names:
                bucket = self._buckets.get(name)
                if bucket is not None:
                    table.put(prefix + name, bucket.rate, bucket.tokens, bucket.updated)

    def _applicable_buckets(
        self, specs: list[_Spec], now: float, burst: Callable[[float], float]
    ) -> list[tuple[str, TokenBucket]]:
        found = []
        for limit_name, name, rate in specs:
            if rate is None:
                continue
            bucket = self._buckets.get(name)
            if bucket is None or bucket.rate != rate:
                bucket = TokenBucket(rate, burst(rate), burst(rate), now)
                self._buckets[name] = bucket
            bucket.refill(now)
            found.append((limit_name, bucket))
        return found


def _request_rates(p: Principal) -> list[_Spec]:
    return [
        ("key", f"k:{p.key_id}", _clamped_rate(p.rate_limit_rps)),
        ("tenant", f"t:{p.tenant_id}", _clamped_rate(p.tenant_rate_limit_rps)),
    ]


def _token_rates(p: Principal) -> list[_Spec]:
    return [
        ("key-tokens", f"tk:{p.key_id}", _tokens_per_second(p.tokens_per_minute)),
        ("tenant-tokens", f"tt:{p.tenant_id}", _tokens_per_second(p.tenant_tokens_per_minute)),
    ]


def _clamped_rate(stored: float | None) -> float | None:
    return None if stored is None else effective_rate(stored)


def _tokens_per_second(per_minute: int | None) -> float | None:
    return None if per_minute is None else effective_count(per_minute) / 60


def _bucket_limit(name: str, bucket: TokenBucket, limit: float) -> Limit:
    return Limit(name, limit, max(0, int(bucket.tokens)), bucket.wait())


def _quota_limits(
    key: tuple[str, int | None, int], tenant: tuple[str, int | None, int], reset_s: float
) -> list[tuple[Limit, bool]]:
    """Daily limits as (limit, spent); each given as (name, quota or None, used today)."""
    found = []
    for name, quota, used in (key, tenant):
        if quota is None:
            continue
        quota = max(0, min(quota, MAX_QUOTA))
        found.append((Limit(name, quota, max(0, quota - used), reset_s), used >= quota))
    return found


def _decide(limits: list[tuple[Limit, bool]], taken: int) -> Verdict:
    """Refused by the spent limit with room again last; else admitted, ``taken`` from
    each limit, with the one left with least room as ``tightest``."""
    spent = [limit for limit, full in limits if full]
    if spent:
        refusal = max(spent, key=lambda t: t.reset_s)
        return Verdict(False, refusal, refusal.reset_s)
    after = [replace(t, remaining=max(0, t.remaining - taken)) for t, _ in limits]
    tightest = min(after, key=lambda t: t.remaining / max(t.limit, 1), default=None)
    return Verdict(True, tightest)
