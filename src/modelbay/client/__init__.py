"""The Python SDK: ``Client`` for the management API and V2 inference, and its helpers."""

from modelbay.client.client import DEFAULT_URL, Client, SignatureSource
from modelbay.client.errors import ApiError
from modelbay.client.json_tensors import InputDocument, outputs_to_json, parse_input_document
from modelbay.client.refs import ModelRef
from modelbay.client.uploads import ProgressCallback

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "Client",
    "InputDocument",
    "ModelRef",
    "ProgressCallback",
    "SignatureSource",
    "outputs_to_json",
    "parse_input_document",
]
