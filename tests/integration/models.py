"""Tiny real models of every supported format, built inside the tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MLP_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}


@dataclass
class BuiltModel:
    """A model file, how to push it, and the in-process reference to compare against."""

    format: str
    path: Path
    input_name: str
    input_dtype: type
    output_name: str
    reference: Callable[[np.ndarray], np.ndarray]
    signature_file: Path | None = None


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


SKLEARN_INFER_BODY = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1.0] * 4}]
}
"""A V2 JSON request for the model ``build_sklearn`` makes."""


def sklearn_grpc_request(model: str) -> Any:
    """The same request as a V2 gRPC ``ModelInferRequest`` for ``model``."""
    from modelbay.protocols.grpc import grpc_predict_v2_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input",
        datatype="FP64",
        shape=[1, 4],
        contents=pb.InferTensorContents(fp64_contents=[1.0] * 4),
    )
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def build_sklearn(tmp: Path) -> BuiltModel:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = tmp / "iris.skops"
    skops.io.dump(model, path)
    return BuiltModel("sklearn", path, "input", np.float64, "predict_proba", model.predict_proba)


def _mlp():  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _torch_reference(module):  # type: ignore[no-untyped-def]
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out: np.ndarray = module(torch.from_numpy(x)).numpy()
            return out

    return run


def build_torchscript(tmp: Path) -> BuiltModel:
    import torch

    module = _mlp()
    path = tmp / "mlp.pt"
    torch.jit.script(module).save(str(path))
    signature = tmp / "signature.json"
    signature.write_text(json.dumps(MLP_SIGNATURE))
    return BuiltModel(
        "torchscript", path, "x", np.float32, "y", _torch_reference(module), signature
    )


def build_torch_export(tmp: Path) -> BuiltModel:
    import torch

    module = _mlp()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp / "mlp.pt2"
    torch.export.save(program, str(path))
    reference = _torch_reference(module)
    return BuiltModel("torch_export", path, "input", np.float32, "output_0", reference)


def build_onnx(tmp: Path) -> BuiltModel:
    import torch

    module = _mlp()
    path = tmp / "mlp.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, 4),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return BuiltModel("onnx", path, "x", np.float32, "y", _torch_reference(module))


def build_spinning_torchscript(tmp: Path) -> tuple[Path, Path]:
    """A TorchScript model that adds 1 to ``x`` ``x[0, 0]`` times: a large first value
    keeps it busy for minutes. Returns the model and its signature file."""
    import torch
    from torch import nn

    class Spin(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x
            for _ in range(int(x[0, 0].item())):
                y = y + 1.0
            return y

    path = tmp / "spin.pt"
    torch.jit.script(Spin()).save(str(path))
    signature = tmp / "spin-signature.json"
    signature.write_text(
        json.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
            }
        )
    )
    return path, signature


def build_two_inputs_onnx(tmp: Path) -> Path:
    """An ONNX model ``y = a + b`` with two inputs of shape [-1, 2]."""
    import torch
    from torch import nn

    class Add(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    path = tmp / "add.onnx"
    torch.onnx.export(
        Add(),
        (torch.zeros(2, 2), torch.zeros(2, 2)),
        str(path),
        input_names=["a", "b"],
        output_names=["y"],
        dynamic_axes={"a": {0: "batch"}, "b": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return path


BUILDERS = {
    "sklearn": build_sklearn,
    "torchscript": build_torchscript,
    "torch_export": build_torch_export,
    "onnx": build_onnx,
}
