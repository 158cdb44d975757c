"""What a training job ends with: the model exported to ONNX and evaluated on the test
split as served (onnxruntime), and the loss and score of a model on a split while it
trains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelbay.runtimes import load_runtime
from modelbay.tensors import Signature
from modelbay.training.export import INPUT, export_onnx
from modelbay.training.families import TrainedModel
from modelbay.training.spec import TrainSpec
from modelbay.training.splits import Splits
from modelbay.training.table import Table, Task

EVAL_CHUNK = 4096

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    """A trained model, exported, with its test-split metrics and predictions."""

    model_dir: Path  # holds the entrypoint, model.onnx
    format: str  # "onnx"
    entrypoint: str
    signature: Signature
    task: Task
    classes: list[str] | None
    metrics: dict[str, float]  # test_accuracy|test_r2, test_loss, epochs, best_epoch, ...
    test_indices: list[int]  # rows of the table in the test split, ascending
    test_predictions: list[int] | list[float]  # per test row, from the exported model


def fitted(model: TrainedModel, target: torch.Tensor) -> torch.Tensor:
    """What the loss compares ``logits`` with: class indices, or the standardised target."""
    if model.classifier:
        return target
    return (target - model.target_mean) / model.target_std


def evaluate(
    model: TrainedModel, x: torch.Tensor, y: torch.Tensor, criterion: Criterion
) -> tuple[float, float]:
    """Loss and accuracy (classification) or R² (regression) of ``model`` on ``x``."""
    model.eval()
    device = model.target_mean.device
    y = y.to(device)
    with torch.no_grad():
        logits = torch.cat(
            [
                model.logits(x[i : i + EVAL_CHUNK].to(device)).float()
                for i in range(0, len(x), EVAL_CHUNK)
            ]
        )
        loss = float(criterion(logits, y))
        if model.classifier:
            return loss, float((logits.argmax(dim=1) == y).to(torch.float32).mean())
        return loss, r2(
            logits[:, 0].cpu().numpy().astype(np.float64), y.cpu().numpy().astype(np.float64)
        )


def r2(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination: 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (0 for a constant y)."""
    total = float(np.sum((truth - truth.mean()) ** 2))
    residual = float(np.sum((truth - predicted) ** 2))
    return 1.0 - residual / total if total > 0 else 0.0


def served_outputs(
    model_dir: Path, entrypoint: str, signature: Signature, x: np.ndarray, threads: int
) -> np.ndarray:
    """The exported model's output on ``x``, run as a served model runs it."""
    runtime = load_runtime("onnx", model_dir, entrypoint, signature, threads=threads)
    try:
        name = signature.outputs[0].name
        chunks = [
            runtime.infer({INPUT: x[i : i + EVAL_CHUNK]})[name]
            for i in range(0, len(x), EVAL_CHUNK)
        ]
    finally:
        runtime.unload()
    return np.concatenate(chunks)


def export_and_test(
    model: nn.Module,
    table: Table,
    spec: TrainSpec,
    splits: Splits,
    features: torch.Tensor,
    criterion: Criterion,
    workdir: Path,
    log: Callable[[str], None],
    threads: int,
    metrics: dict[str, float],
) -> TrainResult:
    """Export ``model`` (a ``TrainedModel``, or anything with its ``logits``,
    ``classifier`` and ``target_mean``) to ``workdir/model`` and evaluate it, as served, on
    the test split: the job's result, with ``metrics`` and the test metrics."""
    trained: TrainedModel = model.eval()  # type: ignore[assignment]
    classifier = trained.classifier
    num_outputs = len(table.classes or []) if classifier else 1
    model_dir = workdir / "model"
    example = features[torch.from_numpy(splits.train[:4])]
    entrypoint, signature = export_onnx(trained, example, model_dir, spec.task, num_outputs)
    log(f"exported {entrypoint}")
    predictions: list[int] | list[float] = []
    if len(splits.test):
        x_test = features[torch.from_numpy(splits.test)]
        target = torch.from_numpy(table.target[splits.test])
        y_fit = fitted(trained, target.to(torch.int64 if classifier else torch.float32))
        metrics["test_loss"], _ = evaluate(trained, x_test, y_fit, criterion)
        outputs = served_outputs(model_dir, entrypoint, signature, x_test.numpy(), threads)
        truth = table.target[splits.test]
        if classifier:
            predicted = outputs.argmax(axis=1)
            metrics["test_accuracy"] = float(np.mean(predicted == truth))
            predictions = [int(c) for c in predicted]
        else:
            metrics["test_r2"] = r2(outputs.astype(np.float64), truth.astype(np.float64))
            predictions = [float(v) for v in outputs]
    return TrainResult(
        model_dir=model_dir,
        format="onnx",
        entrypoint=entrypoint,
        signature=signature,
        task=spec.task,
        classes=list(table.classes) if classifier and table.classes else None,
        metrics=metrics,
        test_indices=[int(i) for i in splits.test],
        test_predictions=predictions,
    )
