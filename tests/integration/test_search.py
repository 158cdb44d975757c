"""Hyperparameter search as a user meets it: ``modelbay search`` against a real server whose
two job workers run the trials side by side, the pruner stopping trials that fall behind,
the best trial registered once and answering V2 requests, ``jobs show`` printing the trials
and the parameters' importances, and a cancelled search taking its trials with it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer, finish_on_a_new_worker, start_worker
from tests.integration.http import ADMIN_KEY

from modelbay.client import Client

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with two job workers (two trials train at once), and digits pushed."""
    root = tmp_path_factory.mktemp("search")
    running = RunningServer(root / "data", root / "server.log", env={"MODELBAY_JOB_WORKERS": "2"})
    running.start()
    ok(modelbay(running.url, "datasets", "push", "sklearn:digits", "--name", "digits"))
    yield running
    running.stop()


def test_a_search_prunes_trials_registers_its_best_one_and_shows_its_trials(
    searcher: RunningServer, tmp_path: Path
) -> None:
    space = tmp_path / "space.json"
    # A learning rate that learns nothing in 4 epochs beside the default one: the trials
    # drawn with it fall behind at once. Trial 0 trains the defaults (lr 0.01, batch 16);
    # with seed 2 the sampler draws 1e-05 for trial 2, asked once a trial has completed.
    space.write_text(json.dumps({"lr": [0.01, 0.00001], "batch_size": {"choices": [16, 64]}}))
    result = modelbay(
        searcher.url,
        *("search", "--dataset", "digits", "--family", "logistic", "--target", "target"),
        *("--trials", "5", "--parallel", "2", "--space", str(space), "--seed", "2"),
        *("--param", "epochs=4", "--name", "searched"),
        *("--pruner", "median", "--pruner-param", "startup_trials=1"),
        *("--pruner-param", "warmup_epochs=0", "--wait", "--json"),
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    search: dict[str, Any] = json.loads(result.stdout)
    assert search["state"] == "succeeded", search
    assert search["kind"] == "search"
    assert search["model_version"] == 1
    summary = search["result"]["search"]
    trials = summary["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2, 3, 4]
    assert trials[0]["params"] == {"lr": 0.01, "batch_size": 16}  # the baseline
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned
    assert all(t["pruned_at_epoch"] < 4 for t in pruned)
    best = summary["best"]
    assert best["value"] >= trials[0]["value"]
    assert summary["importances"]

    # Each trial is a job of its own, under the search; none registered a version.
    children = http.get(f"{searcher.url}/api/v1/jobs", params={"parent": search["id"]}).json()
    by_trial = {c["result"]["trial"]: c for c in children["jobs"]}
    assert sorted(by_trial) == [0, 1, 2, 3, 4]
    assert all(
        c["parent"] == search["id"] and c["model_version"] is None for c in by_trial.values()
    )
    assert all(c["state"] == "succeeded" for c in by_trial.values())
    assert {n for n, c in by_trial.items() if c["result"]["pruned"]} == {t["trial"] for t in pruned}
    versions = http.get(f"{searcher.url}/api/v1/models/searched/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1]
    source = versions[0]["source"]
    assert source["search"] == {
        "job": search["id"],
        "trial": best["trial"],
        "trial_job": by_trial[best["trial"]]["id"],
    }
    assert source["spec"]["lr"] == best["params"]["lr"]

    # Served, the best trial's model predicts the test rows as the trial evaluated them.
    x, _ = load_digits(return_X_y=True)
    rows = search["result"]["test_indices"]
    answer = http.post(
        f"{searcher.url}/v2/models/searched/versions/1/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [len(rows), 64],
                    "data": x[rows].astype(np.float32).ravel().tolist(),
                }
            ]
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    predicted = np.asarray(out["data"]).reshape(out["shape"]).argmax(1)
    assert predicted.tolist() == search["result"]["test_predictions"]

    shown = ok(modelbay(searcher.url, "jobs", "show", str(search["id"])))
    for words in ("hyperparameter search", "search space", "trials", "pruned", "best trial"):
        assert words in shown
    assert "parameter importances" in shown
    listed = ok(modelbay(searcher.url, "jobs", "list"))
    assert f"trial 4 of {search['id']}" in listed
    assert "pruned" in listed


def test_cancelling_a_search_cancels_its_trials_and_registers_nothing(
    searcher: RunningServer,
) -> None:
    with Client(searcher.url, ADMIN_KEY) as client:
        search = client.search(
            "digits",
            "mlp",
            "target",
            trials=6,
            parallel=2,
            params={"epochs": 500},
            name="never-registered",
        )
        deadline = time.monotonic() + 60
        while not any(j["state"] == "running" for j in client.list_jobs(parent=search["id"])):
            assert time.monotonic() < deadline, "no trial started in 60 s"
            time.sleep(0.5)
        client.cancel_job(search["id"])
        final = client.wait_job(search["id"], timeout=90, poll_s=0.5)
        assert final["state"] == "cancelled"
        trials = client.list_jobs(parent=search["id"])
    assert trials
    assert {t["state"] for t in trials} == {"cancelled"}
    assert http.get(f"{searcher.url}/api/v1/models/never-registered").status_code == 404


def test_a_bad_space_is_a_422_naming_the_dimension(searcher: RunningServer) -> None:
    def create(search: dict[str, Any], **body: Any) -> tuple[int, dict[str, Any]]:
        answer = http.post(
            f"{searcher.url}/api/v1/jobs",
            json={"dataset": "digits", "family": "mlp", "target": "target", "search": search}
            | body,
        )
        return answer.status_code, answer.json()

    status, error = create({"space": {"lr": {"low": 1e-3, "high": 20}}})
    assert status == 422
    assert "search.space.lr" in json.dumps(error)
    status, error = create({"space": {"channels": ["8,16,32"]}})
    assert status == 422
    assert "search.space.channels" in json.dumps(error)
    status, error = create({"families": ["mlp", "linear"]})
    assert status == 422
    assert "one task" in json.dumps(error)
    status, _ = create({"trials": 0})
    assert status == 422


def test_a_search_whose_worker_is_killed_resumes_its_study_elsewhere(
    queue: RunningServer, tmp_path: Path
) -> None:
    client = Client(queue.url, ADMIN_KEY)
    search = client.search(
        "digits", "logistic", "target", trials=4, parallel=1, params={"epochs": 4}, name="resumed"
    )
    first = start_worker(queue, tmp_path / "worker-1.log")
    try:
        deadline = time.monotonic() + 120
        while not any(
            c["state"] == "succeeded" for c in client.list_jobs(parent=search["id"])
        ):  # a trial has ended: the study holds a complete trial
            assert time.monotonic() < deadline, "no trial ended in time"
            time.sleep(0.2)
        first.kill()  # the search's coordinator and its running trial die with it
        first.wait()
        final = finish_on_a_new_worker(queue, tmp_path / "worker-2.log", search["id"])
    finally:
        if first.poll() is None:
            first.kill()
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 2  # resumed once, by the second worker
    trials = final["result"]["search"]["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2, 3]  # none lost, none run twice
    children = client.list_jobs(parent=search["id"])
    assert sorted(c["result"]["trial"] for c in children) == [0, 1, 2, 3]
    versions = http.get(f"{queue.url}/api/v1/models/resumed/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1]
