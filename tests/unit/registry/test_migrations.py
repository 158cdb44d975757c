"""Migrations on a database of an earlier release keep its rows and add what is new."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from modelbay.registry import make_engine, migrate
from modelbay.registry.db import MIGRATIONS


def _move(engine: Engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_token_limits_and_counts_are_added_to_existing_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    _move(engine, "0006")
    with engine.begin() as conn:
        conn.execute(text("UPDATE tenants SET daily_quota = 5 WHERE name = 'default'"))
        conn.execute(
            text(
                "INSERT INTO usage (day, tenant_id, key_id, requests, compute_seconds) "
                "VALUES ('2026-11-30', 1, 'mb_000000000001', 3, 0.5)"
            )
        )
    migrate(engine)
    columns = {
        table: {c["name"] for c in inspect(engine).get_columns(table)}
        for table in ("tenants", "api_keys")
    }
    assert all({"tokens_per_minute", "tokens_per_day"} <= names for names in columns.values())
    with engine.begin() as conn:
        tenant = conn.execute(
            text("SELECT daily_quota, tokens_per_minute, tokens_per_day FROM tenants")
        ).one()
        usage = conn.execute(
            text("SELECT requests, prompt_tokens, completion_tokens FROM usage")
        ).one()
    assert tuple(tenant) == (5, None, None)
    assert tuple(usage) == (3, 0, 0)
    _move(engine, "0006", down=True)
    assert "prompt_tokens" not in {c["name"] for c in inspect(engine).get_columns("usage")}
    migrate(engine)
    engine.dispose()
