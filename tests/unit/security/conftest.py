"""A migrated registry database of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from modelbay.registry import make_engine, migrate


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    return engine
