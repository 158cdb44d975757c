"""ONNX models, run with ONNX Runtime (CUDA when available, else CPU)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes._signatures import picked_by_name, quoted
from modelbay.runtimes._text import as_bytes, as_text
from modelbay.runtimes.base import Runtime
from modelbay.tensors import Signature, TensorSpec

_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxRuntime(Runtime):
    """One ``InferenceSession`` per model; ``session.run`` is safe to call from many threads."""

    format = "onnx"

    def __init__(self, session: ort.InferenceSession, signature: Signature) -> None:
        self._session = session
        super().__init__(signature)
        # A rejected input is reported to the client; onnxruntime need not log it too.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> OnnxRuntime:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(
                str(model_dir / entrypoint), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime's load errors share no base class but Exception
            raise InvalidArtifact(
                f"cannot load ONNX model '{entrypoint}': {framework_message(exc)}", param="file"
            ) from exc
        return cls(session, _fitted(session, signature))

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        wanted = [
            spec for spec in self._signature.outputs if outputs is None or spec.name in outputs
        ]
        if not wanted:
            return {}
        feed = {spec.name: _fed(inputs[spec.name], spec) for spec in self._signature.inputs}
        try:
            results = self._session.run([s.name for s in wanted], feed, self._run_options)
        except (InvalidArgument, Fail) as exc:
            raise InvalidRequest(framework_message(exc), param="inputs") from exc
        return {
            spec.name: _returned(array, spec) for spec, array in zip(wanted, results, strict=True)
        }


def _fitted(session: ort.InferenceSession, given: Signature | None) -> Signature:
    """The model's signature, or ``given`` checked against it. Outputs that ``given`` leaves
    out are never computed, so they may be of types modelbay cannot serve (maps, sequences)."""
    inputs = [_spec(arg, "input") for arg in session.get_inputs()]
    output_args = session.get_outputs()
    if given is None:
        return Signature(inputs=inputs, outputs=[_spec(arg, "output") for arg in output_args])
    missing = {spec.name for spec in inputs} - {spec.name for spec in given.inputs}
    if missing:
        raise InvalidArtifact(
            f"the signature lacks the model's input(s) {quoted(sorted(missing))}",
            param="signature",
        )
    wanted = {spec.name for spec in given.outputs}
    unknown = wanted - {arg.name for arg in output_args}
    if unknown:
        raise InvalidArtifact(
            f"signature output(s) {quoted(sorted(unknown))} not in the model; "
            f"its outputs are {quoted(arg.name for arg in output_args)}",
            param="signature",
        )
    outputs = [_spec(arg, "output") for arg in output_args if arg.name in wanted]
    return Signature(
        inputs=picked_by_name(inputs, given.inputs, "input"),
        outputs=picked_by_name(outputs, given.outputs, "output"),
    )


def _spec(arg: Any, kind: str) -> TensorSpec:
    """The spec of an ``onnxruntime.NodeArg``; dimensions named or unknown are variable."""
    if arg.type not in _DATATYPES:
        hint = (
            "; for a scikit-learn classifier converted with skl2onnx, convert with "
            "options={id(model): {'zipmap': False}} or leave this output out of the signature"
            if kind == "output" and not str(arg.type).startswith("tensor(")
            else ""
        )
        raise InvalidArtifact(
            f"{kind} '{arg.name}' has type {arg.type}, which modelbay cannot serve; "
            f"supported types are {', '.join(_DATATYPES)}{hint}",
            param="file",
        )
    shape = [d if isinstance(d, int) else -1 for d in arg.shape]
    return TensorSpec(name=arg.name, datatype=_DATATYPES[arg.type], shape=shape)


def _fed(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    # onnxruntime stringifies bytes objects ("b'ab'"), so strings must be str.
    return as_text(array, spec.name) if spec.datatype == "BYTES" else array


def _returned(array: Any, spec: TensorSpec) -> np.ndarray:
    return as_bytes(array) if spec.datatype == "BYTES" else np.asarray(array)
