"""Encryption at rest on the real server: ciphertext on disk, serving, a missing key, rotation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.models import BuiltModel, build_onnx, iris

from modelbay.store import generate_key
from modelbay.store.crypto import decode_key, key_id, stored_key_id

NAME = "sealed-mlp"


def _infer(server: RunningServer, path: str, x: np.ndarray) -> httpx.Response:
    request = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    return http.post(f"{server.url}/v2/models/{NAME}{path}/infer", json=request, timeout=60)


def _assert_serves(server: RunningServer, path: str, onnx: BuiltModel) -> None:
    x = iris()[0][:4].astype(np.float32)
    response = _infer(server, path, x)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"]).reshape(4, 3)
    np.testing.assert_allclose(got, onnx.reference(x), atol=1e-5)


def _deploy_and_serve(server: RunningServer, onnx: BuiltModel) -> None:
    created = http.post(f"{server.url}/api/v1/deployments", json={"model": NAME})
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 60
    while True:
        status: dict[str, Any] = http.get(f"{server.url}/api/v1/deployments/{NAME}").json()
        versions = status["status"]["versions"]
        if versions and versions[0]["replicas"] == 1:
            break
        assert time.monotonic() < deadline, f"no replica in 60 s:\n{server.log()[-3000:]}"
        time.sleep(0.1)
    _assert_serves(server, "", onnx)
    http.delete(f"{server.url}/api/v1/deployments/{NAME}").raise_for_status()


def _download(server: RunningServer) -> httpx.Response:
    return http.get(f"{server.url}/api/v1/models/{NAME}/versions/1/files/mlp.onnx")


def _rotate(server: RunningServer, new_key_file: Path, old_keys_file: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBAY_")}
    command = [sys.executable, "-m", "modelbay", "admin", "rotate-key"]
    command += ["--data-dir", str(server.data_dir), "--new-key-file", str(new_key_file)]
    command += ["--old-keys-file", str(old_keys_file)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_artifacts_are_encrypted_at_rest_and_survive_key_rotation(tmp_path: Path) -> None:
    first_key = generate_key()
    server = RunningServer(
        tmp_path / "data", tmp_path / "server.log", env={"MODELBAY_ENCRYPTION_KEY": first_key}
    )
    server.start()
    try:
        onnx = build_onnx(tmp_path)
        digest = server.push(NAME, onnx.path)["files"][0]["digest"]
        blob = server.data_dir / "blobs" / "sha256" / digest[:2] / digest
        model_bytes, stored = onnx.path.read_bytes(), blob.read_bytes()
        for start in range(0, len(model_bytes) - 32, 64):
            assert model_bytes[start : start + 32] not in stored
        _assert_serves(server, "/versions/1", onnx)
        _deploy_and_serve(server, onnx)
        download = _download(server)
        assert download.status_code == 200
        assert download.content == model_bytes

        server.extra_env = {}
        server.restart()
        refused = _infer(server, "/versions/1", iris()[0][:1].astype(np.float32))
        assert refused.status_code == 500
        message = refused.json()["error"]
        assert "no encryption key is configured" in message
        assert "MODELBAY_ENCRYPTION_KEY" in message
        assert NAME in message
        assert _download(server).status_code == 500
        assert http.get(f"{server.url}/v2/health/live").status_code == 200

        server.stop()
        new_key_file, old_keys_file = tmp_path / "new.key", tmp_path / "old.keys"
        new_key_file.write_text(generate_key())
        old_keys_file.write_text(first_key + "\n")
        assert "1 blobs re-encrypted" in _rotate(server, new_key_file, old_keys_file)
        new_id = key_id(decode_key(new_key_file.read_text(), "new key"))
        assert stored_key_id(blob, digest) == new_id
        old_keys_file.unlink()

        server.extra_env = {"MODELBAY_ENCRYPTION_KEY_FILE": str(new_key_file)}
        server.start()
        _assert_serves(server, "/versions/1", onnx)
        _deploy_and_serve(server, onnx)
        assert _download(server).content == model_bytes
    finally:
        server.stop()
