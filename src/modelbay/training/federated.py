"""Federated training: ``simulate`` runs a federation's clients in this process, on
partitions of the training split (tests, demos); the model, evaluation, checkpoints and the
export it shares with the coordinator of real clients (``modelbay.jobs.federated``).

A round: every client starts from the global model, trains ``local_epochs`` on its own rows
(``training.local``) and sends its weights; Flower's strategies aggregate them
(``training.aggregation``). The feature normalisation is fitted before round 1 from the
clients' sums and sums of squares, which gives exactly what ``Normalize.fit`` would on
their pooled rows. The job's validation split is evaluated after every round and its test
split at the end, as for single-process training.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelbay.errors import InvalidRequest
from modelbay.protocols.federated import decode_tensors, encode_tensors
from modelbay.training.aggregation import ClientUpdate, aggregate, fit_normalization, summed
from modelbay.training.evaluation import (
    Criterion,
    TrainResult,
    evaluate,
    export_and_test,
    fitted,
)
from modelbay.training.families import TrainedModel, build_model
from modelbay.training.local import (
    CPU,
    feature_moments,
    layout,
    load_weights,
    round_lr,
    train_local,
    weights,
)
from modelbay.training.partition import partition_rows
from modelbay.training.privacy import epsilon
from modelbay.training.spec import TrainSpec
from modelbay.training.splits import Splits, check_splits, split_rows
from modelbay.training.table import Table
from modelbay.training.trainer import Cancelled, Hooks, _check_table, _criterion

CHECKPOINT = "federated.safetensors"
CHECKPOINT_FORMAT = "modelbay-federated-1"


@dataclass
class Federation:
    """The server's side of a federated job: the global model and what evaluates it."""

    spec: TrainSpec
    table: Table
    splits: Splits
    model: TrainedModel
    num_outputs: int
    criterion: Criterion
    features: torch.Tensor
    target: torch.Tensor

    @classmethod
    def build(cls, table: Table, spec: TrainSpec, threads: int) -> Federation:
        """The untrained global model of ``spec`` (seeded) for ``table``'s rows."""
        torch.set_num_threads(threads)
        _check_table(table, spec)
        splits = split_rows(table, spec)
        classifier = spec.task == "classification"
        features = torch.from_numpy(np.ascontiguousarray(table.features, dtype=np.float32))
        target = torch.from_numpy(table.target.astype(np.int64 if classifier else np.float32))
        num_outputs = len(table.classes or []) if classifier else 1
        torch.manual_seed(spec.seed)
        model = build_model(spec, tuple(features.shape[1:]), num_outputs)
        criterion = _criterion(spec, target[torch.from_numpy(splits.train)], num_outputs, CPU)
        return cls(spec, table, splits, model, num_outputs, criterion, features, target)

    @property
    def names(self) -> list[str]:
        return list(layout(self.model))

    def weight_list(self) -> list[np.ndarray]:
        tensors = weights(self.model)
        return [tensors[name] for name in self.names]

    def fit_normalization(self, statistics: list[dict[str, Any]]) -> int:
        """Set the normalisation from the clients' join statistics; the rows they hold."""
        examples, total, squares, t_sum, t_sq = summed(statistics)
        row_shape = tuple(self.features.shape[1:])
        fit_normalization(
            self.model,
            examples,
            total.reshape(row_shape),
            squares.reshape(row_shape),
            (t_sum, t_sq),
        )
        return examples

    def apply(self, updates: list[ClientUpdate], server_round: int) -> None:
        """Aggregate the round's updates into the global model."""
        spec = self.spec
        new = aggregate(
            self.weight_list(),
            updates,
            server_round=server_round,
            proximal_mu=spec.proximal_mu,
            dp_clip=spec.dp_clip,
            dp_noise=spec.dp_noise,
        )
        load_weights(self.model, dict(zip(self.names, new, strict=True)))

    def round_metrics(
        self, server_round: int, updates: list[ClientUpdate], started: float
    ) -> dict[str, float]:
        """A round's metrics: the clients' (weighted by examples), then the validation
        split's as the server evaluates the new global model."""
        examples = sum(u.examples for u in updates)
        metrics: dict[str, float] = {
            "clients": float(len(updates)),
            "examples": float(examples),
            "lr": round_lr(self.spec, server_round),
        }
        for name in ("loss", "accuracy"):
            if all(name in u.metrics for u in updates):
                value = sum(u.metrics[name] * u.examples for u in updates) / examples
                metrics[name if name == "loss" else "client_accuracy"] = value
        if len(self.splits.validation):
            rows = torch.from_numpy(self.splits.validation)
            x, y = self.features[rows], fitted(self.model, self.target)[rows]
            val_loss, score = evaluate(self.model, x, y, self.criterion)
            metrics["val_loss"] = val_loss
            metrics["val_accuracy" if self.model.classifier else "val_r2"] = score
        if self.spec.dp_clip is not None and self.spec.dp_noise > 0:
            metrics["dp_epsilon"] = epsilon(self.spec.dp_noise, server_round, self.spec.dp_delta)
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    def save(self, path: Path, server_round: int) -> None:
        """The global model after ``server_round``, atomically (safetensors, no pickle)."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "round": str(server_round),
            "rows": str(self.table.rows),
            "spec": json.dumps(self.spec.model_dump(mode="json"), sort_keys=True),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(encode_tensors(weights(self.model, full=True), meta))
        os.replace(tmp, path)

    def restore(self, path: Path) -> int:
        """Load a checkpoint of this spec and table; the round it was written after."""
        full = {k: v.shape for k, v in weights(self.model, full=True).items()}
        tensors, meta = decode_tensors(path.read_bytes(), full, what="checkpoint")
        spec = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("spec") != spec:
            raise InvalidRequest(
                "the checkpoint was written for another training spec", param="resume", status=422
            )
        if meta.get("rows") != str(self.table.rows):
            raise InvalidRequest(
                f"the checkpoint was written for {meta.get('rows')} rows, not {self.table.rows}",
                param="resume",
                status=422,
            )
        load_weights(self.model, tensors)
        return int(meta["round"])

    def finish(self, workdir: Path, hooks: Hooks, threads: int, rounds: int) -> TrainResult:
        """Export the global model to ONNX and evaluate it, as served, on the test split."""
        metrics: dict[str, float] = {"rounds": float(rounds)}
        if self.spec.dp_clip is not None and self.spec.dp_noise > 0:
            metrics["dp_epsilon"] = epsilon(self.spec.dp_noise, rounds, self.spec.dp_delta)
            metrics["dp_delta"] = self.spec.dp_delta
        return export_and_test(
            self.model,
            self.table,
            self.spec,
            self.splits,
            self.features,
            self.criterion,
            workdir,
            hooks.on_log,
            threads,
            metrics,
        )


def simulate(
    table: Table,
    spec: TrainSpec,
    workdir: Path,
    hooks: Hooks,
    *,
    resume: Path | None = None,
    threads: int = 1,
) -> TrainResult:
    """Train ``spec`` (strategy federated) with ``spec.clients`` simulated clients, each
    holding one part of the training split (``spec.partition``); checkpoints to
    ``workdir/federated.safetensors`` after every round, resumable with ``resume=``."""
    workdir.mkdir(parents=True, exist_ok=True)
    fed = Federation.build(table, spec, threads)
    check_splits(fed.splits, spec, table.rows)
    parts = partition_rows(table.target, fed.splits.train, spec.clients, spec.partition, spec.seed)
    hooks.on_log(_describe(table, parts, spec))
    statistics = []
    for rows in parts:
        total, squares = feature_moments(table.features[rows])
        t = table.target[rows].astype(np.float64)
        statistics.append(
            {
                "examples": len(rows),
                "feature_sum": total,
                "feature_sum_sq": squares,
                "target_sum": float(t.sum()),
                "target_sum_sq": float(np.square(t).sum()),
            }
        )
    fed.fit_normalization(statistics)
    done = 0
    if resume is not None:
        done = fed.restore(resume)
        hooks.on_log(f"resumed from the checkpoint of round {done}")
    path = workdir / CHECKPOINT
    for server_round in range(done + 1, spec.rounds + 1):
        started = time.perf_counter()
        start = weights(fed.model, full=True)
        lr = round_lr(spec, server_round)
        updates = []
        for index, rows in enumerate(parts):
            load_weights(fed.model, start)
            seed = _seed(spec.seed, server_round, index)
            torch.manual_seed(seed)  # dropout: a resumed run repeats the same round
            rows_t = torch.from_numpy(rows)
            local = train_local(
                fed.model,
                fed.features[rows_t],
                fed.target[rows_t],
                spec,
                num_outputs=fed.num_outputs,
                lr=lr,
                seed=seed,
                cancelled=hooks.cancelled,
            )
            updates.append(ClientUpdate(f"client-{index + 1}", fed.weight_list(), len(rows), local))
        load_weights(fed.model, start)
        np.random.seed(_seed(spec.seed, server_round, len(parts)) % 2**32)  # Flower's DP noise
        fed.apply(updates, server_round)
        metrics = fed.round_metrics(server_round, updates, started)
        fed.save(path, server_round)
        hooks.on_epoch(server_round, metrics)
        hooks.on_checkpoint(path, server_round)
    if hooks.cancelled():
        raise Cancelled("cancelled")
    return fed.finish(workdir, hooks, threads, spec.rounds)


def _seed(seed: int, server_round: int, client: int) -> int:
    return (seed * 1_000_003 + server_round * 1009 + client) % 2**63


def _describe(table: Table, parts: list[np.ndarray], spec: TrainSpec) -> str:
    """One log line: each simulated client's rows (and classes)."""
    described = []
    for index, rows in enumerate(parts):
        text = f"client-{index + 1}: {len(rows)} rows"
        if spec.task == "classification":
            text += f", {len(np.unique(table.target[rows]))} classes"
        described.append(text)
    return f"{spec.clients} simulated clients ({spec.partition}): " + "; ".join(described)
