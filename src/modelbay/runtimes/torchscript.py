"""TorchScript models (``torch.jit.script``/``torch.jit.trace`` saved with ``.save``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from modelbay.errors import InvalidArtifact, ModelbayError
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes._signatures import quoted
from modelbay.runtimes._torch import (
    input_errors,
    require_tensor_datatypes,
    to_array,
    to_tensor,
    use_threads,
)
from modelbay.runtimes.base import Runtime
from modelbay.tensors import Signature

_SIGNATURE_NEEDED = (
    "a TorchScript model records no input or output specs; upload it with a signature, e.g. "
    '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 32, 32]}], '
    '"outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}'
)


class TorchScriptRuntime(Runtime):
    """Calls the scripted module with the inputs as positional arguments, in signature order."""

    format = "torchscript"
    signature_required = True

    def __init__(self, module: torch.jit.ScriptModule, signature: Signature) -> None:
        self._module = module
        super().__init__(signature)

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> TorchScriptRuntime:
        if signature is None:
            raise InvalidArtifact(_SIGNATURE_NEEDED, param="signature")
        require_tensor_datatypes(signature)
        use_threads(threads)
        try:
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(model_dir / entrypoint), map_location="cpu"
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise InvalidArtifact(
                f"cannot load TorchScript model '{entrypoint}': {framework_message(exc)}",
                param="file",
            ) from exc
        return cls(module.eval(), signature)

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        args = [to_tensor(inputs[spec.name], spec) for spec in self._signature.inputs]
        with torch.inference_mode(), input_errors():
            result = self._module(*args)
        tensors = self._by_name(result)
        return {
            spec.name: to_array(tensors[spec.name], spec)
            for spec in self._signature.outputs
            if outputs is None or spec.name in outputs
        }

    def _by_name(self, result: object) -> dict[str, torch.Tensor]:
        """The model's outputs keyed by signature output name."""
        names = [spec.name for spec in self._signature.outputs]
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, Mapping):
            missing = [name for name in names if name not in result]
            if missing:
                raise _mismatch(
                    f"returned a dict without {quoted(missing)}; "
                    f"its keys are {quoted(str(k) for k in result)}"
                )
            tensors = {name: result[name] for name in names}
        elif isinstance(result, Sequence) and len(result) == len(names):
            tensors = dict(zip(names, result, strict=True))
        elif isinstance(result, Sequence):
            raise _mismatch(f"returned {len(result)} outputs but the signature lists {len(names)}")
        else:
            raise _mismatch(f"returned a {type(result).__name__}, not tensors")
        for name, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                raise _mismatch(f"returned a {type(value).__name__} for output '{name}'")
        return tensors


def _mismatch(what: str) -> ModelbayError:
    return ModelbayError(
        f"the model {what}; the signature given at upload does not describe this model",
        status=500,
    )
