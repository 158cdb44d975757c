"""The garbage-collection lock excludes other processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelbay.registry import make_engine
from modelbay.registry.locks import RegistryLock

HOLDER = """
import sys, time
from modelbay.registry import make_engine
from modelbay.registry.locks import RegistryLock
url, journal = sys.argv[1], sys.argv[2]
with RegistryLock(make_engine(url)).held():
    open(journal, "a").write("other holds\\n")
    print("held", flush=True)
    time.sleep(0.5)
    open(journal, "a").write("other releases\\n")
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def test_a_lock_held_by_another_process_is_waited_for(url: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(journal)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "held"
        with RegistryLock(make_engine(url)).held(), open(journal, "a") as f:
            f.write("this one holds\n")
    finally:
        other.wait(timeout=30)
    assert journal.read_text().splitlines() == [
        "other holds",
        "other releases",
        "this one holds",
    ]


def test_the_lock_can_be_taken_again_once_released(url: str) -> None:
    lock = RegistryLock(make_engine(url))
    for _ in range(3):
        with lock.held():
            pass
