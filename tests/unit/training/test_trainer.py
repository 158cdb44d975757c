"""The training loop on scikit-learn's bundled datasets: accuracy targets with default
hyperparameters, the ONNX export as served, checkpoints, resume, cancel, early stopping."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LinearRegression

from modelbay.errors import InvalidRequest
from modelbay.runtimes import load_runtime
from modelbay.training import trainer
from modelbay.training.evaluation import TrainResult
from modelbay.training.spec import TrainSpec, resolve_spec
from modelbay.training.splits import split_rows
from modelbay.training.table import ColumnStats, DatasetSchema, InvalidDataset, Table
from modelbay.training.trainer import Cancelled, NoHooks, train


class Recorder(NoHooks):
    """Hooks that record what train reports; cancels at the ``cancel_at``-th batch check."""

    def __init__(self, cancel_at: int | None = None, cancel_after_epoch: int | None = None):
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.logs: list[str] = []
        self.checkpoints: list[tuple[Path, int]] = []
        self.checks = 0
        self.cancel_at = cancel_at
        self.cancel_after_epoch = cancel_after_epoch

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append((epoch, metrics))

    def on_log(self, message: str) -> None:
        self.logs.append(message)

    def cancelled(self) -> bool:
        self.checks += 1
        if self.cancel_at is not None and self.checks >= self.cancel_at:
            return True
        done = self.checkpoints[-1][1] if self.checkpoints else 0
        return self.cancel_after_epoch is not None and done >= self.cancel_after_epoch

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        assert path.is_file()
        self.checkpoints.append((path, epoch))


def _schema(table: Table) -> DatasetSchema:
    columns: list[ColumnStats] = [
        {"name": name, "dtype": "float32", "numeric": True, "unique": 17}
        for name in table.feature_names
    ]
    unique = len(np.unique(table.target))
    dtype = "int64" if table.task == "classification" else "float32"
    columns.append({"name": "target", "dtype": dtype, "numeric": True, "unique": unique})
    return {"format": "npz", "kind": "tabular", "rows": table.rows, "columns": columns}


@pytest.fixture(scope="module")
def digits() -> Table:
    data = load_digits()
    return Table(
        features=data.data.astype(np.float32),
        target=data.target.astype(np.int64),
        feature_names=[f"pixel_{i}" for i in range(64)],
        target_name="target",
        task="classification",
        classes=[str(i) for i in range(10)],
    )


@pytest.fixture(scope="module")
def diabetes() -> Table:
    data = load_diabetes()
    return Table(
        features=data.data.astype(np.float32),
        target=data.target.astype(np.float32),
        feature_names=list(data.feature_names),
        target_name="target",
        task="regression",
        classes=None,
    )


def _spec(family: str, table: Table, **params: Any) -> TrainSpec:
    return resolve_spec(family, "target", params, _schema(table))


def _served(result: TrainResult, x: np.ndarray) -> np.ndarray:
    """What the exported model answers, run directly with onnxruntime."""
    session = ort.InferenceSession(str(result.model_dir / result.entrypoint))
    (output,) = session.run(None, {"input": x})
    return np.asarray(output)


def _check_export(result: TrainResult, table: Table) -> None:
    """The export loads as a served model and gives the reported test predictions."""
    x_test = table.features[result.test_indices]
    output = _served(result, x_test)
    if result.task == "classification":
        assert result.signature.model_dump() == {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
        }
        np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)
        assert output.argmax(axis=1).tolist() == result.test_predictions
    else:
        assert result.signature.outputs[0].model_dump() == {
            "name": "prediction",
            "datatype": "FP32",
            "shape": [-1],
        }
        np.testing.assert_allclose(output, result.test_predictions, rtol=1e-6)
    runtime = load_runtime("onnx", result.model_dir, result.entrypoint, None, threads=1)
    assert runtime.signature == result.signature


@pytest.mark.parametrize(("family", "target"), [("logistic", 0.95), ("cnn", 0.97), ("gru", 0.95)])
def test_digits_accuracy_with_defaults(
    family: str, target: float, digits: Table, tmp_path: Path
) -> None:
    spec = _spec(family, digits)
    hooks = Recorder()
    result = train(digits, spec, tmp_path, hooks)
    assert result.metrics["test_accuracy"] >= target, result.metrics
    assert result.metrics["epochs"] == spec.epochs
    assert (result.format, result.entrypoint, result.classes) == (
        "onnx",
        "model.onnx",
        digits.classes,
    )
    assert len(result.test_indices) == 359  # 20 %, per class
    _check_export(result, digits)
    epochs = [epoch for epoch, _ in hooks.epochs]
    assert epochs == list(range(1, spec.epochs + 1))
    keys = {"loss", "val_loss", "val_accuracy", "lr", "samples_per_s", "seconds"}
    assert all(set(metrics) == keys for _, metrics in hooks.epochs)
    assert [epoch for _, epoch in hooks.checkpoints] == epochs
    assert not list(tmp_path.glob("*.tmp"))


def test_linear_regression_matches_closed_form(diabetes: Table, tmp_path: Path) -> None:
    spec = _spec("linear", diabetes)
    result = train(diabetes, spec, tmp_path, NoHooks())
    splits = split_rows(diabetes, spec)
    x, y = diabetes.features, diabetes.target
    closed_form = LinearRegression().fit(x[splits.train], y[splits.train])
    expected = closed_form.score(x[splits.test], y[splits.test])
    assert abs(result.metrics["test_r2"] - expected) <= 0.02, (result.metrics, expected)
    _check_export(result, diabetes)


@pytest.mark.parametrize("family", ["mlp", "perceptron", "lstm", "rnn", "resnet"])
def test_each_family_trains_and_exports(family: str, digits: Table, tmp_path: Path) -> None:
    spec = _spec(family, digits, epochs=2)
    result = train(digits, spec, tmp_path, NoHooks())
    assert result.metrics["test_accuracy"] > 0.5, result.metrics
    _check_export(result, digits)


def test_regression_with_an_mlp(diabetes: Table, tmp_path: Path) -> None:
    spec = _spec("mlp", diabetes, epochs=3, hidden="16")
    assert spec.task == "regression"
    hooks = Recorder()
    result = train(diabetes, spec, tmp_path, hooks)
    assert {"val_r2", "val_loss"} <= set(hooks.epochs[-1][1])
    assert "test_r2" in result.metrics
    _check_export(result, diabetes)


@pytest.mark.parametrize("batch_size", ["full", 1])
def test_full_batch_and_stochastic(batch_size: object, digits: Table, tmp_path: Path) -> None:
    epochs, lr = (5, 0.1) if batch_size == "full" else (1, 0.01)
    spec = _spec("logistic", digits, batch_size=batch_size, epochs=epochs, lr=lr)
    hooks = Recorder()
    result = train(digits, spec, tmp_path, hooks)
    rows = len(split_rows(digits, spec).train)
    assert hooks.checks == (epochs if batch_size == "full" else rows)  # one check per batch
    assert result.metrics["test_accuracy"] > 0.6, result.metrics
    _check_export(result, digits)


def test_large_data_is_gathered_by_batch_alike(
    digits: Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("mlp", digits, epochs=2, dropout=0.2)
    copied = train(digits, spec, tmp_path / "copied", NoHooks())
    monkeypatch.setattr(trainer, "EPOCH_GATHER_BYTES", 0)  # as if the data were large
    gathered = train(digits, spec, tmp_path / "gathered", NoHooks())
    assert gathered.test_predictions == copied.test_predictions
    assert gathered.metrics == copied.metrics


def test_cancel_within_one_batch(digits: Table, tmp_path: Path) -> None:
    spec = _spec("mlp", digits, epochs=3)
    hooks = Recorder(cancel_at=5)
    with pytest.raises(Cancelled):
        train(digits, spec, tmp_path, hooks)
    assert hooks.checks == 5  # no batch ran after cancelled() said so
    assert hooks.epochs == []
    assert not (tmp_path / "checkpoint.pt").exists()

    hooks = Recorder(cancel_after_epoch=1)
    with pytest.raises(Cancelled, match="epoch 2"):
        train(digits, spec, tmp_path, hooks)
    assert [epoch for epoch, _ in hooks.epochs] == [1]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"family": "mlp", "dropout": 0.3, "optimizer": "adamw", "lr_schedule": "onecycle",
         "early_stopping": 10, "class_weights": "balanced", "l1": 1e-4},
        {"family": "gru", "optimizer": "sgd", "lr": 0.05, "lr_schedule": "step", "step_size": 1,
         "batch_size": 64, "dropout": 0.2, "layers": 2},
        {"family": "resnet", "lr_schedule": "plateau", "step_size": 1, "batch_size": 100,
         "channels": "4,8", "weight_decay": 1e-4},
    ],
    ids=["mlp", "gru", "resnet"],
)  # fmt: skip
def test_resume_gives_the_uninterrupted_result(
    params: dict[str, Any], digits: Table, tmp_path: Path
) -> None:
    family = params.pop("family")
    spec = _spec(family, digits, epochs=4, **params)
    straight = train(digits, spec, tmp_path / "straight", NoHooks())

    interrupted = tmp_path / "interrupted"
    with pytest.raises(Cancelled):
        train(digits, spec, interrupted, Recorder(cancel_after_epoch=2))
    checkpoint = interrupted / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2
    hooks = Recorder()
    resumed = train(digits, spec, interrupted, hooks, resume=checkpoint)
    assert [epoch for epoch, _ in hooks.epochs] == [3, 4]
    assert any("resumed" in line for line in hooks.logs)

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert resumed.test_predictions == straight.test_predictions
    assert resumed.metrics == straight.metrics
    x = digits.features[:50]
    np.testing.assert_array_equal(_served(resumed, x), _served(straight, x))


def test_resume_refuses_another_spec(digits: Table, tmp_path: Path) -> None:
    spec = _spec("logistic", digits, epochs=1)
    train(digits, spec, tmp_path / "a", NoHooks())
    other = _spec("logistic", digits, epochs=2, lr=0.5)
    with pytest.raises(InvalidRequest, match="another training spec"):
        train(digits, other, tmp_path / "b", NoHooks(), resume=tmp_path / "a" / "checkpoint.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidRequest, match="cannot read checkpoint") as info:
        train(digits, spec, tmp_path / "c", NoHooks(), resume=garbage)
    assert info.value.param == "resume"


def test_early_stopping_restores_the_best_weights(digits: Table, tmp_path: Path) -> None:
    spec = _spec("mlp", digits, epochs=200, early_stopping=2, lr=0.02, hidden="256")
    hooks = Recorder()
    result = train(digits, spec, tmp_path, hooks)
    run = int(result.metrics["epochs"])
    best = int(result.metrics["best_epoch"])
    assert result.metrics["stopped_early"] == 1
    assert run < 200
    assert best == run - 2
    losses = {epoch: metrics["val_loss"] for epoch, metrics in hooks.epochs}
    assert losses[best] == min(losses.values())
    # The exported model is the best epoch's: its validation loss is that epoch's.
    validation = split_rows(digits, spec).validation
    probabilities = _served(result, digits.features[validation]).astype(np.float64)
    picked = probabilities[np.arange(len(validation)), digits.target[validation]]
    assert float(-np.log(picked).mean()) == pytest.approx(losses[best], rel=1e-3)
    assert any("early stopping" in line for line in hooks.logs)


@pytest.mark.parametrize(("family", "side"), [("cnn", 32), ("resnet", 8), ("lstm", 8)])
def test_image_tables(family: str, side: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=120)
    images = rng.normal(size=(120, 3, side, side)).astype(np.float32)
    images[:, 0] += labels[:, None, None]  # learnable from the first channel
    table = Table(
        images, labels.astype(np.int64), ["image"], "label", "classification", list("abc")
    )
    schema: DatasetSchema = {
        "format": "images",
        "kind": "images",
        "rows": 120,
        "columns": [{"name": "label", "dtype": "int64", "numeric": True, "unique": 3}],
        "image_shape": [3, side, side],
        "classes": list("abc"),
    }
    spec = resolve_spec(family, "label", {"epochs": 2, "batch_size": 16}, schema)
    result = train(table, spec, tmp_path, NoHooks())
    assert result.signature.inputs[0].shape == [-1, 3, side, side]
    assert result.signature.outputs[0].shape == [-1, 3]
    output = _served(result, images[result.test_indices])
    assert output.argmax(axis=1).tolist() == result.test_predictions


def test_unusable_tables_are_refused(digits: Table, tmp_path: Path) -> None:
    spec = _spec("mlp", digits, epochs=1)
    features = digits.features.copy()
    features[5, 3] = np.nan
    with pytest.raises(InvalidDataset, match="pixel_3"):
        train(replace(digits, features=features), spec, tmp_path, NoHooks())
    narrow = replace(digits, features=digits.features[:, :10])
    with pytest.raises(InvalidDataset, match="64 features"):
        train(narrow, spec, tmp_path, NoHooks())
    with pytest.raises(InvalidDataset, match="class indices"):
        train(replace(digits, target=digits.target + 5), spec, tmp_path, NoHooks())
