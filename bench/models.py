"""Models for the serving benchmark, exported to ONNX (random weights: speed only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cifar_module() -> Any:
    """The CIFAR-10 CNN of the PyTorch tutorial (seed 000, "LeNet"): [N,3,32,32] -> [N,10]."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(torch.relu(self.conv1(x)))  # [N,6,14,14]
            x = self.pool(torch.relu(self.conv2(x)))  # [N,16,5,5]
            x = torch.flatten(x, 1)  # [N,400]
            x = torch.relu(self.fc1(x))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)  # [N,10]

    return Net()


def mlp_module() -> Any:
    """A 64 -> 128 -> 10 MLP (the digits shape): [N,64] -> [N,10]."""
    from torch import nn

    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cifar_cnn(path: Path) -> None:
    """The CIFAR CNN exported to ONNX, input [N,3,32,32]."""
    _export(cifar_module(), (1, 3, 32, 32), path)


def mlp(path: Path) -> None:
    """The MLP exported to ONNX, input [N,64]: nearly free to run, so a server's
    per-request overhead is all there is to measure."""
    _export(mlp_module(), (1, 64), path)


def resnet18_style(path: Path) -> None:
    """A ResNet-18-style CNN (4 stages of 2 basic blocks, 64-512 channels), input [N,3,64,64]."""
    from torch import nn

    from modelbay.training.families import BasicBlock  # the block the `resnet` family uses

    stages, cin, layers = [64, 128, 256, 512], 64, []
    for i, cout in enumerate(stages):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, 1, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),  # [N,64,64,64]
        *layers,  # [N,512,8,8]
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 10),  # [N,10]
    )
    _export(net, (1, 3, 64, 64), path)


def image_mean(path: Path) -> None:
    """A near-free model on [N,3,224,224] FP32 (mean per image): isolates request costs."""
    import onnx
    from onnx import TensorProto, helper

    # Opset 17: ReduceMean still takes its axes as an attribute.
    node = helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0, axes=[1, 2, 3])
    graph = helper.make_graph(
        [node],
        "mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _export(module: object, shape: tuple[int, ...], path: Path) -> None:
    import warnings

    import torch

    module.eval()  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,  # type: ignore[arg-type]
            (torch.zeros(*shape),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
