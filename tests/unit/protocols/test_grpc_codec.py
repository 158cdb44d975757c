"""The V2 gRPC codec without a server: typed and raw inputs, validation, raw outputs."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as triton_pb

from modelbay.errors import InvalidRequest
from modelbay.protocols.grpc import codec
from modelbay.protocols.grpc import grpc_predict_v2_pb2 as pb
from modelbay.protocols.v2 import InferRequest, RequestedOutput

Tensor = pb.ModelInferRequest.InferInputTensor


def _request(*tensors: Tensor, raw: list[bytes] | None = None) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", inputs=tensors, raw_input_contents=raw or [])


def _pack(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def _decode_one(tensor: Tensor, raw: bytes | None = None) -> np.ndarray:
    request = _request(tensor, raw=None if raw is None else [raw])
    return codec.decode_request(request).inputs[tensor.name]


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("BOOL", "bool_contents", [True, False, True, True], np.bool_),
        ("INT8", "int_contents", [-128, 0, 5, 127], np.int8),
        ("INT32", "int_contents", [-(2**31), 0, 7, 2**31 - 1], np.int32),
        ("INT64", "int64_contents", [-(2**63), 0, 9, 2**63 - 1], np.int64),
        ("UINT16", "uint_contents", [0, 1, 2, 65535], np.uint16),
        ("UINT64", "uint64_contents", [0, 1, 2, 2**64 - 1], np.uint64),
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0, 4.0], np.float32),
        ("FP64", "fp64_contents", [0.1, -1e300, 3.0, 4.0], np.float64),
    ],
)
def test_typed_contents_decode_to_the_datatypes_dtype_and_shape(
    datatype: str, field: str, values: list[Any], dtype: type
) -> None:
    contents = pb.InferTensorContents(**{field: values})
    array = _decode_one(Tensor(name="x", datatype=datatype, shape=[2, 2], contents=contents))
    assert array.dtype == dtype
    np.testing.assert_array_equal(array, np.array(values, dtype=dtype).reshape(2, 2))


def test_typed_bytes_contents_decode_to_an_object_array_of_bytes() -> None:
    contents = pb.InferTensorContents(bytes_contents=[b"ab", b"", b"\xff\x00"])
    array = _decode_one(Tensor(name="s", datatype="BYTES", shape=[3], contents=contents))
    assert array.dtype == object
    assert array.tolist() == [b"ab", b"", b"\xff\x00"]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([[0.5, -2.0]], dtype=np.float16),
        np.array([1, -2, 3], dtype=np.int16),
        np.array([2**40, 3], dtype=np.uint64),
        np.array([[True, False]]),
        np.zeros((0, 4), dtype=np.float64),
    ],
)
def test_raw_contents_decode_little_endian_elements(array: np.ndarray) -> None:
    datatype = {"f": "FP", "i": "INT", "u": "UINT", "b": "BOOL"}[array.dtype.kind]
    if datatype != "BOOL":
        datatype += str(array.dtype.itemsize * 8)
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    decoded = _decode_one(Tensor(name="x", datatype=datatype, shape=array.shape), raw)
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_raw_bytes_tensor_is_length_prefixed_items() -> None:
    items = [b"hello", b"", "wörld".encode()]
    decoded = _decode_one(Tensor(name="s", datatype="BYTES", shape=[1, 3]), _pack(items))
    assert decoded.shape == (1, 3)
    assert decoded.ravel().tolist() == items


def test_a_request_built_with_tritonclients_own_messages_decodes() -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    theirs = triton_pb.ModelInferRequest(
        model_name="m",
        id="req-1",
        inputs=[
            triton_pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4])
        ],
        outputs=[triton_pb.ModelInferRequest.InferRequestedOutputTensor(name="y")],
        raw_input_contents=[x.tobytes()],
    )
    theirs.outputs[0].parameters["classification"].int64_param = 2
    theirs.parameters["priority"].uint64_param = 3
    req = codec.decode_request(pb.ModelInferRequest.FromString(theirs.SerializeToString()))
    np.testing.assert_array_equal(req.inputs["x"], x)
    assert req.id == "req-1"
    assert req.outputs == [RequestedOutput("y", classification=2)]
    assert req.parameters == {"priority": 3}


@pytest.mark.parametrize(
    ("tensor", "raw", "message"),
    [
        (
            Tensor(name="x", datatype="FP32", shape=[2, 2]),
            b"\0" * 12,
            r"input 'x': shape \[2, 2\] of FP32 needs 16 bytes, raw_input_contents\[0\] has 12",
        ),
        (
            Tensor(name="s", datatype="BYTES", shape=[3]),
            _pack([b"a", b"b"]),
            r"input 's': shape \[3\] needs 3 elements, raw_input_contents\[0\] has 2",
        ),
        (Tensor(name="s", datatype="BYTES", shape=[1]), b"\x05\0\0\0ab", "truncated BYTES"),
        (
            Tensor(
                name="x",
                datatype="INT64",
                shape=[3],
                contents=pb.InferTensorContents(int64_contents=[1, 2]),
            ),
            None,
            r"input 'x': shape \[3\] needs 3 elements, contents.int64_contents has 2",
        ),
        (
            Tensor(
                name="x",
                datatype="FP32",
                shape=[1],
                contents=pb.InferTensorContents(fp64_contents=[1.0]),
            ),
            None,
            "input 'x': FP32 data belongs in contents.fp32_contents, got fp64_contents",
        ),
        (
            Tensor(name="h", datatype="FP16", shape=[1]),
            None,
            "input 'h': FP16 has no typed contents field; send it in raw_input_contents",
        ),
        (
            Tensor(
                name="x",
                datatype="INT8",
                shape=[1],
                contents=pb.InferTensorContents(int_contents=[300]),
            ),
            None,
            "input 'x': contents.int_contents holds a value out of range for INT8",
        ),
        (
            Tensor(
                name="x",
                datatype="FP32",
                shape=[1],
                contents=pb.InferTensorContents(fp32_contents=[1.0]),
            ),
            b"\0" * 4,
            "input 'x': data is in both contents and raw_input_contents",
        ),
        (Tensor(name="b", datatype="BF16", shape=[1]), b"\0\0", "input 'b': unsupported datatype"),
        (Tensor(name="x", datatype="FP32", shape=[-1, 4]), b"", "negative dimension"),
    ],
)
def test_malformed_tensors_are_refused_naming_the_tensor_and_the_problem(
    tensor: Tensor, raw: bytes | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        _decode_one(tensor, raw)
    assert info.value.status == 400


def test_raw_contents_need_one_entry_per_input() -> None:
    request = _request(
        Tensor(name="a", datatype="INT32", shape=[1]),
        Tensor(name="b", datatype="INT32", shape=[1]),
        raw=[b"\0" * 4],
    )
    with pytest.raises(InvalidRequest, match="raw_input_contents has 1 entries for 2 inputs"):
        codec.decode_request(request)


def test_requests_without_inputs_or_with_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least one tensor"):
        codec.decode_request(_request())
    twice = Tensor(name="a", datatype="INT32", shape=[1])
    with pytest.raises(InvalidRequest, match="input 'a' is given twice"):
        codec.decode_request(_request(twice, twice, raw=[b"\0" * 4] * 2))


def test_negative_classification_is_refused() -> None:
    request = _request(Tensor(name="a", datatype="INT32", shape=[1]), raw=[b"\0" * 4])
    request.outputs.add(name="y").parameters["classification"].int64_param = -1
    with pytest.raises(InvalidRequest, match="output 'y': classification must be an integer"):
        codec.decode_request(request)


def test_parameters_of_every_kind_decode_to_plain_values() -> None:
    params = {
        "flag": pb.InferParameter(bool_param=True),
        "count": pb.InferParameter(int64_param=-3),
        "name": pb.InferParameter(string_param="x"),
        "rate": pb.InferParameter(double_param=0.5),
        "big": pb.InferParameter(uint64_param=2**64 - 1),
        "unset": pb.InferParameter(),
    }
    assert codec.decode_parameters(params) == {
        "flag": True,
        "count": -3,
        "name": "x",
        "rate": 0.5,
        "big": 2**64 - 1,
    }


def _as_triton_result(response: pb.ModelInferResponse) -> Any:
    """Read our response the way tritonclient.grpc does: its own message and ``as_numpy``."""
    return triton.InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))


def test_outputs_round_trip_through_tritonclients_as_numpy() -> None:
    outputs = {
        "y": np.arange(6, dtype=np.float32).reshape(2, 3),
        "h": np.array([1.5, -2.0], dtype=np.float16),
        "n": np.array([[2**40]], dtype=np.int64),
        "b": np.array([True, False]),
        "s": np.array([b"ab", b"", b"xyz"], dtype=object),
    }
    response = codec.encode_response(
        model_name="m", model_version="3", outputs=outputs, request=InferRequest({}, id="r-9")
    )
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "r-9")
    assert [o.datatype for o in response.outputs] == ["FP32", "FP16", "INT64", "BOOL", "BYTES"]
    result = _as_triton_result(response)
    for name, array in outputs.items():
        got = result.as_numpy(name)
        assert got.shape == array.shape
        np.testing.assert_array_equal(got, array)


def test_only_requested_outputs_are_encoded_in_request_order() -> None:
    outputs = {"a": np.zeros(1, np.float32), "b": np.ones(2, np.int32)}
    request = InferRequest({}, outputs=[RequestedOutput("b"), RequestedOutput("a")])
    response = codec.encode_response(
        model_name="m", model_version="1", outputs=outputs, request=request
    )
    assert [o.name for o in response.outputs] == ["b", "a"]
    assert response.id == ""
    assert len(response.raw_output_contents) == 2


def test_classification_output_is_top_k_bytes_with_labels() -> None:
    scores = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    request = InferRequest({}, outputs=[RequestedOutput("y", classification=2)])
    response = codec.encode_response(
        model_name="m",
        model_version="1",
        outputs={"y": scores},
        request=request,
        labels=["cat", "dog", "eel"],
    )
    assert response.outputs[0].datatype == "BYTES"
    top = _as_triton_result(response).as_numpy("y")
    assert top.tolist() == [[b"0.7:1:dog", b"0.2:2:eel"]]
