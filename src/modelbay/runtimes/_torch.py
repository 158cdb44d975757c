"""Tensor conversions and error translation shared by the two PyTorch runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes._errors import framework_message
from modelbay.tensors import Signature, TensorSpec, numpy_dtype

TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
DATATYPES_OF_TORCH = {dtype: datatype for datatype, dtype in TORCH_DTYPES.items()}


def require_tensor_datatypes(signature: Signature) -> None:
    """Refuse a signature with datatypes torch tensors cannot hold (BYTES)."""
    for spec in [*signature.inputs, *signature.outputs]:
        if spec.datatype not in TORCH_DTYPES:
            raise InvalidArtifact(
                f"signature tensor '{spec.name}' has datatype {spec.datatype}, which PyTorch "
                f"models cannot take or return; use one of {', '.join(TORCH_DTYPES)}",
                param="signature",
            )


def use_threads(threads: int) -> None:
    # torch has one intra-op pool per process: the last model loaded sets its size.
    if threads > 0:
        torch.set_num_threads(threads)


def to_tensor(array: np.ndarray, spec: TensorSpec) -> torch.Tensor:
    """A CPU tensor sharing memory with ``array`` where possible."""
    # from_numpy needs C-contiguous, writeable memory (a model may write its inputs in place).
    ready = np.require(array, dtype=numpy_dtype(spec.datatype), requirements=("C", "W"))
    return torch.from_numpy(ready)


def to_array(tensor: torch.Tensor, spec: TensorSpec) -> np.ndarray:
    """The tensor as a numpy array of the spec's datatype, converted only if it differs."""
    return tensor.detach().cpu().to(TORCH_DTYPES[spec.datatype]).numpy()


@contextmanager
def input_errors() -> Iterator[None]:
    """Report what torch raises while running the model as the client's ``InvalidRequest``:
    inputs already match the signature, so these are dimensions or values the model rejects."""
    try:
        yield
    except (RuntimeError, AssertionError, ValueError, IndexError) as exc:
        raise InvalidRequest(framework_message(exc), param="inputs") from exc
