"""Input files of ``modelbay predict`` to arrays, and outputs back to JSON."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelbay.client import outputs_to_json, parse_input_document
from modelbay.errors import InvalidRequest

METADATA = {
    "name": "m",
    "inputs": [
        {"name": "input", "datatype": "FP64", "shape": [-1, 4]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "ids", "datatype": "INT32", "shape": [-1]},
    ],
    "outputs": [],
}


def _metadata() -> dict[str, Any]:
    return METADATA


def _no_metadata() -> dict[str, Any]:
    raise AssertionError("a V2 request carries its datatypes; metadata must not be fetched")


def test_mapping_takes_each_inputs_datatype_from_the_model_metadata() -> None:
    doc = parse_input_document(
        {"input": [[1, 2, 3, 4], [5, 6, 7, 8]], "text": ["a", "é"], "ids": [1, 2]}, _metadata
    )
    assert doc.inputs["input"].dtype == np.float64
    assert doc.inputs["input"].shape == (2, 4)
    assert doc.inputs["ids"].dtype == np.int32
    assert doc.inputs["text"].dtype == object
    assert doc.inputs["text"].tolist() == [b"a", "é".encode()]
    assert doc.outputs is None


def test_v2_request_body_is_decoded_without_metadata_and_keeps_requested_outputs() -> None:
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "y"}],
    }
    doc = parse_input_document(body, _no_metadata)
    np.testing.assert_array_equal(doc.inputs["x"], np.array([[1, 2], [3, 4]], np.float32))
    assert doc.inputs["x"].dtype == np.float32
    assert doc.outputs == ["y"]


def test_mapping_with_an_unknown_input_lists_the_models_inputs() -> None:
    with pytest.raises(InvalidRequest, match="input 'x' not found; inputs are 'input', 'text'"):
        parse_input_document({"x": [1.0]}, _metadata)


def test_ragged_or_non_numeric_data_is_refused_naming_the_input() -> None:
    with pytest.raises(InvalidRequest, match="input 'input'.*FP64"):
        parse_input_document({"input": [[1, 2], [3]]}, _metadata)
    with pytest.raises(InvalidRequest, match="input 'ids'"):
        parse_input_document({"ids": ["one"]}, _metadata)


@pytest.mark.parametrize("doc", [[1, 2], {}, "inputs", None])
def test_document_that_is_not_a_non_empty_object_is_refused(doc: Any) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_input_document(doc, _metadata)


def test_model_input_named_inputs_holding_numbers_is_a_mapping_not_a_v2_body() -> None:
    metadata = {"inputs": [{"name": "inputs", "datatype": "FP32", "shape": [-1]}]}
    doc = parse_input_document({"inputs": [1, 2]}, lambda: metadata)
    assert doc.inputs["inputs"].dtype == np.float32


def test_outputs_become_nested_lists_with_bytes_as_strings() -> None:
    labels = np.empty((2, 1), dtype=object)
    labels[:] = [[b"cat"], ["dé".encode()]]
    result = outputs_to_json({"proba": np.array([[0.25, 0.75]], np.float32), "label": labels})
    assert result == {"proba": [[0.25, 0.75]], "label": [["cat"], ["dé"]]}


def test_empty_bytes_output_stays_an_empty_list() -> None:
    assert outputs_to_json({"y": np.empty((0,), dtype=object)}) == {"y": []}
