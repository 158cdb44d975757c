"""A federated round's server-side math: the clients' updates into the next global model,
and the clients' data statistics into the model's feature normalisation.

Aggregation is Flower's (``flwr.server.strategy``): ``FedAvg`` weights each update by its
client's examples; ``FedProx`` aggregates the same way (its proximal term is in the clients'
local loss, ``training.local``); ``DifferentialPrivacyServerSideFixedClipping`` clips each
update's difference from the global model to ``dp_clip`` and adds Gaussian noise to the
mean. modelbay calls their ``aggregate_fit`` with ``FitRes`` built from the updates it
received over its own API; Flower's transport (its gRPC SuperLink) is not used, so API
keys, tenancy, limits and the audit log apply to every client call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedProx,
    Strategy,
)

from modelbay.training.families import Normalize, TrainedModel

logging.getLogger("flwr").setLevel(logging.ERROR)  # a line per aggregation otherwise


@dataclass
class ClientUpdate:
    """One client's answer to a round: its weights (in the layout's order), its examples
    and its local metrics."""

    client: str
    weights: list[np.ndarray]
    examples: int
    metrics: dict[str, float] = field(default_factory=dict)


def aggregate(
    current: list[np.ndarray],
    updates: list[ClientUpdate],
    *,
    server_round: int,
    proximal_mu: float = 0.0,
    dp_clip: float | None = None,
    dp_noise: float = 0.0,
) -> list[np.ndarray]:
    """The next global weights from ``current`` and the round's ``updates``.

    With ``dp_clip`` every update counts the same (weight 1, not its examples): the noise
    is calibrated to a mean in which one client moves the sum by ``dp_clip`` at most."""
    if dp_clip is not None:
        # Flower's clipping divides by the update's norm: an update equal to the global
        # model (nothing learnt) is left out rather than divided by zero.
        updates = [u for u in updates if _moved(u.weights, current)]
        if not updates:
            return [w.astype(np.float32) for w in current]
    if not updates:
        raise ValueError("a round needs at least one update")
    strategy: Strategy = FedProx(proximal_mu=proximal_mu) if proximal_mu > 0 else FedAvg()
    if dp_clip is not None:
        private = DifferentialPrivacyServerSideFixedClipping(
            strategy, dp_noise, dp_clip, num_sampled_clients=len(updates)
        )
        private.current_round_params = [w.astype(np.float32) for w in current]
        strategy = private
    results: list[Any] = [
        (
            _Proxy(u.client),
            FitRes(
                status=Status(code=Code.OK, message=""),
                parameters=ndarrays_to_parameters([w.astype(np.float32) for w in u.weights]),
                num_examples=1 if dp_clip is not None else u.examples,
                metrics={},
            ),
        )
        for u in updates
    ]
    parameters, _ = strategy.aggregate_fit(server_round, results, [])
    assert parameters is not None
    return [np.asarray(w, dtype=np.float32) for w in parameters_to_ndarrays(parameters)]


def _moved(weights: list[np.ndarray], current: list[np.ndarray]) -> bool:
    return any(not np.array_equal(w, c) for w, c in zip(weights, current, strict=True))


class _Proxy(ClientProxy):  # type: ignore[misc]
    """A client as Flower's strategies name it; they never call it."""

    def _unused(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError("modelbay's clients talk over its own API")

    get_properties = get_parameters = fit = evaluate = reconnect = _unused


def fit_normalization(
    model: TrainedModel,
    examples: int,
    feature_sum: np.ndarray,
    feature_sum_sq: np.ndarray,
    target: tuple[float, float] | None = None,
) -> None:
    """Set the model's normalisation as ``Normalize.fit`` (and ``fit_target``) would on the
    union of the clients' rows, from the sums of ``feature_moments`` added up over clients;
    ``target``: the regression target's (sum, sum of squares)."""
    normalize = model.normalize
    total = np.asarray(feature_sum, dtype=np.float64)
    squares = np.asarray(feature_sum_sq, dtype=np.float64)
    mean, var = _moments(normalize, examples, total, squares)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    normalize.mean.copy_(torch.from_numpy(mean).reshape(normalize.mean.shape))
    normalize.std.copy_(torch.from_numpy(std).reshape(normalize.std.shape))
    if target is not None and not model.classifier:
        t_mean = target[0] / examples
        t_std = float(np.sqrt(max(target[1] / examples - t_mean**2, 0.0)))
        model.target_mean.fill_(t_mean)
        model.target_std.fill_(t_std if t_std > 1e-12 else 1.0)


def _moments(
    normalize: Normalize, n: int, total: np.ndarray, squares: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance per statistic of ``normalize``: per channel for images ``[C, H,
    W]`` and channel-grouped rows, per feature otherwise."""
    if total.ndim == 3:  # images: one statistic per channel
        count = n * total.shape[1] * total.shape[2]
        mean = total.sum(axis=(1, 2)) / count
        return mean, squares.sum(axis=(1, 2)) / count - mean**2
    if normalize.channels is not None:  # rows read as C images: each channel's values share
        per_channel = total.size // normalize.channels
        grouped = total.reshape(normalize.channels, per_channel).sum(axis=1)
        grouped_sq = squares.reshape(normalize.channels, per_channel).sum(axis=1)
        mean = grouped / (n * per_channel)
        var = grouped_sq / (n * per_channel) - mean**2
        return np.repeat(mean, per_channel), np.repeat(var, per_channel)
    mean = total / n
    return mean, squares / n - mean**2


def summed(
    statistics: Sequence[Mapping[str, Any]],
) -> tuple[int, np.ndarray, np.ndarray, float, float]:
    """The clients' join statistics added up: (examples, feature sums, sums of squares,
    target sum, target sum of squares)."""
    examples = sum(int(s["examples"]) for s in statistics)
    total = np.sum([np.asarray(s["feature_sum"], dtype=np.float64) for s in statistics], axis=0)
    squares = np.sum(
        [np.asarray(s["feature_sum_sq"], dtype=np.float64) for s in statistics], axis=0
    )
    t_sum = float(sum(float(s.get("target_sum", 0.0)) for s in statistics))
    t_sq = float(sum(float(s.get("target_sum_sq", 0.0)) for s in statistics))
    return examples, total, squares, t_sum, t_sq
