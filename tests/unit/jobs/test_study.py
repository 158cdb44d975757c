"""A search's Optuna study lives in the registry database, under the search's name, and a
coordinator that starts again loads it as it was."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sqlalchemy import inspect

from modelbay.jobs.study import load_study, make_pruner, study_name
from modelbay.registry import make_engine, migrate
from modelbay.settings import Settings
from modelbay.training.search_space import PrunerOptions


def test_the_study_is_kept_in_the_registry_database_and_loaded_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.registry_url)
    migrate(engine)
    study = load_study(settings, 7)
    assert study.study_name == study_name(7) == "modelbay-search-7"
    trial = study.ask()
    trial.report(0.5, 1)
    study.tell(trial, 0.75)
    tables = set(inspect(engine).get_table_names())
    assert {"studies", "trials", "trial_intermediate_values", "jobs"} <= tables
    again = load_study(settings, 7)  # a coordinator that restarted
    assert [t.value for t in again.trials] == [0.75]
    assert again.trials[0].intermediate_values == {1: 0.5}
    assert again.direction == optuna.study.StudyDirection.MAXIMIZE
    migrate(engine)  # Optuna's tables and revision do not disturb modelbay's migrations
    engine.dispose()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("percentile", optuna.pruners.PercentilePruner),
        ("halving", optuna.pruners.SuccessiveHalvingPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_each_pruner_kind_is_optunas(kind: str, expected: type) -> None:
    options = PrunerOptions.model_validate({"kind": kind, "warmup_epochs": 2})
    assert isinstance(make_pruner(options), expected)
