"""Weights are data: map a GGUF file's or a safetensors checkpoint's tensors onto the model.

Both formats are first renamed to one canonical naming (`layers.3.q.weight`), then fused into
the model's parameters (q/k/v -> qkv, gate/up -> gate_up). Pickled checkpoints are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from modelbay.llm.config import (
    LlamaConfig,
    LLMInfo,
    gguf_info,
    read_hf_config,
    read_llm_info,
    safetensors_files,
)
from modelbay.llm.gguf_file import GGUFFile
from modelbay.llm.model import LlamaForCausalLM

_GGUF_GLOBALS = {
    "token_embd.weight": "embed.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER = {
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "mlp_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
}
_GGUF_IGNORED = ("rope_freqs.weight",)  # read into the config (llama3 rope scaling)
# llama.cpp converts these with Q/K rows interleaved for its own rope (Qwen2 keeps rotate-half).
_GGUF_PERMUTED = ("llama", "mistral")

_HF_GLOBALS = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_HF_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "q",
    "self_attn.k_proj": "k",
    "self_attn.v_proj": "v",
    "self_attn.o_proj": "o",
    "post_attention_layernorm": "mlp_norm",
    "mlp.gate_proj": "gate",
    "mlp.up_proj": "up",
    "mlp.down_proj": "down",
}

# canonical part -> model parameter, per layer
_DIRECT = {"o": "attn.out", "down": "mlp.down", "attn_norm": "attn_norm", "mlp_norm": "mlp_norm"}
_FUSED = {"attn.qkv": ("q", "k", "v"), "mlp.gate_up": ("gate", "up")}


def load_model(
    path: Path, *, dtype: torch.dtype, device: torch.device
) -> tuple[LlamaForCausalLM, LlamaConfig, LLMInfo]:
    """Load a .gguf file (dequantized to `dtype`) or a Hugging Face safetensors directory."""
    if path.is_dir():
        config = LlamaConfig.from_hf_config(read_hf_config(path))
        info = read_llm_info(path)
        tensors = _hf_tensors(path, config)
    elif path.suffix == ".gguf":
        gguf = GGUFFile(path)
        config = LlamaConfig.from_gguf(gguf)
        info = gguf_info(gguf)
        tensors = _gguf_tensors(gguf, config)
    else:
        raise ValueError(f"{path.name}: expected a .gguf file or a Hugging Face model directory")
    canonical = {name: tensor.to(device=device, dtype=dtype) for name, tensor in tensors}
    state = _fuse(canonical, config)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.init_rope(device, dtype)
    model.requires_grad_(False)
    return model.eval(), config, info


def _canonical_name(
    name: str, layer_prefix: str, globals_: dict[str, str], layer: dict[str, str]
) -> str | None:
    """`blk.3.attn_q.weight` / `model.layers.3.self_attn.q_proj.weight` -> `layers.3.q.weight`."""
    if name in globals_:
        return globals_[name]
    if not name.startswith(layer_prefix):
        return None
    index, _, rest = name.removeprefix(layer_prefix).partition(".")
    module, _, kind = rest.rpartition(".")
    part = layer.get(module)
    return None if part is None or not index.isdigit() else f"layers.{index}.{part}.{kind}"


def _gguf_tensors(gguf: GGUFFile, config: LlamaConfig) -> Iterator[tuple[str, Tensor]]:
    unknown = []
    for name in gguf.tensors:
        canonical = _canonical_name(name, "blk.", _GGUF_GLOBALS, _GGUF_LAYER)
        if canonical is None:
            if name not in _GGUF_IGNORED:
                unknown.append(name)
            continue
        tensor = torch.from_numpy(gguf.read_tensor(name))
        if config.architecture in _GGUF_PERMUTED and canonical.endswith((".q.weight", ".k.weight")):
            heads = config.num_heads if ".q." in canonical else config.num_kv_heads
            tensor = _unpermute_rope_rows(tensor, heads)
        yield canonical, tensor
    _refuse_unknown(unknown)


def _unpermute_rope_rows(weight: Tensor, num_heads: int) -> Tensor:
    """Per head, rows (0, half, 1, half + 1, ...) back to (0, 1, ..., half, half + 1, ...)."""
    half = weight.shape[0] // num_heads // 2
    rows = weight.view(num_heads, half, 2, *weight.shape[1:])
    return rows.transpose(1, 2).reshape(weight.shape)


def _hf_tensors(directory: Path, config: LlamaConfig) -> Iterator[tuple[str, Tensor]]:
    unknown = []
    for file in safetensors_files(directory):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                canonical = _canonical_name(name, "model.layers.", _HF_GLOBALS, _HF_LAYER)
                if canonical is None:
                    if not name.endswith("rotary_emb.inv_freq"):
                        unknown.append(name)
                    continue
                if canonical == "lm_head.weight" and config.tie_word_embeddings:
                    continue
                yield canonical, f.get_tensor(name)
    _refuse_unknown(unknown)


def _refuse_unknown(names: list[str]) -> None:
    if names:
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(f"checkpoint holds {len(names)} tensors this model does not use: {listed}")


def _fuse(canonical: dict[str, Tensor], config: LlamaConfig) -> dict[str, Tensor]:
    """Canonical tensors -> the model's state dict; every canonical tensor must be used."""

    def take(name: str) -> Tensor:
        if name not in canonical:
            raise ValueError(f"checkpoint lacks the tensor {name!r}")
        return canonical.pop(name)

    state = {"embed.weight": take("embed.weight"), "norm.weight": take("norm.weight")}
    if not config.tie_word_embeddings:
        state["lm_head.weight"] = take("lm_head.weight")
    for i in range(config.num_layers):
        prefix = f"layers.{i}."
        for part, param in _DIRECT.items():
            state[f"{prefix}{param}.weight"] = take(f"{prefix}{part}.weight")
        for param, parts in _FUSED.items():
            state[f"{prefix}{param}.weight"] = torch.cat(
                [take(f"{prefix}{p}.weight") for p in parts]
            )
        if config.qkv_bias:
            biases = [take(f"{prefix}{p}.bias") for p in _FUSED["attn.qkv"]]
            state[f"{prefix}attn.qkv.bias"] = torch.cat(biases)
    _refuse_unknown(sorted(canonical))
    return state
