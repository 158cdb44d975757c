"""The model runner: one scheduler step's tokens in, the logits of sampling sequences out.

It owns the paged KV cache (allocated once, from a byte budget) and turns a
``SchedulerOutput`` into the flat token batch and attention metadata the model reads.
"""

from __future__ import annotations

import torch

from modelbay.llm.attention import (
    AttentionMetadata,
    allocate_kv_cache,
    copy_blocks,
    kv_block_bytes,
)
from modelbay.llm.config import LlamaConfig
from modelbay.llm.model import LlamaForCausalLM
from modelbay.llm.scheduler import SchedulerOutput


def blocks_for_budget(
    config: LlamaConfig, budget_bytes: int, block_size: int, dtype: torch.dtype
) -> int:
    """How many KV blocks ``budget_bytes`` holds (at least one)."""
    return max(1, budget_bytes // kv_block_bytes(config, block_size, dtype))


class ModelRunner:
    """Runs the model over the sequences a step schedules, reading and writing the cache."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        config: LlamaConfig,
        *,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.model = model
        self.config = config
        self.block_size = block_size
        self.device = device
        self.kv_caches = allocate_kv_cache(config, num_blocks, block_size, dtype, device)

    @torch.inference_mode()
    def execute(self, output: SchedulerOutput) -> torch.Tensor:
        """Logits ``[N, vocab]`` (float32) for the N scheduled sequences that sample this
        step, in their order in ``output.scheduled``."""
        if output.block_copies:
            copy_blocks(self.kv_caches, output.block_copies)
        tokens: list[int] = []
        spans: list[tuple[list[int], int, int]] = []
        sampling: list[int] = []
        for i, entry in enumerate(output.scheduled):
            seq = entry.seq
            tokens.extend(seq.token_ids[entry.start : entry.start + entry.num_new])
            spans.append((seq.block_table, entry.start, entry.num_new))
            if entry.samples:
                sampling.append(i)
        input_ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        meta = AttentionMetadata.build(spans, self.block_size, self.device)
        hidden = self.model(input_ids, meta.positions, self.kv_caches, meta)
        if len(sampling) == len(spans):
            rows = meta.logits_indices
        else:
            rows = meta.logits_indices[torch.tensor(sampling, dtype=torch.long, device=self.device)]
        return self.model.compute_logits(hidden[rows])
