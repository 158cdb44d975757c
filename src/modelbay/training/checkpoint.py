"""A training job's checkpoint: everything an interrupted run needs to end as an
uninterrupted one would (model, optimizer, lr schedule, random state, epoch and
early-stopping state, the normalisation), written atomically and read back with
``torch.load(weights_only=True)``: no pickled code."""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelbay.errors import InvalidRequest
from modelbay.training.families import TrainedModel
from modelbay.training.spec import TrainSpec

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1

Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


@dataclass
class Progress:
    """What early stopping and resuming need besides the torch state."""

    epoch: int = 0
    best: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False
    best_model: dict[str, torch.Tensor] | None = None


@dataclass
class Trainable:
    """The objects whose state a checkpoint holds."""

    model: TrainedModel
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None
    generator: torch.Generator  # the shuffling's


def save(path: Path, spec: TrainSpec, rows: int, trainable: Trainable, progress: Progress) -> None:
    """Write the checkpoint atomically (a temporary file, then ``os.replace``): plain
    tensors, numbers and strings, loadable with ``weights_only=True``."""
    model, optimizer, scheduler = trainable.model, trainable.optimizer, trainable.scheduler
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.model_dump(mode="json"),
        "rows": rows,
        "epoch": progress.epoch,
        "best": progress.best,
        "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs,
        "stopped": progress.stopped,
        "best_model": progress.best_model,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": torch.get_rng_state(),
        "generator": trainable.generator.get_state(),
        "normalization": {
            "mean": model.normalize.mean,
            "std": model.normalize.std,
            "target_mean": model.target_mean,
            "target_std": model.target_std,
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def restore(path: Path, spec: TrainSpec, rows: int, trainable: Trainable) -> Progress:
    """Load a checkpoint written by ``save`` into the freshly built objects."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise InvalidRequest(
            f"cannot read checkpoint '{path.name}': {exc}", param="resume", status=422
        ) from exc
    return restore_state(state, spec, rows, trainable)


def restore_state(
    state: dict[str, Any], spec: TrainSpec, rows: int, trainable: Trainable
) -> Progress:
    """``restore`` of a checkpoint already read."""
    if state.get("format") != CHECKPOINT_FORMAT or state.get("spec") != spec.model_dump(
        mode="json"
    ):
        raise InvalidRequest(
            "the checkpoint was written for another training spec", param="resume", status=422
        )
    if state.get("rows") != rows:
        raise InvalidRequest(
            f"the checkpoint was written for {state.get('rows')} rows, not {rows}",
            param="resume",
            status=422,
        )
    trainable.model.load_state_dict(state["model"])
    trainable.optimizer.load_state_dict(state["optimizer"])
    if trainable.scheduler is not None:
        trainable.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    trainable.generator.set_state(state["generator"])
    return Progress(
        epoch=int(state["epoch"]),
        best=float(state["best"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        stopped=bool(state["stopped"]),
        best_model=state["best_model"],
    )
