"""Usage accounting: counted in memory, flushed to SQL, nothing lost, quotas survive restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from modelbay.security.keys import KeyStore
from modelbay.security.principals import ROLE_SCOPES, Principal, Role
from modelbay.security.usage import UsageMeter, seconds_to_midnight, utc_day

DAY1 = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _acme(engine: Engine) -> None:
    KeyStore(engine).create_tenant("acme")


def principal(key_id: str = "mb_00000000000a") -> Principal:
    return Principal(key_id, "k", 2, "acme", Role.CONSUMER, ROLE_SCOPES[Role.CONSUMER])


def test_counts_and_seconds_are_reported_per_key_and_day(engine: Engine) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    a, b = principal("mb_00000000000a"), principal("mb_00000000000b")
    for _ in range(3):
        meter.count(a, clock.now)
        meter.add_seconds(a, clock.now, 0.25)
    meter.count(b, clock.now)
    meter.flush()
    meter.count(a, clock.now)  # pending, not yet flushed: a report flushes first
    report = meter.report(tenant_id=2)
    assert [(r.key_id, r.requests, r.compute_seconds) for r in report] == [
        ("mb_00000000000a", 4, 0.75),
        ("mb_00000000000b", 1, 0.0),
    ]
    assert {r.day for r in report} == {utc_day(DAY1)}
    assert meter.used_today(a) == (4, 5)


def test_daily_counts_start_again_at_utc_midnight(engine: Engine) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    meter.count(principal(), clock.now)
    clock.now += seconds_to_midnight(clock.now) + 1
    assert meter.used_today(principal()) == (0, 0)
    meter.count(principal(), clock.now)
    assert meter.used_today(principal()) == (1, 1)
    assert [r.requests for r in meter.report()] == [1, 1]  # one row per day


def test_a_restart_keeps_todays_counts_for_quotas(engine: Engine) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    for _ in range(7):
        meter.count(principal(), clock.now)
    meter.flush()
    assert UsageMeter(engine, clock).used_today(principal()) == (7, 7)


def test_a_failed_flush_keeps_the_counts_for_the_next(engine: Engine, tmp_path: Path) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    meter.count(principal(), clock.now)
    engine.dispose()
    (tmp_path / "registry.db").rename(tmp_path / "away.db")
    (tmp_path / "registry.db").mkdir()  # the database cannot be opened now
    with pytest.raises(Exception, match="unable to open"):
        meter.flush()
    (tmp_path / "registry.db").rmdir()
    (tmp_path / "away.db").rename(tmp_path / "registry.db")
    meter.count(principal(), clock.now)
    assert [r.requests for r in meter.report()] == [2]
