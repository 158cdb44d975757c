"""Migrations on a database of an earlier release keep its rows and add what is new; modelbay
keeps its revision in a table of its own, so Optuna's migrations share the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, text

from modelbay.registry import make_engine, migrate
from modelbay.registry.db import MIGRATIONS, VERSION_TABLE


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


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database without tables (PostgreSQL: the session's, emptied)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/registry.db"
        return
    url: str = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = MetaData()
        tables.reflect(conn)
        tables.drop_all(conn)
    engine.dispose()
    yield url


def test_a_database_of_an_earlier_release_moves_its_revision_and_optuna_shares_it(
    empty_database: str,
) -> None:
    engine = make_engine(empty_database)
    _move(engine, "0008")
    with engine.begin() as conn:  # the layout releases before 0009 left
        conn.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        )
        conn.execute(text("INSERT INTO alembic_version VALUES ('0008')"))
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(text("UPDATE tenants SET max_jobs = 3 WHERE name = 'default'"))
    migrate(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()
    assert "parent_id" in {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert _revisions(engine) == [_head()]
    with engine.begin() as conn:
        assert conn.execute(text("SELECT max_jobs FROM tenants")).scalar() == 3

    # Optuna runs its own migrations in the same database, in the table modelbay left.
    storage = optuna.storages.RDBStorage(empty_database)
    study = optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    study.tell(study.ask(), 1.0)
    with engine.begin() as conn:
        optuna_revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert optuna_revision not in {"0008", _head()}

    migrate(engine)  # a restart: Optuna's revision is not modelbay's to move
    assert _revisions(engine) == [_head()]
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            optuna_revision
        )
    assert optuna.load_study(study_name="shared", storage=empty_database).best_value == 1.0
    storage.engine.dispose()
    engine.dispose()


def _revisions(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
