"""resolve_spec: CLI/JSON parameters to a checked TrainSpec, or a 422 naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

from modelbay.errors import InvalidRequest
from modelbay.training.spec import (
    FAMILIES,
    FAMILY_DEFAULTS,
    TrainSpec,
    applies,
    resolve_spec,
)
from modelbay.training.table import ColumnStats, DatasetSchema


def _column(name: str, values: np.ndarray) -> ColumnStats:
    integer = np.issubdtype(values.dtype, np.integer)
    return {
        "name": name,
        "dtype": "int64" if integer else "float64",
        "numeric": True,
        "missing": 0,
        "unique": len(np.unique(values)),
    }


def _schema(x: np.ndarray, y: np.ndarray, names: list[str]) -> DatasetSchema:
    columns = [_column(name, x[:, i]) for i, name in enumerate(names)]
    return {
        "format": "csv",
        "kind": "tabular",
        "rows": len(y),
        "columns": [*columns, _column("target", y)],
    }


DIGITS = load_digits()
DIGITS_SCHEMA = _schema(DIGITS.data, DIGITS.target, [f"pixel_{i}" for i in range(64)])
DIABETES = load_diabetes()
DIABETES_SCHEMA = _schema(DIABETES.data, DIABETES.target, list(DIABETES.feature_names))

MIXED: DatasetSchema = {
    "format": "csv",
    "kind": "tabular",
    "rows": 100,
    "columns": [
        {"name": "a", "dtype": "float64", "numeric": True, "unique": 100},
        {"name": "b", "dtype": "float64", "numeric": True, "unique": 90},
        {"name": "city", "dtype": "object", "numeric": False, "unique": 4},
        {"name": "price", "dtype": "float64", "numeric": True, "unique": 97},
        {"name": "grade", "dtype": "float64", "numeric": True, "unique": 3,
         "top": {"1.0": 40, "2.0": 35, "3.0": 25}},
    ],
}  # fmt: skip

IMAGES: DatasetSchema = {
    "format": "cifar10",
    "kind": "images",
    "rows": 50,
    "columns": [{"name": "label", "dtype": "int64", "numeric": True, "unique": 10}],
    "image_shape": [3, 32, 32],
    "classes": [f"c{i}" for i in range(10)],
}


def test_defaults_per_family_and_json_round_trip() -> None:
    for family in FAMILIES:
        schema = DIABETES_SCHEMA if family == "linear" else DIGITS_SCHEMA
        spec = resolve_spec(family, "target", {}, schema)
        assert spec.task == ("regression" if family == "linear" else "classification")
        assert spec.features == [f"pixel_{i}" for i in range(64)] or family == "linear"
        for name, value in FAMILY_DEFAULTS[family].items():
            assert getattr(spec, name) == value, (family, name)
        data = spec.model_dump(mode="json")
        assert TrainSpec.model_validate(data) == spec
    assert resolve_spec("cnn", "target", {}, DIGITS_SCHEMA).input_shape == [1, 8, 8]
    assert resolve_spec("gru", "target", {}, DIGITS_SCHEMA).steps == 8
    assert resolve_spec("lstm", "target", {}, DIABETES_SCHEMA).steps == 10  # 10 steps of 1
    assert resolve_spec("mlp", "target", {}, DIABETES_SCHEMA).task == "regression"


def test_cli_strings_are_coerced() -> None:
    spec = resolve_spec(
        "mlp",
        "target",
        {
            "lr": "0.05",
            "batch_size": "FULL",
            "hidden": "128, 64",
            "epochs": "3",
            "dropout": "0.5",
            "optimizer": "SGD",
            "momentum": "0.5",
            "lr_schedule": "step",
            "step_size": "2",
            "gamma": "0.5",
            "early_stopping": "2",
            "features": "pixel_1,pixel_2",
            "seed": 7,
        },
        DIGITS_SCHEMA,
    )
    assert (spec.lr, spec.batch_size, spec.hidden, spec.epochs) == (0.05, "full", [128, 64], 3)
    assert (spec.optimizer, spec.momentum, spec.step_size, spec.gamma) == ("sgd", 0.5, 2, 0.5)
    assert (spec.features, spec.seed) == (["pixel_1", "pixel_2"], 7)
    assert resolve_spec("logistic", "target", {"batch_size": "1"}, DIGITS_SCHEMA).batch_size == 1
    json_values = {"hidden": [32], "features": ["pixel_3"], "batch_size": 8}
    spec = resolve_spec("mlp", "target", json_values, DIGITS_SCHEMA)
    assert (spec.hidden, spec.features, spec.batch_size) == ([32], ["pixel_3"], 8)
    cnn = resolve_spec("cnn", "target", {"input_shape": "4x4x4"}, DIGITS_SCHEMA)
    assert cnn.input_shape == [4, 4, 4]


def test_task_is_inferred_from_the_target() -> None:
    assert resolve_spec("mlp", "grade", {}, MIXED).task == "classification"  # whole numbers
    assert resolve_spec("mlp", "price", {}, MIXED).task == "regression"
    assert resolve_spec("mlp", "city", {}, MIXED).task == "classification"  # not numeric
    assert resolve_spec("mlp", "city", {}, MIXED).features == ["a", "b", "price", "grade"]
    assert resolve_spec("mlp", "grade", {"task": "regression"}, MIXED).task == "regression"


def test_image_datasets() -> None:
    cnn = resolve_spec("cnn", "label", {}, IMAGES)
    assert (cnn.input_shape, cnn.features, cnn.task) == ([3, 32, 32], None, "classification")
    assert resolve_spec("gru", "label", {}, IMAGES).steps == 32
    assert resolve_spec("mlp", "label", {}, IMAGES).features is None


CASES: list[tuple[str, str, dict[str, Any], DatasetSchema, str, str]] = [
    # family, target, params, schema, param named, fragment of the message
    ("forest", "target", {}, DIGITS_SCHEMA, "family", "linear, logistic, perceptron"),
    ("mlp", "nope", {}, DIGITS_SCHEMA, "target", "pixel_0, pixel_1"),
    ("cnn", "target", {}, IMAGES, "target", "'label'"),
    ("mlp", "target", {"colour": "red"}, DIGITS_SCHEMA, "params.colour", "batch_size"),
    ("mlp", "target", {"lr": "-1"}, DIGITS_SCHEMA, "params.lr", "> 0 and <= 10"),
    ("mlp", "target", {"lr": "fast"}, DIGITS_SCHEMA, "params.lr", "> 0 and <= 10"),
    ("mlp", "target", {"optimizer": "rmsprop"}, DIGITS_SCHEMA, "params.optimizer", "adamw"),
    ("mlp", "target", {"batch_size": 0}, DIGITS_SCHEMA, "params.batch_size", "or full"),
    ("mlp", "target", {"batch_size": "half"}, DIGITS_SCHEMA, "params.batch_size", "or full"),
    ("mlp", "target", {"epochs": "0"}, DIGITS_SCHEMA, "params.epochs", "1 to 10000"),
    ("mlp", "target", {"dropout": 1}, DIGITS_SCHEMA, "params.dropout", "< 1"),
    ("mlp", "target", {"lr_schedule": "linear"}, DIGITS_SCHEMA, "params.lr_schedule", "onecycle"),
    ("mlp", "target", {"hidden": "a,b"}, DIGITS_SCHEMA, "params.hidden", "128,64"),
    ("mlp", "target", {"class_weights": "x"}, DIGITS_SCHEMA, "params.class_weights", "balanced"),
    ("mlp", "target", {"monitor": "loss"}, DIGITS_SCHEMA, "params.monitor", "val_loss"),
    ("mlp", "target", {"task": "ranking"}, DIGITS_SCHEMA, "params.task", "regression"),
    ("mlp", "target", {"seed": -1}, DIGITS_SCHEMA, "params.seed", ">= 0"),
    ("cnn", "target", {"input_shape": "8x8"}, DIGITS_SCHEMA, "params.input_shape", "CxHxW"),
    ("mlp", "target", {"features": "pixel_1,zz"}, DIGITS_SCHEMA, "params.features", "'zz'"),
    ("mlp", "price", {"features": "a,city"}, MIXED, "params.features", "'city'"),
    ("mlp", "price", {"features": "a,price"}, MIXED, "params.features", "target"),
    ("mlp", "label", {"features": "a"}, IMAGES, "params.features", "image"),
    ("linear", "target", {"task": "classification"}, DIGITS_SCHEMA, "params.task", "regression"),
    ("logistic", "target", {}, DIABETES_SCHEMA, "target", "214 distinct values"),
    ("mlp", "price", {"task": "classification"}, MIXED, "target", "97 distinct values"),
    ("linear", "city", {}, MIXED, "target", "not numeric"),
    ("linear", "label", {}, IMAGES, "family", "regression"),
    ("cnn", "price", {}, MIXED, "params.input_shape", "perfect square"),
    ("cnn", "target", {"input_shape": "3x4x4"}, DIGITS_SCHEMA, "params.input_shape", "64"),
    ("cnn", "target", {"input_shape": "4x2x8"}, DIGITS_SCHEMA, "params.input_shape", "4x4"),
    ("cnn", "label", {"input_shape": "1x32x96"}, IMAGES, "params.input_shape", "3x32x32"),
    ("mlp", "target", {"input_shape": "1x8x8"}, DIGITS_SCHEMA, "params.input_shape", "cnn"),
    ("mlp", "target", {"hidden_size": 8}, DIGITS_SCHEMA, "params.hidden_size", "rnn"),
    ("gru", "target", {"hidden": 8}, DIGITS_SCHEMA, "params.hidden", "mlp"),
    ("mlp", "target", {"channels": "8"}, DIGITS_SCHEMA, "params.channels", "resnet"),
    ("logistic", "target", {"dropout": 0.1}, DIGITS_SCHEMA, "params.dropout", "mlp"),
    ("gru", "target", {"steps": 3}, DIGITS_SCHEMA, "params.steps", "64 features"),
    ("gru", "label", {"steps": 3}, IMAGES, "params.steps", "32 rows"),
    ("mlp", "target", {"momentum": 0.5}, DIGITS_SCHEMA, "params.momentum", "sgd"),
    ("mlp", "target", {"step_size": 3}, DIGITS_SCHEMA, "params.step_size", "step or plateau"),
    ("mlp", "target", {"gamma": 0.5}, DIGITS_SCHEMA, "params.gamma", "step or plateau"),
    ("linear", "target", {"class_weights": "balanced"}, DIABETES_SCHEMA,
     "params.class_weights", "classification"),
    ("mlp", "target", {"monitor": "val_r2"}, DIGITS_SCHEMA, "params.monitor", "val_accuracy"),
    ("linear", "target", {"monitor": "val_accuracy"}, DIABETES_SCHEMA, "params.monitor", "val_r2"),
    ("mlp", "target", {"validation_split": 0.5, "test_split": 0.4}, DIGITS_SCHEMA,
     "params.validation_split", "at most 0.8"),
    ("mlp", "target", {"validation_split": 0, "early_stopping": 3}, DIGITS_SCHEMA,
     "params.early_stopping", "validation_split"),
    ("mlp", "target", {"validation_split": 0, "lr_schedule": "plateau"}, DIGITS_SCHEMA,
     "params.lr_schedule", "validation_split"),
    ("resnet", "target", {"batch_size": 1}, DIGITS_SCHEMA, "params.batch_size", ">= 2"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("family", "target", "params", "schema", "param", "fragment"),
    CASES,
    ids=[f"{case[4]}-{i}" for i, case in enumerate(CASES)],
)
def test_errors_name_their_field(
    family: str,
    target: str,
    params: dict[str, Any],
    schema: DatasetSchema,
    param: str,
    fragment: str,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_spec(family, target, params, schema)
    assert info.value.param == param
    assert info.value.status == 422
    assert fragment in info.value.message
    field = param.removeprefix("params.")
    assert field in info.value.message or param in ("family", "target")


def test_applies_tells_which_hyperparameters_mean_something_for_a_spec() -> None:
    cnn = {"family": "cnn", "optimizer": "adam", "lr_schedule": "cosine"}
    assert applies("input_shape", cnn)
    assert applies("lr", cnn)
    assert not applies("hidden", cnn)
    assert not applies("hidden_size", cnn)
    assert not applies("momentum", cnn)
    assert not applies("step_size", cnn)
    sgd = {"family": "gru", "optimizer": "sgd", "lr_schedule": "plateau"}
    assert applies("momentum", sgd)
    assert applies("gamma", sgd)
    assert applies("hidden_size", sgd)
    assert not applies("channels", sgd)


FEDERATED = {"strategy": "federated", "clients": 3}


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"min_clients": 4}, "params.min_clients", "cannot exceed params.clients (3)"),
        ({"partition": "label"}, "params.partition", "simulate=true"),
        ({"dp_noise": 1.0}, "params.dp_clip", "dp_clip"),
        ({"lr_schedule": "onecycle"}, "params.lr_schedule", "over rounds"),
        ({"lr_schedule": "plateau"}, "params.lr_schedule", "none, step or cosine"),
        ({"early_stopping": 2}, "params.early_stopping", "all its rounds"),
    ],
)
def test_federated_parameters_that_make_no_sense_are_named(
    params: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_spec("cnn", "target", {**FEDERATED, **params}, DIGITS_SCHEMA)
    assert (info.value.param, info.value.status) == (param, 422)
    assert fragment in info.value.message, info.value.message


def test_a_federated_spec_waits_for_every_client_unless_told_otherwise() -> None:
    spec = resolve_spec("cnn", "target", {**FEDERATED, "simulate": "true"}, DIGITS_SCHEMA)
    assert (spec.clients, spec.min_clients, spec.simulate) == (3, 3, True)
    assert spec.lr_schedule == "cosine"  # the CNN's, run over rounds
    fewer = resolve_spec("cnn", "target", {**FEDERATED, "min_clients": 2}, DIGITS_SCHEMA)
    assert fewer.min_clients == 2
