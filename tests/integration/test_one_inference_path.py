"""Every inference runs in replica processes; the frontend loads no model and no framework.

A model that no deployment serves gets an implicit deployment: no replica until its first
request, one replica then, none again once it has been idle for MODELBAY_IMPLICIT_IDLE_S.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.models import (
    BuiltModel,
    build_onnx,
    build_sklearn,
    build_torchscript,
    iris,
)
from tests.integration.test_deployments import metric, wait_for
from tests.processes import gone

FRAMEWORK_LIBRARIES = ("libtorch", "onnxruntime", "/sklearn/", "/scipy/")
"""Paths that appear in a process's memory map once torch, onnxruntime or scikit-learn
(and scipy, which it brings) is imported."""


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("implicit")
    running = RunningServer(
        root / "data",
        root / "server.log",
        env={"MODELBAY_IMPLICIT_IDLE_S": "1", "MODELBAY_RECONCILE_INTERVAL_S": "0.5"},
    )
    running.start()
    yield running
    running.stop()


def frameworks_loaded(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in FRAMEWORK_LIBRARIES if name in maps]


def implicit_replicas(server: RunningServer, model: str) -> float:
    return metric(server, "modelbay_replicas", deployment=f"{model} (implicit)", state="ready")


def infer(server: RunningServer, model: BuiltModel, name: str, x: np.ndarray) -> np.ndarray:
    from modelbay.tensors import datatype_of

    x = x.astype(model.input_dtype)
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": model.input_name,
                "datatype": datatype_of(x),
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = http.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    output = next(o for o in response.json()["outputs"] if o["name"] == model.output_name)
    return np.asarray(output["data"]).reshape(output["shape"])


def test_pushes_validate_and_models_run_outside_the_frontend(
    idle_server: RunningServer, tmp_path: Path
) -> None:
    server = idle_server
    assert server.process is not None
    # `modelbay serve` itself, and its frontend processes when it runs several
    frontends = server.frontends()
    models = {
        "path-sklearn": build_sklearn(tmp_path),
        "path-onnx": build_onnx(tmp_path),
        "path-torchscript": build_torchscript(tmp_path),
    }
    for name, model in models.items():
        kwargs = {"signature": model.signature_file.read_text()} if model.signature_file else {}
        server.push(name, model.path, **kwargs)
        # Readiness of a version is a registry answer: it starts nothing.
        ready = http.get(f"{server.url}/v2/models/{name}/versions/1/ready")
        assert ready.status_code == 200, ready.text
        assert implicit_replicas(server, name) == 0
    for frontend in frontends:
        assert frameworks_loaded(frontend) == [], "pushing loaded a framework into a frontend"

    x = iris()[0][:5]
    for name, model in models.items():
        np.testing.assert_allclose(
            infer(server, model, name, x), model.reference(x.astype(model.input_dtype)), rtol=1e-4
        )
        assert implicit_replicas(server, name) == 1
    for frontend in frontends:
        assert frameworks_loaded(frontend) == [], "inference loaded a framework into a frontend"


def test_an_implicit_deployment_scales_to_zero_when_idle_and_back_on_demand(
    idle_server: RunningServer, tmp_path: Path
) -> None:
    server = idle_server
    model = build_onnx(tmp_path)
    server.push("path-idle", model.path)
    x = iris()[0][:3]
    infer(server, model, "path-idle", x)
    starts = metric(server, "modelbay_cold_starts_total", model="path-idle")
    assert starts == 1
    wait_for(lambda: implicit_replicas(server, "path-idle") == 0, timeout=30)

    np.testing.assert_allclose(
        infer(server, model, "path-idle", x), model.reference(x.astype(np.float32)), rtol=1e-4
    )
    assert metric(server, "modelbay_cold_starts_total", model="path-idle") == 2


def test_deleting_a_version_stops_its_implicit_replica(
    server: RunningServer, tmp_path: Path
) -> None:
    model = build_onnx(tmp_path)
    server.push("path-delete", model.path)
    infer(server, model, "path-delete", iris()[0][:2])
    assert implicit_replicas(server, "path-delete") == 1
    assert http.delete(f"{server.url}/api/v1/models/path-delete/versions/1").status_code == 204
    wait_for(lambda: implicit_replicas(server, "path-delete") == 0, timeout=15)
    missing = http.post(
        f"{server.url}/v2/models/path-delete/versions/1/infer",
        json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]},
    )
    assert missing.status_code == 404, missing.text


def test_a_replica_that_is_killed_is_replaced_for_the_next_request(
    idle_server: RunningServer, tmp_path: Path
) -> None:
    import os
    import signal

    server = idle_server
    model = build_onnx(tmp_path)
    server.push("path-kill", model.path)
    x = iris()[0][:2]
    infer(server, model, "path-kill", x)
    pids = [int(p) for p in _replica_pids(server)]
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(gone(pid) for pid in pids), timeout=10)
    np.testing.assert_allclose(
        infer(server, model, "path-kill", x), model.reference(x.astype(np.float32)), rtol=1e-4
    )


def _replica_pids(server: RunningServer) -> list[str]:
    """Replica processes of the server: its descendants named ``mb-replica``."""
    assert server.process is not None
    found: list[str] = []
    todo = [str(server.process.pid)]
    while todo:
        pid = todo.pop()
        children = _children(int(pid))
        todo += children
        found += [child for child in children if _comm(child) == "mb-replica"]
    return found


def _children(pid: int) -> list[str]:
    found: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += (task / "children").read_text().split()
    except FileNotFoundError:  # it exited meanwhile
        pass
    return found


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""
