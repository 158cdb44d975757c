"""Usage accounting: requests and compute seconds per key and UTC day.

Counting happens in memory on the request path; ``flush`` (called every few seconds and at
shutdown, off the event loop) adds what was counted to the ``usage`` table, so the
database is never on the hot path. Daily counts start from the table's values for today,
so quotas hold across restarts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

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


class UsageMeter:
    """Counts admitted requests and their server time; thread-safe."""

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
        self._pending: dict[tuple[str, str], list[float]] = {}  # (day, key) -> [tenant, n, s]
        self._day = utc_day(clock())
        self._key_today: dict[str, int] = {}
        self._tenant_today: dict[int, int] = {}
        self._table = table
        """Today's counts of keys and tenants with a daily quota, shared by the frontends
        of the data directory (quotas hold for the server). A count starts from this
        process's own (the database's at start, and what it counted since) when its key or
        tenant is first seen with a quota."""
        self._load_today()

    def now(self) -> float:
        return self._clock()

    def count(self, p: Principal, now: float) -> None:
        """One admitted request of ``p``."""
        day = utc_day(now)
        with self._lock:
            if day != self._day:
                self._day, self._key_today, self._tenant_today = day, {}, {}
            entry = self._pending.setdefault((day, p.key_id), [p.tenant_id, 0, 0.0])
            entry[1] += 1
            self._key_today[p.key_id] = self._key_today.get(p.key_id, 0) + 1
            self._tenant_today[p.tenant_id] = self._tenant_today.get(p.tenant_id, 0) + 1
            if self._table is None or (p.daily_quota is None and p.tenant_daily_quota is None):
                return  # only quotas read the shared counts: no lock on the common path
            with self._table.locked():
                for name, seed in self._shared_names(p, day):
                    shared = self._table.get(name)
                    self._table.put(name, shared[0] + 1 if shared else seed, 0.0, 0.0)

    def add_seconds(self, p: Principal, now: float, seconds: float) -> None:
        with self._lock:
            entry = self._pending.setdefault((utc_day(now), p.key_id), [p.tenant_id, 0, 0.0])
            entry[2] += seconds

    def used_today(self, p: Principal) -> tuple[int, int]:
        """Requests today of ``p``'s key and of its tenant (as counted by this server)."""
        with self._lock:
            if utc_day(self._clock()) != self._day:
                return 0, 0
            if self._table is None:
                return self._key_today.get(p.key_id, 0), self._tenant_today.get(p.tenant_id, 0)
            counts = []
            for name, seed in self._shared_names(p, self._day):
                shared = self._table.get(name)  # a read: no lock needed for one number
                counts.append(int(shared[0]) if shared else seed)
            return counts[0], counts[1]

    def _shared_names(self, p: Principal, day: str) -> list[tuple[str, int]]:
        return [
            (f"u/{day}/k/{p.key_id}", self._key_today.get(p.key_id, 0)),
            (f"u/{day}/t/{p.tenant_id}", self._tenant_today.get(p.tenant_id, 0)),
        ]

    def flush(self) -> None:
        """Add what was counted since the last flush to the table."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            for (day, key_id), (tenant_id, requests, seconds) in pending.items():
                self._add(day, key_id, int(tenant_id), int(requests), seconds)
        except Exception:
            self._restore(pending)  # nothing counted is lost; the next flush retries
            raise

    def _add(self, day: str, key_id: str, tenant_id: int, requests: int, seconds: float) -> None:
        """Add to a row in one statement: other frontends flush into the same rows."""
        match = (UsageRow.day == day, UsageRow.key_id == key_id)
        grow = (
            update(UsageRow)
            .where(*match)
            .values(
                requests=UsageRow.requests + requests,
                compute_seconds=UsageRow.compute_seconds + seconds,
            )
        )
        for _ in range(2):
            with self._sessions.begin() as s:
                if s.execute(grow).rowcount:  # type: ignore[attr-defined]
                    return
            try:
                with self._sessions.begin() as s:
                    s.add(
                        UsageRow(
                            day=day,
                            key_id=key_id,
                            tenant_id=tenant_id,
                            requests=requests,
                            compute_seconds=seconds,
                        )
                    )
                return
            except IntegrityError:
                continue  # another frontend inserted it first: add to theirs
        raise RuntimeError(f"could not record usage of key {key_id} on {day}")

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
                )
                for row, tenant in s.execute(query)
            ]

    def _restore(self, pending: dict[tuple[str, str], list[float]]) -> None:
        with self._lock:
            for key, (tenant_id, requests, seconds) in pending.items():
                entry = self._pending.setdefault(key, [tenant_id, 0, 0.0])
                entry[1] += requests
                entry[2] += seconds

    def _load_today(self) -> None:
        with self._sessions.begin() as s:
            for key_id, tenant_id, requests in s.execute(
                select(UsageRow.key_id, UsageRow.tenant_id, UsageRow.requests).where(
                    UsageRow.day == self._day
                )
            ):
                self._key_today[key_id] = int(requests)
                self._tenant_today[tenant_id] = self._tenant_today.get(tenant_id, 0) + int(requests)
