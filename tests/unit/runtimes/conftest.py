"""Tiny PyTorch models shared by the format and PyTorch runtime tests."""

from __future__ import annotations

import pytest
import torch


class TinyNet(torch.nn.Module):
    """Scores (B, 2) and the input doubled (B, 3), from rows of 3 features (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), x * 2


@pytest.fixture(scope="session")
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()
