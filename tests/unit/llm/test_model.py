"""The paged model against references: dense attention on random tensors, and transformers' own
greedy generations from the SmolLM2 GGUF, through every attention path (fresh prefill,
batched decode, chunked prefill mixed with decodes)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor

from modelbay.llm.attention import (
    AttentionMetadata,
    allocate_kv_cache,
    copy_blocks,
    kv_block_bytes,
    paged_attention,
)
from modelbay.llm.config import LlamaConfig
from modelbay.llm.model import LlamaForCausalLM
from modelbay.llm.tokenizer import load_tokenizer
from modelbay.llm.weights import load_model

CPU = torch.device("cpu")
NUM_GENERATED = 32
PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea, there lived",
)


# --- Attention paths against dense causal attention ----------------------------------------


def dense_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention over a whole sequence, q [L, H, D], k/v [L, KVH, D], in float64."""
    groups = q.shape[1] // k.shape[1]
    q, k, v = (
        q.double(),
        k.double().repeat_interleave(groups, 1),
        v.double().repeat_interleave(groups, 1),
    )
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
    causal = torch.ones(q.shape[0], q.shape[0], dtype=torch.bool).tril()
    weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return torch.einsum("hqk,khd->qhd", weights, v).float()


@dataclass
class RandomSequence:
    q: Tensor
    k: Tensor
    v: Tensor
    table: list[int]
    computed: int = 0


def test_every_attention_path_matches_dense_causal_attention() -> None:
    torch.manual_seed(0)
    heads, kv_heads, head_dim, block_size, num_blocks = 6, 2, 8, 4, 32
    cache = (
        torch.zeros(num_blocks, block_size, kv_heads, head_dim),
        torch.zeros(num_blocks, block_size, kv_heads, head_dim),
    )
    free = list(range(num_blocks))
    random.Random(0).shuffle(free)  # scattered blocks: the tables must be followed
    lengths = (11, 8, 9)
    seqs = []
    for length in lengths:
        table = [free.pop() for _ in range(-(-length // block_size))]
        q = torch.randn(length, heads, head_dim)
        k, v = torch.randn(2, length, kv_heads, head_dim)
        seqs.append(RandomSequence(q, k, v, table))
    expected = [dense_attention(s.q, s.k, s.v) for s in seqs]
    steps = [
        [(0, 6), (1, 7)],  # two fresh prefills in one batch
        [(0, 3), (2, 5)],  # a chunk continuing a context, a fresh prefill
        [(0, 1), (1, 1), (2, 1)],  # a decode batch with unequal contexts
        [(2, 2), (0, 1)],  # mixed: a continuing chunk and a decode
        [(2, 1)],  # a single decode
    ]
    for step in steps:
        spans = [(seqs[i].table, seqs[i].computed, n) for i, n in step]
        meta = AttentionMetadata.build(spans, block_size, CPU)
        rows = [slice(seqs[i].computed, seqs[i].computed + n) for i, n in step]
        q = torch.cat([seqs[i].q[r] for (i, _), r in zip(step, rows, strict=True)])
        k = torch.cat([seqs[i].k[r] for (i, _), r in zip(step, rows, strict=True)])
        v = torch.cat([seqs[i].v[r] for (i, _), r in zip(step, rows, strict=True)])
        out = paged_attention(q, k, v, cache, meta)
        want = torch.cat([expected[i][r] for (i, _), r in zip(step, rows, strict=True)])
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
        for i, n in step:
            seqs[i].computed += n
    assert [s.computed for s in seqs] == list(lengths)


def test_metadata_indexes_each_sequence_last_token_and_cache_slot() -> None:
    meta = AttentionMetadata.build([([3, 1, 5], 2, 3), ([0], 0, 1)], block_size=2, device=CPU)
    assert meta.positions.tolist() == [2, 3, 4, 0]
    assert meta.slot_mapping.tolist() == [2, 3, 10, 0]  # positions 2, 3 in block 1, 4 in block 5
    assert meta.logits_indices.tolist() == [2, 3]
    assert meta.query_start_loc.tolist() == [0, 3, 4]
    assert meta.context_lens.tolist() == [5, 1]


def test_copy_blocks_copies_whole_blocks_in_every_layer() -> None:
    config = tiny_config()
    kv = allocate_kv_cache(config, num_blocks=4, block_size=2, dtype=torch.float32, device=CPU)
    for k, v in kv:
        k[1].fill_(1.0)
        v[1].fill_(2.0)
    copy_blocks(kv, [(1, 3)])
    for k, v in kv:
        assert bool((k[3] == 1.0).all())
        assert bool((v[3] == 2.0).all())
        assert bool((k[2] == 0.0).all())
    assert kv_block_bytes(config, 2, torch.float32) == sum(t[1].nbytes for pair in kv for t in pair)


def tiny_config() -> LlamaConfig:
    return LlamaConfig(
        architecture="llama",
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )


def test_rope_rotates_like_the_rotate_half_reference() -> None:
    model = LlamaForCausalLM(tiny_config())
    positions = torch.tensor([0, 5, 63])
    x = torch.randn(3, 4, 8)
    rope = model.rope[positions]
    cos, signed_sin = rope[:, 0].unsqueeze(1), rope[:, 1].unsqueeze(1)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, 8, 2).float() / 8)
    angles = torch.outer(positions.float(), inv_freq).repeat(1, 2)[:, None, :]
    rotated_half = torch.cat([-x[..., 4:], x[..., :4]], dim=-1)
    want = x * angles.cos() + rotated_half * angles.sin()
    got = x * cos + x.roll(4, dims=-1) * signed_sin
    torch.testing.assert_close(got, want)


# --- The real model against transformers ---------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, two threads stall each other's work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gguf_path(smollm2: Path) -> Path:
    return smollm2


@pytest.fixture(scope="module")
def prompt_ids(gguf_path: Path) -> list[list[int]]:
    tokenizer = load_tokenizer(gguf_path)
    return [tokenizer.encode(prompt) for prompt in PROMPTS]


@pytest.fixture(scope="module")
def reference(gguf_path: Path, prompt_ids: list[list[int]]) -> list[list[int]]:
    """transformers' greedy continuations of each prompt, from the same GGUF."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32, local_files_only=True
    )
    with torch.inference_mode():
        return [_hf_greedy(model, ids) for ids in prompt_ids]


def _hf_greedy(model: torch.nn.Module, ids: list[int]) -> list[int]:
    out = model(torch.tensor([ids]), use_cache=True)
    tokens: list[int] = []
    for _ in range(NUM_GENERATED):
        tokens.append(int(out.logits[0, -1].argmax()))
        out = model(torch.tensor([tokens[-1:]]), cache=out.cache, use_cache=True)
    return tokens


@pytest.fixture(scope="module")
def ours(gguf_path: Path) -> LlamaForCausalLM:
    model, _, _ = load_model(gguf_path, dtype=torch.float32, device=CPU)
    return model


@dataclass
class Seq:
    tokens: list[int]
    prompt_len: int
    computed: int = 0
    table: list[int] = field(default_factory=list)

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_len :]


class PagedLoop:
    """The smallest engine: hand-allocated blocks (scattered), greedy sampling."""

    def __init__(self, model: LlamaForCausalLM, num_blocks: int = 96, block_size: int = 8) -> None:
        self.model, self.block_size = model, block_size
        self.kv = allocate_kv_cache(model.config, num_blocks, block_size, torch.float32, CPU)
        self.free = list(range(num_blocks))
        random.Random(1).shuffle(self.free)

    def add(self, prompt: list[int]) -> Seq:
        return Seq(list(prompt), len(prompt))

    def step(self, work: list[tuple[Seq, int]]) -> None:
        for seq, n in work:
            while len(seq.table) * self.block_size < seq.computed + n:
                seq.table.append(self.free.pop())
        spans = [(seq.table, seq.computed, n) for seq, n in work]
        meta = AttentionMetadata.build(spans, self.block_size, CPU)
        ids = [t for seq, n in work for t in seq.tokens[seq.computed : seq.computed + n]]
        with torch.inference_mode():
            hidden = self.model(torch.tensor(ids), meta.positions, self.kv, meta)
            next_tokens = self.model.compute_logits(hidden[meta.logits_indices]).argmax(-1)
        for (seq, n), token in zip(work, next_tokens.tolist(), strict=True):
            seq.computed += n
            if seq.computed == len(seq.tokens):
                seq.tokens.append(token)

    def decode(self, seqs: list[Seq]) -> None:
        while any(len(s.generated) < NUM_GENERATED for s in seqs):
            self.step([(s, 1) for s in seqs if len(s.generated) < NUM_GENERATED])


def test_single_sequence_greedy_tokens_match_transformers(
    ours: LlamaForCausalLM, prompt_ids: list[list[int]], reference: list[list[int]]
) -> None:
    loop = PagedLoop(ours)
    seq = loop.add(prompt_ids[0])
    loop.step([(seq, len(prompt_ids[0]))])
    loop.decode([seq])
    assert seq.generated == reference[0]


def test_two_sequences_decoding_in_one_batch_match_transformers(
    ours: LlamaForCausalLM, prompt_ids: list[list[int]], reference: list[list[int]]
) -> None:
    loop = PagedLoop(ours)
    a, b = loop.add(prompt_ids[1]), loop.add(prompt_ids[2])
    loop.step([(a, len(prompt_ids[1])), (b, len(prompt_ids[2]))])  # two prefills, one batch
    loop.decode([a, b])  # unequal contexts in every decode batch
    assert [a.generated, b.generated] == [reference[1], reference[2]]


def test_chunked_prefill_beside_a_decode_matches_transformers(
    ours: LlamaForCausalLM, prompt_ids: list[list[int]], reference: list[list[int]]
) -> None:
    loop = PagedLoop(ours)
    chunked, other = loop.add(prompt_ids[2]), loop.add(prompt_ids[0])
    first = len(prompt_ids[2]) // 2
    loop.step([(other, len(prompt_ids[0])), (chunked, first)])
    loop.step([(other, 1), (chunked, len(prompt_ids[2]) - first)])  # a decode and a chunk
    loop.decode([chunked, other])
    assert [chunked.generated, other.generated] == [reference[2], reference[0]]
