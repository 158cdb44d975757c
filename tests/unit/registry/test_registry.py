"""The registry on real SQLite: numbering, aliases, references and garbage candidates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from modelbay.errors import Conflict, InvalidRequest, NotFound
from modelbay.registry import FileEntry, NewVersion, Registry, make_engine, migrate
from modelbay.registry.db import VERSION_TABLE
from modelbay.registry.tables import Base
from modelbay.tensors import Signature

SIG = Signature.parse(
    {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """The same code on both databases; PostgreSQL starts each test from an empty schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/registry.db"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        conn.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
    migrate(engine)
    migrate(engine)  # idempotent
    yield Registry(engine)
    engine.dispose()


def _version(digest: str) -> NewVersion:
    return NewVersion(
        format="onnx",
        entrypoint="m.onnx",
        files=[FileEntry(path="m.onnx", digest=digest, size=1)],
        signature=SIG,
    )


def test_versions_are_numbered_per_model_and_latest_resolves(registry: Registry) -> None:
    assert registry.add_version("a", _version("1" * 64)).version == 1
    assert registry.add_version("a", _version("2" * 64)).version == 2
    assert registry.add_version("b", _version("3" * 64)).version == 1
    assert registry.get_version("a", "latest").version == 2
    assert registry.get_model("a").latest_version == 2


def test_update_with_none_clears_fields_including_not_null_ones(registry: Registry) -> None:
    registry.create_model("a", description="d", task="t", labels=["x"], tags={"k": "v"})
    cleared = registry.update_model("a", description=None, task=None, labels=None, tags=None)
    assert (cleared.description, cleared.task, cleared.labels, cleared.tags) == ("", None, None, {})
    assert registry.get_model("a") == cleared


def test_alias_moves_and_blocks_deleting_its_target(registry: Registry) -> None:
    registry.add_version("a", _version("1" * 64))
    registry.add_version("a", _version("2" * 64))
    registry.set_alias("a", "production", 1)
    assert registry.get_version("a", "production").version == 1
    with pytest.raises(Conflict, match="production"):
        registry.delete_version("a", 1)
    registry.set_alias("a", "production", 2)
    assert registry.get_version("a", "production").version == 2
    assert registry.delete_version("a", 1) == {"1" * 64}
    assert registry.get_model("a").aliases == {"production": 2}


def test_shared_blob_is_not_a_garbage_candidate(registry: Registry) -> None:
    registry.add_version("a", _version("1" * 64))
    registry.add_version("b", _version("1" * 64))
    assert registry.delete_model("a") == set()
    assert registry.delete_model("b") == {"1" * 64}


def test_unknown_names_and_bad_names_are_clear_errors(registry: Registry) -> None:
    with pytest.raises(NotFound, match="model 'nope' not found"):
        registry.get_model("nope")
    registry.add_version("a", _version("1" * 64))
    with pytest.raises(NotFound, match="has no version 7"):
        registry.get_version("a", 7)
    with pytest.raises(NotFound, match="no version or alias 'staging'"):
        registry.get_version("a", "staging")
    with pytest.raises(InvalidRequest, match="invalid model name"):
        registry.create_model("../etc")
    with pytest.raises(InvalidRequest, match="reserved"):
        registry.set_alias("a", "latest", 1)
    with pytest.raises(Conflict, match="already exists"):
        registry.create_model("a")
