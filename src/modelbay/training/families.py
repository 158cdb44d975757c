"""The model families a training job builds, each wrapped so that the exported model takes
the raw features as served and returns what a client wants.

Every model is a ``TrainedModel``: ``Normalize`` (mean/std of the training split, held in
buffers) → the family's body → class probabilities (softmax, ``[N, K]``) or the
prediction in the target's units (``[N]``). Training uses ``logits`` (the body's raw output;
for regression, the standardised target) so the loss sees logits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from modelbay.training.spec import TrainSpec
from modelbay.training.table import Task


class Normalize(nn.Module):
    """``(x - mean) / std`` with statistics of the training split: per feature for tabular
    rows ``[N, F]``, per channel for images ``[N, C, H, W]`` and for tabular rows that a
    convolutional model reads as ``channels`` images (each channel's features share one
    mean and std, so the image keeps its contrasts)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, input_shape: tuple[int, ...], channels: int | None = None) -> None:
        super().__init__()
        stats = (input_shape[0], 1, 1) if len(input_shape) == 3 else input_shape
        self.channels = channels
        self.register_buffer("mean", torch.zeros(stats))
        self.register_buffer("std", torch.ones(stats))

    def fit(self, features: torch.Tensor) -> None:
        """Set mean and std from ``features`` (the training split); a constant feature
        (or channel) keeps std 1."""
        if features.dim() == 4:
            var, mean = torch.var_mean(features, dim=(0, 2, 3), correction=0)
        elif self.channels is not None:
            grouped = features.reshape(features.shape[0], self.channels, -1)  # [N, C, H·W]
            var, mean = torch.var_mean(grouped, dim=(0, 2), correction=0)
            per_channel = grouped.shape[2]
            var, mean = var.repeat_interleave(per_channel), mean.repeat_interleave(per_channel)
        else:
            var, mean = torch.var_mean(features, dim=0, correction=0)
        std = var.sqrt()
        std = torch.where(std < 1e-6, torch.ones_like(std), std)
        self.mean.copy_(mean.reshape(self.mean.shape))
        self.std.copy_(std.reshape(self.std.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TrainedModel(nn.Module):
    """Raw features in; probabilities ``[N, K]`` (classification) or predictions ``[N]``
    (regression) out. Regression trains on the standardised target: the prediction is
    ``logit * target_std + target_mean``."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, normalize: Normalize, body: nn.Module, task: Task) -> None:
        super().__init__()
        self.normalize = normalize
        self.body = body
        self.classifier = task == "classification"
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def fit_target(self, target: torch.Tensor) -> None:
        """Regression: set the target's mean and std from the training split."""
        std = float(target.std(correction=0))
        self.target_mean.fill_(float(target.mean()))
        self.target_std.fill_(std if std > 1e-12 else 1.0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, K]``, or the standardised prediction ``[N, 1]``."""
        out: torch.Tensor = self.body(self.normalize(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        if self.classifier:
            return torch.softmax(z, dim=-1)
        return z[:, 0] * self.target_std + self.target_mean


class MLP(nn.Sequential):
    """Flattened input → (Linear → ReLU → Dropout) per hidden size → Linear. With no hidden
    layer: one Linear (linear, logistic/softmax regression, perceptron)."""

    def __init__(self, inputs: int, hidden: list[int], outputs: int, dropout: float) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        for size in hidden:
            layers += [nn.Linear(inputs, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            inputs = size
        layers.append(nn.Linear(inputs, outputs))
        super().__init__(*layers)


class LeNet(nn.Module):
    """The CIFAR-10 CNN of the PyTorch tutorial: conv5×5(6) → pool → conv5×5(16) → pool →
    fc120 → fc84 → out, exactly so for 32×32 images. Smaller images (8×8 digits) get
    padding 2, so each convolution keeps the size, and skip the second pool where it would
    shrink the map below 4×4; fc120 takes whatever 16×H'×W' is left."""

    def __init__(self, view: list[int], outputs: int, dropout: float) -> None:
        super().__init__()
        channels, height, width = view
        self.view = (channels, height, width)
        side = min(height, width)
        # Unpadded, each conv5×5 takes 4 off a side and each pool halves it: 32 → 28 → 14 →
        # 10 → 5. Where that would leave less than 5, the convolutions keep the size.
        pad = 0 if _conv_pool(_conv_pool(side, 0, True), 0, True) >= 5 else 2
        pool2 = _conv_pool(_conv_pool(side, pad, True), pad, False) >= 8
        self.conv1 = nn.Conv2d(channels, 6, 5, padding=pad)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad)
        self.pool2: nn.Module = nn.MaxPool2d(2, 2) if pool2 else nn.Identity()
        h, w = (_conv_pool(_conv_pool(n, pad, True), pad, pool2) for n in (height, width))
        self.fc1 = nn.Linear(16 * h * w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, outputs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.view)
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.dropout(torch.relu(self.fc1(x)))
        x = self.dropout(torch.relu(self.fc2(x)))
        out: torch.Tensor = self.fc3(x)
        return out


def _conv_pool(side: int, pad: int, pool: bool) -> int:
    """The side of a map after a conv5×5 with padding ``pad`` and, if ``pool``, a 2×2 pool."""
    side = side + 2 * pad - 4
    return side // 2 if pool else side


class BasicBlock(nn.Module):
    """Two conv3×3 with BatchNorm and a skip connection (1×1 conv where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet(nn.Module):
    """A small ResNet: conv3×3 stem, one ``BasicBlock`` per stage (stride 2 after the first),
    global average pooling, Linear."""

    def __init__(self, view: list[int], channels: list[int], outputs: int, dropout: float):
        super().__init__()
        self.view = (view[0], view[1], view[2])
        self.stem = nn.Sequential(
            nn.Conv2d(view[0], channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        cin = channels[0]
        for i, cout in enumerate(channels):
            blocks.append(BasicBlock(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x.reshape(x.shape[0], *self.view)))
        out: torch.Tensor = self.fc(self.dropout(torch.flatten(self.pool(x), 1)))
        return out


class Recurrent(nn.Module):
    """RNN, LSTM or GRU over a row read as ``steps`` time steps; the last step's hidden
    state → Dropout → Linear. Images ``[C, H, W]`` are H steps of C·W values."""

    def __init__(
        self,
        kind: Literal["rnn", "lstm", "gru"],
        input_shape: tuple[int, ...],
        steps: int,
        hidden_size: int,
        layers: int,
        outputs: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.images = len(input_shape) == 3
        self.steps = steps
        self.size = math.prod(input_shape) // steps
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cls(
            self.size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.images:
            x = x.permute(0, 2, 1, 3)  # [N, H, C, W]: a step is one image row
        sequence = x.reshape(x.shape[0], self.steps, self.size)
        states, _ = self.rnn(sequence)
        out: torch.Tensor = self.fc(self.dropout(states[:, -1]))
        return out


def image_view(spec: TrainSpec, input_shape: tuple[int, ...]) -> list[int]:
    """``[C, H, W]`` a row is read as: the images' own, ``spec.input_shape``, or a square."""
    if len(input_shape) == 3:
        return list(input_shape)
    if spec.input_shape is not None:
        return list(spec.input_shape)
    side = math.isqrt(input_shape[0])
    return [1, side, side]


def build_model(spec: TrainSpec, input_shape: tuple[int, ...], num_outputs: int) -> TrainedModel:
    """The untrained model of ``spec.family`` for rows of ``input_shape`` (``(F,)`` or
    ``(C, H, W)``) and ``num_outputs`` classes (1 for regression)."""
    inputs = math.prod(input_shape)
    body: nn.Module
    channels = None
    family = spec.family
    if family in ("linear", "logistic", "perceptron"):
        body = MLP(inputs, [], num_outputs, 0.0)
    elif family == "mlp":
        body = MLP(inputs, spec.hidden, num_outputs, spec.dropout)
    elif family in ("cnn", "resnet"):
        view = image_view(spec, input_shape)
        channels = view[0] if len(input_shape) == 1 else None
        if family == "cnn":
            body = LeNet(view, num_outputs, spec.dropout)
        else:
            body = ResNet(view, spec.channels, num_outputs, spec.dropout)
    elif family in ("rnn", "lstm", "gru"):
        steps = spec.steps or (input_shape[1] if len(input_shape) == 3 else inputs)
        body = Recurrent(
            family,
            input_shape,
            steps,
            spec.hidden_size,
            spec.layers,
            num_outputs,
            spec.dropout,
        )
    else:
        raise ValueError(f"unknown model family '{family}'")
    return TrainedModel(Normalize(input_shape, channels), body, spec.task)
