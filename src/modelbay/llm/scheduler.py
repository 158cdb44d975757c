"""Continuous batching as a pure state machine: which tokens of which sequences each step computes.

Every step, running sequences come first, oldest first, decodes before prefill chunks; then
waiting sequences are admitted first come, first served, while seats, the token budget and
free blocks allow (a long prompt is chunked over steps). When a running sequence needs a
block and none is free, the newest running sequence is preempted: its blocks are freed and it
waits at the front of the queue to be recomputed (prompt and outputs) later.

The engine's loop is ``schedule()``, run the model, ``update()``; then, for ``n`` > 1,
``fork(parent, child)`` and append the child's own first token; ``finish()`` any time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelbay.llm.kv_cache import BlockManager
from modelbay.llm.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class SchedulerConfig:
    num_blocks: int
    block_size: int = 16
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048

    def __post_init__(self) -> None:
        limits = {
            "num_blocks": self.num_blocks,
            "block_size": self.block_size,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_model_len": self.max_model_len,
        }
        for name, value in limits.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        # A lone sequence must always be able to grow to max_model_len, or it could preempt
        # itself forever.
        capacity = self.num_blocks * self.block_size
        if self.max_model_len > capacity:
            raise ValueError(
                f"max_model_len {self.max_model_len} does not fit the KV cache: "
                f"{self.num_blocks} blocks of {self.block_size} tokens hold {capacity}"
            )


@dataclass(frozen=True)
class ScheduledSeq:
    """Compute ``seq.token_ids[start:start + num_new]`` this step."""

    seq: Sequence
    start: int
    num_new: int
    # Fixed when scheduled, so it still reads true after update() appends the sampled token.
    samples: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", self.start + self.num_new == self.seq.num_tokens)


@dataclass
class SchedulerOutput:
    """One step: what to compute, who lost their blocks, and block copies to make first."""

    scheduled: list[ScheduledSeq]
    preempted: list[Sequence]
    block_copies: list[tuple[int, int]]

    @property
    def is_empty(self) -> bool:
        return not self.scheduled and not self.block_copies


class Scheduler:
    """Decides each step's batch; holds the waiting queue, the running list and the blocks."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.block_manager = BlockManager(config.num_blocks, config.block_size)
        # Free blocks an admission must leave for the running sequences' next tokens.
        self.watermark = max(1, config.num_blocks // 100)
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []  # oldest first
        self._seqs: dict[int, Sequence] = {}
        self._pending_copies: list[tuple[int, int]] = []
        self._num_preemptions = 0

    # -- views ---------------------------------------------------------------------------

    @property
    def running(self) -> tuple[Sequence, ...]:
        return tuple(self._running)

    @property
    def waiting(self) -> tuple[Sequence, ...]:
        return tuple(self._waiting)

    @property
    def has_work(self) -> bool:
        return bool(self._running or self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_free_blocks(self) -> int:
        return self.block_manager.num_free_blocks

    @property
    def num_used_blocks(self) -> int:
        return self.block_manager.num_used_blocks

    @property
    def num_preemptions(self) -> int:
        return self._num_preemptions

    # -- sequences in and out ------------------------------------------------------------

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence; ValueError if it could never run."""
        self._check_new(seq)
        if not seq.prompt_token_ids:
            raise ValueError(f"sequence {seq.seq_id} has an empty prompt")
        if seq.num_tokens + 1 > self.config.max_model_len:
            raise ValueError(
                f"sequence {seq.seq_id} has {seq.num_tokens} tokens; with one more to generate "
                f"it needs {seq.num_tokens + 1}, over max_model_len {self.config.max_model_len}"
            )
        self._seqs[seq.seq_id] = seq
        self._waiting.append(seq)

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """Start ``child`` from ``parent``'s computed tokens, sharing its full blocks.

        Call it after ``update()`` of the step in which the parent sampled, before any
        ``finish(parent)``; ``child`` is new and begins with those tokens. Then append the
        child's own sampled token before the next ``schedule()``. Without a free seat or a
        block for the copy, the child waits at the front of the queue to be computed anew.
        """
        if (
            self._seqs.get(parent.seq_id) is not parent
            or parent.status is not SequenceStatus.RUNNING
        ):
            raise ValueError(f"parent sequence {parent.seq_id} is not running")
        self._check_new(child)
        computed = parent.num_computed_tokens
        if child.token_ids[:computed] != parent.token_ids[:computed]:
            raise ValueError(
                f"sequence {child.seq_id} does not begin with the {computed} tokens "
                f"sequence {parent.seq_id} has computed"
            )
        self._seqs[child.seq_id] = child
        no_seat = len(self._running) >= self.config.max_num_seqs
        if no_seat or not self.block_manager.can_fork(parent):
            self._waiting.appendleft(child)
            return
        copies = self.block_manager.fork(parent, child)
        child.num_computed_tokens = computed
        child.status = SequenceStatus.RUNNING
        self._running.append(child)
        # The parent may be a fork whose own copy is still pending: copy from that copy's
        # source, so the runner may make the copies in any order.
        origin = {dst: src for src, dst in self._pending_copies}
        self._pending_copies.extend((origin.get(src, src), dst) for src, dst in copies)

    def finish(self, seq_id: int) -> None:
        """Remove a finished or aborted sequence, waiting or running, and free its blocks."""
        seq = self._seqs.pop(seq_id, None)
        if seq is None:
            return
        if seq.status is SequenceStatus.RUNNING:
            self._running.remove(seq)
            self._release(seq)
        else:
            self._waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED

    # -- the step ------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        """Choose this step's tokens; allocates their blocks and may preempt."""
        budget = self.config.max_num_batched_tokens
        scheduled: dict[int, ScheduledSeq] = {}
        preempted: list[Sequence] = []
        # Decodes first: an older sequence's long prefill must not stall the others' tokens.
        order = sorted(self._running, key=lambda s: self._num_wanted(s) > 1)
        for seq in order:
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this step
            wanted = min(self._num_wanted(seq), budget)
            if wanted <= 0:
                continue  # out of budget, or at max_model_len (the engine finishes it)
            while self._room(seq) == 0:
                victim = self._running.pop()
                self._preempt(victim)
                preempted.append(victim)
                dropped = scheduled.pop(victim.seq_id, None)
                if dropped is not None:
                    budget += dropped.num_new
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                continue
            num_new = min(wanted, self._room(seq))
            scheduled[seq.seq_id] = self._allocate(seq, num_new)
            budget -= num_new
        if not preempted:
            budget = self._admit(budget, scheduled)
        copies, self._pending_copies = self._pending_copies, []
        return SchedulerOutput(list(scheduled.values()), preempted, copies)

    def update(self, output: SchedulerOutput, sampled: Mapping[int, int]) -> None:
        """Record a computed step: advance each sequence, append the tokens sampled."""
        for entry in output.scheduled:
            seq = entry.seq
            if seq.status is not SequenceStatus.RUNNING:
                continue  # finished or aborted after schedule()
            if seq.num_computed_tokens != entry.start:
                raise ValueError(
                    f"sequence {seq.seq_id} has {seq.num_computed_tokens} computed tokens, "
                    f"the step started at {entry.start}: update() twice or out of order"
                )
            seq.num_computed_tokens += entry.num_new
            if entry.samples and seq.seq_id in sampled:
                seq.output_token_ids.append(sampled[seq.seq_id])

    # -- internals -----------------------------------------------------------------------

    def _check_new(self, seq: Sequence) -> None:
        if seq.seq_id in self._seqs:
            raise ValueError(f"sequence {seq.seq_id} is already scheduled")
        if seq.status is not SequenceStatus.WAITING or seq.num_computed_tokens or seq.block_table:
            raise ValueError(f"sequence {seq.seq_id} is not new: it has state")

    def _num_wanted(self, seq: Sequence) -> int:
        """Tokens still to compute, never at positions past max_model_len."""
        return min(seq.num_tokens, self.config.max_model_len) - seq.num_computed_tokens

    def _room(self, seq: Sequence) -> int:
        """Tokens ``seq`` can compute with its own last block and the free blocks."""
        manager = self.block_manager
        slack = len(seq.block_table) * manager.block_size - seq.num_computed_tokens
        return slack + manager.num_free_blocks * manager.block_size

    def _allocate(self, seq: Sequence, num_new: int) -> ScheduledSeq:
        start = seq.num_computed_tokens
        self.block_manager.allocate(seq, start + num_new)
        return ScheduledSeq(seq, start, num_new)

    def _admit(self, budget: int, scheduled: dict[int, ScheduledSeq]) -> int:
        """Admit waiting sequences in order while a seat, budget and blocks are left."""
        manager = self.block_manager
        while self._waiting and budget > 0 and len(self._running) < self.config.max_num_seqs:
            seq = self._waiting[0]
            num_new = min(self._num_wanted(seq), budget)
            # With nobody running there is no growth to protect, and the whole cache is free.
            reserve = self.watermark if self._running else 0
            if manager.num_free_blocks - manager.blocks_needed(seq, num_new) < reserve:
                break
            self._waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self._running.append(seq)
            scheduled[seq.seq_id] = self._allocate(seq, num_new)
            budget -= num_new
        return budget

    def _preempt(self, seq: Sequence) -> None:
        """Free a running sequence's blocks; it waits first in line to be recomputed."""
        self._release(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        self._waiting.appendleft(seq)
        self._num_preemptions += 1

    def _release(self, seq: Sequence) -> None:
        """Free ``seq``'s blocks, and forget copies into them that were not made yet."""
        if self._pending_copies:
            own = set(seq.block_table)
            self._pending_copies = [c for c in self._pending_copies if c[1] not in own]
        self.block_manager.free(seq)
