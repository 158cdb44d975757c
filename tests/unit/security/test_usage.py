"""Usage accounting: counted in memory, flushed to SQL, nothing lost, quotas survive restarts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from modelbay.frontends.shared_table import SharedTable
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


def test_tokens_are_reported_per_key_and_day_after_a_flush(engine: Engine) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    a, b = principal("mb_00000000000a"), principal("mb_00000000000b")
    meter.add_tokens(a, clock.now, 100, 20)
    meter.add_tokens(b, clock.now, 7, 3)
    meter.flush()
    meter.add_tokens(a, clock.now, 1, 2)  # pending: added to the flushed row
    report = meter.report(tenant_id=2)
    assert [(r.key_id, r.requests, r.prompt_tokens, r.completion_tokens) for r in report] == [
        ("mb_00000000000a", 0, 101, 22),
        ("mb_00000000000b", 0, 7, 3),
    ]
    assert meter.tokens_today(a) == (123, 133)
    assert meter.used_today(a) == (0, 0)  # tokens are not requests


def test_a_restart_keeps_todays_tokens_for_token_quotas(engine: Engine) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    meter.count(principal(), clock.now)
    meter.add_tokens(principal(), clock.now, 300, 200)
    meter.flush()
    again = UsageMeter(engine, clock)
    assert again.tokens_today(principal()) == (500, 500)
    assert again.used_today(principal()) == (1, 1)
    clock.now += seconds_to_midnight(clock.now)
    assert again.tokens_today(principal()) == (0, 0)


def test_a_failed_flush_keeps_the_tokens_for_the_next(engine: Engine, tmp_path: Path) -> None:
    clock = Clock(DAY1)
    meter = UsageMeter(engine, clock)
    meter.add_tokens(principal(), clock.now, 5, 6)
    engine.dispose()
    (tmp_path / "registry.db").rename(tmp_path / "away.db")
    (tmp_path / "registry.db").mkdir()
    with pytest.raises(Exception, match="unable to open"):
        meter.flush()
    (tmp_path / "registry.db").rmdir()
    (tmp_path / "away.db").rename(tmp_path / "registry.db")
    meter.add_tokens(principal(), clock.now, 1, 1)
    assert [(r.prompt_tokens, r.completion_tokens) for r in meter.report()] == [(6, 7)]


def test_frontends_sharing_a_table_see_each_others_tokens_under_a_quota(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock(DAY1)
    one = UsageMeter(engine, clock, table=SharedTable(tmp_path / "table"))
    two = UsageMeter(engine, clock, table=SharedTable(tmp_path / "table"))
    limited = replace(principal(), tenant_tokens_per_day=1000)
    one.add_tokens(limited, clock.now, 40, 2)
    two.add_tokens(limited, clock.now, 8, 0)
    assert one.tokens_today(limited) == two.tokens_today(limited) == (50, 50)
    assert one.used_today(limited) == (0, 0)
    one.flush()
    two.flush()
    assert [(r.prompt_tokens, r.completion_tokens) for r in one.report()] == [(48, 2)]
