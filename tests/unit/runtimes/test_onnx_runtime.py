from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes import detect_format, load_runtime
from modelbay.tensors import Signature

WEIGHTS = np.arange(6, dtype=np.float32).reshape(3, 2) / 10


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``y = x @ W`` (batch, 2), ``z = relu(x)`` (batch, 3) and strings echoed ``so``."""
    folder = tmp_path_factory.mktemp("onnx")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"]),
            helper.make_node("Relu", ["x"], ["z"]),
            helper.make_node("Identity", ["s"], ["so"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("s", TensorProto.STRING, [None]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("so", TensorProto.STRING, [None]),
        ],
        [numpy_helper.from_array(WEIGHTS, "W")],
    )
    _save(graph, folder / "model.onnx")
    sequence = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"]),
            helper.make_node("SequenceConstruct", ["x", "y"], ["probabilities"]),
        ],
        "with_sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_sequence_value_info("probabilities", TensorProto.FLOAT, None),
        ],
    )
    _save(sequence, folder / "sequence.onnx")
    return folder


def _inputs(n: int = 4) -> dict[str, np.ndarray]:
    rows = np.random.default_rng(2).normal(size=(n, 3)).astype(np.float32)
    return {"x": rows, "s": np.array([b"ab", "c\u00e9".encode()], dtype=object)}


def test_onnx_model_is_detected(model_dir: Path) -> None:
    assert detect_format(model_dir / "model.onnx") == "onnx"


def test_signature_is_read_from_the_model(model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir, "model.onnx", None, threads=1)
    assert runtime.signature.model_dump() == {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "s", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "z", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "so", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def test_outputs_match_numpy(model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir, "model.onnx", None, threads=1)
    inputs = _inputs()
    outputs = runtime.infer(inputs)
    np.testing.assert_allclose(outputs["y"], inputs["x"] @ WEIGHTS, atol=1e-5)
    np.testing.assert_allclose(outputs["z"], np.maximum(inputs["x"], 0), atol=1e-5)


def test_bytes_go_in_and_come_back_as_bytes(model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir, "model.onnx", None, threads=1)
    echoed = runtime.infer(_inputs(), outputs=["so"])["so"]
    assert echoed.dtype == object
    assert echoed.tolist() == [b"ab", "c\u00e9".encode()]


def test_only_requested_outputs_are_computed(model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir, "model.onnx", None, threads=1)
    assert set(runtime.infer(_inputs(), outputs=["y", "so"])) == {"y", "so"}


def test_given_signature_may_narrow_shapes_and_pick_outputs(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [
                {"name": "s", "datatype": "BYTES", "shape": [2]},
                {"name": "x", "datatype": "FP32", "shape": [4, 3]},
            ],
            "outputs": [{"name": "z", "datatype": "FP32", "shape": [-1, 3]}],
        }
    )
    runtime = load_runtime("onnx", model_dir, "model.onnx", given, threads=1)
    assert runtime.signature == given
    assert set(runtime.infer(_inputs())) == {"z"}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            {"name": "w", "datatype": "FP32", "shape": [-1, 3]},
            "'w' not in the model; its outputs are 'y', 'z', 'so'",
        ),
        (
            {"name": "z", "datatype": "FP64", "shape": [-1, 3]},
            "datatype FP64 but the model uses FP32",
        ),
        (
            {"name": "z", "datatype": "FP32", "shape": [-1, 2]},
            r"shape \[-1, 2\] but the model accepts",
        ),
    ],
)
def test_given_signature_that_does_not_fit_is_refused(
    model_dir: Path, output: dict[str, object], message: str
) -> None:
    given = Signature.parse(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "s", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [output],
        }
    )
    with pytest.raises(InvalidArtifact, match=message):
        load_runtime("onnx", model_dir, "model.onnx", given, threads=1)


def test_given_signature_must_list_every_input(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        }
    )
    with pytest.raises(InvalidArtifact, match="lacks the model's input"):
        load_runtime("onnx", model_dir, "model.onnx", given, threads=1)


def test_rejected_dimension_is_an_invalid_request_without_error_code(model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir, "model.onnx", None, threads=1)
    inputs = _inputs() | {"x": np.zeros((2, 5), dtype=np.float32)}
    with pytest.raises(InvalidRequest, match="^Got invalid dimensions for input: x") as error:
        runtime.infer(inputs)
    assert "ONNXRuntimeError" not in str(error.value)
    assert "\n" not in str(error.value)


def test_non_tensor_output_is_refused_with_zipmap_hint(model_dir: Path) -> None:
    with pytest.raises(InvalidArtifact, match="'probabilities' has type seq.*zipmap"):
        load_runtime("onnx", model_dir, "sequence.onnx", None, threads=1)


def test_non_tensor_output_left_out_of_the_signature_is_fine(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
        }
    )
    runtime = load_runtime("onnx", model_dir, "sequence.onnx", given, threads=1)
    rows = _inputs()["x"]
    np.testing.assert_allclose(runtime.infer({"x": rows})["y"], np.maximum(rows, 0))


def test_file_that_is_not_onnx_is_invalid_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(InvalidArtifact, match="cannot load ONNX model 'model.onnx': Load model"):
        load_runtime("onnx", tmp_path, "model.onnx", None, threads=1)


def test_failing_node_is_an_invalid_request_without_source_locations(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "shape")],
    )
    _save(graph, tmp_path / "reshape.onnx")
    runtime = load_runtime("onnx", tmp_path, "reshape.onnx", None, threads=1)
    with pytest.raises(InvalidRequest, match="Reshape node.*cannot be reshaped") as error:
        runtime.infer({"x": np.zeros(4, dtype=np.float32)})
    assert ".h:" not in str(error.value)
    assert "was false" not in str(error.value)
