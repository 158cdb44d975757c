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
