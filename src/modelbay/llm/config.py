"""Model configuration and registry facts, read from a GGUF file or a Hugging Face directory.

Everything here reads headers only: no tensor is dequantized, so `read_llm_info` is fast.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbay.llm.gguf_file import GGUFFile

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
SUPPORTED_ROPE_SCALING = ("default", "linear", "llama3")
_HF_DTYPE_NAMES = {"BF16": "bf16", "F16": "f16", "F32": "f32"}


def _check_architecture(architecture: str) -> None:
    if architecture not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        raise ValueError(f"architecture {architecture!r} is not supported; supported: {supported}")


# --- The model configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaConfig:
    """The hyper-parameters of a Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_scaling: dict[str, Any] | None = None  # {"rope_type": "linear" | "llama3", ...}
    qkv_bias: bool = False  # Qwen2

    def __post_init__(self) -> None:
        _check_architecture(self.architecture)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.num_heads} heads do not group over {self.num_kv_heads}")
        rope_type = (self.rope_scaling or {}).get("rope_type", "default")
        if rope_type not in SUPPORTED_ROPE_SCALING:
            supported = ", ".join(SUPPORTED_ROPE_SCALING)
            raise ValueError(f"rope scaling {rope_type!r} is not supported; supported: {supported}")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> LlamaConfig:
        """From a Hugging Face config.json (transformers 4 or 5 layout)."""
        architecture = str(config.get("model_type", "unknown"))
        _check_architecture(architecture)
        if config.get("quantization_config"):
            raise ValueError(
                "quantized Hugging Face checkpoints are not supported; use a GGUF file"
            )
        if config.get("attention_bias") or config.get("mlp_bias"):
            raise ValueError("checkpoints with attention_bias or mlp_bias are not supported")
        rope = dict(config.get("rope_parameters") or {})  # transformers 5
        rope.update(config.get("rope_scaling") or {})
        theta = float(config.get("rope_theta", rope.pop("rope_theta", 10000.0)))
        rope_type = rope.pop("type", None) or rope.get("rope_type", "default")
        rope["rope_type"] = rope_type
        heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
        max_positions = int(config.get("max_position_embeddings", 2048))
        # Sliding-window attention equals full attention within the window: serve up to it.
        window = config.get("sliding_window")
        if window and config.get("use_sliding_window", architecture == "mistral"):
            max_positions = min(max_positions, int(window))
        return cls(
            architecture=architecture,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            rope_theta=theta,
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=max_positions,
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=None if rope_type == "default" else rope,
            qkv_bias=architecture == "qwen2",
        )

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> LlamaConfig:
        """From a GGUF file's metadata (and, for Llama 3.1+, its rope_freqs tensor)."""
        arch = gguf.architecture
        _check_architecture(arch)
        heads = int(gguf.arch_value("attention.head_count"))
        hidden = int(gguf.arch_value("embedding_length"))
        head_dim = int(gguf.arch_value("attention.key_length", hidden // heads))
        if int(gguf.arch_value("rope.dimension_count", head_dim)) != head_dim:
            raise ValueError("partial rotary embeddings (rope.dimension_count) are not supported")
        embed = gguf.tensors["token_embd.weight"]
        rope_scaling: dict[str, Any] | None = None
        if "rope_freqs.weight" in gguf.tensors:  # llama.cpp stores llama3 scaling as factors
            factors = gguf.read_tensor("rope_freqs.weight").tolist()
            rope_scaling = {"rope_type": "llama3", "freq_factors": tuple(factors)}
        elif gguf.arch_value("rope.scaling.type", "none") == "linear":
            rope_scaling = {"rope_type": "linear", "factor": gguf.arch_value("rope.scaling.factor")}
        elif gguf.arch_value("rope.scaling.type", "none") != "none":
            scaling = gguf.arch_value("rope.scaling.type")
            raise ValueError(f"rope scaling {scaling!r} is not supported; supported: linear")
        return cls(
            architecture=arch,
            vocab_size=int(gguf.arch_value("vocab_size", embed.shape[0])),
            hidden_size=hidden,
            intermediate_size=int(gguf.arch_value("feed_forward_length")),
            num_layers=int(gguf.arch_value("block_count")),
            num_heads=heads,
            num_kv_heads=int(gguf.arch_value("attention.head_count_kv", heads)),
            head_dim=head_dim,
            rope_theta=float(gguf.arch_value("rope.freq_base", 10000.0)),
            rms_norm_eps=float(gguf.arch_value("attention.layer_norm_rms_epsilon", 1e-5)),
            max_position_embeddings=int(gguf.arch_value("context_length", 2048)),
            tie_word_embeddings="output.weight" not in gguf.tensors,
            rope_scaling=rope_scaling,
            qkv_bias=arch == "qwen2",
        )


# --- What the registry records -----------------------------------------------------------------


@dataclass(frozen=True)
class LLMInfo:
    """What the registry records about a language model, read without loading its weights."""

    architecture: str
    parameters: int
    context_length: int
    quantization: str  # e.g. "Q4_1", "bf16"
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]


def read_llm_info(path: Path) -> LLMInfo:
    """Read a .gguf file's or a Hugging Face directory's facts; raises ValueError if unsupported."""
    if path.is_dir():
        return _hf_info(path)
    if path.suffix == ".gguf":
        return gguf_info(GGUFFile(path))
    raise ValueError(f"{path.name}: expected a .gguf file or a Hugging Face model directory")


def gguf_info(gguf: GGUFFile) -> LLMInfo:
    """The LLMInfo of an opened GGUF file."""
    config = LlamaConfig.from_gguf(gguf)
    eos_keys = ("eos_token_id", "eot_token_id", "eom_token_id")
    eos = [gguf.metadata.get(f"tokenizer.ggml.{key}") for key in eos_keys]
    bos = gguf.metadata.get("tokenizer.ggml.bos_token_id")
    template = gguf.metadata.get("tokenizer.chat_template")
    return LLMInfo(
        architecture=config.architecture,
        parameters=sum(t.num_elements for n, t in gguf.tensors.items() if n != "rope_freqs.weight"),
        context_length=config.max_position_embeddings,
        quantization=gguf.quantization(),
        chat_template=template if isinstance(template, str) else None,
        bos_token_id=None if bos is None else int(bos),
        eos_token_ids=_unique_ids(eos),
    )


def read_hf_config(directory: Path) -> dict[str, Any]:
    """The directory's config.json as a dict."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{directory.name} has no config.json; not a Hugging Face model directory")
    config: dict[str, Any] = json.loads(config_path.read_text())
    return config


def _hf_info(directory: Path) -> LLMInfo:
    config_json = read_hf_config(directory)
    config = LlamaConfig.from_hf_config(config_json)
    tokenizer_config = _read_json(directory / "tokenizer_config.json")
    generation = _read_json(directory / "generation_config.json")
    parameters, dtype = _safetensors_summary(directory)
    bos = generation.get("bos_token_id", config_json.get("bos_token_id"))
    return LLMInfo(
        architecture=config.architecture,
        parameters=parameters,
        context_length=config.max_position_embeddings,
        quantization=dtype,
        chat_template=_hf_chat_template(directory, tokenizer_config),
        bos_token_id=None if bos is None else int(bos),
        eos_token_ids=_unique_ids(
            [generation.get("eos_token_id"), config_json.get("eos_token_id")]
        ),
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _unique_ids(values: list[Any]) -> tuple[int, ...]:
    """Token ids from values that are ints, lists of ints or None, first occurrence kept."""
    ids: list[int] = []
    for value in values:
        for token_id in value if isinstance(value, list) else [value]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return tuple(ids)


def _hf_chat_template(directory: Path, tokenizer_config: Mapping[str, Any]) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def safetensors_files(directory: Path) -> list[Path]:
    """The directory's *.safetensors shards; pickled checkpoints are refused with a ValueError."""
    files = sorted(directory.glob("*.safetensors"))
    if files:
        return files
    pickles = [p.name for ext in ("*.bin", "*.pt", "*.pth") for p in directory.glob(ext)]
    if pickles:
        raise ValueError(
            f"{directory.name} holds pickled weights ({', '.join(sorted(pickles))}), which are "
            "refused because loading them can run code; convert them to safetensors"
        )
    raise ValueError(f"{directory.name} holds no *.safetensors weights")


def _safetensors_summary(directory: Path) -> tuple[int, str]:
    """Parameter count and dominant dtype, from the safetensors headers alone."""
    counts: Counter[str] = Counter()
    for file in safetensors_files(directory):
        with file.open("rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header: dict[str, Any] = json.loads(f.read(header_size))
        for name, entry in header.items():
            if name != "__metadata__":
                counts[entry["dtype"]] += math.prod(entry["shape"])
    dtype = counts.most_common(1)[0][0]
    return sum(counts.values()), _HF_DTYPE_NAMES.get(dtype, dtype.lower())
