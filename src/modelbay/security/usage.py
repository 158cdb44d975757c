"""Usage accounting: requests, compute seconds, LLM tokens and training time per key and UTC day.

Counting happens in memory on the request path; ``flush`` (called every few seconds and at
shutdown, off the event loop) adds what was counted to the ``usage`` table, so the
database is never on the hot path. Daily counts of requests and of tokens start from the
table's values for today, so quotas hold across restarts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelbay.frontends.shared_table import SharedTable
from modelbay.registry.tables import TenantRow, UsageRow
from modelbay.security.principals import Principal


class UsageRecord(BaseModel):
    """One key's use on one UTC day."""

    day: str
    tenant: str
    key_id: str
    requests: int
    compute_seconds: float
    prompt_tokens: int
    completion_tokens: int
    training_seconds: float = 0.0


_DAY_S = 86_400
_last_day: tuple[int, str] = (-1, "")


def utc_day(epoch_s: float) -> str:
    """``YYYY-MM-DD`` of a Unix time in UTC (cached: this runs on every request)."""
    global _last_day
    index = int(epoch_s // _DAY_S)
    if index != _last_day[0]:
        _last_day = (index, datetime.fromtimestamp(index * _DAY_S, UTC).strftime("%Y-%m-%d"))
    return _last_day[1]


def seconds_to_midnight(epoch_s: float) -> float:
    """Seconds until the next UTC midnight (Unix time has no leap seconds)."""
    return _DAY_S - epoch_s % _DAY_S


@dataclass
class _Counts:
    """What one key used on one day and is not in the table yet."""

    tenant_id: int
    requests: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    training_seconds: float = 0.0

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.training_seconds += other.training_seconds


@dataclass
class _Today:
    """Today's count of one thing (requests, tokens) per key and per tenant, with the
    names of those counts in the shared table."""

    prefix: str
    keys: dict[str, int] = field(default_factory=dict)
    tenants: dict[int, int] = field(default_factory=dict)

    def add(self, key_id: str, tenant_id: int, n: int) -> None:
        self.keys[key_id] = self.keys.get(key_id, 0) + n
        self.tenants[tenant_id] = self.tenants.get(tenant_id, 0) + n

    def shared_names(self, p: Principal, day: str) -> list[tuple[str, int]]:
        """(name in the table, this process's count to start it from), key's then tenant's."""
        return [
            (f"{self.prefix}/{day}/k/{p.key_id}", self.keys.get(p.key_id, 0)),
            (f"{self.prefix}/{day}/t/{p.tenant_id}", self.tenants.get(p.tenant_id, 0)),
        ]


class UsageMeter:
    """Counts admitted requests, their server time and their LLM tokens; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        *,
        table: SharedTable | None = None,
    ):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Counts] = {}  # (day, key_id) -> counts
        self._day = utc_day(clock())
        self._requests = _Today("u")
        self._tokens = _Today("n")
        self._table = table
        """Today's counts of keys and tenants with a daily limit, shared by the frontends
        of the data directory (quotas hold for the server). A count starts from this
        process's own (the database's at start, and what it counted since) when its key or
        tenant is first seen with a limit."""
        self._load_today()

    def now(self) -> float:
        return self._clock()

    def count(self, p: Principal, now: float) -> None:
        """One admitted request of ``p``."""
        day = utc_day(now)
        with self._lock:
            self._roll(day)
            self._entry(p, day).requests += 1
            quota = p.daily_quota is not None or p.tenant_daily_quota is not None
            self._add_today(self._requests, p, day, 1, shared=quota)

    def add_seconds(self, p: Principal, now: float, seconds: float) -> None:
        with self._lock:
            self._entry(p, utc_day(now)).seconds += seconds

    def add_tokens(self, p: Principal, now: float, prompt: int, completion: int) -> None:
        """The LLM tokens a request of ``p`` used: its prompt's and those it generated."""
        day = utc_day(now)
        with self._lock:
            self._roll(day)
            entry = self._entry(p, day)
            entry.prompt_tokens += prompt
            entry.completion_tokens += completion
            quota = p.tokens_per_day is not None or p.tenant_tokens_per_day is not None
            self._add_today(self._tokens, p, day, prompt + completion, shared=quota)

    def used_today(self, p: Principal) -> tuple[int, int]:
        """Requests today of ``p``'s key and of its tenant (as counted by this server)."""
        return self._today_of(self._requests, p)

    def tokens_today(self, p: Principal) -> tuple[int, int]:
        """LLM tokens today of ``p``'s key and of its tenant (as counted by this server)."""
        return self._today_of(self._tokens, p)

    def _roll(self, day: str) -> None:
        """Start today's counts afresh on a new UTC day (hold ``_lock``)."""
        if day != self._day:
            self._day, self._requests, self._tokens = day, _Today("u"), _Today("n")

    def _entry(self, p: Principal, day: str) -> _Counts:
        """``p``'s pending counts of ``day`` (hold ``_lock``)."""
        entry = self._pending.get((day, p.key_id))
        if entry is None:
            entry = self._pending[(day, p.key_id)] = _Counts(p.tenant_id)
        return entry

    def _add_today(self, today: _Today, p: Principal, day: str, n: int, *, shared: bool) -> None:
        """Count ``n`` for ``p`` today, in the table too when a limit reads it (hold
        ``_lock``)."""
        today.add(p.key_id, p.tenant_id, n)
        if self._table is None or not shared:
            return  # only limits read the shared counts: no lock on the common path
        with self._table.locked():
            for name, seed in today.shared_names(p, day):
                found = self._table.get(name)
                self._table.put(name, found[0] + n if found else seed, 0.0, 0.0)

    def _today_of(self, today: _Today, p: Principal) -> tuple[int, int]:
        with self._lock:
            if utc_day(self._clock()) != self._day:
                return 0, 0
            if self._table is None:
                return today.keys.get(p.key_id, 0), today.tenants.get(p.tenant_id, 0)
            counts = []
            for name, seed in today.shared_names(p, self._day):
                found = self._table.get(name)  # a read: no lock needed for one number
                counts.append(int(found[0]) if found else seed)
            return counts[0], counts[1]

    def flush(self) -> None:
        """Add what was counted since the last flush to the table."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            for (day, key_id), counts in pending.items():
                self._add(day, key_id, counts)
        except Exception:
            self._restore(pending)  # nothing counted is lost; the next flush retries
            raise

    def _add(self, day: str, key_id: str, counts: _Counts) -> None:
        add_usage(self._sessions, day, key_id, counts)

    def report(
        self,
        *,
        tenant_id: int | None = None,
        key_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[UsageRecord]:
        """Flushed and pending usage, newest day first; filters are optional."""
        self.flush()
        with self._sessions.begin() as s:
            query = select(UsageRow, TenantRow.name).join(TenantRow)
            if tenant_id is not None:
                query = query.where(UsageRow.tenant_id == tenant_id)
            if key_id is not None:
                query = query.where(UsageRow.key_id == key_id)
            if since is not None:
                query = query.where(UsageRow.day >= since)
            if until is not None:
                query = query.where(UsageRow.day <= until)
            query = query.order_by(UsageRow.day.desc(), TenantRow.name, UsageRow.key_id)
            return [
                UsageRecord(
                    day=row.day,
                    tenant=tenant,
                    key_id=row.key_id,
                    requests=row.requests,
                    compute_seconds=round(row.compute_seconds, 6),
                    prompt_tokens=row.prompt_tokens,
                    completion_tokens=row.completion_tokens,
                    training_seconds=round(row.training_seconds, 3),
                )
                for row, tenant in s.execute(query)
            ]

    def _restore(self, pending: dict[tuple[str, str], _Counts]) -> None:
        with self._lock:
            for key, counts in pending.items():
                self._pending.setdefault(key, _Counts(counts.tenant_id)).add(counts)

    def _load_today(self) -> None:
        columns = (
            UsageRow.key_id,
            UsageRow.tenant_id,
            UsageRow.requests,
            UsageRow.prompt_tokens + UsageRow.completion_tokens,
        )
        with self._sessions.begin() as s:
            for key_id, tenant_id, requests, tokens in s.execute(
                select(*columns).where(UsageRow.day == self._day)
            ):
                self._requests.add(key_id, tenant_id, int(requests))
                self._tokens.add(key_id, tenant_id, int(tokens))


def add_usage(sessions: sessionmaker[Session], day: str, key_id: str, counts: _Counts) -> None:
    """Add to a row in one statement: other frontends (and job processes) add to the same
    rows."""
    match = (UsageRow.day == day, UsageRow.key_id == key_id)
    grow = (
        update(UsageRow)
        .where(*match)
        .values(
            requests=UsageRow.requests + counts.requests,
            compute_seconds=UsageRow.compute_seconds + counts.seconds,
            prompt_tokens=UsageRow.prompt_tokens + counts.prompt_tokens,
            completion_tokens=UsageRow.completion_tokens + counts.completion_tokens,
            training_seconds=UsageRow.training_seconds + counts.training_seconds,
        )
    )
    for _ in range(2):
        with sessions.begin() as s:
            if s.execute(grow).rowcount:  # type: ignore[attr-defined]
                return
        try:
            with sessions.begin() as s:
                s.add(
                    UsageRow(
                        day=day,
                        key_id=key_id,
                        tenant_id=counts.tenant_id,
                        requests=counts.requests,
                        compute_seconds=counts.seconds,
                        prompt_tokens=counts.prompt_tokens,
                        completion_tokens=counts.completion_tokens,
                        training_seconds=counts.training_seconds,
                    )
                )
            return
        except IntegrityError:
            continue  # another process inserted it first: add to theirs
    raise RuntimeError(f"could not record usage of key {key_id} on {day}")


def add_training_seconds(
    sessions: sessionmaker[Session], key_id: str, tenant_id: int, seconds: float
) -> None:
    """Meter ``seconds`` of training CPU time to ``key_id`` today (UTC)."""
    day = utc_day(time.time())
    add_usage(sessions, day, key_id, _Counts(tenant_id, training_seconds=seconds))


def training_seconds_today(sessions: sessionmaker[Session], tenant_id: int) -> float:
    """CPU seconds of training metered to ``tenant_id`` today (UTC)."""
    day = utc_day(time.time())
    with sessions.begin() as s:
        total = s.scalar(
            select(func.sum(UsageRow.training_seconds)).where(
                UsageRow.day == day, UsageRow.tenant_id == tenant_id
            )
        )
    return float(total or 0.0)
