"""Jobs trained by several processes (strategies ddp, average, ensemble) on a real server:
as accurate as one process, served like any model, resumed when a rank is killed, and
stopped whole when cancelled."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.processes import gone

from modelbay.client import Client

TOLERANCE = 0.015  # the issue's: within 1.5 accuracy points of one process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with one job worker; each training process (or rank) has one thread."""
    root = tmp_path_factory.mktemp("strategies")
    running = RunningServer(root / "data", root / "server.log", workers=1)
    running.start()
    ok(modelbay(running.url, "datasets", "push", "sklearn:digits", "--name", "digits"))
    yield running
    running.stop()


def _train(server: RunningServer, *args: str) -> dict[str, Any]:
    result = modelbay(
        server.url,
        "train",
        "--dataset",
        "digits",
        "--family",
        "cnn",
        "--target",
        "target",
        *args,
        "--wait",
        "--json",
    )
    job: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert job["state"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def single(server: RunningServer) -> dict[str, Any]:
    """The digits CNN trained in one process: what the strategies are held to."""
    return _train(server, "--name", "digits-cnn-single")


def _served(server: RunningServer, job: dict[str, Any]) -> np.ndarray:
    x, _ = load_digits(return_X_y=True)
    rows = x[job["result"]["test_indices"]].astype(np.float32)
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ]
    }
    url = f"{server.url}/v2/models/{job['model']}/versions/{job['model_version']}/infer"
    answer = http.post(url, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])


def _logs(client: Client, job: int) -> list[str]:
    return [e["data"]["message"] for e in client.job_events(job) if e["kind"] == "log"]


@pytest.mark.parametrize("strategy", ["ddp", "average"])
def test_two_processes_train_the_cnn_as_accurately_as_one(
    server: RunningServer, single: dict[str, Any], strategy: str
) -> None:
    job = _train(server, "--strategy", strategy, "--workers", "2", "--name", f"cnn-{strategy}")
    assert job["spec"]["strategy"] == strategy
    assert job["spec"]["workers"] == 2
    assert job["metrics"]["accuracy"] >= single["metrics"]["accuracy"] - TOLERANCE, (
        job["metrics"],
        single["metrics"],
    )
    logs = _logs(Client(server.url, ADMIN_KEY), job["id"])
    assert any(f"({strategy}, 2 processes of 1 thread)" in line for line in logs), logs
    # Registered and served like any trained model: the test rows answer as evaluated.
    probabilities = _served(server, job)
    assert probabilities.argmax(1).tolist() == job["result"]["test_predictions"]


def test_an_ensemble_is_one_served_model_answering_the_mean_of_its_members(
    server: RunningServer,
) -> None:
    job = _train(
        server, "--strategy", "ensemble", "--workers", "3", "--param", "epochs=10", "--name", "trio"
    )
    assert job["metrics"]["accuracy"] >= 0.93, job["metrics"]
    version = http.get(f"{server.url}/api/v1/models/trio/versions/1").json()
    assert version["format"] == "onnx"
    assert version["source"]["spec"]["strategy"] == "ensemble"
    assert version["source"]["spec"]["workers"] == 3
    probabilities = _served(server, job)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert probabilities.argmax(1).tolist() == job["result"]["test_predictions"]


def _rank_pids(rank: int) -> list[int]:
    """Live processes running rank ``rank`` of a parallel job (on this machine)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"modelbay.training.distributed" in args and f"--rank={rank}".encode() in args
        if ours and not gone(int(proc.name)):
            found.append(int(proc.name))
    return found


def _wait(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_a_killed_rank_fails_its_step_and_the_job_resumes_from_the_checkpoint(
    server: RunningServer,
) -> None:
    client = Client(server.url, ADMIN_KEY)
    params = {"strategy": "ddp", "workers": 2, "epochs": 10}
    job = client.train("digits", "cnn", "target", params=params, name="cnn-survivor")
    _wait(lambda: client.get_job(job["id"])["checkpoint_epoch"] >= 2)
    (rank1,) = _rank_pids(1)
    os.kill(rank1, signal.SIGKILL)
    final = client.wait_job(job["id"], timeout=300)
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 1  # the job's process restarted its ranks itself
    restarts = [line for line in _logs(client, job["id"]) if "restarting" in line]
    assert len(restarts) == 1, restarts
    assert restarts[0].startswith("rank 1 ended with SIGKILL: restarting the 2 processes from")
    epochs = [e["data"]["epoch"] for e in client.job_events(job["id"]) if e["kind"] == "metric"]
    assert epochs == list(range(1, 11))  # no epoch lost or counted twice
    assert final["metrics"]["accuracy"] >= 0.9


def test_cancelling_a_parallel_job_stops_every_rank(server: RunningServer) -> None:
    client = Client(server.url, ADMIN_KEY)
    params = {"strategy": "average", "workers": 2, "epochs": 500}
    job = client.train("digits", "cnn", "target", params=params, name="cnn-cancelled")
    _wait(lambda: client.get_job(job["id"])["checkpoint_epoch"] >= 1)
    ranks = _rank_pids(0) + _rank_pids(1)
    assert len(ranks) == 2
    client.cancel_job(job["id"])
    final = client.wait_job(job["id"], timeout=60, poll_s=0.2)
    assert final["state"] == "cancelled", final
    _wait(lambda: all(gone(pid) for pid in ranks), timeout=30)
    assert http.get(f"{server.url}/api/v1/models/cnn-cancelled").status_code == 404
