"""Restarts keep everything; a corrupted blob is detected at load and never served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import build_onnx, build_sklearn, iris
from tests.postgres import postgres_cluster

from modelbay.registry import make_engine
from modelbay.registry.locks import RegistryLock


def _predict(server: RunningServer, name: str, ref: str, x: np.ndarray) -> httpx.Response:
    request = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    return http.post(
        f"{server.url}/v2/models/{name}/versions/{ref}/infer", json=request, timeout=60
    )


def test_models_versions_and_aliases_survive_a_restart(
    fresh_server: RunningServer, tmp_path: Path
) -> None:
    onnx = build_onnx(tmp_path)
    skl = build_sklearn(tmp_path)
    fresh_server.push("keep-onnx", onnx.path)
    fresh_server.push("keep-onnx", onnx.path)
    fresh_server.push("keep-skl", skl.path)
    http.put(
        f"{fresh_server.url}/api/v1/models/keep-onnx/aliases/production", json={"version": 1}
    ).raise_for_status()
    before = http.get(f"{fresh_server.url}/api/v1/models").json()

    fresh_server.restart()

    after = http.get(f"{fresh_server.url}/api/v1/models").json()
    assert after == before
    assert [
        v["version"]
        for v in http.get(f"{fresh_server.url}/api/v1/models/keep-onnx/versions").json()["versions"]
    ] == [1, 2]
    x = iris()[0][:5].astype(np.float32)
    response = _predict(fresh_server, "keep-onnx", "production", x)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"]).reshape(5, 3)
    np.testing.assert_allclose(got, onnx.reference(x), atol=1e-5)


def test_corrupted_blob_is_detected_at_load_and_never_served(
    fresh_server: RunningServer, tmp_path: Path
) -> None:
    onnx = build_onnx(tmp_path)
    version = fresh_server.push("fragile", onnx.path)
    digest = version["files"][0]["digest"]
    fresh_server.stop()
    blob = next(fresh_server.data_dir.rglob(digest))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    fresh_server.start()

    x = iris()[0][:2].astype(np.float32)
    response = _predict(fresh_server, "fragile", "1", x)
    assert response.status_code == 500
    message = response.json()["error"]
    assert "corrupted" in message
    assert "mlp.onnx" in message
    assert "fragile" in message
    ready = http.get(f"{fresh_server.url}/v2/models/fragile/versions/1/ready")
    assert ready.status_code == 503
    download = http.get(f"{fresh_server.url}/api/v1/models/fragile/versions/1/files/mlp.onnx")
    assert download.status_code == 500
    assert "corrupted" in download.json()["error"]


def test_postgresql_registry_serves_and_survives_a_restart(
    postgres_server: RunningServer, tmp_path: Path
) -> None:
    server = postgres_server
    onnx = build_onnx(tmp_path)
    server.push("pg-onnx", onnx.path)
    http.put(
        f"{server.url}/api/v1/models/pg-onnx/aliases/production", json={"version": 1}
    ).raise_for_status()
    server.restart()
    assert not (server.data_dir / "registry.db").exists()
    x = iris()[0][:3].astype(np.float32)
    response = _predict(server, "pg-onnx", "production", x)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"]).reshape(3, 3)
    np.testing.assert_allclose(got, onnx.reference(x), atol=1e-5)


def test_two_servers_on_one_postgresql_never_collect_a_blob_the_other_reuses(
    postgres_url: str, tmp_path: Path
) -> None:
    # Garbage collection was locked per process: a delete on one frontend could remove a
    # blob that a push on the other had just reused.
    env = {"MODELBAY_DATABASE_URL": postgres_url}
    first = RunningServer(tmp_path / "data", tmp_path / "first.log", env=env)
    second = RunningServer(tmp_path / "data", tmp_path / "second.log", env=env)
    first.start()
    second.start()
    try:
        model = build_onnx(tmp_path).path
        first.push("gc-held", model)
        # While another process (this test) holds the registry-wide lock, neither server
        # can put blobs in with their rows, nor take rows out with their blobs.
        with ThreadPoolExecutor(2) as pool:
            with RegistryLock(make_engine(postgres_url)).held():
                pushed = pool.submit(upload, second.url, "gc-waits", model)
                deleted = pool.submit(http.delete, f"{first.url}/api/v1/models/gc-held")
                done, _ = wait([pushed, deleted], timeout=2)
                assert not done, [f.result().status_code for f in done]
            assert pushed.result().status_code == 201
            assert deleted.result().status_code == 204
        for i in range(8):
            first.push("gc-shared", model)
            with ThreadPoolExecutor(2) as pool:
                deleted = pool.submit(http.delete, f"{first.url}/api/v1/models/gc-shared")
                pushed = pool.submit(upload, second.url, f"gc-keep-{i}", model)
                assert deleted.result().status_code == 204
                assert pushed.result().status_code == 201, pushed.result().text
        for i in range(8):
            url = f"{first.url}/api/v1/models/gc-keep-{i}/versions/1/files/{model.name}"
            download = http.get(url)
            assert download.status_code == 200, download.text
            assert download.content == model.read_bytes()
    finally:
        second.stop()
        first.stop()


def test_readiness_is_a_cheap_database_check_that_fails_with_503(tmp_path: Path) -> None:
    with postgres_cluster() as cluster:
        if cluster is None:
            pytest.skip("PostgreSQL server binaries (initdb) not installed")
        server = RunningServer(
            tmp_path / "data", tmp_path / "log", env={"MODELBAY_DATABASE_URL": cluster.url}
        )
        server.start()
        try:
            assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
            cluster.stop()
            down = httpx.get(f"{server.url}/v2/health/ready", timeout=30)
            assert down.status_code == 503
            assert down.json() == {"ready": False}
            assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        finally:
            server.stop()
