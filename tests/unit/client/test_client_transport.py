"""The SDK's HTTP side against a mock transport: headers, paths, errors, V2 bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelbay.client import ApiError, Client
from modelbay.errors import ArtifactCorrupted, ModelbayError
from modelbay.protocols import v2

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, **kwargs: str) -> Client:
    return Client("http://mb.test/", transport=httpx.MockTransport(handler), **kwargs)


def test_api_key_is_sent_as_a_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"models": []})

    with _client(handler, api_key="s3cret") as client:
        assert client.list_models() == []
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert seen[0].url == "http://mb.test/api/v1/models"


def test_url_and_api_key_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBAY_URL", "http://from-env:9000/")
    monkeypatch.setenv("MODELBAY_API_KEY", "envkey")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"live": True})

    client = Client(transport=httpx.MockTransport(handler))
    assert client.url == "http://from-env:9000"
    assert client.is_live()
    assert str(seen[0].url) == "http://from-env:9000/v2/health/live"
    assert seen[0].headers["Authorization"] == "Bearer envkey"


def test_no_authorization_header_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELBAY_API_KEY", raising=False)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ready": True})

    assert _client(handler).is_ready()
    assert "Authorization" not in seen[0].headers


def test_error_answer_becomes_api_error_with_status_and_server_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "model 'nope' not found"})

    with pytest.raises(ApiError) as info:
        _client(handler).get_model("nope")
    assert info.value.status == 404
    assert info.value.message == "model 'nope' not found"
    assert isinstance(info.value, ModelbayError)


def test_error_answer_without_json_keeps_its_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway from proxy")

    with pytest.raises(ApiError, match="bad gateway from proxy"):
        _client(handler).get_model("m")


def test_unreachable_server_is_status_0_naming_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = _client(handler)
    with pytest.raises(ApiError) as info:
        client.list_models()
    assert info.value.status == 0
    assert "cannot reach modelbay at http://mb.test" in info.value.message
    assert "modelbay serve" in info.value.message
    assert not client.is_live()


def test_model_ready_is_false_on_503_and_raises_on_404() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/models/loading/versions/2/ready":
            return httpx.Response(503, json={"ready": False})
        return httpx.Response(404, json={"error": "model 'gone' not found"})

    client = _client(handler)
    assert client.model_ready("loading", 2) is False
    with pytest.raises(ApiError, match="not found"):
        client.model_ready("gone")


@pytest.mark.parametrize("binary", [True, False])
def test_predict_sends_a_v2_body_to_the_versions_infer_path(binary: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raw = request.headers.get(v2.HEADER_LENGTH)
        decoded = v2.decode_request(request.content, int(raw) if raw else None)
        doubled = {"y": decoded.inputs["x"] * 2}
        body, length = v2.encode_response(
            model_name="m", model_version="3", outputs=doubled, request=decoded
        )
        headers = {v2.HEADER_LENGTH: str(length)} if length is not None else {}
        return httpx.Response(200, content=body, headers=headers)

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = _client(handler).predict("m", {"x": x}, version="prod", binary=binary)
    np.testing.assert_array_equal(result["y"], x * 2)
    request = seen[0]
    assert request.url.path == "/v2/models/m/versions/prod/infer"
    expected_type = "application/octet-stream" if binary else "application/json"
    assert request.headers["Content-Type"] == expected_type
    assert (v2.HEADER_LENGTH in request.headers) == binary


def test_push_streams_files_with_relative_names_and_json_fields(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"m" * 300)
    (tmp_path / "sub" / "labels.txt").write_bytes(b"a\nb\n")
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(201, json={"model": "m", "version": 1})

    reports: list[tuple[int, int]] = []
    record = _client(handler).push(
        "m",
        tmp_path,
        signature={"inputs": [], "outputs": []},
        metadata={"epochs": 3},
        tags={"team": "a"},
        progress=lambda sent, total: reports.append((sent, total)),
    )
    assert record == {"model": "m", "version": 1}
    body = seen[0]
    assert b'name="files"; filename="model.onnx"' in body
    assert b'name="files"; filename="sub/labels.txt"' in body
    assert b'{"epochs": 3}' in body
    assert b'{"team": "a"}' in body
    assert b'name="format"' not in body
    assert reports[-1] == (304, 304)


def _download_server(content: bytes, digest: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/models/m/versions/prod":
            files = [{"path": "dir/model.bin", "digest": digest, "size": len(content)}]
            return httpx.Response(200, json={"model": "m", "version": 4, "files": files})
        assert request.url.path == "/api/v1/models/m/versions/4/files/dir/model.bin"
        return httpx.Response(200, content=content)

    return handler


def test_download_writes_files_under_their_relative_paths(tmp_path: Path) -> None:
    content = b"weights" * 100
    handler = _download_server(content, hashlib.sha256(content).hexdigest())
    paths = _client(handler).download("m", "prod", tmp_path)
    assert paths == [tmp_path / "dir" / "model.bin"]
    assert paths[0].read_bytes() == content


def test_download_with_a_wrong_digest_leaves_no_file(tmp_path: Path) -> None:
    handler = _download_server(b"tampered", hashlib.sha256(b"original").hexdigest())
    with pytest.raises(ArtifactCorrupted, match="manifest"):
        _client(handler).download("m", "prod", tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_signature_file_is_sent_as_its_json(tmp_path: Path) -> None:
    signature = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}], "outputs": []}
    (tmp_path / "sig.json").write_text(json.dumps(signature))
    (tmp_path / "model.onnx").write_bytes(b"m")
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(201, json={})

    _client(handler).push("m", tmp_path / "model.onnx", signature=tmp_path / "sig.json")
    assert json.dumps(signature).encode() in seen[0]
