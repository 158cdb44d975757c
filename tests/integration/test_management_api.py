"""The management API: lifecycle, downloads, and its 4xx answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import build_sklearn


@pytest.fixture(scope="module")
def skops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sklearn(tmp_path_factory.mktemp("skl")).path


def test_model_lifecycle_with_metadata_download_and_blob_cleanup(
    server: RunningServer, skops_file: Path
) -> None:
    url = server.url
    created = http.post(
        f"{url}/api/v1/models",
        json={
            "name": "life",
            "description": "iris",
            "task": "classification",
            "labels": ["setosa", "versicolor", "virginica"],
            "tags": {"team": "a"},
        },
    )
    assert created.status_code == 201, created.text
    assert http.post(f"{url}/api/v1/models", json={"name": "life"}).status_code == 409

    pushed = upload(
        url,
        "life",
        skops_file,
        metrics='{"accuracy": 0.97}',
        source='{"dataset": "iris"}',
        tags='{"stage": "dev"}',
    )
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()
    assert version["version"] == 1
    assert version["format"] == "sklearn"
    assert version["metrics"] == {"accuracy": 0.97}
    assert version["signature"]["inputs"][0] == {
        "name": "input",
        "datatype": "FP64",
        "shape": [-1, 4],
    }
    digest = version["files"][0]["digest"]
    assert digest == hashlib.sha256(skops_file.read_bytes()).hexdigest()

    download = http.get(f"{url}/api/v1/models/life/versions/1/files/{skops_file.name}")
    assert download.status_code == 200
    assert download.content == skops_file.read_bytes()

    metadata = http.get(f"{url}/v2/models/life").json()
    assert metadata["platform"] == "sklearn"
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]

    assert http.delete(f"{url}/api/v1/models/life/versions/1").status_code == 204
    assert http.get(f"{url}/api/v1/models/life/versions/1").status_code == 404
    assert not list(server.data_dir.rglob(digest))
    assert http.delete(f"{url}/api/v1/models/life").status_code == 204
    assert http.get(f"{url}/api/v1/models/life").status_code == 404


def test_alias_errors_and_conflicts(server: RunningServer, skops_file: Path) -> None:
    url = server.url
    assert upload(url, "aliased", skops_file).status_code == 201
    assert upload(url, "aliased", skops_file).status_code == 201
    put = http.put(f"{url}/api/v1/models/aliased/aliases/production", json={"version": 1})
    assert put.status_code == 200
    assert put.json()["aliases"] == ["production"]
    blocked = http.delete(f"{url}/api/v1/models/aliased/versions/1")
    assert blocked.status_code == 409
    assert "production" in blocked.json()["error"]
    moved = http.put(f"{url}/api/v1/models/aliased/aliases/production", json={"version": 2})
    assert moved.json()["version"] == 2
    assert http.get(f"{url}/v2/models/aliased/versions/production").status_code == 200
    missing = http.put(f"{url}/api/v1/models/aliased/aliases/x", json={"version": 9})
    assert missing.status_code == 404
    reserved = http.put(f"{url}/api/v1/models/aliased/aliases/latest", json={"version": 1})
    assert reserved.status_code == 400
    assert http.delete(f"{url}/api/v1/models/aliased/aliases/production").status_code == 204
    assert http.delete(f"{url}/api/v1/models/aliased/aliases/production").status_code == 404
    assert http.get(f"{url}/v2/models/aliased/versions/production").status_code == 404


def test_unsupported_format_and_bad_signature_are_422(
    server: RunningServer, tmp_path: Path, skops_file: Path
) -> None:
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"\x00\x01 not a model")
    response = upload(server.url, "junk", junk)
    assert response.status_code == 422
    assert "format" in response.json()["error"]
    bad_sig = upload(server.url, "junk", skops_file, signature='{"inputs": 3}')
    assert bad_sig.status_code == 422
    assert "signature" in bad_sig.json()["error"]
    wrong_fmt = upload(server.url, "junk", skops_file, format="tensorflow")
    assert wrong_fmt.status_code == 422


def test_upload_or_chunked_body_over_the_limit_is_413(tmp_path: Path, skops_file: Path) -> None:
    limited = RunningServer(
        tmp_path / "data",
        tmp_path / "log",
        env={"MODELBAY_MAX_UPLOAD_BYTES": "1000", "MODELBAY_MAX_REQUEST_BYTES": "1000"},
    )
    limited.start()
    try:
        response = upload(limited.url, "big", skops_file)
        assert response.status_code == 413
        assert "limit" in response.json()["error"]
        assert http.get(f"{limited.url}/api/v1/models/big").status_code == 404
        # No Content-Length: the limit is found while FastAPI reads the body.
        chunks = iter([b'{"name": "big", "description": "', b"x" * 2000, b'"}'])
        chunked = http.post(
            f"{limited.url}/api/v1/models",
            content=chunks,
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413, chunked.text
    finally:
        limited.stop()
