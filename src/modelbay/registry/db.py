"""Engine creation and migrations; SQLite runs in WAL mode, PostgreSQL uses the same code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "modelbay_schema_version"
"""Where modelbay's Alembic keeps its revision. Not Alembic's default ``alembic_version``:
Optuna's storage (hyperparameter searches, in the same database) keeps its own revision
there."""
LEGACY_VERSION_TABLE = "alembic_version"


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite also the file's directory, WAL and a busy timeout."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        _adopt_legacy_version(connection, config)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _adopt_legacy_version(connection: Connection, config: Config) -> None:
    """Move the revision a database of an earlier release keeps in ``alembic_version`` to
    ``VERSION_TABLE``, if it is one of modelbay's (another tool's revision stays there)."""
    tables = set(inspect(connection).get_table_names())
    if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
        return
    ours = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    held = connection.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalars()
    revisions = [r for r in held if r in ours]
    if not revisions:
        return
    connection.execute(
        text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )
    for revision in revisions:
        connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:r)"), {"r": revision})
        connection.execute(
            text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = :r"), {"r": revision}
        )
    if connection.execute(text(f"SELECT COUNT(*) FROM {LEGACY_VERSION_TABLE}")).scalar() == 0:
        connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
