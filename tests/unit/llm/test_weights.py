"""Weight loading and model facts: tiny transformers models saved as safetensors directories and
as GGUF files must give transformers' logits; pickles and unknown architectures are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
import transformers

from modelbay.llm.attention import AttentionMetadata, allocate_kv_cache
from modelbay.llm.config import LlamaConfig, read_llm_info
from modelbay.llm.model import LlamaForCausalLM
from modelbay.llm.weights import load_model

CPU = torch.device("cpu")
TINY: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
PROMPT = [(7 * i + 3) % 64 for i in range(40)]  # long enough for llama3 scaling to matter
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def tiny_llama_llama3_rope() -> transformers.PreTrainedModel:
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    rope |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    rope["original_max_position_embeddings"] = 16
    config = transformers.LlamaConfig(**TINY, rope_parameters=rope, tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(config)


def tiny_llama_tied() -> transformers.PreTrainedModel:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY, tie_word_embeddings=True))


def tiny_qwen2() -> transformers.PreTrainedModel:
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**TINY))


def tiny_mistral() -> transformers.PreTrainedModel:
    return transformers.MistralForCausalLM(transformers.MistralConfig(**TINY, sliding_window=None))


def reference_logits(model: transformers.PreTrainedModel) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(torch.tensor([PROMPT])).logits[0]
    return logits


def our_logits(model: LlamaForCausalLM) -> torch.Tensor:
    block_size = 8
    num_blocks = -(-len(PROMPT) // block_size)
    kv = allocate_kv_cache(model.config, num_blocks, block_size, torch.float32, CPU)
    meta = AttentionMetadata.build([(list(range(num_blocks)), 0, len(PROMPT))], block_size, CPU)
    with torch.inference_mode():
        hidden = model(torch.tensor(PROMPT), meta.positions, kv, meta)
        return model.compute_logits(hidden)


@pytest.mark.parametrize(
    "build",
    [tiny_llama_llama3_rope, tiny_llama_tied, tiny_qwen2, tiny_mistral],
    ids=lambda b: b.__name__,
)
def test_safetensors_directory_gives_transformers_logits(
    build: Callable[[], transformers.PreTrainedModel], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    reference = build()
    reference.save_pretrained(tmp_path, max_shard_size="40KB")  # sharded, with an index
    model, config, info = load_model(tmp_path, dtype=torch.float32, device=CPU)
    torch.testing.assert_close(our_logits(model), reference_logits(reference), atol=1e-4, rtol=1e-4)
    assert info.parameters == sum(p.numel() for p in reference.parameters())
    assert info.quantization == "f32"
    assert config.num_kv_heads == 2


def test_bfloat16_loading_stores_parameters_and_rope_table_in_bfloat16(tmp_path: Path) -> None:
    tiny_llama_tied().save_pretrained(tmp_path)
    model, _, _ = load_model(tmp_path, dtype=torch.bfloat16, device=CPU)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.rope.dtype == torch.bfloat16


def llama_cpp_permute(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's converter: each head's rotate-half rows become interleaved pairs."""
    half = weight.shape[0] // num_heads // 2
    return (
        weight.reshape(num_heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_gguf(model: transformers.PreTrainedModel, path: Path) -> None:
    """The tiny Llama as llama.cpp would convert it: F32 tensors, permuted Q/K, 300 tokens."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(TINY["max_position_embeddings"])
    writer.add_embedding_length(TINY["hidden_size"])
    writer.add_block_count(TINY["num_hidden_layers"])
    writer.add_feed_forward_length(TINY["intermediate_size"])
    writer.add_head_count(TINY["num_attention_heads"])
    writer.add_head_count_kv(TINY["num_key_value_heads"])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_token_list([f"t{i}" for i in range(300)])  # longer than kept metadata arrays
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TEMPLATE)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
    names |= {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    names |= {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding
            continue
        array = tensor.numpy()
        if name == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", array)
            continue
        if name == "model.norm.weight":
            writer.add_tensor("output_norm.weight", array)
            continue
        _, _, layer, *module, _ = name.split(".")
        if module[-1] == "q_proj":
            array = llama_cpp_permute(array, TINY["num_attention_heads"])
        elif module[-1] == "k_proj":
            array = llama_cpp_permute(array, TINY["num_key_value_heads"])
        writer.add_tensor(f"blk.{layer}.{names[module[-1]]}.weight", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_with_llama_cpp_permuted_rows_gives_transformers_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = tiny_llama_tied()
    write_gguf(reference, tmp_path / "tiny.gguf")
    model, config, _ = load_model(tmp_path / "tiny.gguf", dtype=torch.float32, device=CPU)
    assert config.tie_word_embeddings
    torch.testing.assert_close(our_logits(model), reference_logits(reference), atol=1e-4, rtol=1e-4)


def test_gguf_info_reads_metadata_past_long_arrays(tmp_path: Path) -> None:
    reference = tiny_llama_tied()
    write_gguf(reference, tmp_path / "tiny.gguf")
    info = read_llm_info(tmp_path / "tiny.gguf")
    assert (info.architecture, info.context_length, info.quantization) == ("llama", 128, "F32")
    assert (info.bos_token_id, info.eos_token_ids, info.chat_template) == (1, (2,), TEMPLATE)
    assert info.parameters == sum(p.numel() for p in reference.parameters())


def test_smollm2_gguf_info_comes_from_its_metadata(smollm2: Path) -> None:
    info = read_llm_info(smollm2)
    assert (info.architecture, info.context_length, info.quantization) == ("llama", 8192, "Q4_1")
    assert (info.bos_token_id, info.eos_token_ids) == (1, (2,))
    assert "<|im_start|>" in (info.chat_template or "")
    assert 134_000_000 < info.parameters < 136_000_000


def test_hf_info_reads_generation_eos_ids_template_file_and_dtype(tmp_path: Path) -> None:
    tiny_llama_tied().bfloat16().save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5]}))
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE)
    info = read_llm_info(tmp_path)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "bf16", 128)
    assert (info.bos_token_id, info.eos_token_ids, info.chat_template) == (1, (2, 5), TEMPLATE)


def test_pickled_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **TINY}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*safetensors"):
        load_model(tmp_path, dtype=torch.float32, device=CPU)


def test_unsupported_architecture_is_named_with_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", **TINY}))
    with pytest.raises(ValueError, match=r"'gpt2' is not supported; supported: llama, mistral"):
        read_llm_info(tmp_path)


def test_transformers4_config_layout_with_linear_rope_scaling() -> None:
    raw = {"model_type": "llama", **TINY, "rope_theta": 5e5}
    raw["rope_scaling"] = {"type": "linear", "factor": 2.0}
    config = LlamaConfig.from_hf_config(raw)
    assert config.rope_theta == 5e5
    assert config.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert config.head_dim == 8
    assert not config.tie_word_embeddings
