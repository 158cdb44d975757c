"""The block manager: allocation, freeing, reference counts and copy-on-write forks."""

from __future__ import annotations

import pytest

from modelbay.llm.kv_cache import BlockManager
from modelbay.llm.sequence import Sequence


def seq(seq_id: int, prompt_len: int = 1, computed: int = 0) -> Sequence:
    return Sequence(seq_id, list(range(prompt_len)), 8, num_computed_tokens=computed)


def test_allocate_grows_the_table_by_only_the_blocks_missing() -> None:
    manager = BlockManager(num_blocks=8, block_size=4)
    s = seq(0)
    assert manager.blocks_needed(s, 5) == 2
    manager.allocate(s, 5)
    assert len(s.block_table) == 2
    assert manager.blocks_needed(s, 8) == 0
    assert manager.blocks_needed(s, 9) == 1
    manager.allocate(s, 9)
    assert len(s.block_table) == 3
    assert len(set(s.block_table)) == 3
    assert (manager.num_free_blocks, manager.num_used_blocks) == (5, 3)
    assert all(manager.ref_count(b) == 1 for b in s.block_table)


def test_allocating_more_blocks_than_are_free_is_refused() -> None:
    manager = BlockManager(num_blocks=2, block_size=4)
    s = seq(0)
    assert manager.can_allocate(2)
    assert not manager.can_allocate(3)
    with pytest.raises(RuntimeError, match="needs 3 blocks, 2 are free"):
        manager.allocate(s, 9)
    assert s.block_table == []
    assert manager.num_free_blocks == 2


def test_free_returns_every_block_and_clears_the_table() -> None:
    manager = BlockManager(num_blocks=4, block_size=2)
    a, b = seq(0), seq(1)
    manager.allocate(a, 3)
    manager.allocate(b, 4)
    assert manager.num_free_blocks == 0
    manager.free(a)
    assert a.block_table == []
    assert manager.num_free_blocks == 2
    manager.free(b)
    assert (manager.num_free_blocks, manager.num_used_blocks) == (4, 0)
    assert all(manager.ref_count(block) == 0 for block in range(4))


def test_fork_shares_full_blocks_and_copies_the_partial_one() -> None:
    manager = BlockManager(num_blocks=8, block_size=4)
    parent = seq(0, prompt_len=10, computed=10)
    manager.allocate(parent, 10)
    child = seq(1, prompt_len=10)
    copies = manager.fork(parent, child)
    full0, full1, partial = parent.block_table
    assert child.block_table[:2] == [full0, full1]
    assert child.block_table[2] not in parent.block_table
    assert copies == [(partial, child.block_table[2])]
    assert [manager.ref_count(b) for b in (full0, full1, partial)] == [2, 2, 1]
    assert manager.ref_count(child.block_table[2]) == 1
    assert manager.num_used_blocks == 4


def test_fork_at_a_block_boundary_copies_nothing() -> None:
    manager = BlockManager(num_blocks=4, block_size=4)
    parent = seq(0, prompt_len=8, computed=8)
    manager.allocate(parent, 8)
    child = seq(1, prompt_len=8)
    assert manager.fork(parent, child) == []
    assert child.block_table == parent.block_table
    assert manager.num_used_blocks == 2


def test_a_shared_block_is_freed_only_by_its_last_holder() -> None:
    manager = BlockManager(num_blocks=4, block_size=4)
    parent = seq(0, prompt_len=6, computed=6)
    manager.allocate(parent, 6)
    child = seq(1, prompt_len=6)
    manager.fork(parent, child)
    shared = parent.block_table[0]
    manager.free(parent)
    assert manager.ref_count(shared) == 1
    assert manager.num_used_blocks == 2
    manager.free(child)
    assert manager.ref_count(shared) == 0
    assert manager.num_free_blocks == 4


def test_fork_without_a_free_block_for_the_copy_is_refused() -> None:
    manager = BlockManager(num_blocks=1, block_size=4)
    parent = seq(0, prompt_len=3, computed=3)
    manager.allocate(parent, 3)
    assert not manager.can_fork(parent)
    with pytest.raises(RuntimeError, match="no free block"):
        manager.fork(parent, seq(1, prompt_len=3))


def test_fork_into_a_sequence_that_holds_blocks_is_refused() -> None:
    manager = BlockManager(num_blocks=4, block_size=4)
    parent, child = seq(0, prompt_len=4, computed=4), seq(1, prompt_len=4)
    manager.allocate(parent, 4)
    manager.allocate(child, 1)
    with pytest.raises(ValueError, match="already holds blocks"):
        manager.fork(parent, child)


@pytest.mark.parametrize(("num_blocks", "block_size"), [(0, 16), (4, 0)])
def test_an_empty_cache_is_refused(num_blocks: int, block_size: int) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        BlockManager(num_blocks, block_size)
