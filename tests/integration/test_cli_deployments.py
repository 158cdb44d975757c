"""``modelbay deploy``, ``scale``, ``undeploy``, ``deployments ...`` and the SDK's deploy.

A tiny ONNX MLP is pushed with the CLI, deployed with batching, listed, served through its
replica, scaled and undeployed, all as the real console script against the real server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer
from tests.integration.models import BuiltModel, build_onnx, iris

from modelbay.client import ApiError, Client

MODEL = "cli-deploy-mlp"
SDK_MODEL = "sdk-deploy-mlp"


def listed(server: RunningServer, name: str) -> dict[str, Any] | None:
    deployments = json.loads(ok(modelbay(server.url, "deployments", "list", "--json")))
    return next((d for d in deployments if d["name"] == name), None)


def batches(server: RunningServer, model: str) -> float:
    prefix = "modelbay_batch_size_count{"
    lines = http.get(f"{server.url}/metrics").text.splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(prefix) and f'model="{model}"' in line
    )


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return build_onnx(tmp_path_factory.mktemp("cli-deploy"))


@pytest.fixture(scope="module")
def deployed(server: RunningServer, onnx_model: BuiltModel) -> Iterator[dict[str, Any]]:
    """MODEL pushed and deployed with the CLI, waiting for its replica; undeployed after."""
    ok(modelbay(server.url, "models", "push", str(onnx_model.path), "--name", MODEL))
    out = ok(modelbay(server.url, "deploy", MODEL, "--max-batch-size", "8", "--json"))
    yield json.loads(out)
    with Client(server.url) as client:
        if any(d["name"] == MODEL for d in client.list_deployments()):
            client.undeploy(MODEL)


def test_deploy_returns_once_its_replica_is_ready(deployed: dict[str, Any]) -> None:
    assert deployed["target"] == "latest"
    assert deployed["config"]["max_batch_size"] == 8
    assert deployed["status"]["state"] == "ready"
    assert [(v["version"], v["replicas"]) for v in deployed["status"]["versions"]] == [(1, 1)]


def test_list_shows_the_deployment_with_one_ready_replica(
    server: RunningServer, deployed: dict[str, Any]
) -> None:
    mine = listed(server, MODEL)
    assert mine is not None
    assert mine["status"]["versions"][0]["replicas"] == 1
    table = ok(modelbay(server.url, "deployments", "list"))
    row = next(line for line in table.splitlines() if MODEL in line)
    assert "v1: 1/1" in row
    assert "8 rows, 2 ms" in row
    assert "ready" in row


def test_show_prints_settings_and_the_running_version(
    server: RunningServer, deployed: dict[str, Any]
) -> None:
    shown = ok(modelbay(server.url, "deployments", "show", MODEL))
    assert "8 rows, 2 ms" in shown
    assert "primary" in shown
    assert str(deployed["status"]["versions"][0]["pids"][0]) in shown


def test_cli_predict_is_answered_by_the_deployment(
    server: RunningServer, deployed: dict[str, Any], onnx_model: BuiltModel, tmp_path: Path
) -> None:
    x = iris()[0][:3].astype(np.float32)
    input_file = tmp_path / "rows.json"
    input_file.write_text(json.dumps({"x": x.tolist()}))
    before = batches(server, MODEL)
    outputs = json.loads(ok(modelbay(server.url, "predict", MODEL, "--input", str(input_file))))
    np.testing.assert_allclose(outputs["y"], onnx_model.reference(x), atol=1e-5)
    assert batches(server, MODEL) == before + 1


def test_deploy_again_changes_the_deployment_in_place_and_says_what_changed(
    server: RunningServer, deployed: dict[str, Any], onnx_model: BuiltModel
) -> None:
    # It failed: "already deployed; change the deployment or undeploy it".
    x = iris()[0][:2].astype(np.float32)
    out = ok(modelbay(server.url, "deploy", MODEL, "--max-batch-size", "4"))
    assert f"updated {MODEL}: max_batch_size 8 → 4" in out
    mine = listed(server, MODEL)
    assert mine is not None
    assert mine["config"]["max_batch_size"] == 4
    assert mine["config"]["max_replicas"] == deployed["config"]["max_replicas"]  # unchanged
    unchanged = ok(modelbay(server.url, "deploy", MODEL, "--max-batch-size", "4"))
    assert f"{MODEL} is already deployed as asked; nothing changed" in unchanged
    # A new version pinned: rolled in while requests keep being answered.
    ok(modelbay(server.url, "models", "push", str(onnx_model.path), "--name", MODEL))
    codes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with Client(server.url) as client:
            while not stop.is_set():
                try:
                    client.predict(MODEL, {"x": x})
                    codes.append(200)
                except ApiError as exc:
                    codes.append(exc.status)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        rolled = ok(modelbay(server.url, "deploy", f"{MODEL}:2"))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert f"updated {MODEL}: version latest → 2" in rolled
    assert codes
    assert set(codes) == {200}, codes


def test_scale_changes_the_replica_range(server: RunningServer, deployed: dict[str, Any]) -> None:
    out = ok(modelbay(server.url, "scale", MODEL, "--max", "2"))
    assert f"{MODEL}: 1 to 2 replicas" in out
    mine = listed(server, MODEL)
    assert mine is not None
    assert (mine["config"]["min_replicas"], mine["config"]["max_replicas"]) == (1, 2)


def test_undeploy_removes_the_deployment(server: RunningServer, deployed: dict[str, Any]) -> None:
    assert f"undeployed {MODEL}" in ok(modelbay(server.url, "undeploy", MODEL))
    assert listed(server, MODEL) is None
    missing = modelbay(server.url, "deployments", "show", MODEL)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_sdk_deploy_waits_until_ready(server: RunningServer, onnx_model: BuiltModel) -> None:
    with Client(server.url) as client:
        client.push(SDK_MODEL, onnx_model.path)
        try:
            record = client.deploy(SDK_MODEL, 1, max_queue_delay_ms=1, timeout=60)
            versions = record["status"]["versions"]
            assert [(v["version"], v["role"], v["replicas"]) for v in versions] == [
                (1, "primary", 1)
            ]
            x = iris()[0][:2].astype(np.float32)
            outputs = client.predict(SDK_MODEL, {"x": x})
            np.testing.assert_allclose(outputs["y"], onnx_model.reference(x), atol=1e-5)
        finally:
            client.undeploy(SDK_MODEL)
        with pytest.raises(ApiError, match="not found") as info:
            client.get_deployment(SDK_MODEL)
        assert info.value.status == 404
