"""resolve_search: a hyperparameter search's space checked with the training spec's own rules
(a 422 naming ``search.space.NAME``), the default spaces, the baseline trial, and trials
drawn define-by-run (a hyperparameter that does not apply is not drawn)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from tests.unit.training.test_spec import DIABETES_SCHEMA, DIGITS_SCHEMA

from modelbay.errors import InvalidRequest
from modelbay.training.search_space import (
    SearchOptions,
    SearchSpec,
    base_specs,
    contains,
    resolve_search,
    sample,
)
from modelbay.training.spec import resolve_spec


def _search(
    family: str = "mlp", params: dict[str, Any] | None = None, **options: Any
) -> SearchSpec:
    return resolve_search(
        family, "target", params or {}, SearchOptions.model_validate(options), DIGITS_SCHEMA
    )


def _refused(
    field: str, family: str = "mlp", params: dict[str, Any] | None = None, **options: Any
) -> str:
    with pytest.raises(InvalidRequest) as caught:
        _search(family, params, **options)
    assert caught.value.status == 422
    assert caught.value.param == field, caught.value.message
    return caught.value.message


def test_the_default_space_holds_the_family_defaults_and_trial_0_trains_them() -> None:
    search = _search("mlp")
    assert search.metric == "val_accuracy"
    assert search.families == ["mlp"]
    assert set(search.space) == {"lr", "batch_size", "weight_decay", "hidden", "dropout"}
    assert search.space["lr"] == {"low": 1e-4, "high": 1e-2, "log": True, "step": None}
    assert search.baseline == {
        "lr": 1e-3,
        "batch_size": 32,
        "weight_decay": 0.0,
        "hidden": "128",
        "dropout": 0.0,
    }
    assert resolve_spec("mlp", "target", search.baseline, DIGITS_SCHEMA) == resolve_spec(
        "mlp", "target", {}, DIGITS_SCHEMA
    )
    cnn = _search("cnn")
    assert cnn.space["lr_schedule"] == {"choices": ["none", "cosine"]}
    assert cnn.baseline is not None
    assert cnn.baseline["lr_schedule"] == "cosine"
    assert cnn.pruner.warmup_epochs == 2  # a tenth of cnn's 25 epochs


def test_fixed_parameters_leave_the_default_space_and_apply_to_every_trial() -> None:
    search = _search("logistic", {"epochs": "5", "lr": 0.05})
    assert "lr" not in search.space
    assert search.params == {"epochs": "5", "lr": 0.05}
    assert search.pruner.warmup_epochs == 1


def test_a_given_space_is_normalised_and_its_values_checked() -> None:
    search = _search(
        space={
            "lr": {"low": 1e-4, "high": 0.1, "log": True},
            "batch_size": [16, "64", "FULL"],
            "hidden": ["64", [128, 64], "256, 128"],
            "epochs": {"low": 2, "high": 10, "step": 2},
            "optimizer": ["ADAM", "sgd"],
            "momentum": {"low": 0.5, "high": 0.99},
        }
    )
    assert search.space["batch_size"] == {"choices": [16, 64, "full"]}
    assert search.space["hidden"] == {"choices": ["64", "128,64", "256,128"]}
    assert search.space["epochs"] == {"low": 2, "high": 10, "log": False, "step": 2}
    assert list(search.space)[0] == "optimizer"  # drawn first: momentum depends on it
    assert search.baseline is None  # the defaults (epochs 30) lie outside this space


@pytest.mark.parametrize(
    ("space", "field", "words"),
    [
        ({"seed": [1, 2]}, "search.space.seed", "cannot be searched"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "search.space.lr", "below high"),
        ({"lr": {"low": 0, "high": 0.1, "log": True}}, "search.space.lr", "low > 0"),
        ({"lr": {"low": 1e-3, "high": 20}}, "search.space.lr", "expected a number > 0"),
        ({"lr": [0.1], "dropout": {"choices": [0.1], "low": 0}}, "search.space.dropout", "either"),
        ({"epochs": {"low": 1.5, "high": 4}}, "search.space.epochs", "whole numbers"),
        ({"optimizer": {"low": 1, "high": 2}}, "search.space.optimizer", "takes choices"),
        ({"optimizer": ["adam", "rmsprop"]}, "search.space.optimizer", "'rmsprop' is refused"),
        ({"dropout": {"low": 0, "high": 1}}, "search.space.dropout", "1.0 is refused"),
        ({"channels": ["8,16"]}, "search.space.channels", "applies to none"),
        ({"momentum": {"low": 0.5, "high": 0.9}}, "search.space.momentum", "applies to none"),
        ({"batch_size": [16, [1, 2]]}, "search.space.batch_size", "a list is a choice"),
    ],
)
def test_a_bad_dimension_is_refused_naming_it(
    space: dict[str, Any], field: str, words: str
) -> None:
    assert words in _refused(field, space=space)


def test_fixed_and_searched_at_once_is_refused() -> None:
    assert "also fixed" in _refused("search.space.lr", params={"lr": 0.1}, space={"lr": [0.1]})


def test_the_fixed_parameters_must_suit_every_family() -> None:
    _refused("params.hidden", "mlp", {"hidden": 64}, families=["mlp", "logistic"])
    _refused("params.strategy", "mlp", {"strategy": "ddp"})
    _refused("params.validation_split", "mlp", {"validation_split": 0})


def test_families_are_a_dimension_of_one_task() -> None:
    search = _search("mlp", families=["mlp", "logistic"])
    assert search.families == ["mlp", "logistic"]
    assert "hidden" in search.space  # drawn only when the family drawn is mlp
    from_space = _search("logistic", space={"family": ["mlp", "logistic"], "lr": [0.01]})
    assert from_space.families == ["mlp", "logistic"]
    assert from_space.baseline == {"family": "logistic", "lr": 0.01}
    _refused("family", "cnn", families=["mlp", "logistic"])
    _refused("search.families", "mlp", families=["mlp", "xgboost"])
    _refused("search.space.family", "mlp", families=["mlp"], space={"family": ["logistic"]})
    assert "one task" in _refused("search.families", "linear", families=["linear", "mlp"])


def test_regression_maximises_val_r2() -> None:
    search = resolve_search("linear", "target", {}, SearchOptions(), DIABETES_SCHEMA)
    assert search.metric == "val_r2"
    assert search.space["batch_size"]["choices"][-1] == "full"  # linear's default batch
    assert search.baseline is not None
    assert search.baseline["batch_size"] == "full"


def test_contains_reads_ranges_and_choices() -> None:
    assert contains({"low": 0.0, "high": 0.5}, 0.5)
    assert not contains({"low": 0.0, "high": 0.5}, 0.6)
    assert not contains({"low": 1, "high": 4}, "full")
    assert contains({"choices": [16, "full"]}, "full")


def test_trials_draw_only_what_applies_to_the_family_and_optimizer_drawn() -> None:
    search = _search(
        "mlp",
        {"epochs": 3},
        families=["mlp", "logistic"],
        space={
            "optimizer": ["adam", "sgd"],
            "momentum": {"low": 0.5, "high": 0.9},
            "hidden": ["32", "64,32"],
            "lr": {"low": 1e-3, "high": 1e-1, "log": True},
        },
    )
    bases = base_specs(search.families, "target", search.params, DIGITS_SCHEMA)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    seen: set[tuple[str, str]] = set()
    for _ in range(40):
        trial = study.ask()
        family, params = sample(trial, search, bases)
        assert ("hidden" in params) == (family == "mlp")
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        spec = resolve_spec(family, "target", {**search.params, **params}, DIGITS_SCHEMA)
        assert (spec.family, spec.epochs) == (family, 3)  # always a valid spec
        seen.add((family, params["optimizer"]))
        study.tell(trial, 0.5)
    assert len(seen) == 4
