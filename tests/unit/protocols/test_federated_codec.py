"""The weights that travel between a federated job and its clients: safetensors files read
and written on numpy alone, interchangeable with the safetensors package, and every bad
file refused with a message naming the tensor."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.numpy

from modelbay.errors import InvalidRequest
from modelbay.protocols.federated import decode_tensors, encode_tensors, encoded_size

TENSORS = {
    "body.fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "body.fc.bias": np.array([0.5, -1.0, 2.0], np.float32),
    "scalar": np.array(3.0, np.float32),
}
SHAPES = {name: list(value.shape) for name, value in TENSORS.items()}


def _refused(data: bytes, named: str, shapes: dict[str, list[int]] | None = SHAPES) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_tensors(data, shapes)
    assert caught.value.status == 422
    assert named in caught.value.message, caught.value.message


def test_tensors_and_metadata_survive_a_round_trip() -> None:
    data = encode_tensors(TENSORS, {"round": "3"})
    tensors, meta = decode_tensors(data, SHAPES)
    assert meta == {"round": "3"}
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(tensors[name], value)
        assert tensors[name].dtype == np.float32
    assert len(data) <= encoded_size(SHAPES)


def test_files_are_interchangeable_with_the_safetensors_package() -> None:
    theirs = safetensors.numpy.load(encode_tensors(TENSORS))
    assert set(theirs) == set(TENSORS)
    np.testing.assert_array_equal(theirs["body.fc.weight"], TENSORS["body.fc.weight"])
    ours, _ = decode_tensors(safetensors.numpy.save(TENSORS, metadata={"a": "b"}), SHAPES)
    np.testing.assert_array_equal(ours["body.fc.bias"], TENSORS["body.fc.bias"])


def test_a_tensor_of_the_wrong_shape_dtype_or_name_is_named() -> None:
    wrong_shape = {**TENSORS, "body.fc.bias": np.zeros(4, np.float32)}
    _refused(encode_tensors(wrong_shape), "tensor 'body.fc.bias' has shape [4]; expected [3]")
    float64 = {**TENSORS, "body.fc.bias": TENSORS["body.fc.bias"].astype(np.float64)}
    _refused(safetensors.numpy.save(float64), "tensor 'body.fc.bias' is 'F64'")
    missing = {k: v for k, v in TENSORS.items() if k != "scalar"}
    _refused(encode_tensors(missing), "tensor 'scalar' is missing")
    _refused(encode_tensors({**TENSORS, "extra": np.zeros(1, np.float32)}), "'extra'")
    nan = {**TENSORS, "scalar": np.array(np.nan, np.float32)}
    _refused(encode_tensors(nan), "tensor 'scalar' holds NaN")


def test_files_that_are_not_safetensors_are_refused() -> None:
    _refused(b"", "0 bytes are not a safetensors file")
    _refused(struct.pack("<Q", 10**9) + b"{}", "its header claims")
    _refused(struct.pack("<Q", 4) + b"nope", "not JSON")
    _refused(struct.pack("<Q", 2) + b"[]", "not a JSON object")
    data = encode_tensors(TENSORS)
    _refused(data[:-4], "the data is")
    header = {"scalar": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}
    text = json.dumps(header).encode()
    _refused(struct.pack("<Q", len(text)) + text + bytes(8), "does not hold shape [1]", None)
