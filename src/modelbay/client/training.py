"""The SDK's datasets and training jobs, mixed into ``Client``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import httpx

from modelbay.client.access import JsonCall
from modelbay.client.errors import ApiError
from modelbay.client.uploads import ProgressCallback, ProgressReader, UploadProgress

FINISHED = ("succeeded", "failed", "cancelled")


class TrainingCalls:
    """``/api/v1/datasets`` and ``/api/v1/jobs``."""

    _json: JsonCall
    _request: Callable[..., httpx.Response]
    _stream: Callable[[str], AbstractContextManager[httpx.Response]]

    # -- datasets ------------------------------------------------------------------------

    def push_dataset(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        sample: str | None = None,
        format: str | None = None,
        description: str = "",
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Upload a file (streamed from disk) as a new version of dataset ``name``, or
        ``sample`` (digits, iris, wine, breast_cancer, diabetes) from scikit-learn."""
        data = {"sample": sample, "format": format, "description": description or None}
        fields = {k: v for k, v in data.items() if v is not None}
        target = f"/api/v1/datasets/{_q(name)}/versions"
        if path is None:
            if sample is None:
                raise ValueError("give a file path or a sample name")
            return self._json("POST", target, data=fields)
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no file at '{file}'")
        tracker = UploadProgress(file.stat().st_size, progress)
        with file.open("rb") as stream:
            reader = cast(BinaryIO, ProgressReader(stream, tracker))
            parts = {"file": (file.name, reader, "application/octet-stream")}
            return self._json("POST", target, data=fields, files=parts)

    def list_datasets(self) -> list[dict[str, Any]]:
        datasets: list[dict[str, Any]] = self._json("GET", "/api/v1/datasets")["datasets"]
        return datasets

    def get_dataset(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/datasets/{_q(name)}")

    def delete_dataset(self, name: str) -> None:
        self._request("DELETE", f"/api/v1/datasets/{_q(name)}")

    # -- jobs ----------------------------------------------------------------------------

    def train(
        self,
        dataset: str,
        family: str,
        target: str,
        *,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        deploy: bool = False,
        dataset_version: int | None = None,
    ) -> dict[str, Any]:
        """Queue a training job; returns the job (``id``, ``state`` ...)."""
        body: dict[str, Any] = {
            "dataset": dataset,
            "family": family,
            "target": target,
            "params": dict(params or {}),
            "deploy": deploy,
        }
        if name is not None:
            body["name"] = name
        if dataset_version is not None:
            body["dataset_version"] = dataset_version
        return self._json("POST", "/api/v1/jobs", json=body)

    def search(
        self,
        dataset: str,
        family: str | Sequence[str],
        target: str,
        *,
        trials: int = 20,
        space: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        parallel: int | None = None,
        pruner: Mapping[str, Any] | None = None,
        seed: int = 0,
        baseline: bool = True,
        name: str | None = None,
        deploy: bool = False,
        dataset_version: int | None = None,
    ) -> dict[str, Any]:
        """Queue a hyperparameter search of ``trials`` trials of ``family`` (or of several
        families) over ``space`` (default: the families' own space), ``params`` fixed; its
        best trial registers a version of ``name``. Returns the search job."""
        families = [family] if isinstance(family, str) else list(family)
        search: dict[str, Any] = {
            "trials": trials,
            "space": dict(space or {}),
            "seed": seed,
            "baseline": baseline,
        }
        if len(families) > 1:
            search["families"] = families
        if parallel is not None:
            search["parallel"] = parallel
        if pruner is not None:
            search["pruner"] = dict(pruner)
        body: dict[str, Any] = {
            "dataset": dataset,
            "family": families[0],
            "target": target,
            "params": dict(params or {}),
            "deploy": deploy,
            "search": search,
        }
        if name is not None:
            body["name"] = name
        if dataset_version is not None:
            body["dataset_version"] = dataset_version
        return self._json("POST", "/api/v1/jobs", json=body)

    def list_jobs(
        self, state: str | None = None, *, parent: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Jobs, newest first (the server's default of 100 at most, or ``limit``, up to
        1000); ``parent``: the trials of that search."""
        params: dict[str, Any] = {"state": state} if state else {}
        if parent is not None:
            params["parent"] = int(parent)
        if limit is not None:
            params["limit"] = int(limit)
        doc = self._json("GET", "/api/v1/jobs", params=params or None)
        jobs: list[dict[str, Any]] = doc["jobs"]
        return jobs

    def get_job(self, job: int) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{int(job)}")

    def cancel_job(self, job: int) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{int(job)}/cancel")

    def job_events(self, job: int, after: int = 0) -> list[dict[str, Any]]:
        """The job's history so far: state changes, epochs' metrics, log lines."""
        doc = self._json("GET", f"/api/v1/jobs/{int(job)}/events", params={"after": after})
        events: list[dict[str, Any]] = doc["events"]
        return events

    def follow_job(self, job: int, after: int = 0) -> Iterator[dict[str, Any]]:
        """The job's events as they happen (server-sent events), until it ends; the last
        one has ``kind`` ``end`` and the finished job as ``data``."""
        path = f"/api/v1/jobs/{int(job)}/events?follow=true&after={int(after)}"
        with self._stream(path) as response:
            kind, data = "", ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :]
                elif not line and data:
                    event = json.loads(data)
                    if kind == "end":
                        yield {"kind": "end", "data": event}
                        return
                    yield event
                    kind, data = "", ""

    def wait_job(
        self, job: int, timeout: float | None = None, poll_s: float = 0.25
    ) -> dict[str, Any]:
        """Poll until the job ends; the finished job (TimeoutError after ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get_job(job)
            if record["state"] in FINISHED:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still {record['state']} after {timeout:g} s")
            time.sleep(poll_s)


def _q(name: str) -> str:
    if not name:
        raise ApiError(400, "a dataset name is required")
    return quote(name, safe="")
