"""The scheduler, driven without a model: a fake engine samples a fixed token per sequence and
a fake KV cache records which token each slot holds, checking every read a forward would make.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import pytest

from modelbay.llm.scheduler import (
    ScheduledSeq,
    Scheduler,
    SchedulerConfig,
    SchedulerOutput,
)
from modelbay.llm.sequence import Sequence, SequenceStatus

RUNNING, WAITING, FINISHED = SequenceStatus.RUNNING, SequenceStatus.WAITING, SequenceStatus.FINISHED


def token_for(seq: Sequence) -> int:
    """The fake model's choice: each sequence always samples its own token."""
    return 1000 + seq.seq_id


class FakeEngine:
    """The engine's loop: schedule, copy blocks, run the fake forward, update, finish."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.scheduler = Scheduler(config)
        self.config = config
        # (position, token) whose K/V each slot holds
        self.kv: list[list[tuple[int, int] | None]] = [
            [None] * config.block_size for _ in range(config.num_blocks)
        ]
        self.family: dict[int, int] = {}  # seq_id -> the seq_id of the request's first sequence
        self.done: list[Sequence] = []

    def add(self, seq_id: int, prompt: list[int], max_tokens: int = 16) -> Sequence:
        seq = Sequence(seq_id, prompt, max_tokens)
        self.scheduler.add(seq)
        self.family[seq_id] = seq_id
        return seq

    def step(self) -> SchedulerOutput:
        output = self.run()
        self.reap()
        return output

    def run(self, meanwhile: Callable[[SchedulerOutput], None] | None = None) -> SchedulerOutput:
        """One step without finishing anyone; ``meanwhile`` runs after the forward."""
        output = self.scheduler.schedule()
        check_output(self.scheduler, output)
        self.copy(output.block_copies)
        for entry in output.scheduled:
            self.forward(entry)
        if meanwhile is not None:
            meanwhile(output)
        sampled = {e.seq.seq_id: token_for(e.seq) for e in output.scheduled if e.samples}
        self.scheduler.update(output, sampled)
        return output

    def fork(self, parent: Sequence, child_id: int) -> Sequence:
        child = Sequence(child_id, list(parent.prompt_token_ids), parent.max_tokens)
        self.scheduler.fork(parent, child)
        child.output_token_ids.append(token_for(child))
        self.family[child_id] = self.family[parent.seq_id]
        return child

    def reap(self) -> None:
        """Finish the sequences at max_tokens or at the context limit, as the engine does."""
        for seq in self.scheduler.running + self.scheduler.waiting:
            full = seq.num_tokens >= self.config.max_model_len
            if seq.num_output_tokens >= seq.max_tokens or full:
                self.scheduler.finish(seq.seq_id)
                self.done.append(seq)
        check_state(self.scheduler, self.family)

    def copy(self, pairs: list[tuple[int, int]]) -> None:
        sources = [list(self.kv[src]) for src, _ in pairs]
        for (_, dst), slots in zip(pairs, sources, strict=True):
            self.kv[dst] = slots

    def forward(self, entry: ScheduledSeq) -> None:
        """Write the new tokens' K/V, then read every position attention would read."""
        seq, size = entry.seq, self.config.block_size
        tokens = seq.token_ids
        for pos in range(entry.start, entry.start + entry.num_new):
            block = seq.block_table[pos // size]
            assert self.scheduler.block_manager.ref_count(block) == 1, "wrote a shared block"
            self.kv[block][pos % size] = (pos, tokens[pos])
        for pos in range(entry.start + entry.num_new):
            held = self.kv[seq.block_table[pos // size]][pos % size]
            assert held == (pos, tokens[pos]), f"seq {seq.seq_id} read {held} at {pos}"


def blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


def check_output(scheduler: Scheduler, output: SchedulerOutput) -> None:
    """One step: within budget and seats, each sequence once, each span where it left off."""
    config = scheduler.config
    ids = [e.seq.seq_id for e in output.scheduled]
    assert len(ids) == len(set(ids))
    assert len(ids) <= config.max_num_seqs
    assert sum(e.num_new for e in output.scheduled) <= config.max_num_batched_tokens
    for entry in output.scheduled:
        seq, end = entry.seq, entry.start + entry.num_new
        assert seq.status is RUNNING
        assert entry.num_new >= 1
        assert entry.start == seq.num_computed_tokens
        assert end <= min(seq.num_tokens, config.max_model_len)
        assert len(seq.block_table) == blocks_for(end, config.block_size)
    for seq in output.preempted:
        assert seq.status is WAITING
        assert seq.seq_id not in ids
    for _, dst in output.block_copies:
        assert scheduler.block_manager.ref_count(dst) == 1


def check_state(scheduler: Scheduler, family: dict[int, int]) -> None:
    """Between steps: tables match computed tokens, refcounts match holders, only forks share."""
    config, manager = scheduler.config, scheduler.block_manager
    running, waiting = scheduler.running, scheduler.waiting
    assert len(running) <= config.max_num_seqs
    ids = [s.seq_id for s in running + waiting]
    assert len(ids) == len(set(ids))
    holders: dict[int, list[Sequence]] = defaultdict(list)
    for seq in running:
        assert seq.status is RUNNING
        assert seq.num_computed_tokens <= seq.num_tokens
        assert len(seq.block_table) == blocks_for(seq.num_computed_tokens, config.block_size)
        assert len(set(seq.block_table)) == len(seq.block_table)
        for block in seq.block_table:
            holders[block].append(seq)
    for seq in waiting:
        assert seq.status is WAITING
        assert (seq.num_computed_tokens, seq.block_table) == (0, [])
    for block in range(config.num_blocks):
        assert manager.ref_count(block) == len(holders[block])
        assert len({family[s.seq_id] for s in holders[block]}) <= 1, "shared outside a fork"
    assert manager.num_used_blocks == sum(1 for b in holders.values() if b)
    assert manager.num_free_blocks + manager.num_used_blocks == config.num_blocks
    assert scheduler.num_running == len(running)
    assert scheduler.num_waiting == len(waiting)


def entries(output: SchedulerOutput) -> list[tuple[int, int, int, bool]]:
    return [(e.seq.seq_id, e.start, e.num_new, e.samples) for e in output.scheduled]


def test_waiting_sequences_are_admitted_first_come_first_served() -> None:
    engine = FakeEngine(
        SchedulerConfig(num_blocks=64, block_size=4, max_num_seqs=2, max_model_len=64)
    )
    for seq_id in range(3):
        engine.add(seq_id, [1, 2, 3])
    assert entries(engine.step()) == [(0, 0, 3, True), (1, 0, 3, True)]
    assert [s.seq_id for s in engine.scheduler.waiting] == [2]
    engine.scheduler.finish(0)
    assert entries(engine.step()) == [(1, 3, 1, True), (2, 0, 3, True)]
    assert (engine.scheduler.num_running, engine.scheduler.num_waiting) == (2, 0)


def test_a_long_prompt_is_prefilled_in_chunks_within_the_token_budget() -> None:
    engine = FakeEngine(
        SchedulerConfig(num_blocks=16, block_size=4, max_num_batched_tokens=8, max_model_len=64)
    )
    seq = engine.add(0, list(range(20)), max_tokens=2)
    chunks = [entries(engine.step()) for _ in range(4)]
    assert chunks == [
        [(0, 0, 8, False)],
        [(0, 8, 8, False)],
        [(0, 16, 4, True)],
        [(0, 20, 1, True)],
    ]
    assert seq.output_token_ids == [1000, 1000]
    assert seq.status is FINISHED


def test_running_decodes_are_scheduled_before_a_long_prefill() -> None:
    engine = FakeEngine(
        SchedulerConfig(num_blocks=32, block_size=4, max_num_batched_tokens=8, max_model_len=128)
    )
    parent = engine.add(0, [1, 2, 3, 4], max_tokens=20)
    engine.add(1, list(range(40)), max_tokens=2)
    assert entries(engine.step()) == [(0, 0, 4, True), (1, 0, 4, False)]
    # The child is newer than the prefilling sequence, and still decodes first.
    child = engine.fork(parent, 2)
    for _ in range(6):
        output = engine.step()
        assert entries(output)[:2] == [(0, parent.num_computed_tokens - 1, 1, True)] + [
            (2, child.num_computed_tokens - 1, 1, True)
        ]
        assert sum(e.num_new for e in output.scheduled) == 8
    assert entries(output)[2] == (1, 34, 6, True)


def test_admission_leaves_a_watermark_of_free_blocks_for_running_sequences() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=8, block_size=4, max_model_len=32))
    assert engine.scheduler.watermark == 1
    engine.add(0, list(range(16)), max_tokens=2)
    engine.add(1, list(range(16)), max_tokens=2)  # would take the last 4 blocks
    engine.add(2, [1])  # fits, but stays behind 1: first come, first served
    assert entries(engine.step()) == [(0, 0, 16, True)]
    assert entries(engine.step()) == [(0, 16, 1, True)]
    assert entries(engine.step()) == [(1, 0, 16, True), (2, 0, 1, True)]


def test_with_nothing_running_a_prompt_may_take_the_whole_cache() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=4, block_size=4, max_model_len=16))
    seq = engine.add(0, list(range(15)), max_tokens=1)
    assert entries(engine.step()) == [(0, 0, 15, True)]
    assert seq.status is FINISHED


def test_the_newest_sequence_is_preempted_when_blocks_run_out_and_recomputed_later() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=3, block_size=4, max_model_len=12))
    old = engine.add(0, [1, 2, 3], max_tokens=3)
    new = engine.add(1, [4, 5, 6, 7], max_tokens=4)
    assert entries(engine.step()) == [(0, 0, 3, True), (1, 0, 4, True)]
    assert entries(engine.step()) == [(0, 3, 1, True), (1, 4, 1, True)]
    assert engine.scheduler.num_free_blocks == 0
    output = engine.step()  # the old one needs a block: the new one gives up its two
    assert entries(output) == [(0, 4, 1, True)]
    assert output.preempted == [new]
    assert engine.scheduler.num_preemptions == 1
    assert (new.status, new.num_computed_tokens, new.block_table) == (WAITING, 0, [])
    assert new.output_token_ids == [1001, 1001]
    assert old.status is FINISHED
    # Recompute: the prompt and both outputs in one prefill, which samples the third token.
    assert entries(engine.step()) == [(1, 0, 6, True)]
    assert entries(engine.step()) == [(1, 6, 1, True)]
    assert new.status is FINISHED
    assert new.output_token_ids == [1001] * 4
    assert engine.scheduler.num_free_blocks == 3


def test_a_sequence_scheduled_earlier_in_the_step_can_still_be_preempted() -> None:
    config = SchedulerConfig(num_blocks=5, block_size=4, max_num_batched_tokens=6, max_model_len=20)
    engine = FakeEngine(config)
    parent = engine.add(0, [9], max_tokens=8)
    engine.add(1, list(range(17)), max_tokens=2)
    assert entries(engine.step()) == [(0, 0, 1, True), (1, 0, 5, False)]
    child = engine.fork(parent, 2)
    assert entries(engine.step()) == [(0, 1, 1, True), (2, 1, 1, True), (1, 5, 4, False)]
    assert entries(engine.step()) == [(0, 2, 1, True), (2, 2, 1, True), (1, 9, 3, False)]
    # The prefill needs a block: the child, newest, leaves the step it was already in.
    output = engine.step()
    assert entries(output) == [(0, 3, 1, True), (1, 12, 4, False)]
    assert output.preempted == [child]


def test_finished_and_aborted_sequences_free_their_blocks() -> None:
    engine = FakeEngine(
        SchedulerConfig(num_blocks=8, block_size=4, max_num_seqs=2, max_model_len=32)
    )
    a, b = engine.add(0, list(range(10))), engine.add(1, list(range(5)))
    waiting = engine.add(2, [1])
    engine.step()
    assert engine.scheduler.num_used_blocks == 5
    engine.scheduler.finish(waiting.seq_id)  # aborted before it ever ran
    assert waiting.status is FINISHED
    assert engine.scheduler.waiting == ()
    output = engine.scheduler.schedule()
    engine.scheduler.finish(a.seq_id)  # aborted while its step runs
    engine.scheduler.update(output, {a.seq_id: 7, b.seq_id: 7})
    assert (a.num_computed_tokens, a.output_token_ids, a.block_table) == (10, [1000], [])
    assert b.output_token_ids == [1001, 7]
    engine.scheduler.finish(b.seq_id)
    engine.scheduler.finish(b.seq_id)  # unknown now: nothing happens
    assert engine.scheduler.num_free_blocks == 8
    assert not engine.scheduler.has_work


def test_fork_shares_full_blocks_and_copies_the_partial_one_before_the_next_step() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=8, block_size=4, max_model_len=32))
    parent = engine.add(0, [1, 2, 3, 4, 5, 6])
    engine.step()
    child = engine.fork(parent, 1)
    manager = engine.scheduler.block_manager
    assert child.num_computed_tokens == parent.num_computed_tokens == 6
    assert child.block_table[0] == parent.block_table[0]
    assert child.block_table[1] != parent.block_table[1]
    assert [manager.ref_count(b) for b in parent.block_table + child.block_table[1:]] == [2, 1, 1]
    output = engine.step()
    assert output.block_copies == [(parent.block_table[1], child.block_table[1])]
    assert entries(output) == [(0, 6, 1, True), (1, 6, 1, True)]
    # Each wrote position 6 into a block of its own (FakeEngine.forward checks every write).
    written = [e.seq.block_table[e.start // 4] for e in output.scheduled]
    assert written == [parent.block_table[1], child.block_table[1]]
    assert [manager.ref_count(b) for b in written] == [1, 1]
    assert engine.step().block_copies == []
    assert parent.output_token_ids == [1000] * 3
    assert child.output_token_ids == [1001] * 3


def test_forking_a_fresh_fork_copies_from_the_original_block() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=8, block_size=4, max_model_len=32))
    parent = engine.add(0, [1, 2, 3, 4, 5], max_tokens=3)
    engine.step()
    child = engine.fork(parent, 1)
    grandchild = engine.fork(child, 2)  # before the child's copy is made
    source = parent.block_table[1]
    output = engine.step()  # FakeEngine.copy reads every source before writing any copy
    assert output.block_copies == [
        (source, child.block_table[1]),
        (source, grandchild.block_table[1]),
    ]
    while engine.scheduler.has_work:
        engine.step()
    assert grandchild.output_token_ids == [1002] * 3


def test_preempting_a_forked_child_leaves_its_siblings_blocks_intact() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=4, block_size=4, max_model_len=16))
    parent = engine.add(0, [1, 2, 3, 4, 5, 6], max_tokens=4)
    engine.step()
    first, second = engine.fork(parent, 1), engine.fork(parent, 2)
    shared = parent.block_table[0]
    assert engine.scheduler.block_manager.ref_count(shared) == 3
    assert engine.scheduler.num_free_blocks == 0
    engine.step()
    engine.step()
    output = engine.step()  # position 8 needs a new block for everyone
    assert output.preempted == [second, first]
    assert entries(output) == [(0, 8, 1, True)]
    assert parent.status is FINISHED
    while engine.scheduler.has_work:
        engine.step()
    assert first.output_token_ids == [1001] * 4
    assert second.output_token_ids == [1002] * 4
    assert engine.scheduler.num_free_blocks == 4


def test_fork_without_a_free_seat_queues_the_child_to_be_recomputed() -> None:
    engine = FakeEngine(
        SchedulerConfig(num_blocks=8, block_size=4, max_num_seqs=1, max_model_len=32)
    )
    parent = engine.add(0, [1, 2, 3], max_tokens=2)
    engine.step()
    child = engine.fork(parent, 1)
    assert engine.scheduler.waiting == (child,)
    assert (child.num_computed_tokens, child.block_table) == (0, [])
    assert entries(engine.step()) == [(0, 3, 1, True)]
    assert entries(engine.step()) == [(1, 0, 4, True)]
    assert child.output_token_ids == [1001, 1001]


def test_fork_refuses_a_parent_not_running_or_a_child_not_new_or_with_other_tokens() -> None:
    engine = FakeEngine(SchedulerConfig(num_blocks=8, block_size=4, max_model_len=32))
    parent = engine.add(0, [1, 2, 3])
    with pytest.raises(ValueError, match="parent sequence 0 is not running"):
        engine.scheduler.fork(parent, Sequence(1, [1, 2, 3], 4))
    engine.step()
    with pytest.raises(ValueError, match="does not begin with the 3 tokens"):
        engine.scheduler.fork(parent, Sequence(1, [1, 2, 4], 4))
    with pytest.raises(ValueError, match="already scheduled"):
        engine.scheduler.fork(parent, Sequence(0, [1, 2, 3], 4))
    with pytest.raises(ValueError, match="sequence 1 is not new: it has state"):
        engine.scheduler.fork(parent, Sequence(1, [1, 2, 3], 4, num_computed_tokens=3))


def test_add_refuses_sequences_that_could_never_run() -> None:
    scheduler = Scheduler(SchedulerConfig(num_blocks=4, block_size=4, max_model_len=16))
    with pytest.raises(ValueError, match="needs 17, over max_model_len 16"):
        scheduler.add(Sequence(0, list(range(16)), 1))
    with pytest.raises(ValueError, match="empty prompt"):
        scheduler.add(Sequence(1, [], 1))
    scheduler.add(Sequence(2, list(range(15)), 1))
    with pytest.raises(ValueError, match="sequence 2 is already scheduled"):
        scheduler.add(Sequence(2, [1], 1))
    assert [s.seq_id for s in scheduler.waiting] == [2]


def test_a_context_longer_than_the_whole_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="max_model_len 17 does not fit the KV cache: 4 blocks"):
        SchedulerConfig(num_blocks=4, block_size=4, max_model_len=17)
    with pytest.raises(ValueError, match="max_num_seqs must be at least 1, not 0"):
        SchedulerConfig(num_blocks=4, block_size=4, max_num_seqs=0, max_model_len=16)


def test_update_applied_twice_is_refused() -> None:
    scheduler = Scheduler(SchedulerConfig(num_blocks=4, block_size=4, max_model_len=16))
    scheduler.add(Sequence(0, [1, 2], 4))
    output = scheduler.schedule()
    scheduler.update(output, {0: 5})
    with pytest.raises(ValueError, match="update\\(\\) twice or out of order"):
        scheduler.update(output, {0: 5})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_traffic_keeps_every_invariant_and_finishes_every_sequence(seed: int) -> None:
    rng = random.Random(seed)
    config = SchedulerConfig(
        num_blocks=16, block_size=4, max_num_seqs=5, max_num_batched_tokens=12, max_model_len=48
    )
    engine = FakeEngine(config)
    scheduler = engine.scheduler
    next_id, choices, aborted = 0, dict[int, int](), set[int]()
    forked = chunked = copied = 0

    def abort(seq: Sequence) -> None:
        scheduler.finish(seq.seq_id)
        aborted.add(seq.seq_id)

    for step in range(600):
        if step < 500 and rng.random() < 0.3:
            prompt = [rng.randrange(500) for _ in range(rng.randint(1, 36))]
            engine.add(next_id, prompt, max_tokens=rng.randint(1, 14))
            choices[next_id] = rng.choice([1, 1, 2, 3])
            next_id += 1
        live = scheduler.running + scheduler.waiting
        if live and rng.random() < 0.03:
            abort(rng.choice(live))

        def abort_one_in_flight(output: SchedulerOutput) -> None:
            if output.scheduled and rng.random() < 0.03:
                abort(rng.choice(output.scheduled).seq)

        output = engine.run(abort_one_in_flight)
        chunked += sum(1 for e in output.scheduled if not e.samples)
        copied += len(output.block_copies)
        for entry in output.scheduled:
            parent = entry.seq
            if entry.samples and parent.status is RUNNING and choices[parent.seq_id] > 1:
                for _ in range(choices[parent.seq_id] - 1):
                    engine.fork(parent, next_id)
                    choices[next_id] = 1
                    forked += 1
                    next_id += 1
                choices[parent.seq_id] = 1
        engine.reap()
    for _ in range(2000):
        if not scheduler.has_work:
            break
        engine.step()
    assert not scheduler.has_work
    assert scheduler.num_free_blocks == config.num_blocks
    assert len(engine.done) + len(aborted) == next_id
    for seq in engine.done:
        room = config.max_model_len - seq.num_prompt_tokens
        assert seq.output_token_ids == [token_for(seq)] * min(seq.max_tokens, room)
    assert scheduler.num_preemptions > 0
    assert forked > 0
    assert copied > 0
    assert chunked > 0
