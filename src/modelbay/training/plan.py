"""How the training loop splits its work: ``Single`` (one process, the default) and the
interface a parallel plan (``distributed.Parallel``) implements, so that ``trainer.train``
runs the same loop in one process or in each rank of a data-parallel, model-averaging or
ensemble job."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from modelbay.training.checkpoint import Progress, Trainable, restore, save
from modelbay.training.families import TrainedModel
from modelbay.training.spec import TrainSpec


class Plan(Protocol):
    """One process's share of training."""

    chief: bool
    """Whether this process reports (hooks), checkpoints the job and exports the model."""
    world: int
    """Processes training together (each trains as many rows per epoch as this one)."""

    def seed(self, spec: TrainSpec) -> int:
        """The seed the model is initialised (and dropout drawn) from."""

    def rows(self, train_rows: torch.Tensor, spec: TrainSpec) -> torch.Tensor:
        """The training rows this process draws its epochs from."""

    def epoch_order(self, order: torch.Tensor) -> torch.Tensor:
        """This process's rows of an epoch, given a permutation of ``rows``."""

    def batch_size(self, spec: TrainSpec, rows: int) -> int:
        """Rows per batch in this process (``rows``: its rows per epoch)."""

    def wrap(self, model: TrainedModel) -> nn.Module:
        """What the loop calls for logits (data-parallel: the model in
        ``DistributedDataParallel``, which all-reduces gradients)."""

    def after_backward(self, model: TrainedModel) -> None:
        """Between the backward pass and the optimizer step (data-parallel on the CPU: the
        gradients' all-reduce)."""

    def after_step(self, model: TrainedModel) -> None:
        """After each optimizer step (model averaging every K steps)."""

    def end_epoch(self, model: TrainedModel) -> None:
        """After an epoch's batches, before validation."""

    def agree_stop(self, stopped: bool) -> bool:
        """Whether training stops: every process must agree (early stopping)."""

    def save(
        self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable, progress: Progress
    ) -> Path | None:
        """Checkpoint; the path of the job's checkpoint (chief), else None."""

    def restore(self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable) -> Progress:
        """Resume from a checkpoint ``save`` wrote."""

    def final(self, model: TrainedModel) -> nn.Module | None:
        """The model to export (chief), None elsewhere; collective."""


class Single:
    """Training in this process alone."""

    chief = True
    world = 1

    def seed(self, spec: TrainSpec) -> int:
        return spec.seed

    def rows(self, train_rows: torch.Tensor, spec: TrainSpec) -> torch.Tensor:
        return train_rows

    def epoch_order(self, order: torch.Tensor) -> torch.Tensor:
        return order

    def batch_size(self, spec: TrainSpec, rows: int) -> int:
        return rows if spec.batch_size == "full" else min(spec.batch_size, rows)

    def wrap(self, model: TrainedModel) -> nn.Module:
        return Logits(model)

    def after_backward(self, model: TrainedModel) -> None:
        pass

    def after_step(self, model: TrainedModel) -> None:
        pass

    def end_epoch(self, model: TrainedModel) -> None:
        pass

    def agree_stop(self, stopped: bool) -> bool:
        return stopped

    def save(
        self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable, progress: Progress
    ) -> Path | None:
        save(path, spec, rows, trainable, progress)
        return path

    def restore(self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable) -> Progress:
        return restore(path, spec, rows, trainable)

    def final(self, model: TrainedModel) -> nn.Module | None:
        return model


class Logits(nn.Module):
    """``model.logits`` as a module's forward (what ``DistributedDataParallel`` wraps)."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)
