"""``torch.export`` programs saved with ``torch.export.save`` (``.pt2`` archives).

A ``.pt2`` archive records its tensor specs, so no signature is needed; but
``torch.export.load`` unpickles some members (sample inputs, tensor subclasses, opaque
constants), so the archive is screened before it is loaded.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from modelbay.errors import InvalidArtifact
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes._signatures import narrowed, quoted
from modelbay.runtimes._torch import (
    DATATYPES_OF_TORCH,
    input_errors,
    to_array,
    to_tensor,
    use_threads,
)
from modelbay.runtimes.base import Runtime
from modelbay.tensors import Signature, TensorSpec


class TorchExportRuntime(Runtime):
    """Runs ``ExportedProgram.module()``, inputs passed as they were at export time."""

    format = "torch_export"

    def __init__(self, program: ExportedProgram, signature: Signature) -> None:
        self._module = program.module()
        self._in_spec = program.call_spec.in_spec
        super().__init__(signature)

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> TorchExportRuntime:
        path = model_dir / entrypoint
        _refuse_unsafe_members(path)
        use_threads(threads)
        try:
            program = torch.export.load(path)
        except (RuntimeError, ValueError, AssertionError, KeyError, OSError) as exc:
            raise InvalidArtifact(
                f"cannot load torch.export program '{entrypoint}': {framework_message(exc)}",
                param="file",
            ) from exc
        return cls(program, _fitted(_recorded_signature(program), signature))

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        leaves = [to_tensor(inputs[spec.name], spec) for spec in self._signature.inputs]
        args, kwargs = pytree.tree_unflatten(leaves, self._in_spec)
        with torch.inference_mode(), input_errors():
            result = self._module(*args, **kwargs)
        tensors = pytree.tree_leaves(result)
        return {
            spec.name: to_array(tensor, spec)
            for spec, tensor in zip(self._signature.outputs, tensors, strict=True)
            if outputs is None or spec.name in outputs
        }


def _recorded_signature(program: ExportedProgram) -> Signature:
    """Inputs named after the forward arguments, outputs ``output_0``, ``output_1``..."""
    nodes = {node.name: node for node in program.graph.nodes}
    graph_signature = program.graph_signature
    user_inputs = [s for s in graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    user_outputs = [s for s in graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    names = [spec.arg.name for spec in user_inputs]
    # Placeholder names are mangled for nested or clashing arguments; prefer the originals.
    call = program.module_call_graph[0].signature
    if call is not None and len(call.forward_arg_names) == len(names):
        names = list(call.forward_arg_names)
    return Signature(
        inputs=[
            _spec(name, nodes.get(spec.arg.name), "input")
            for name, spec in zip(names, user_inputs, strict=True)
        ],
        outputs=[
            _spec(f"output_{i}", nodes.get(spec.arg.name), "output")
            for i, spec in enumerate(user_outputs)
        ],
    )


def _spec(name: str, node: torch.fx.Node | None, kind: str) -> TensorSpec:
    value = node.meta.get("val") if node is not None else None
    if not isinstance(value, torch.Tensor):
        raise InvalidArtifact(
            f"{kind} '{name}' of the exported program is not a tensor; "
            "export a module whose inputs and outputs are tensors",
            param="file",
        )
    if value.dtype not in DATATYPES_OF_TORCH:
        raise InvalidArtifact(f"{kind} '{name}' has unsupported dtype {value.dtype}", param="file")
    # Symbolic sizes (torch.export.Dim) are variable dimensions.
    shape = [d if isinstance(d, int) else -1 for d in value.shape]
    return TensorSpec(name=name, datatype=DATATYPES_OF_TORCH[value.dtype], shape=shape)


def _fitted(recorded: Signature, given: Signature | None) -> Signature:
    """The given signature, matched to the recorded one by position (names may differ)."""
    if given is None:
        return recorded
    for kind, mine, theirs in (
        ("input", recorded.inputs, given.inputs),
        ("output", recorded.outputs, given.outputs),
    ):
        if len(mine) != len(theirs):
            raise InvalidArtifact(
                f"the signature lists {len(theirs)} {kind}s but the exported program has "
                f"{len(mine)}: {quoted(s.name for s in mine)}",
                param="signature",
            )
    return Signature(
        inputs=[
            narrowed(m, g, "input") for m, g in zip(recorded.inputs, given.inputs, strict=True)
        ],
        outputs=[
            narrowed(m, g, "output") for m, g in zip(recorded.outputs, given.outputs, strict=True)
        ],
    )


def _refuse_unsafe_members(path: Path) -> None:
    """Refuse archive members that ``torch.export.load`` would unpickle without restriction
    or load as native code; pickled tensors are allowed if they load with weights_only."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidArtifact(f"'{path.name}' is not a .pt2 archive: {exc}", param="file") from None
    with archive:
        pickled = {name for name in archive.namelist() if name.endswith(".pt")}
        for name in archive.namelist():
            if "aotinductor" in name.split("/"):
                raise _unsafe(path, name, "is compiled native code (AOTInductor)")
            if name.endswith(("_weights_config.json", "_constants_config.json")):
                pickled |= _pickled_payloads(path, archive, name)
        for name in sorted(pickled):
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as exc:  # whatever the unpickler rejects is not plain tensors
                raise _unsafe(path, name, "holds pickled objects other than tensors") from exc


def _pickled_payloads(path: Path, archive: zipfile.ZipFile, config_name: str) -> set[str]:
    folder = config_name.rsplit("/", 1)[0]
    config: dict[str, Any] = json.loads(archive.read(config_name)).get("config", {})
    pickled = set()
    for payload in config.values():
        file = payload.get("path_name", "")
        if file.startswith(("custom_obj_", "opaque_obj_")):
            raise _unsafe(path, f"{folder}/{file}", "is a pickled Python object")
        if payload.get("use_pickle"):
            pickled.add(f"{folder}/{file}")
    return pickled


def _unsafe(path: Path, member: str, why: str) -> InvalidArtifact:
    return InvalidArtifact(
        f"'{path.name}' member '{member}' {why}, which would run code when loaded; "
        "export a module with plain tensor weights and constants",
        param="file",
    )
