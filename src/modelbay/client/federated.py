"""The SDK's side of federated jobs, mixed into ``Client``: join a job with a file of one's
own data, train each round locally and send the weights, never the data.

``federate`` needs the training extra (torch, pandas) on the client's machine; the other
calls are plain HTTP.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from modelbay.client.access import JsonCall
from modelbay.client.errors import ApiError

HEARTBEAT_S = 2.0
"""How often a training client tells the job it is alive (the job's liveness window is
``registry.federated.LIVENESS_S``)."""


class FederatedCalls:
    """``/api/v1/jobs/{job}/federated``."""

    _json: JsonCall
    _request: Callable[..., httpx.Response]

    def federation(self, job: int) -> dict[str, Any]:
        """A federated job's stage, open round, clients and what clients need to know."""
        return self._json("GET", _path(job))

    def join_federation(self, job: int, statistics: Mapping[str, Any]) -> dict[str, Any]:
        """Join with the statistics of one's data (``examples``, ``feature_sum``,
        ``feature_sum_sq``, ``target_sum``, ``target_sum_sq``); the client's view."""
        return self._json("POST", _path(job, "clients"), json=dict(statistics))

    def federated_client(self, job: int, client: str) -> dict[str, Any]:
        """What ``client`` is to do now: ``action`` wait, train, done or dropped."""
        return self._json("GET", _path(job, f"clients/{client}"))

    def federated_model(self, job: int, round: int) -> bytes:
        """The global weights of the open ``round`` (a safetensors file)."""
        return self._request("GET", _path(job, f"rounds/{int(round)}/model")).content

    def send_federated_update(
        self,
        job: int,
        round: int,
        client: str,
        data: bytes,
        *,
        examples: int,
        metrics: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Send ``client``'s weights (a safetensors file) for ``round``."""
        params: dict[str, Any] = {"examples": examples, **dict(metrics or {})}
        return self._json(
            "PUT",
            _path(job, f"rounds/{int(round)}/updates/{client}"),
            content=data,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        )

    def federate(
        self,
        job: int,
        data: str | os.PathLike[str],
        *,
        format: str | None = None,
        poll_s: float = 0.5,
        threads: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Take part in federated job ``job`` with the rows of file ``data`` (CSV, Parquet,
        npz ... read with the job's columns) until it ends; its final status. Raises
        ``ApiError`` if the client is dropped or the job has ended."""
        from modelbay.client.federated_loop import FederatedClient

        loop = FederatedClient(self, job, Path(data), format, threads, progress or _quiet)
        return loop.run(poll_s)


class Heartbeat:
    """Calls ``beat`` every ``every_s`` in a thread while the block runs (errors ignored:
    the next call that matters reports them)."""

    def __init__(self, beat: Callable[[], object], every_s: float = HEARTBEAT_S):
        self._beat, self._every = beat, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="federated-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            with contextlib.suppress(ApiError, httpx.HTTPError):
                self._beat()


def wait_started(calls: FederatedCalls, job: int, poll_s: float) -> dict[str, Any]:
    """The job's status once it takes clients (stage waiting or training)."""
    while True:
        status = calls.federation(job)
        if status["stage"] in ("waiting", "training"):
            return status
        if status["stage"] in ("done", "failed"):
            raise ApiError(409, f"job {job} already {status['job_state']}")
        time.sleep(poll_s)


def _path(job: int, rest: str = "") -> str:
    base = f"/api/v1/jobs/{int(job)}/federated"
    return f"{base}/{rest}" if rest else base


def _quiet(_: str) -> None:
    pass
