"""Federated training's parts without a server: how a simulation partitions its rows, the
aggregation (FedAvg, FedProx, clipping and noise) against hand computations, the privacy
accountant, the normalisation from the clients' statistics, FedProx's local term, and a
simulated job that resumes from a round's checkpoint as if never interrupted."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from modelbay.training.aggregation import ClientUpdate, aggregate, fit_normalization
from modelbay.training.families import build_model
from modelbay.training.federated import CHECKPOINT, simulate
from modelbay.training.local import feature_moments, train_local, weights
from modelbay.training.partition import partition_rows
from modelbay.training.privacy import epsilon, gaussian_epsilon
from modelbay.training.spec import resolve_spec
from modelbay.training.table import DatasetSchema, InvalidDataset, Table
from modelbay.training.trainer import Cancelled, NoHooks


def test_an_iid_partition_deals_every_class_evenly_to_every_client() -> None:
    target = np.repeat(np.arange(10), 37)
    rows = np.arange(len(target))[::2]  # a training split: every other row
    parts = partition_rows(target, rows, 3, "iid", seed=0)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == rows.tolist()  # disjoint and complete
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for c in range(10):
        counts = [int((target[p] == c).sum()) for p in parts]
        assert max(counts) - min(counts) <= 1, (c, counts)
    again = partition_rows(target, rows, 3, "iid", seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition_rows(target, rows, 3, "iid", seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_a_label_partition_gives_each_client_two_shards_of_sorted_labels() -> None:
    target = np.repeat(np.arange(6), 50)  # 6 shards of 50 rows: one class each
    parts = partition_rows(target, np.arange(300), 3, "label", seed=0)
    classes = [set(np.unique(target[p]).tolist()) for p in parts]
    assert all(len(c) == 2 for c in classes), classes
    assert set().union(*classes) == set(range(6))
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))


def test_fewer_rows_than_clients_cannot_be_partitioned() -> None:
    with pytest.raises(InvalidDataset, match="2 training rows cannot be shared among 3"):
        partition_rows(np.arange(2), np.arange(2), 3, "iid", seed=0)


def _updates() -> list[ClientUpdate]:
    a = [np.ones((2, 2), np.float32), np.full(3, 2.0, np.float32)]
    b = [np.full((2, 2), 5.0, np.float32), np.zeros(3, np.float32)]
    return [ClientUpdate("a", a, examples=1), ClientUpdate("b", b, examples=3)]


@pytest.mark.parametrize("proximal_mu", [0.0, 0.1])  # FedProx aggregates as FedAvg does
def test_fedavg_weights_each_update_by_its_examples(proximal_mu: float) -> None:
    current = [np.zeros((2, 2), np.float32), np.zeros(3, np.float32)]
    new = aggregate(current, _updates(), server_round=1, proximal_mu=proximal_mu)
    np.testing.assert_allclose(new[0], np.full((2, 2), (1 * 1 + 3 * 5) / 4))
    np.testing.assert_allclose(new[1], np.full(3, (1 * 2 + 3 * 0) / 4))


def test_with_dp_each_update_is_clipped_and_counts_the_same() -> None:
    current = [np.zeros(2, np.float32)]
    updates = [
        ClientUpdate("far", [np.array([3.0, 4.0], np.float32)], examples=1),  # norm 5
        ClientUpdate("near", [np.array([0.3, 0.4], np.float32)], examples=100),  # norm 0.5
    ]
    new = aggregate(current, updates, server_round=1, dp_clip=1.0, dp_noise=0.0)
    # far is clipped to norm 1: [0.6, 0.8]; near stays; the mean is unweighted.
    np.testing.assert_allclose(new[0], [(0.6 + 0.3) / 2, (0.8 + 0.4) / 2], rtol=1e-6)


def test_dp_noise_has_the_standard_deviation_of_its_multiplier() -> None:
    np.random.seed(0)
    current = [np.zeros(200_000, np.float32)]
    moved = [np.full(200_000, 1e-4, np.float32)]
    updates = [ClientUpdate(c, moved, examples=1) for c in "ab"]
    new = aggregate(current, updates, server_round=1, dp_clip=1.0, dp_noise=2.0)
    # noise of std noise × clip / clients on the mean: 2 × 1 / 2
    assert float(np.std(new[0])) == pytest.approx(1.0, rel=0.02)
    unchanged = [ClientUpdate(c, current, examples=1) for c in "ab"]  # nothing to clip
    assert np.array_equal(aggregate(current, unchanged, server_round=1, dp_clip=1.0)[0], current[0])


def test_the_privacy_budget_lies_between_the_exact_value_and_the_classic_bound() -> None:
    delta = 1e-5
    for noise, rounds in [(1.0, 1), (1.1, 10), (2.0, 100)]:
        rdp = epsilon(noise, rounds, delta)
        classic = rounds / (2 * noise**2) + math.sqrt(2 * rounds * math.log(1 / delta)) / noise
        assert gaussian_epsilon(noise, rounds, delta) <= rdp <= classic
    assert epsilon(1.0, 10, delta) > epsilon(1.0, 5, delta) > epsilon(2.0, 5, delta)
    assert epsilon(0.0, 10, delta) == math.inf
    assert epsilon(1.0, 1, delta) == pytest.approx(4.73, abs=0.01)


def _schema(features: int, shape: list[int] | None = None) -> DatasetSchema:
    if shape is not None:
        return {"kind": "images", "rows": 100, "image_shape": shape, "columns": []}
    columns = [{"name": f"f{i}", "dtype": "float64", "numeric": True} for i in range(features)]
    target = {"name": "y", "dtype": "int64", "numeric": True, "unique": 3}
    return {"kind": "tabular", "rows": 100, "columns": [*columns, target]}  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("family", "row_shape"),
    [("mlp", (5,)), ("cnn", (16,)), ("cnn", (3, 8, 8))],  # per feature; channel-grouped; images
)
def test_normalisation_from_the_clients_sums_is_the_pooled_fit(
    family: str, row_shape: tuple[int, ...]
) -> None:
    images = len(row_shape) == 3
    schema = _schema(row_shape[0], list(row_shape) if images else None)
    spec = resolve_spec(family, "label" if images else "y", {}, schema)
    rng = np.random.default_rng(0)
    shards = [rng.normal(3.0, 2.0, (n, *row_shape)).astype(np.float32) for n in (7, 20, 13)]
    pooled = build_model(spec, row_shape, 3)
    pooled.normalize.fit(torch.from_numpy(np.concatenate(shards)))
    federated = build_model(spec, row_shape, 3)
    moments = [feature_moments(s) for s in shards]
    total = sum(m[0] for m in moments)
    squares = sum(m[1] for m in moments)
    fit_normalization(federated, 40, np.asarray(total), np.asarray(squares))
    torch.testing.assert_close(federated.normalize.mean, pooled.normalize.mean)
    torch.testing.assert_close(federated.normalize.std, pooled.normalize.std)


def test_fedprox_keeps_the_local_model_near_the_global_one() -> None:
    x, y = load_iris(return_X_y=True)
    spec = resolve_spec("mlp", "y", {"strategy": "federated", "local_epochs": 5}, _schema(4))
    drift = {}
    for mu in (0.0, 10.0):
        torch.manual_seed(0)
        model = build_model(spec, (4,), 3)
        start = weights(model)
        prox = spec.model_copy(update={"proximal_mu": mu})
        features = torch.from_numpy(x.astype(np.float32))
        train_local(model, features, torch.from_numpy(y), prox, num_outputs=3, lr=0.01, seed=0)
        after = weights(model)
        drift[mu] = sum(float(np.sum((after[k] - start[k]) ** 2)) for k in start)
    assert drift[10.0] < 0.5 * drift[0.0], drift


class _Rounds(NoHooks):
    """Records rounds; cancels after ``stop_after`` with a copy of its checkpoint kept."""

    def __init__(self, stop_after: int | None = None, keep: Path | None = None):
        self.rounds: list[dict[str, float]] = []
        self.stop_after, self.keep = stop_after, keep

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rounds.append(metrics)

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        if epoch == self.stop_after and self.keep is not None:
            shutil.copyfile(path, self.keep)
            raise Cancelled("stopped to resume")


def test_a_simulation_resumed_from_a_round_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    table = Table(x.astype(np.float32), y.astype(np.int64), [f"f{i}" for i in range(4)], "y",
                  "classification", ["0", "1", "2"])  # fmt: skip
    params = {"strategy": "federated", "simulate": True, "clients": 2, "rounds": 4}
    spec = resolve_spec("mlp", "y", {**params, "dp_clip": 5.0, "dp_noise": 0.1}, _schema(4))
    whole = _Rounds()
    full = simulate(table, spec, tmp_path / "whole", whole)
    assert [r["clients"] for r in whole.rounds] == [2, 2, 2, 2]
    assert 0 < whole.rounds[0]["dp_epsilon"] < whole.rounds[-1]["dp_epsilon"]
    assert full.metrics["dp_epsilon"] == whole.rounds[-1]["dp_epsilon"]
    assert full.metrics["test_accuracy"] > 0.5

    kept = tmp_path / "kept.safetensors"
    with pytest.raises(Cancelled):
        simulate(table, spec, tmp_path / "first", _Rounds(stop_after=2, keep=kept))
    rest = _Rounds()
    resumed = simulate(table, spec, tmp_path / "second", rest, resume=kept)
    assert len(rest.rounds) == 2
    assert resumed.test_predictions == full.test_predictions
    assert rest.rounds[-1]["val_loss"] == whole.rounds[-1]["val_loss"]
    assert (tmp_path / "second" / CHECKPOINT).exists()
