"""The files the frontends of one data directory share: change counters and a table."""

from __future__ import annotations

from pathlib import Path

from modelbay.frontends.epochs import Domain, SharedEpochs
from modelbay.frontends.shared_table import SharedTable


def test_a_bump_runs_the_other_frontends_handlers_once_and_not_its_own(tmp_path: Path) -> None:
    mine, theirs = SharedEpochs(tmp_path / "epochs"), SharedEpochs(tmp_path / "epochs")
    seen: list[str] = []
    mine.on_change(Domain.ACCESS, lambda: seen.append("mine"))
    theirs.on_change(Domain.ACCESS, lambda: seen.append("theirs"))
    theirs.on_change(Domain.MODELS, lambda: seen.append("theirs-models"))
    mine.bump(Domain.ACCESS)
    mine.sync()
    theirs.sync()
    theirs.sync()
    assert seen == ["theirs"]
    theirs.bump(Domain.MODELS)
    mine.bump(Domain.MODELS)  # both changed models: each hears the other
    theirs.sync()
    assert seen == ["theirs", "theirs-models"]


def test_names_are_shared_and_a_full_probe_path_takes_the_home_slot(tmp_path: Path) -> None:
    one, two = SharedTable(tmp_path / "table", slots=4), SharedTable(tmp_path / "table", slots=4)
    with one.locked():
        one.put("a", 1.0, 2.0, 3.0)
    with two.locked():
        assert two.get("a") == (1.0, 2.0, 3.0)
        assert two.get("b") is None
        for n in range(10):  # more names than slots: none fails, the latest wins
            two.put(f"n{n}", float(n), 0.0, 0.0)
        assert two.get("n9") == (9.0, 0.0, 0.0)
