"""Federated jobs on a real server: simulated clients as accurate as one process, non-IID
clients reported, and real client processes (``modelbay federated join``, each with its own
API key and data file) finishing a job after one of them is killed mid-round."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
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

from modelbay.client import ApiError, Client
from modelbay.protocols.federated import encode_tensors

SINGLE_PROCESS_ACCURACY = 0.975
"""The digits CNN trained in one process (its defaults, seed 0, the same split), as
docs/training.md reports it and test_training.py holds it to (>= 0.97)."""
TOLERANCE = 0.015  # the issue's: within 1.5 accuracy points of one process
SIMULATED = ("--param", "rounds=12", "--param", "local_epochs=2", "--param", "lr=0.006")
"""12 rounds of 2 local epochs: as many rows trained on as the single process's 25 epochs.
Measured: IID 0.975, label-skewed 0.950 (docs/training.md)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("federated")
    running = RunningServer(
        root / "data", root / "server.log", env={"MODELBAY_JOB_THREADS": "2"}, workers=1
    )
    running.start()
    ok(modelbay(running.url, "datasets", "push", "sklearn:digits", "--name", "digits"))
    yield running
    running.stop()


def _simulated(server: RunningServer, partition: str) -> dict[str, Any]:
    result = modelbay(
        server.url,
        "train",
        "--dataset",
        "digits",
        "--family",
        "cnn",
        "--target",
        "target",
        "--strategy",
        "federated",
        "--clients",
        "3",
        "--simulate",
        "--partition",
        partition,
        "--name",
        f"digits-fed-{partition}",
        *SIMULATED,
        "--json",
    )
    queued = json.loads(ok(result))
    with Client(server.url, ADMIN_KEY) as client:  # a loaded machine may take minutes
        job: dict[str, Any] = client.wait_job(queued["id"], timeout=600, poll_s=0.5)
    assert job["state"] == "succeeded", job
    return job


def _rounds(client: Client, job: int) -> list[dict[str, Any]]:
    return [e["data"] for e in client.job_events(job) if e["kind"] == "metric"]


def _logs(client: Client, job: int) -> list[str]:
    return [e["data"]["message"] for e in client.job_events(job) if e["kind"] == "log"]


def test_three_simulated_iid_clients_train_the_cnn_as_accurately_as_one_process(
    server: RunningServer,
) -> None:
    job = _simulated(server, "iid")
    assert job["kind"] == "train"  # simulated clients are the job's own
    assert job["metrics"]["accuracy"] >= SINGLE_PROCESS_ACCURACY - TOLERANCE, job["metrics"]
    with Client(server.url, ADMIN_KEY) as client:
        rounds = _rounds(client, job["id"])
        logs = _logs(client, job["id"])
    assert [r["epoch"] for r in rounds] == list(range(1, 13))
    assert all(r["clients"] == 3 for r in rounds)
    assert any("3 simulated clients (iid)" in line for line in logs), logs
    version = http.get(f"{server.url}/api/v1/models/digits-fed-iid/versions/1").json()
    assert version["source"]["spec"]["strategy"] == "federated"


def test_label_skewed_clients_train_and_report_their_accuracy(server: RunningServer) -> None:
    job = _simulated(server, "label")
    assert job["metrics"]["accuracy"] >= 0.8, job["metrics"]  # reported; measured 0.950
    with Client(server.url, ADMIN_KEY) as client:
        logs = _logs(client, job["id"])
    described = next(line for line in logs if "simulated clients (label)" in line)
    # Each client sees a few classes only (two shards of the rows sorted by label).
    assert all(int(part.split(", ")[1].split()[0]) <= 5 for part in described.split("; ")), (
        described
    )


def _shards(tmp_path: Path) -> list[Path]:
    """Digits in three files of their own: two CSVs and an npz of columns."""
    frame = load_digits(as_frame=True).frame
    parts = np.array_split(np.random.default_rng(1).permutation(len(frame)), 3)
    paths = []
    for index, rows in enumerate(parts):
        shard = frame.iloc[rows]
        if index < 2:
            path = tmp_path / f"clinic-{index}.csv"
            shard.to_csv(path, index=False)
        else:
            path = tmp_path / "clinic-2.npz"
            np.savez(path, **{str(c): shard[c].to_numpy() for c in shard.columns})
        paths.append(path)
    return paths


def _join(server: RunningServer, job: int, data: Path, key: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MODELBAY_URL": server.url, "MODELBAY_API_KEY": key, "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "modelbay", "federated", "join", str(job), "--data", str(data)]
        + ["--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _status(client: Client, job: int) -> dict[str, Any]:
    return client.federation(job)


def test_a_round_with_three_client_processes_completes_when_one_is_killed(
    server: RunningServer, tmp_path: Path
) -> None:
    keys = [server.key("developer", "hospitals") for _ in range(3)]
    ok(
        modelbay(
            server.url, "datasets", "push", "sklearn:digits", "--name", "h-digits", key=keys[0]
        )
    )
    submitted = modelbay(
        server.url,
        "train",
        "--dataset",
        "h-digits",
        "--family",
        "cnn",
        "--target",
        "target",
        "--strategy",
        "federated",
        "--clients",
        "3",
        "--param",
        "min_clients=2",
        "--param",
        "rounds=4",
        "--param",
        "local_epochs=3",
        "--param",
        "round_timeout_s=120",
        "--name",
        "hospitals-cnn",
        "--json",
        key=keys[0],
    )
    job = json.loads(ok(submitted))
    assert job["kind"] == "federated"
    clients = [
        _join(server, job["id"], data, key)
        for data, key in zip(_shards(tmp_path), keys, strict=True)
    ]
    killed = clients[2]
    with Client(server.url, keys[0]) as client:
        try:
            deadline = time.monotonic() + 120
            while True:  # round 2 is open and no client has answered it: all are training
                status = _status(client, job["id"])
                if status["round"] >= 2 and (status["answered"] == 0 or status["round"] > 2):
                    break
                assert time.monotonic() < deadline, status
                assert killed.poll() is None, killed.communicate()[0]
                time.sleep(0.05)
            mid_round = status["round"] == 2  # else it raced on; it is killed all the same
            killed.send_signal(signal.SIGKILL)
            outputs = [c.communicate(timeout=120)[0] for c in clients]
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
        final = client.wait_job(job["id"], timeout=120)
        rounds = _rounds(client, job["id"])
        logs = _logs(client, job["id"])
    assert killed.returncode == -signal.SIGKILL
    for survivor, output in zip(clients[:2], outputs[:2], strict=True):
        assert survivor.returncode == 0, output
        assert "ended (done)" in output, output
    assert final["state"] == "succeeded", final
    assert [r["epoch"] for r in rounds] == [1, 2, 3, 4]
    assert rounds[0]["clients"] == 3
    assert rounds[-1]["clients"] == 2
    if mid_round:
        assert rounds[1]["clients"] == 2  # round 2 closed with the two others
    assert any("dropped" in line for line in logs), logs
    # The model is registered in the clients' tenant and answers V2 inference.
    x, y = load_digits(return_X_y=True)
    rows = x[final["result"]["test_indices"]].astype(np.float32)
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
    answer = http.post(
        f"{server.url}/v2/models/hospitals-cnn/infer",
        json=body,
        headers=http.auth(keys[1]),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    predicted = np.asarray(out["data"]).reshape(out["shape"]).argmax(1)
    assert predicted.tolist() == final["result"]["test_predictions"]
    assert float(np.mean(predicted == y[final["result"]["test_indices"]])) > 0.5


def test_bad_client_calls_get_4xx_naming_the_problem(server: RunningServer) -> None:
    key, stranger = server.key("developer", "labs"), server.key("developer", "labs")
    ok(modelbay(server.url, "datasets", "push", "sklearn:iris", "--name", "l-iris", key=key))
    with Client(server.url, key) as client:
        job = client.train(
            "l-iris",
            "mlp",
            "target",
            params={"strategy": "federated", "clients": 1, "rounds": 1, "round_timeout_s": 120},
        )
        plain = client.train("l-iris", "logistic", "target")
        try:
            _check_refusals(client, Client(server.url, stranger), job["id"], plain["id"])
        finally:
            for leftover in (job["id"], plain["id"]):
                with contextlib.suppress(ApiError):  # it may have ended by now
                    client.cancel_job(leftover)


def _expect(call: Any, status: int, named: str) -> None:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    assert named in caught.value.message, caught.value.message


def _check_refusals(client: Client, stranger: Client, job: int, plain: int) -> None:
    _expect(lambda: client.federation(plain), 409, "is a train job")
    deadline = time.monotonic() + 60
    while client.federation(job)["stage"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = client.federation(job)
    values = int(np.prod(status["row_shape"]))
    short = {"examples": 10, "feature_sum": [1.0], "feature_sum_sq": [1.0]}
    _expect(lambda: client.join_federation(job, short), 422, "feature_sum has 1 values")
    stats = {
        "examples": 150,
        "feature_sum": [5.8 * 150] * values,
        "feature_sum_sq": [40.0 * 150] * values,
    }
    me = client.join_federation(job, stats)["client"]
    _expect(lambda: client.join_federation(job, stats), 409, "has its 1 clients")
    _expect(lambda: stranger.federated_client(job, me), 403, "another API key")
    _expect(lambda: client.federated_client(job, "c9-000000"), 404, "has no client 'c9-000000'")
    while client.federated_client(job, me)["action"] != "train":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _expect(lambda: client.federated_model(job, 2), 409, "round 2 of job")
    layout = {name: np.zeros(shape, np.float32) for name, shape in _layout(client, job).items()}
    first = sorted(layout)[0]

    def send(tensors: dict[str, np.ndarray], round: int = 1) -> dict[str, Any]:
        return client.send_federated_update(job, round, me, encode_tensors(tensors), examples=150)

    _expect(lambda: send(layout, 2), 409, "round 2 of job")
    _expect(lambda: send({**layout, first: np.zeros((3, 3), np.float32)}), 422, f"'{first}'")
    _expect(lambda: send({k: v for k, v in layout.items() if k != first}), 422, f"'{first}'")
    _expect(lambda: send({**layout, "extra": np.zeros(1, np.float32)}), 422, "'extra'")
    nan = {**layout, first: np.full(layout[first].shape, np.nan, np.float32)}
    _expect(lambda: send(nan), 422, f"'{first}'")
    _expect(
        lambda: client.send_federated_update(job, 1, me, b"not a file", examples=1), 422, "update"
    )
    huge = {**layout, first: np.zeros((4096, 1024), np.float32)}
    _expect(lambda: send(huge), 413, "at most")
    assert send(layout)["answered"] == 1
    _expect(lambda: send(layout), 409, "already sent")


def _layout(client: Client, job: int) -> dict[str, list[int]]:
    """The tensors an update holds: the global model's less the normalisation."""
    from modelbay.protocols.federated import decode_tensors

    tensors, _ = decode_tensors(client.federated_model(job, 1), what="global model")
    normalization = ("normalize.mean", "normalize.std", "target_mean", "target_std")
    return {k: list(v.shape) for k, v in tensors.items() if k not in normalization}
