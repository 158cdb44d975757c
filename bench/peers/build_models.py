"""Build the two bench models as TorchScript (random weights, fixed seed).

Run with the TorchServe venv's python:  TS_VENV/bin/python build_models.py OUT_DIR
Writes OUT_DIR/LeNet.pt and OUT_DIR/MLP.pt (torch.jit.script of the modules below).
"""

import sys
from pathlib import Path

import torch
from torch import nn


class LeNet(nn.Module):
    """The CIFAR-10 CNN of the PyTorch tutorial, input [N,3,32,32] -> [N,10]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models = {
        "LeNet": (LeNet(), (2, 3, 32, 32)),
        "MLP": (nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), (2, 64)),
    }
    for name, (module, shape) in models.items():
        scripted = torch.jit.script(module.eval())
        y = scripted(torch.zeros(*shape))
        assert tuple(y.shape) == (shape[0], 10), y.shape
        scripted.save(str(out / f"{name}.pt"))
        print(f"built {out / (name + '.pt')}")


if __name__ == "__main__":
    main()
