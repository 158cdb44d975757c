"""The training loop of a job: splits, epochs, validation, checkpoints, early stopping, the
ONNX export and the test predictions of the exported model.

A job calls ``train`` in a process of its own and follows it through ``Hooks``: metrics per
epoch, log lines, a checkpoint per epoch (``workdir/checkpoint.pt``, resumable exactly with
``resume=``) and cancellation, checked before every batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from modelbay.training.checkpoint import CHECKPOINT, Progress, Scheduler, Trainable
from modelbay.training.evaluation import (
    Criterion,
    TrainResult,
    evaluate,
    export_and_test,
    fitted,
)
from modelbay.training.families import build_model
from modelbay.training.plan import Plan, Single
from modelbay.training.spec import TrainSpec
from modelbay.training.splits import check_splits, split_rows
from modelbay.training.table import InvalidDataset, Table

EPOCH_GATHER_BYTES = 256 << 20


class Hooks(Protocol):
    """How a job follows and steers ``train``."""

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch (1-based): loss (mean over the epoch's training rows), val_loss,
        val_accuracy or val_r2 (with a validation split), lr (the epoch's first), samples_per_s
        (training rows per second of the batch loop; a parallel job's processes together)
        and seconds (the whole epoch, validation and checkpoint included). Regression losses
        are mean squared errors of the standardised target."""

    def on_log(self, message: str) -> None:
        """A line for the job's log."""

    def cancelled(self) -> bool:
        """Checked before every batch; True stops training with ``Cancelled``."""

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        """After ``path`` (``workdir/checkpoint.pt``) holds the state after ``epoch``."""


class NoHooks:
    """Hooks that do nothing (benchmarks, scripts)."""

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_log(self, message: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        pass


class Cancelled(Exception):
    """Training stopped because ``Hooks.cancelled`` said so; the checkpoint of the last
    complete epoch stays in the work directory."""


def train(
    table: Table,
    spec: TrainSpec,
    workdir: Path,
    hooks: Hooks,
    *,
    resume: Path | None = None,
    threads: int = 1,
) -> TrainResult:
    """Train ``spec`` on ``table``, checkpointing to ``workdir/checkpoint.pt`` after every
    epoch, and export the model to ``workdir/model/model.onnx``. ``resume``: a checkpoint of
    this spec and table; training continues after its epoch and ends as a run that was
    never interrupted would have."""
    result = run_training(table, spec, workdir, hooks, resume=resume, threads=threads)
    assert result is not None
    return result


def training_device(wanted: str) -> torch.device:
    """``auto``: CUDA when this process has it, else the CPU."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise InvalidDataset(
            "params.device=cuda, but this worker has no CUDA device; use device=auto or cpu"
        )
    if wanted in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_training(
    table: Table,
    spec: TrainSpec,
    workdir: Path,
    hooks: Hooks,
    *,
    resume: Path | None = None,
    threads: int = 1,
    plan: Plan | None = None,
) -> TrainResult | None:
    """``train`` as one process of ``plan`` runs it (default: ``Single``, the whole job);
    the result on the plan's chief process, None on the others."""
    plan = plan or Single()
    device = training_device(spec.device)
    torch.set_num_threads(threads)
    _check_table(table, spec)
    workdir.mkdir(parents=True, exist_ok=True)
    classifier = spec.task == "classification"
    splits = split_rows(table, spec)
    check_splits(splits, spec, table.rows)
    hooks.on_log(
        f"{table.rows} rows: {len(splits.train)} training, {len(splits.validation)} "
        f"validation, {len(splits.test)} test"
    )

    features = torch.from_numpy(np.ascontiguousarray(table.features, dtype=np.float32))
    target = torch.from_numpy(table.target.astype(np.int64 if classifier else np.float32))
    train_rows = torch.from_numpy(splits.train)
    num_outputs = len(table.classes or []) if classifier else 1

    torch.manual_seed(plan.seed(spec))
    model = build_model(spec, tuple(features.shape[1:]), num_outputs)
    model.normalize.fit(features[train_rows])
    if not classifier:
        model.fit_target(target[train_rows])
    target_fit = fitted(model, target)
    criterion = _criterion(spec, target[train_rows], num_outputs, device)
    model.to(device)
    net = plan.wrap(model)
    optimizer = _optimizer(spec, model)
    rows = plan.rows(train_rows, spec)
    per_epoch = len(plan.epoch_order(torch.arange(len(rows))))
    batches = _batches(plan.batch_size(spec, per_epoch), per_epoch, model)
    data = _TrainingRows(features, target_fit, rows, batches, device)
    scheduler = _scheduler(spec, optimizer, len(data.batches))
    generator = torch.Generator().manual_seed(spec.seed)
    progress = Progress()
    trainable = Trainable(model, optimizer, scheduler, generator)
    if resume is not None:
        progress = plan.restore(resume, spec, table.rows, trainable)
        hooks.on_log(f"resumed from the checkpoint of epoch {progress.epoch}")

    x_val = features[splits.validation]
    y_val = target_fit[splits.validation]
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp == "bf16")
    per_batch = scheduler if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else None
    l1_weights = [p for p in model.parameters() if p.dim() > 1] if spec.l1 > 0 else []
    sizes = torch.tensor([stop - start for start, stop in data.batches], dtype=torch.float32)
    trained_rows = int(sizes.sum())
    path = workdir / CHECKPOINT
    for epoch in range(progress.epoch + 1, spec.epochs + 1):
        if progress.stopped:
            break
        started = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        net.train()
        order = plan.epoch_order(torch.randperm(len(rows), generator=generator))
        losses: list[torch.Tensor] = []  # per batch; summed once the epoch is done
        for xb, yb in data.epoch(order):
            if hooks.cancelled():
                raise Cancelled(f"cancelled in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            with amp:
                logits = net(xb)
            loss = criterion(logits.float(), yb)
            losses.append(loss.detach())
            if l1_weights:
                loss = loss + spec.l1 * sum(w.abs().sum() for w in l1_weights)
            loss.backward()  # type: ignore[no-untyped-call]
            plan.after_backward(model)
            optimizer.step()
            plan.after_step(model)
            if per_batch is not None:
                per_batch.step()
        plan.end_epoch(model)
        loop_seconds = time.perf_counter() - started
        metrics = {"loss": float(torch.stack(losses).cpu() @ sizes) / trained_rows, "lr": lr}
        if len(x_val):
            val_loss, score = evaluate(model, x_val, y_val, criterion)
            metrics["val_loss"] = val_loss
            metrics["val_accuracy" if classifier else "val_r2"] = score
            _early_stopping(progress, spec, model, epoch, metrics[spec.monitor])
        else:
            progress.best_epoch = epoch
        progress.stopped = plan.agree_stop(progress.stopped)
        _step_epoch(scheduler, metrics)
        progress.epoch = epoch
        saved = plan.save(path, spec, table.rows, trainable, progress)
        metrics["samples_per_s"] = plan.world * trained_rows / max(loop_seconds, 1e-9)
        metrics["seconds"] = time.perf_counter() - started
        hooks.on_epoch(epoch, metrics)
        if saved is not None:
            hooks.on_checkpoint(saved, epoch)
        if progress.stopped:
            hooks.on_log(
                f"early stopping after epoch {epoch}: {spec.monitor} has not improved for "
                f"{spec.early_stopping} epochs (best: epoch {progress.best_epoch})"
            )

    if progress.best_model is not None:
        model.load_state_dict(progress.best_model)
    final = plan.final(model)
    if final is None:
        return None
    metrics = {
        "epochs": float(progress.epoch),
        "best_epoch": float(progress.best_epoch),
        "stopped_early": float(progress.stopped),
    }
    test_criterion = _criterion(spec, target[train_rows], num_outputs, torch.device("cpu"))
    return export_and_test(
        final.to("cpu"),
        table,
        spec,
        splits,
        features,
        test_criterion,
        workdir,
        hooks.on_log,
        threads,
        metrics,
    )


class _TrainingRows:
    """The training split in shuffled batches. Up to ``EPOCH_GATHER_BYTES`` it is copied
    once, then gathered in each epoch's order and sliced; a larger one (images) is gathered
    batch by batch from the data, so that it is held in memory once."""

    def __init__(
        self,
        features: torch.Tensor,
        target: torch.Tensor,
        rows: torch.Tensor,
        batches: list[tuple[int, int]],
        device: torch.device,
    ) -> None:
        self.batches = batches
        self.rows = rows
        self.device = device
        self.copied = len(rows) * features[:1].nbytes <= EPOCH_GATHER_BYTES
        self.features = features[rows].to(device) if self.copied else features
        self.target = target[rows].to(device) if self.copied else target

    def epoch(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features, target) of each batch, ``order`` indexing ``rows`` (a permutation of
        them, or a process's share of one)."""
        if self.copied:
            order = order.to(self.device)
            xs, ys = self.features[order], self.target[order]
            for start, stop in self.batches:
                yield xs[start:stop], ys[start:stop]
        else:
            rows = self.rows[order]
            for start, stop in self.batches:
                picked = rows[start:stop]
                yield (
                    self.features[picked].to(self.device, non_blocking=True),
                    self.target[picked].to(self.device, non_blocking=True),
                )


def _batches(size: int, rows: int, model: nn.Module) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of ``size`` of an epoch over ``rows`` shuffled
    training rows."""
    batches = [(start, min(start + size, rows)) for start in range(0, rows, size)]
    if rows % size == 1 and _has_batchnorm(model):
        batches.pop()  # BatchNorm cannot train on one row: leave the odd row out this epoch
    return batches


def _check_table(table: Table, spec: TrainSpec) -> None:
    """The table must be what the spec was resolved for."""
    shape = tuple(table.features.shape[1:])
    if table.features.ndim not in (2, 4) or table.target.shape != (table.rows,):
        raise InvalidDataset(
            f"features must be [N, F] or [N, C, H, W] and the target [N]; got "
            f"{list(table.features.shape)} and {list(table.target.shape)}"
        )
    if spec.features is not None and shape != (len(spec.features),):
        raise InvalidDataset(
            f"the table has rows of shape {list(shape)}; the spec names "
            f"{len(spec.features)} features"
        )
    values = math.prod(shape)
    if spec.input_shape is not None and math.prod(spec.input_shape) != values:
        raise InvalidDataset(
            f"rows of shape {list(shape)} cannot be read as {spec.input_shape} (input_shape)"
        )
    if spec.steps is not None and values % spec.steps:
        raise InvalidDataset(f"rows of {values} values cannot be read as {spec.steps} steps")
    if not np.isfinite(table.features).all():
        bad = np.flatnonzero(~np.isfinite(table.features).reshape(table.rows, -1).all(axis=0))
        names = table.feature_names if table.features.ndim == 2 else ["image"]
        where = names[int(bad[0])] if table.features.ndim == 2 else "image pixels"
        raise InvalidDataset(f"feature '{where}' has missing or infinite values; fill or drop them")
    if spec.task == "classification":
        classes = len(table.classes or [])
        if classes < 2:
            raise InvalidDataset(f"classification needs at least 2 classes; got {classes}")
        if (
            table.target.dtype.kind not in "iu"
            or table.target.min() < 0
            or (table.target.max() >= classes)
        ):
            raise InvalidDataset(f"a classification target must be class indices 0..{classes - 1}")
    elif not np.isfinite(table.target.astype(np.float64)).all():
        raise InvalidDataset(
            f"target '{table.target_name}' has missing or infinite values; fill or drop them"
        )


def _criterion(
    spec: TrainSpec, y_train: torch.Tensor, num_outputs: int, device: torch.device
) -> Criterion:
    """Cross-entropy (perceptron: multi-class hinge), with balanced class weights if asked;
    regression: mean squared error of the standardised target."""
    if spec.task == "regression":
        mse = nn.MSELoss()
        return lambda logits, y: mse(logits[:, 0], y)
    weight = None
    if spec.class_weights == "balanced":
        counts = torch.bincount(y_train, minlength=num_outputs).to(torch.float32)
        weight = (len(y_train) / (num_outputs * counts.clamp(min=1))).to(device)
    if spec.family == "perceptron":
        return nn.MultiMarginLoss(weight=weight)
    return nn.CrossEntropyLoss(weight=weight)


def _optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


def _scheduler(spec: TrainSpec, optimizer: torch.optim.Optimizer, batches: int) -> Scheduler | None:
    """The lr schedule; onecycle steps per batch, the others per epoch (plateau on
    val_loss, waiting ``step_size`` epochs)."""
    sched = torch.optim.lr_scheduler
    if spec.lr_schedule == "step":
        return sched.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if spec.lr_schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    if spec.lr_schedule == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=spec.epochs * batches)
    if spec.lr_schedule == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=spec.gamma, patience=spec.step_size)
    return None


def _step_epoch(scheduler: Scheduler | None, metrics: dict[str, float]) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metrics["val_loss"])
    elif scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        scheduler.step()


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _early_stopping(
    progress: Progress, spec: TrainSpec, model: nn.Module, epoch: int, value: float
) -> None:
    """Track the best epoch of ``spec.monitor``; with ``early_stopping``, keep its weights
    and stop after that many epochs without improvement."""
    lower = spec.monitor == "val_loss"
    if math.isnan(progress.best) or (value < progress.best if lower else value > progress.best):
        progress.best, progress.best_epoch, progress.bad_epochs = value, epoch, 0
        if spec.early_stopping:
            state = model.state_dict().items()
            progress.best_model = {k: v.detach().to("cpu", copy=True) for k, v in state}
        return
    progress.bad_epochs += 1
    if spec.early_stopping and progress.bad_epochs >= spec.early_stopping:
        progress.stopped = True
