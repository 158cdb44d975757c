"""CPU linear kernels: bf16 weights packed for oneDNN, and weight-only int8 quantization.

Decoding one token reads every weight once, so its speed is the memory bandwidth divided
by the weights' bytes, plus whatever the matmul kernel wastes at a handful of rows.

- ``PackedLinear``: a bf16 weight reordered once into oneDNN's blocked layout (what
  ``torch.compile`` does to CPU linears when it freezes a model), run by oneDNN's AMX
  kernels. The same numbers as ``F.linear``, about 1.7x faster for 1 to 32 rows on this
  CPU, where the plain bf16 matmul re-packs its weight on every call.
- ``Int8Linear``: each output channel's weights as int8 with one scale: half bf16's
  bytes. Activations stay in the model's dtype; on CPU the matmul is
  ``torch._weight_int8pack_mm``, elsewhere the weights are widened on the fly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QUANTIZATIONS = ("none", "int8")


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether linears on ``device`` in ``dtype`` gain from ``PackedLinear`` (bf16 on CPU)."""
    return (
        device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


class PackedLinear(nn.Module):
    """y = x @ W.T + bias with W held in oneDNN's blocked layout (CPU, bf16).

    The packed weight is a plain attribute, not a parameter or buffer: it cannot be moved,
    saved or loaded, only multiplied.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).contiguous()
        out: Tensor = torch.ops.mkldnn._linear_pointwise(
            flat, self.packed, self.bias, "none", [], ""
        )
        return out.reshape(*shape[:-1], self.out_features)


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


def replace_linears(model: nn.Module, kind: Callable[[nn.Linear], nn.Module]) -> int:
    """Replace every ``nn.Linear`` under ``model`` by ``kind(linear)`` (``PackedLinear.
    from_linear``, ``Int8Linear.from_linear``); how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, kind(child))
                replaced += 1
    return replaced
