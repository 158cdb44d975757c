"""simdjson reads numeric tensor data straight into numpy; the rest stays plain Python."""

from __future__ import annotations

import numpy as np

from modelbay.protocols.json_header import parse_request


def test_numeric_data_skips_python_floats_and_the_rest_is_plain() -> None:
    doc = parse_request(
        b'{"id": "r1", "parameters": {"binary_data_output": false}, "unknown": [1],'
        b' "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],'
        b' "data": [[1, 2.5], [3, 4]]},'
        b' {"name": "b", "datatype": "BOOL", "shape": [2], "data": [true, false]}]}'
    )
    assert doc["id"] == "r1"
    assert doc["parameters"] == {"binary_data_output": False}
    assert "unknown" not in doc  # not a field of the protocol: never read
    x, b = doc["inputs"]
    assert isinstance(x["data"], np.ndarray)  # the fast path: one buffer, no list
    np.testing.assert_array_equal(x["data"], [1, 2.5, 3, 4])
    assert x["shape"] == [2, 2]
    assert b["data"] == [True, False]  # booleans take the plain path


def test_integers_of_an_integer_tensor_are_read_as_int64() -> None:
    doc = parse_request(b'{"inputs": [{"name": "i", "datatype": "INT32", "data": [1, -2]}]}')
    assert doc["inputs"][0]["data"].dtype == np.int64
