"""Signatures check request tensors and name what would have been valid."""

from __future__ import annotations

import numpy as np
import pytest

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.tensors import Signature

SIG = Signature.parse(
    {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
)


def test_check_inputs_names_input_dtype_and_shape_problems() -> None:
    with pytest.raises(InvalidRequest, match="input 'z' not found; inputs are 'x'"):
        SIG.check_inputs({"z": np.zeros((1, 3), np.float32)})
    with pytest.raises(InvalidRequest, match="datatype FP64; the model expects FP32"):
        SIG.check_inputs({"x": np.zeros((1, 3))})
    with pytest.raises(InvalidRequest, match=r"shape \[1, 4\]; the model expects \[-1, 3\]"):
        SIG.check_inputs({"x": np.zeros((1, 4), np.float32)})
    with pytest.raises(InvalidRequest, match="missing input"):
        SIG.check_inputs({})
    with pytest.raises(InvalidRequest, match="output 'nope' not found; outputs are 'y'"):
        SIG.check_outputs(["nope"])
    SIG.check_inputs({"x": np.zeros((5, 3), np.float32)})


@pytest.mark.parametrize(
    "raw",
    [
        '{"inputs": 3, "outputs": []}',
        '{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1]}], "outputs": []}',
        '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}], "outputs": []}',
        '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]},'
        ' {"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": []}',
    ],
)
def test_invalid_signature_is_422(raw: str) -> None:
    with pytest.raises(InvalidArtifact, match="invalid signature"):
        Signature.parse(raw)


TWO_INPUTS = Signature.parse(
    {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "b", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
)


def test_batched_inputs_must_agree_on_their_rows() -> None:
    inputs = {"a": np.zeros((2, 2), np.float32), "b": np.zeros((3, 2), np.float32)}
    TWO_INPUTS.check_inputs(inputs)  # unbatched, the model decides
    with pytest.raises(InvalidRequest, match="'a' has 2, 'b' has 3"):
        TWO_INPUTS.check_inputs(inputs, batched=True)
    TWO_INPUTS.check_inputs({"a": inputs["a"], "b": inputs["a"]}, batched=True)


def test_a_scalar_input_cannot_be_batched() -> None:
    scalar = Signature.parse(
        {
            "inputs": [{"name": "s", "datatype": "FP32", "shape": []}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": []}],
        }
    )
    with pytest.raises(InvalidRequest, match="'s' is a scalar"):
        scalar.check_inputs({"s": np.float32(1.0).reshape(())}, batched=True)


def test_inputs_are_widened_only_where_no_value_can_change() -> None:
    fp64 = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
        }
    )
    x = np.array([[0.1, 3.0]], np.float32)
    widened = fp64.check_inputs({"x": x})["x"]
    assert widened.dtype == np.float64
    np.testing.assert_array_equal(widened, x.astype(np.float64))
    assert fp64.check_inputs({"x": np.array([[1, 2]], np.int32)})["x"].dtype == np.float64
    with pytest.raises(InvalidRequest, match=r"INT64; the model expects FP64 \(or FP32, FP16"):
        fp64.check_inputs({"x": np.array([[1, 2]], np.int64)})
    with pytest.raises(InvalidRequest, match="FP64; the model expects FP32"):
        SIG.check_inputs({"x": np.zeros((1, 3))})  # narrowing is never done


@pytest.mark.parametrize(
    ("inputs", "outputs", "batchable"),
    [
        ([[-1, 4]], [[-1, 3]], True),
        ([[-1, 4], [-1]], [[-1]], True),
        ([[1, 4]], [[-1, 3]], False),  # a fixed first axis
        ([[-1, 4]], [[3]], False),  # an output that is not per row
        ([[]], [[-1]], False),  # a scalar input
    ],
)
def test_a_signature_is_batchable_when_every_tensor_has_a_variable_first_axis(
    inputs: list[list[int]], outputs: list[list[int]], batchable: bool
) -> None:
    signature = Signature.model_validate(
        {
            "inputs": [
                {"name": f"i{n}", "datatype": "FP32", "shape": s} for n, s in enumerate(inputs)
            ],
            "outputs": [
                {"name": f"o{n}", "datatype": "FP32", "shape": s} for n, s in enumerate(outputs)
            ],
        }
    )
    assert signature.batchable is batchable
