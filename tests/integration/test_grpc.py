"""The stock tritonclient.grpc client works unmodified against the V2 gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tests.integration.bearer import keyed
from tests.integration.conftest import RunningServer
from tests.integration.models import BuiltModel, build_onnx, iris
from tritonclient.utils import InferenceServerException


def _build_upper(tmp: Path) -> Path:
    """An ONNX model taking strings: ``upper = StringNormalizer(UPPER)(text)``."""
    import onnx
    from onnx import TensorProto, helper

    # The "C" locale always exists; onnxruntime's default (en_US.UTF-8) may not be installed.
    node = helper.make_node(
        "StringNormalizer", ["text"], ["upper"], case_change_action="UPPER", locale="C"
    )
    graph = helper.make_graph(
        [node],
        "upper",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("upper", TensorProto.STRING, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp / "upper.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def onnx_model(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    built = build_onnx(tmp_path_factory.mktemp("grpc-onnx"))
    server.push("grpc-mlp", built.path)
    return built


@pytest.fixture(scope="module")
def text_model(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    server.push("grpc-upper", _build_upper(tmp_path_factory.mktemp("grpc-text")))
    return "grpc-upper"


@pytest.fixture
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = keyed(triton.InferenceServerClient(url=server.grpc_url))
    yield client
    client.close()


def _x_input(x: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def test_server_is_live_ready_and_describes_itself(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "modelbay"
    assert meta.version
    assert "classification" in meta.extensions


def test_model_metadata_and_readiness(
    client: triton.InferenceServerClient, onnx_model: BuiltModel
) -> None:
    meta = client.get_model_metadata("grpc-mlp", model_version="1")
    assert (meta.name, list(meta.versions), meta.platform) == (
        "grpc-mlp",
        ["1"],
        "onnxruntime_onnx",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("y", "FP32", [-1, 3])]
    assert client.is_model_ready("grpc-mlp", model_version="1")
    assert client.is_model_ready("grpc-mlp")


def test_infer_matches_in_process_and_echoes_id_and_version(
    client: triton.InferenceServerClient, onnx_model: BuiltModel
) -> None:
    x = iris()[0][:8].astype(np.float32)
    result = client.infer(
        "grpc-mlp",
        [_x_input(x)],
        model_version="1",
        outputs=[triton.InferRequestedOutput("y")],
        request_id="req-9",
    )
    np.testing.assert_allclose(result.as_numpy("y"), onnx_model.reference(x), atol=1e-5)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-9", "grpc-mlp", "1")
    every_output = client.infer("grpc-mlp", [_x_input(x)])
    np.testing.assert_allclose(every_output.as_numpy("y"), onnx_model.reference(x), atol=1e-5)


def test_bad_shape_is_invalid_argument_naming_the_problem(
    client: triton.InferenceServerClient, onnx_model: BuiltModel
) -> None:
    with pytest.raises(InferenceServerException, match=r"the model expects \[-1, 4\]") as info:
        client.infer("grpc-mlp", [_x_input(np.zeros((1, 5), np.float32))])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(InferenceServerException, match="'no-such-model' not found") as info:
        client.infer("no-such-model", [_x_input(x)])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("no-such-model")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_classification_output_is_top_k_as_bytes(
    client: triton.InferenceServerClient, onnx_model: BuiltModel
) -> None:
    x = iris()[0][:4].astype(np.float32)
    wanted = triton.InferRequestedOutput("y", class_count=2)
    top = client.infer("grpc-mlp", [_x_input(x)], outputs=[wanted]).as_numpy("y")
    assert top.shape == (4, 2)
    indices = [[int(item.split(b":")[1]) for item in row] for row in top]
    expected = np.argsort(-onnx_model.reference(x), axis=1, kind="stable")[:, :2]
    assert indices == expected.tolist()


def test_bytes_tensors_round_trip(client: triton.InferenceServerClient, text_model: str) -> None:
    text = np.array([b"hello", b"model bay"], dtype=object)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(text)
    upper = client.infer(text_model, [tensor]).as_numpy("upper")
    assert upper.tolist() == [b"HELLO", b"MODEL BAY"]


def test_rpcs_modelbay_does_not_serve_answer_unimplemented(
    client: triton.InferenceServerClient, onnx_model: BuiltModel
) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("grpc-mlp")
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"
