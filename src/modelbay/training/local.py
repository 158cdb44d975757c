"""A federated client's side of a round: its data read with the job's columns and classes,
the weights that travel, and local training from the global model (with FedProx's
proximal term when ``proximal_mu`` > 0).

What travels: the model's floating-point tensors (``layout``), never data. The feature
normalisation comes from the clients' statistics when they join and is fixed after that:
it travels with the global model, not in the updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from modelbay.training import dataset_tabular as tabular
from modelbay.training.datasets import detect_format, inspect, load_table
from modelbay.training.evaluation import fitted
from modelbay.training.families import TrainedModel
from modelbay.training.spec import TrainSpec
from modelbay.training.table import InvalidDataset
from modelbay.training.trainer import Cancelled, _criterion, _has_batchnorm, _optimizer

CPU = torch.device("cpu")
"""Federated training runs on the CPU, on the server and on clients."""
NORMALIZATION = ("normalize.mean", "normalize.std", "target_mean", "target_std")
"""Buffers set once from the clients' statistics: sent with the global model only."""


def layout(model: TrainedModel) -> dict[str, list[int]]:
    """The tensors of an update, name: shape (the model's floating-point state less the
    normalisation)."""
    return {
        name: list(value.shape)
        for name, value in model.state_dict().items()
        if value.is_floating_point() and name not in NORMALIZATION
    }


def weights(model: TrainedModel, *, full: bool = False) -> dict[str, np.ndarray]:
    """The update's tensors; ``full``: with the normalisation (the global model)."""
    names = set(layout(model)) | (set(NORMALIZATION) if full else set())
    return {
        name: value.detach().cpu().numpy().astype(np.float32)
        for name, value in model.state_dict().items()
        if name in names
    }


def load_weights(model: TrainedModel, tensors: Mapping[str, np.ndarray]) -> None:
    """Copy ``tensors`` (by name) into the model."""
    state = model.state_dict()
    with torch.no_grad():
        for name, value in tensors.items():
            state[name].copy_(torch.from_numpy(np.asarray(value)).reshape(state[name].shape))


def feature_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares over the rows of ``features`` ``[N, ...]``, per value of a row
    (float64): what a client sends when it joins."""
    x = features.astype(np.float64, copy=False)
    return x.sum(axis=0), np.square(x).sum(axis=0)


def round_lr(spec: TrainSpec, round: int) -> float:
    """The learning rate of ``round`` (1-based): the schedule runs over rounds."""
    if spec.lr_schedule == "cosine":
        return float(spec.lr * (1 + np.cos(np.pi * (round - 1) / spec.rounds)) / 2)
    if spec.lr_schedule == "step":
        return float(spec.lr * spec.gamma ** ((round - 1) // spec.step_size))
    return spec.lr


def train_local(
    model: TrainedModel,
    features: torch.Tensor,
    target: torch.Tensor,
    spec: TrainSpec,
    *,
    num_outputs: int,
    lr: float,
    seed: int,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """``spec.local_epochs`` epochs on this client's rows from the model as it is (the
    global one); its loss and accuracy over the last epoch's batches."""
    classifier = model.classifier
    target_fit = fitted(model, target)
    criterion = _criterion(spec, target, num_outputs, CPU)
    optimizer = _optimizer(spec, model)
    for group in optimizer.param_groups:
        group["lr"] = lr
    rows = len(features)
    size = rows if spec.batch_size == "full" else min(spec.batch_size, rows)
    single_rows = rows > 1 and _has_batchnorm(model)  # BatchNorm cannot train on one row
    generator = torch.Generator().manual_seed(seed)
    anchor = [p.detach().clone() for p in model.parameters()]
    l1_weights = [p for p in model.parameters() if p.dim() > 1] if spec.l1 > 0 else []
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for _ in range(spec.local_epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        order = torch.randperm(rows, generator=generator)
        xs, ys = features[order], target_fit[order]
        for start in range(0, rows, size):
            xb, yb = xs[start : start + size], ys[start : start + size]
            if len(yb) == 1 and single_rows:
                continue
            if cancelled():
                raise Cancelled("cancelled during local training")
            optimizer.zero_grad(set_to_none=True)
            logits = model.logits(xb)
            loss = criterion(logits, yb)
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
            if classifier:
                correct += int((logits.detach().argmax(dim=1) == yb).sum())
            if l1_weights:
                loss = loss + spec.l1 * sum(w.abs().sum() for w in l1_weights)
            if spec.proximal_mu > 0:  # FedProx: stay near the global model
                drift = sum(
                    (p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + spec.proximal_mu / 2 * drift
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    metrics = {"loss": loss_sum / max(seen, 1)}
    if classifier:
        metrics["accuracy"] = correct / max(seen, 1)
    return metrics


def load_client_data(
    path: Path,
    fmt: str | None,
    *,
    target: str,
    task: str,
    features: list[str] | None,
    classes: list[str] | None,
    row_shape: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """A client's file read with the job's target, feature columns and classes: features
    ``[N, *row_shape]`` float32 and the target (class indices of the job's classes, or
    values). A CSV or Parquet file may hold any of the classes, even one; other formats at
    least two."""
    fmt = detect_format(path.name, fmt)
    if fmt in ("csv", "parquet"):
        frame = tabular.read_csv(path) if fmt == "csv" else tabular.read_parquet(path)
        x, y = _frame_rows(frame, path.name, target, task, features, classes)
    else:
        table = load_table(path, fmt, inspect(path, fmt), target, task, features)  # type: ignore[arg-type]
        x, y = table.features, table.target
        if classes is not None and table.classes is not None:
            y = _class_codes(pd.Series(np.asarray(table.classes)[y]), classes, path.name)
    if list(x.shape[1:]) != list(row_shape):
        raise InvalidDataset(
            f"{path.name}: rows of shape {list(x.shape[1:])}; the job's rows are {row_shape}"
        )
    return x, y


def _frame_rows(
    frame: pd.DataFrame,
    source: str,
    target: str,
    task: str,
    features: list[str] | None,
    classes: list[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    if target not in frame.columns:
        raise InvalidDataset(
            f"target column {target!r} is not in {source}; its columns are: "
            + ", ".join(str(name) for name in frame.columns),
            param="target",
        )
    if task != "classification" or classes is None:
        table = tabular.frame_table(frame, source, {}, target, "regression", features)
        return table.features, table.target
    frame = frame.loc[frame[target].notna()].copy()
    frame[target] = _class_codes(frame[target], classes, source)
    table = tabular.frame_table(frame, source, {}, target, "regression", features)
    return table.features, table.target.astype(np.int64)


def _class_codes(labels: pd.Series, classes: list[str], source: str) -> np.ndarray:
    """Labels as indices of the job's ``classes`` (named as ``encode_classes`` names them)."""
    values = labels
    if pd.api.types.is_float_dtype(values.dtype) and tabular.integral(values.to_numpy()):
        values = pd.Series(values.to_numpy(dtype=np.float64).astype(np.int64))
    index = {name: i for i, name in enumerate(classes)}
    names = [str(value) for value in values]
    unknown = sorted({name for name in names if name not in index})
    if unknown:
        listed = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        raise InvalidDataset(
            f"{source}: label {unknown[0]!r} is not one of the job's classes ({listed})",
            param="target",
        )
    return np.asarray([index[name] for name in names], dtype=np.int64)
