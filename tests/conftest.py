"""Marks each test with its tier from its path (tests/unit, tests/integration)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        for tier in ("unit", "integration"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
