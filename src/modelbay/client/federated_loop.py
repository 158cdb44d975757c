"""A federated client's loop: read one's data with the job's columns, join with its
statistics, then for every round it is asked to: download the global weights, train
``local_epochs`` locally and send the new weights. Only weights and the statistics travel.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbay.client.errors import ApiError
from modelbay.client.federated import Heartbeat, wait_started
from modelbay.protocols.federated import decode_tensors, encode_tensors

if TYPE_CHECKING:
    from modelbay.client.federated import FederatedCalls

_RACES = (404, 409)
"""Answers that mean the round moved on while this client worked: ask again."""


class FederatedClient:
    """One client of job ``job`` holding the rows of ``data``."""

    def __init__(
        self,
        calls: FederatedCalls,
        job: int,
        data: Path,
        format: str | None,
        threads: int | None,
        say: Callable[[str], None],
    ):
        self.calls, self.job, self.data, self.format = calls, job, data, format
        self.threads, self.say = threads, say

    def run(self, poll_s: float) -> dict[str, Any]:
        import torch

        from modelbay.training.families import build_model
        from modelbay.training.local import feature_moments, load_client_data
        from modelbay.training.spec import TrainSpec

        if not self.data.is_file():
            raise FileNotFoundError(f"no file at '{self.data}'")
        if self.threads:
            torch.set_num_threads(self.threads)
        status = wait_started(self.calls, self.job, poll_s)
        spec = TrainSpec.model_validate(status["spec"])
        x, y = load_client_data(
            self.data,
            self.format,
            target=status["target"],
            task=status["task"],
            features=status["features"],
            classes=status["classes"],
            row_shape=status["row_shape"],
        )
        total, squares = feature_moments(x)
        t = y.astype(np.float64)
        view = self.calls.join_federation(
            self.job,
            {
                "examples": len(x),
                "feature_sum": total.ravel().tolist(),
                "feature_sum_sq": squares.ravel().tolist(),
                "target_sum": float(t.sum()) if spec.task == "regression" else 0.0,
                "target_sum_sq": float(np.square(t).sum()) if spec.task == "regression" else 0.0,
            },
        )
        client = view["client"]
        self.say(f"joined job {self.job} as {client} with {len(x)} rows of {self.data.name}")
        num_outputs = len(status["classes"] or []) if spec.task == "classification" else 1
        model = build_model(spec, tuple(x.shape[1:]), num_outputs)
        features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        target = torch.from_numpy(y.astype(np.int64 if num_outputs > 1 else np.float32))
        trained: set[int] = set()
        while True:
            view = self.calls.federated_client(self.job, client)
            action, server_round = view["action"], int(view["round"])
            if action == "done":
                final: dict[str, Any] = view["status"]
                self.say(f"job {self.job} ended ({final['stage']}); {view['updates']} updates sent")
                return final
            if action == "dropped":
                raise ApiError(409, f"client {client} was dropped from job {self.job}")
            if action == "train" and server_round not in trained:
                trained.add(server_round)
                self._round(client, server_round, view["status"], spec, model, features, target)
                continue
            time.sleep(poll_s)

    def _round(
        self,
        client: str,
        server_round: int,
        status: dict[str, Any],
        spec: Any,
        model: Any,
        features: Any,
        target: Any,
    ) -> None:
        from modelbay.training.local import load_weights, train_local, weights

        try:
            blob = self.calls.federated_model(self.job, server_round)
        except ApiError as exc:
            if exc.status in _RACES:
                return
            raise
        tensors, _ = decode_tensors(blob, what="global model")
        load_weights(model, tensors)
        seed = (spec.seed * 1_000_003 + server_round * 1009 + zlib.crc32(client.encode())) % 2**63
        num_outputs = len(status["classes"] or []) if spec.task == "classification" else 1
        with Heartbeat(lambda: self.calls.federated_client(self.job, client)):
            metrics = train_local(
                model,
                features,
                target,
                spec,
                num_outputs=num_outputs,
                lr=float(status["lr"]),
                seed=seed,
            )
        payload = encode_tensors(weights(model))
        try:
            receipt = self.calls.send_federated_update(
                self.job, server_round, client, payload, examples=len(features), metrics=metrics
            )
        except ApiError as exc:
            if exc.status in _RACES:
                self.say(f"round {server_round}: the update came too late ({exc.message})")
                return
            raise
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.say(
            f"round {server_round}: {shown}; update sent ({receipt['answered']} of "
            f"{status['active']} clients so far)"
        )
