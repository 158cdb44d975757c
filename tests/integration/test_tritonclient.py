"""The stock tritonclient.http client works unmodified: metadata and infer, JSON and binary."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tests.integration import http
from tests.integration.bearer import keyed
from tests.integration.conftest import RunningServer
from tests.integration.models import build_onnx, iris


@pytest.fixture(scope="module")
def onnx_model(server: RunningServer, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    built = build_onnx(tmp_path_factory.mktemp("onnx"))
    with open(built.path, "rb") as f:
        response = http.post(
            f"{server.url}/api/v1/models/triton-mlp/versions",
            files={"files": (built.path.name, f)},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return built


@pytest.fixture
def client(server: RunningServer) -> triton.InferenceServerClient:
    return keyed(triton.InferenceServerClient(url=server.url.removeprefix("http://")))


def test_tritonclient_reads_server_and_model_metadata(
    client: triton.InferenceServerClient, onnx_model: object
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    server_meta = client.get_server_metadata()
    assert server_meta["name"] == "modelbay"
    assert "binary_tensor_data" in server_meta["extensions"]
    model_meta = client.get_model_metadata("triton-mlp", model_version="1")
    assert model_meta["inputs"] == [
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [-1, 4],
            "parameters": {"accepts": ["FP16", "INT16", "INT8", "UINT16", "UINT8"]},
        }
    ]
    assert client.is_model_ready("triton-mlp", model_version="1")


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_infer_matches_in_process(
    client: triton.InferenceServerClient,
    onnx_model,
    binary: bool,  # type: ignore[no-untyped-def]
) -> None:
    x = iris()[0][:8].astype(np.float32)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = triton.InferRequestedOutput("y", binary_data=binary)
    result = client.infer(
        "triton-mlp", [tensor], model_version="1", outputs=[wanted], request_id="req-7"
    )
    np.testing.assert_allclose(result.as_numpy("y"), onnx_model.reference(x), atol=1e-5)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == "1"


def test_tritonclient_error_is_raised_with_the_servers_message(
    client: triton.InferenceServerClient, onnx_model: object
) -> None:
    from tritonclient.utils import InferenceServerException

    tensor = triton.InferInput("x", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"the model expects \[-1, 4\]"):
        client.infer("triton-mlp", [tensor])
