"""The paged KV cache's bookkeeping: which physical blocks are free and who holds each.

Blocks are reference-counted so that the children of an ``n`` > 1 request share the
prompt's full blocks; a block returns to the free list when its last holder lets go.
"""

from __future__ import annotations

from collections import deque

from modelbay.llm.sequence import Sequence


class BlockManager:
    """A free list and reference counts over ``num_blocks`` blocks of ``block_size`` tokens."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"num_blocks ({num_blocks}) and block_size ({block_size}) must be at least 1"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        # FIFO reuse: a freed block waits the longest before it is handed out again.
        self._free: deque[int] = deque(range(num_blocks))
        self._ref_counts = [0] * num_blocks

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def ref_count(self, block_id: int) -> int:
        """How many sequences hold ``block_id`` (0: it is free)."""
        return self._ref_counts[block_id]

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks that hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """New blocks ``seq`` needs so that its table holds ``num_tokens`` tokens."""
        return max(0, self.blocks_for(num_tokens) - len(seq.block_table))

    def can_allocate(self, n_blocks: int) -> bool:
        return n_blocks <= len(self._free)

    def allocate(self, seq: Sequence, num_tokens: int) -> None:
        """Grow ``seq.block_table`` to hold ``num_tokens`` tokens; callers check first."""
        needed = self.blocks_needed(seq, num_tokens)
        if not self.can_allocate(needed):
            raise RuntimeError(
                f"sequence {seq.seq_id} needs {needed} blocks, {len(self._free)} are free"
            )
        for _ in range(needed):
            block = self._free.popleft()
            self._ref_counts[block] = 1
            seq.block_table.append(block)

    def free(self, seq: Sequence) -> None:
        """Drop ``seq``'s hold on its blocks and clear its table."""
        for block in seq.block_table:
            self._ref_counts[block] -= 1
            if self._ref_counts[block] == 0:
                self._free.append(block)
        seq.block_table.clear()

    def can_fork(self, parent: Sequence) -> bool:
        """Whether a free block is there for the copy of ``parent``'s partial block."""
        return self.can_allocate(1 if parent.num_computed_tokens % self.block_size else 0)

    def fork(self, parent: Sequence, child: Sequence) -> list[tuple[int, int]]:
        """Give ``child`` the blocks of ``parent``'s computed tokens: the full ones shared,
        the last partial one copied into a fresh block. Returns the (src, dst) copies to make.

        Both then write only past the shared blocks, so a shared block is never written.
        """
        if child.block_table:
            raise ValueError(f"sequence {child.seq_id} already holds blocks")
        if not self.can_fork(parent):
            raise RuntimeError(f"no free block to copy sequence {parent.seq_id}'s last block")
        num_full, partial = divmod(parent.num_computed_tokens, self.block_size)
        shared = parent.block_table[:num_full]
        for block in shared:
            self._ref_counts[block] += 1
        child.block_table.extend(shared)
        if not partial:
            return []
        src = parent.block_table[num_full]
        dst = self._free.popleft()
        self._ref_counts[dst] = 1
        child.block_table.append(dst)
        return [(src, dst)]
