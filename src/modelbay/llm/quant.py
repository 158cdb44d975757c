"""Weight-only int8 quantization: each output channel's weights as int8 with one scale.

Decoding one token reads every weight once, so its speed is the memory bandwidth divided
by the weights' bytes: int8 halves bf16's. Activations stay in the model's dtype; on CPU
the matmul is ``torch._weight_int8pack_mm`` (int8 weights, bf16/fp32 activations),
elsewhere the weights are widened on the fly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QUANTIZATIONS = ("none", "int8")


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """weight [N, K] -> int8 [N, K] and scales [N], symmetric: w ≈ q * scale."""
    w = weight.float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scales


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias, with q int8 per output channel."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        q, scales = quantize_per_channel(weight)
        self.weight_int8: Tensor
        self.scales: Tensor
        self.register_buffer("weight_int8", q)
        self.register_buffer("scales", scales.to(dtype))
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight.detach(), linear.bias, linear.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if flat.device.type == "cpu":
            out = torch._weight_int8pack_mm(flat.contiguous(), self.weight_int8, self.scales)
        else:
            out = F.linear(flat, self.weight_int8.to(flat.dtype)) * self.scales
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], out.shape[-1])


def quantize_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``model`` by an ``Int8Linear``; how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear.from_linear(child))
                replaced += 1
    return replaced
