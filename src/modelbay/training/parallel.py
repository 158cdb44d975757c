"""One rank's share of a job trained by several processes (``torch.distributed``):

- ``ddp``: data-parallel. Every rank shuffles the whole training split alike and takes its
  slice of each epoch (as ``DistributedSampler`` does), and the gradients are averaged
  over the ranks at every step: on CUDA by ``DistributedDataParallel``, which overlaps the
  all-reduce with the backward pass; on the CPU by one all-reduce of all gradients after
  it. With one core per rank, DDP's overlap made the gloo thread wait for the core that
  the backward pass held: a small ResNet trained at 1.21x one process with DDP and at
  1.39x with the all-reduce after the backward pass (2 ranks, 2 cores). BatchNorm
  statistics, which each rank gathers from its own rows, are averaged every epoch.
- ``average``: model averaging (local SGD). Each rank trains on a disjoint shard of the
  training split; the ranks average their parameters every ``sync_every`` steps (and at
  every epoch's end), or every epoch, or once at the end (``sync_every=end``: the one-shot
  average of seed 003's parameters, f(x; 1/n Σ wᵢ)).
- ``ensemble``: each rank trains its own model (its own seed) on a disjoint shard; the job
  registers one model whose answer is the mean of theirs, 1/n Σ fᵢ(x).

In every strategy a rank takes ``batch_size / workers`` rows per step, so an epoch has as
many steps as in one process, and one step of all ranks together sees one batch of the
single-process run (measured on digits: with the full batch size per rank, averaged
models lost 1.4 accuracy points, half the steps; with this, 0.8). Shards have equal sizes
(the shorter ones repeat a row), so every rank takes the same number of steps and the
collectives line up. The normalisation (and a regression's target
scale) is fitted on the whole training split in every rank, so the members of an ensemble
agree on it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from modelbay.errors import InvalidRequest
from modelbay.training.checkpoint import (
    CHECKPOINT_FORMAT,
    Progress,
    Trainable,
    restore_state,
    save,
)
from modelbay.training.families import TrainedModel
from modelbay.training.plan import Logits
from modelbay.training.spec import TrainSpec


class Parallel:
    """The ``Plan`` of rank ``rank`` of ``world`` (the process group is initialised)."""

    def __init__(self, spec: TrainSpec, rank: int, world: int, workdir: Path) -> None:
        self.strategy = spec.strategy
        self.sync_every = spec.sync_every
        self.rank = rank
        self.world = world
        self.chief = rank == 0
        self.workdir = workdir
        self._seed = spec.seed
        self._steps = 0
        self._ddp = False

    def seed(self, spec: TrainSpec) -> int:
        # Averaged and data-parallel models start alike; an ensemble's members do not.
        return spec.seed + self.rank if self.strategy == "ensemble" else spec.seed

    def rows(self, train_rows: torch.Tensor, spec: TrainSpec) -> torch.Tensor:
        if self.strategy == "ddp":
            return train_rows
        dealt = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(spec.seed))
        shard = train_rows[dealt[self.rank :: self.world]]
        size = math.ceil(len(train_rows) / self.world)
        return torch.cat([shard, shard[: size - len(shard)]])

    def epoch_order(self, order: torch.Tensor) -> torch.Tensor:
        if self.strategy != "ddp":
            return order
        size = math.ceil(len(order) / self.world)
        padded = torch.cat([order, order[: size * self.world - len(order)]])
        return padded[self.rank :: self.world]

    def batch_size(self, spec: TrainSpec, rows: int) -> int:
        if spec.batch_size == "full":
            return rows
        return min(max(1, math.ceil(spec.batch_size / self.world)), rows)

    def wrap(self, model: TrainedModel) -> nn.Module:
        torch.manual_seed(self._seed + self.rank)  # the ranks' dropout differs
        device = model.target_mean.device
        if self.strategy != "ddp" or device.type != "cuda":
            return Logits(model)
        self._ddp = True
        return nn.parallel.DistributedDataParallel(Logits(model), device_ids=[device.index])

    def after_backward(self, model: TrainedModel) -> None:
        if self.strategy != "ddp" or self._ddp:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def after_step(self, model: TrainedModel) -> None:
        if self.strategy == "average" and isinstance(self.sync_every, int):
            self._steps += 1
            if self._steps % self.sync_every == 0:
                average(model, self.world)

    def end_epoch(self, model: TrainedModel) -> None:
        averaged = self.strategy == "average" and self.sync_every != "end"
        if averaged or (self.strategy == "ddp" and _has_buffers(model)):
            average(model, self.world)

    def agree_stop(self, stopped: bool) -> bool:
        """Stop when every rank has (ranks whose models are alike agree anyway)."""
        going = torch.tensor([0.0 if stopped else 1.0])
        dist.all_reduce(going, op=dist.ReduceOp.MAX)
        return bool(going.item() == 0.0)

    def save(
        self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable, progress: Progress
    ) -> Path | None:
        """Each rank writes its state; the chief bundles them into ``path`` (data-parallel
        ranks are alike: rank 0's state alone)."""
        own = path.with_name(f"rank-{self.rank}.pt")
        save(own, spec, rows, trainable, progress)
        dist.barrier()
        if not self.chief:
            return None
        count = 1 if self.strategy == "ddp" else self.world
        states = [
            torch.load(path.with_name(f"rank-{r}.pt"), weights_only=True, map_location="cpu")
            for r in range(count)
        ]
        bundle = {
            "format": CHECKPOINT_FORMAT,
            "strategy": self.strategy,
            "world": self.world,
            "ranks": states,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(bundle, tmp)
        tmp.replace(path)
        return path

    def restore(self, path: Path, spec: TrainSpec, rows: int, trainable: Trainable) -> Progress:
        try:
            bundle = torch.load(path, weights_only=True, map_location="cpu")
        except (OSError, RuntimeError, EOFError) as exc:
            raise InvalidRequest(
                f"cannot read checkpoint '{path.name}': {exc}", param="resume", status=422
            ) from exc
        if bundle.get("strategy") != self.strategy or bundle.get("world") != self.world:
            raise InvalidRequest(
                f"the checkpoint was written by {bundle.get('world')} processes of strategy "
                f"{bundle.get('strategy')}, not {self.world} of {self.strategy}",
                param="resume",
                status=422,
            )
        states = bundle["ranks"]
        return restore_state(states[self.rank if len(states) > 1 else 0], spec, rows, trainable)

    def final(self, model: TrainedModel) -> nn.Module | None:
        if self.strategy == "average" and self.sync_every == "end":
            average(model, self.world)
        if self.strategy != "ensemble":
            return model if self.chief else None
        member = self.workdir / f"member-{self.rank}.pt"
        torch.save(model.state_dict(), member)
        dist.barrier()
        if not self.chief:
            return None
        members = []
        for r in range(self.world):
            copy_ = copy.deepcopy(model)
            copy_.load_state_dict(
                torch.load(self.workdir / f"member-{r}.pt", weights_only=True, map_location="cpu")
            )
            members.append(copy_)
        return Ensemble(members)


def _has_buffers(model: nn.Module) -> bool:
    """Whether the model keeps running statistics besides its normalisation (BatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def average(model: nn.Module, world: int) -> None:
    """Replace every floating-point parameter and buffer by its mean over the ranks."""
    with torch.no_grad():
        tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


class Ensemble(nn.Module):
    """Models trained apart, answering as one: the mean of their class probabilities (or
    predictions). ``logits`` are the log of the mean probabilities (regression: the mean
    standardised prediction), so the trainer's loss and metrics apply unchanged."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, members: list[TrainedModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.classifier = members[0].classifier
        # The members' target scale: one, fitted on the whole training split in every rank.
        self.register_buffer("target_mean", members[0].target_mean.detach().clone())
        self.register_buffer("target_std", members[0].target_std.detach().clone())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [m.logits(x) for m in self.members]  # type: ignore[operator]
        if self.classifier:
            probs = torch.stack([torch.softmax(z, dim=-1) for z in outputs]).mean(dim=0)
            return torch.log(probs.clamp_min(1e-12))
        return torch.stack(outputs).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)
