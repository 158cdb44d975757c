"""With a certificate and key, HTTP and gRPC serve TLS only, to clients that trust its CA."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tests.integration import http
from tests.integration.bearer import keyed
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import BuiltModel, build_onnx, iris
from tests.tls import TlsFiles, make_tls_files
from tritonclient.utils import InferenceServerException

from modelbay.client import ApiError, Client

MODEL = "tls-mlp"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the server's certificate."""
    return make_tls_files(tmp_path_factory.mktemp("other-ca")).ca_cert


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("tls-server")
    env = {
        "MODELBAY_TLS_CERT_FILE": str(tls_files.server_cert),
        "MODELBAY_TLS_KEY_FILE": str(tls_files.server_key),
    }
    running = RunningServer(root / "data", root / "server.log", env, ca_cert=tls_files.ca_cert)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def onnx_model(tls_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    built = build_onnx(tmp_path_factory.mktemp("tls-onnx"))
    with open(built.path, "rb") as f:
        response = http.post(
            f"{tls_server.url}/api/v1/models/{MODEL}/versions",
            files={"files": (built.path.name, f)},
            verify=tls_server.verify,
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return built


def _rows() -> np.ndarray:
    return iris()[0][:4].astype(np.float32)


def test_https_serves_health_and_inference_to_a_client_trusting_the_ca(
    tls_server: RunningServer, onnx_model: BuiltModel
) -> None:
    x = _rows()
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    with http.client(base_url=tls_server.url, verify=tls_server.verify) as session:
        assert session.get("/v2/health/ready").status_code == 200
        response = session.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    y = np.reshape(output["data"], output["shape"])
    np.testing.assert_allclose(y, onnx_model.reference(x), atol=1e-5)


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server: RunningServer) -> None:
    with pytest.raises(httpx.TransportError):
        http.get(f"http://127.0.0.1:{tls_server.port}/v2/health/ready", timeout=5)


def test_https_client_not_trusting_the_ca_is_refused(
    tls_server: RunningServer, untrusted_ca: Path
) -> None:
    other = ssl.create_default_context(cafile=untrusted_ca)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get(f"{tls_server.url}/v2/health/ready", verify=other, timeout=5)


def test_sdk_with_verify_lists_models_and_predicts(
    tls_server: RunningServer, tls_files: TlsFiles, onnx_model: BuiltModel
) -> None:
    x = _rows()
    with Client(tls_server.url, verify=str(tls_files.ca_cert)) as client:
        assert client.is_ready()
        assert MODEL in [model["name"] for model in client.list_models()]
        outputs = client.predict(MODEL, {"x": x})
    np.testing.assert_allclose(outputs["y"], onnx_model.reference(x), atol=1e-5)


def test_sdk_without_the_ca_reports_an_untrusted_certificate(tls_server: RunningServer) -> None:
    with Client(tls_server.url) as client, pytest.raises(ApiError) as caught:
        client.list_models()
    assert caught.value.status == 0
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELBAY_")}
    return subprocess.run(
        [sys.executable, "-m", "modelbay", *args],
        capture_output=True,
        text=True,
        env={**clean, "MODELBAY_API_KEY": ADMIN_KEY, "NO_COLOR": "1", **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize("how", ["option", "env"])
def test_cli_with_ca_cert_lists_models(
    tls_server: RunningServer, tls_files: TlsFiles, onnx_model: BuiltModel, how: str
) -> None:
    ca = str(tls_files.ca_cert)
    if how == "option":
        result = _cli("--url", tls_server.url, "--ca-cert", ca, "models", "list")
    else:
        result = _cli("--url", tls_server.url, "models", "list", env={"MODELBAY_CA_CERT": ca})
    assert result.returncode == 0, result.stderr
    assert MODEL in result.stdout


def test_cli_without_ca_cert_fails_with_a_hint(tls_server: RunningServer) -> None:
    result = _cli("--url", tls_server.url, "models", "list")
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert "--ca-cert" in result.stderr
    assert "Traceback" not in result.stderr


def test_tritonclient_grpc_over_tls_reads_metadata_and_infers(
    tls_server: RunningServer, tls_files: TlsFiles, onnx_model: BuiltModel
) -> None:
    client = keyed(
        triton_grpc.InferenceServerClient(
            tls_server.grpc_url, ssl=True, root_certificates=str(tls_files.ca_cert)
        )
    )
    x = _rows()
    tensor = triton_grpc.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    try:
        assert client.get_server_metadata().name == "modelbay"
        result = client.infer(MODEL, [tensor])
    finally:
        client.close()
    np.testing.assert_allclose(result.as_numpy("y"), onnx_model.reference(x), atol=1e-5)


@pytest.mark.parametrize("client_tls", ["untrusted CA", "plaintext"])
def test_grpc_client_not_trusting_the_ca_is_refused(
    tls_server: RunningServer, untrusted_ca: Path, client_tls: str
) -> None:
    tls = {"ssl": True, "root_certificates": str(untrusted_ca)} if client_tls != "plaintext" else {}
    client = keyed(triton_grpc.InferenceServerClient(tls_server.grpc_url, **tls))  # type: ignore[arg-type]
    try:
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            client.get_server_metadata(client_timeout=10)
    finally:
        client.close()


def test_tritonclient_http_over_tls_infers(
    tls_server: RunningServer, tls_files: TlsFiles, onnx_model: BuiltModel
) -> None:
    client = keyed(
        triton_http.InferenceServerClient(
            tls_server.url.removeprefix("https://"),
            ssl=True,
            ssl_options={"ca_certs": str(tls_files.ca_cert)},
        )
    )
    x = _rows()
    tensor = triton_http.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    try:
        result = client.infer(MODEL, [tensor])
    finally:
        client.close()
    np.testing.assert_allclose(result.as_numpy("y"), onnx_model.reference(x), atol=1e-5)
