"""A Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2) over a paged KV cache.

RMSNorm, rotary position embeddings (the Hugging Face rotate-half layout), grouped-query
attention and a SwiGLU MLP. q/k/v and gate/up are each one fused Linear: fewer ops per layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modelbay.llm.attention import AttentionMetadata, KVCache, paged_attention
from modelbay.llm.config import LlamaConfig
from modelbay.llm.quant import Int8Linear, PackedLinear, replace_linears


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, as one fused op."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def rope_inv_freq(config: LlamaConfig) -> Tensor:
    """[head_dim / 2] rotation frequencies, with linear or llama3 scaling applied."""
    # float32 throughout, as the reference computes it: the same angles to the last bit.
    exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
    inv_freq = 1.0 / config.rope_theta**exponents
    scaling = config.rope_scaling or {}
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "linear":
        return inv_freq / float(scaling["factor"])
    if rope_type != "llama3":
        return inv_freq
    if "freq_factors" in scaling:  # GGUF stores the llama3 adjustment precomputed
        return inv_freq / torch.tensor(scaling["freq_factors"], dtype=torch.float32)
    factor = float(scaling["factor"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_context = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    smooth = ((old_context / wavelen - low) / (high - low)).clamp(0.0, 1.0)
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def rope_table(config: LlamaConfig, device: torch.device | None = None) -> Tensor:
    """[max_positions, 2, head_dim]: cos, and sin with the first half negated.

    With the sign folded in, rotate_half(x) * sin == roll(x, head_dim / 2) * signed_sin.
    """
    inv_freq = rope_inv_freq(config)
    positions = torch.arange(config.max_position_embeddings, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)  # [P, head_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)  # [P, head_dim]
    half = config.head_dim // 2
    sign = torch.cat([-torch.ones(half), torch.ones(half)])
    return torch.stack([angles.cos(), angles.sin() * sign], dim=1).to(device)


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """x [T, heads, head_dim] rotated by its positions' angles; cos, signed_sin [T, 1, head_dim]."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class Attention(nn.Module):
    """Grouped-query self-attention over the paged cache."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        self.head_dim = config.head_dim
        qkv_dim = (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
        self.qkv = nn.Linear(config.hidden_size, qkv_dim, bias=config.qkv_bias)
        self.out = nn.Linear(config.num_heads * config.head_dim, config.hidden_size, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, signed_sin: Tensor, cache: KVCache, meta: AttentionMetadata
    ) -> Tensor:
        num_tokens = x.shape[0]
        qk_heads = self.num_heads + self.num_kv_heads
        qkv = self.qkv(x).view(num_tokens, qk_heads + self.num_kv_heads, self.head_dim)
        qk = apply_rope(qkv[:, :qk_heads], cos, signed_sin)  # q and k rotated together
        q, k, v = qk[:, : self.num_heads], qk[:, self.num_heads :], qkv[:, qk_heads:]
        out = paged_attention(q, k, v, cache, meta)  # [T, H, head_dim]
        projected: Tensor = self.out(out.reshape(num_tokens, -1))
        return projected


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        out: Tensor = self.down(F.silu(gate) * up)
        return out


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, cos: Tensor, signed_sin: Tensor, cache: KVCache, meta: AttentionMetadata
    ) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, signed_sin, cache, meta)
        out: Tensor = x + self.mlp(self.mlp_norm(x))
        return out


class LlamaForCausalLM(nn.Module):
    """The decoder stack; `forward` returns hidden states, `compute_logits` the vocabulary scores.

    Built under `torch.device("meta")` by the loader; `init_rope` then makes the rope table.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head: nn.Module | None = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.rope: Tensor
        self.register_buffer("rope", rope_table(config), persistent=False)

    def init_rope(self, device: torch.device, dtype: torch.dtype) -> None:
        """(Re)compute the rope table on `device`, in float32 and then cast to `dtype`."""
        self.rope = rope_table(self.config, device).to(dtype)

    def forward(
        self,
        input_ids: Tensor,
        positions: Tensor,
        kv_caches: list[KVCache],
        meta: AttentionMetadata,
    ) -> Tensor:
        """input_ids, positions [T] -> hidden states [T, hidden]; writes the step's K/V."""
        x = self.embed(input_ids)
        rope = self.rope[positions].unsqueeze(2)  # [T, 2, 1, head_dim]
        cos, signed_sin = rope[:, 0], rope[:, 1]
        for layer, cache in zip(self.layers, kv_caches, strict=True):
            x = layer(x, cos, signed_sin, cache, meta)
        hidden: Tensor = self.norm(x)
        return hidden

    def compute_logits(self, hidden: Tensor) -> Tensor:
        """hidden [N, hidden] -> logits [N, vocab] in float32."""
        if self.lm_head is None:  # tied to the embedding
            return F.linear(hidden, self.embed.weight).float()
        logits: Tensor = self.lm_head(hidden)
        return logits.float()

    def quantize_int8(self) -> None:
        """Weight-only int8 for every projection and the output head (``quant.py``); the
        embedding lookup keeps its dtype."""
        replace_linears(self.layers, Int8Linear.from_linear)
        if self.lm_head is None:
            self.lm_head = Int8Linear(self.embed.weight.detach(), None, self.embed.weight.dtype)
        elif isinstance(self.lm_head, nn.Linear):
            self.lm_head = Int8Linear.from_linear(self.lm_head)

    def pack_for_cpu(self) -> None:
        """bf16 on CPU: every projection and the output head as a ``PackedLinear``
        (``quant.py``); the embedding lookup keeps its plain weight."""
        replace_linears(self.layers, PackedLinear.from_linear)
        if self.lm_head is None:
            self.lm_head = PackedLinear(self.embed.weight, None)
        elif isinstance(self.lm_head, nn.Linear):
            self.lm_head = PackedLinear.from_linear(self.lm_head)
