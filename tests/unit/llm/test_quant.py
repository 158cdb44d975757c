"""CPU linear kernels. Weight-only int8: each weight within half a step of its channel's
scale, and a model whose next-token choices stay those of the unquantized one. Packed bf16
(oneDNN's layout): the numbers of ``F.linear``, for a layer and for the whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modelbay.llm.attention import AttentionMetadata, allocate_kv_cache
from modelbay.llm.quant import Int8Linear, PackedLinear, can_pack, quantize_per_channel
from modelbay.llm.weights import load_model


def test_each_weight_is_within_half_a_step_of_its_channel_scale() -> None:
    torch.manual_seed(0)
    weight = torch.randn(64, 48) * torch.linspace(0.01, 3, 64)[:, None]
    q, scales = quantize_per_channel(weight)
    assert q.dtype == torch.int8
    assert q.abs().max() <= 127
    error = (q.float() * scales[:, None] - weight).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-6).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_int8_linear_computes_what_the_linear_did(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    linear = torch.nn.Linear(96, 40, bias=True).to(dtype)
    x = torch.randn(3, 5, 96, dtype=dtype)
    quantized = Int8Linear.from_linear(linear)
    want, got = linear(x).float(), quantized(x).float()
    assert got.shape == want.shape
    relative = (got - want).norm() / want.norm()
    assert relative < 0.02


def test_int8_smollm2_predicts_text_almost_as_the_unquantized_one(smollm2: Path) -> None:
    text = (
        "Once upon a time, there was a little girl who lived in a village near the forest. "
        "Whenever she went out, the little girl wore a red riding cloak, so everyone in the "
        "village called her Little Red Riding Hood."
    )
    from modelbay.llm.tokenizer import load_tokenizer

    ids = load_tokenizer(smollm2).encode(text)
    logprobs = []
    for quantize in (False, True):
        model, config, _ = load_model(smollm2, dtype=torch.float32, device=torch.device("cpu"))
        if quantize:
            model.quantize_int8()
        kv = allocate_kv_cache(config, 8, 16, torch.float32, torch.device("cpu"))
        meta = AttentionMetadata.build([(list(range(8)), 0, len(ids))], 16, torch.device("cpu"))
        with torch.inference_mode():
            hidden = model(torch.tensor(ids), meta.positions, kv, meta)
            logprobs.append(F.log_softmax(model.compute_logits(hidden), -1))
    exact, int8 = logprobs
    kl = float((exact.exp() * (exact - int8)).sum(-1).mean())
    agreement = float((exact.argmax(-1) == int8.argmax(-1)).float().mean())
    targets = torch.tensor(ids[1:])[:, None]
    nll = [float(-lp[:-1].gather(1, targets).mean()) for lp in logprobs]
    assert kl < 0.02
    assert agreement >= 0.85
    assert abs(nll[1] - nll[0]) < 0.1  # perplexity within about 10%


needs_packing = pytest.mark.skipif(
    not can_pack(torch.device("cpu"), torch.bfloat16), reason="no oneDNN bf16 packing here"
)


@needs_packing
@pytest.mark.parametrize("rows", [1, 7, 40])
def test_a_packed_linear_computes_what_the_linear_did(rows: int) -> None:
    torch.manual_seed(2)
    linear = torch.nn.Linear(96, 40, bias=True).to(torch.bfloat16)
    x = torch.randn(2, rows, 96, dtype=torch.bfloat16)
    packed = PackedLinear.from_linear(linear)
    want, got = linear(x).float(), packed(x).float()
    assert got.shape == want.shape == (2, rows, 40)
    torch.testing.assert_close(got, want, atol=0.02, rtol=0.02)


@needs_packing
def test_packed_bf16_smollm2_scores_text_as_the_plain_bf16_one(smollm2: Path) -> None:
    from modelbay.llm.tokenizer import load_tokenizer

    ids = load_tokenizer(smollm2).encode("The capital of France is Paris, and the capital of")
    logits = []
    for pack in (False, True):
        model, config, _ = load_model(smollm2, dtype=torch.bfloat16, device=torch.device("cpu"))
        if pack:
            model.pack_for_cpu()
            assert isinstance(model.layers[0].mlp.down, PackedLinear)
            assert isinstance(model.lm_head, PackedLinear)  # the tied head too
        kv = allocate_kv_cache(config, 8, 16, torch.bfloat16, torch.device("cpu"))
        meta = AttentionMetadata.build([(list(range(8)), 0, len(ids))], 16, torch.device("cpu"))
        with torch.inference_mode():
            hidden = model(torch.tensor(ids), meta.positions, kv, meta)
            logits.append(model.compute_logits(hidden))
    plain, packed = logits
    assert bool((plain.argmax(-1) == packed.argmax(-1)).all())
    assert float((plain - packed).abs().max()) < 0.1 * float(plain.abs().max())
