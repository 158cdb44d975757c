"""Next-token sampling for a batch of sequences, on the logits' device, one host transfer a step.

Per row: penalties, the grammar's mask, temperature (0: greedy), top-k, top-p, min-p, then an
exponential race, argmax(p / E) with E ~ Exp(1), which draws from p. The race lets each seeded
row draw its noise from its own generator while the rest of the math stays batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from modelbay.llm.grammar import apply_grammar_masks
from modelbay.llm.params import SamplingParams

if TYPE_CHECKING:
    import xgrammar as xgr

    from modelbay.llm.grammar import Grammars

# Token ids travel to the host packed with logprobs in one float32 tensor, exact below 2**24.
_MAX_VOCAB = 2**24


@dataclass(eq=False)
class SamplingState:
    """What sampling remembers about one sequence; its tensors and RNG live on the sampler's
    device and are made there when the sequence is first sampled."""

    params: SamplingParams
    seed: int | None = None  # params.seed, plus the index of a forked child
    matcher: xgr.GrammarMatcher | None = None
    prompt_token_ids: tuple[int, ...] = ()  # kept for the repetition penalty only
    output_token_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None  # seeded rows' own RNG; the others share one
    output_counts: torch.Tensor | None = None  # [V] int32, with penalties only
    prompt_mask: torch.Tensor | None = None  # [V] bool, with the repetition penalty only

    @classmethod
    def create(
        cls, params: SamplingParams, grammars: Grammars | None, prompt_token_ids: Sequence[int]
    ) -> SamplingState:
        """State for a new sequence; compiles its response format (may raise InvalidParameter)."""
        matcher = None
        if params.has_grammar:
            if grammars is None:
                raise ValueError("a response format needs the model's Grammars")
            matcher = grammars.matcher(params)
        prompt = tuple(prompt_token_ids) if params.repetition_penalty != 1.0 else ()
        return cls(params, params.seed, matcher, prompt)

    @property
    def finished_by_grammar(self) -> bool:
        """The grammar accepted its stop token: the sequence ends with finish_reason "stop"."""
        return self.matcher is not None and self.matcher.is_terminated()

    def accept(self, token_id: int) -> None:
        """Record a sampled token; a token the grammar rejects means the mask was not applied."""
        self.output_token_ids.append(token_id)
        if self.output_counts is not None:
            self.output_counts[token_id] += 1
        if self.matcher is not None and not self.matcher.accept_token(token_id):
            raise RuntimeError(f"the grammar rejected token {token_id} that its own mask allowed")

    def fork(self, index: int) -> SamplingState:
        """Child `index` of an n>1 request: same history, seed + index, its own matcher."""
        return replace(
            self,
            seed=None if self.params.seed is None else self.params.seed + index,
            matcher=None if self.matcher is None else self.matcher.fork(),
            output_token_ids=list(self.output_token_ids),
            generator=None,
            output_counts=None if self.output_counts is None else self.output_counts.clone(),
        )

    def _prepare(self, vocab_size: int, device: torch.device) -> None:
        """Make the generator and penalty tensors on the sampler's device, once."""
        if self.seed is not None and self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed % 2**64)
        if self.params.has_penalties and self.output_counts is None:
            self.output_counts = _token_counts(self.output_token_ids, vocab_size, device)
        if self.params.repetition_penalty != 1.0 and self.prompt_mask is None:
            self.prompt_mask = _token_counts(self.prompt_token_ids, vocab_size, device) > 0


def _token_counts(token_ids: Sequence[int], vocab_size: int, device: torch.device) -> torch.Tensor:
    ids = torch.tensor(token_ids, dtype=torch.long).to(device, non_blocking=True)
    counts = torch.zeros(vocab_size, dtype=torch.int32, device=device)
    # index_add_, not bincount: bincount on CUDA reads the max id back to the host.
    return counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.int32))


def apply_penalties(
    logits: torch.Tensor,
    output_counts: torch.Tensor,
    in_prompt: torch.Tensor,
    *,
    presence: torch.Tensor,
    frequency: torch.Tensor,
    repetition: torch.Tensor,
) -> torch.Tensor:
    """Penalise logits [N, V] of tokens seen before; counts [N, V], in_prompt [N, V], params [N]."""
    in_output = output_counts > 0
    # transformers' and vLLM's repetition penalty, over prompt and output: positive logits are
    # divided by it and negative ones multiplied, so it always makes a seen token less likely.
    penalty = repetition[:, None]
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    logits = torch.where(in_output | in_prompt, penalised, logits)
    # OpenAI's, over the output only: logit -= count * frequency + (count > 0) * presence.
    return logits - output_counts * frequency[:, None] - in_output * presence[:, None]


@dataclass(frozen=True)
class Sample:
    """The chosen token; with logprobs, its log-probability and the most likely alternatives."""

    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)


class Sampler:
    """Picks one token per row of a logits batch; the caller then `accept`s it into the state."""

    def __init__(self, vocab_size: int, device: torch.device, *, seed: int | None = None) -> None:
        if vocab_size >= _MAX_VOCAB:
            raise ValueError(f"vocab_size must be below {_MAX_VOCAB}, got {vocab_size}")
        self.vocab_size = vocab_size
        self.device = device
        self.generator = torch.Generator(device=device)  # rows without a seed share it
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed % 2**64)

    def sample(self, logits: torch.Tensor, states: list[SamplingState]) -> list[Sample]:
        """Sample a token for each row of `logits` [N, V] with `states[row]`'s params."""
        if logits.shape != (len(states), self.vocab_size):
            raise ValueError(
                f"logits must be [{len(states)}, {self.vocab_size}], got {list(logits.shape)}"
            )
        for state in states:
            state._prepare(self.vocab_size, self.device)
        params = [state.params for state in states]
        x = logits.to(torch.float32, copy=True)  # [N, V], modified in place below
        x = self._apply_penalties(x, states)
        grammar_rows = [(i, s.matcher) for i, s in enumerate(states) if s.matcher is not None]
        if grammar_rows:
            apply_grammar_masks(x, grammar_rows)
        tokens = x.argmax(dim=-1)  # [N], the greedy choice
        if not all(p.greedy for p in params):
            sampled = self._draw(self._probs(x, params), states)
            greedy = self._row_tensor([p.greedy for p in params], torch.bool)
            tokens = torch.where(greedy, tokens, sampled)
        return self._to_host(logits, tokens, params)

    def _row_tensor(self, values: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(self.device, non_blocking=True)

    def _apply_penalties(self, x: torch.Tensor, states: list[SamplingState]) -> torch.Tensor:
        if not any(s.output_counts is not None for s in states):
            return x
        zeros = torch.zeros(self.vocab_size, dtype=torch.int32, device=self.device)
        counts = torch.stack(
            [zeros if s.output_counts is None else s.output_counts for s in states]
        )
        no = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
        in_prompt = torch.stack([no if s.prompt_mask is None else s.prompt_mask for s in states])
        params = [s.params for s in states]
        return apply_penalties(
            x,
            counts,
            in_prompt,
            presence=self._row_tensor([p.presence_penalty for p in params], torch.float32),
            frequency=self._row_tensor([p.frequency_penalty for p in params], torch.float32),
            repetition=self._row_tensor([p.repetition_penalty for p in params], torch.float32),
        )

    def _probs(self, x: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
        """Temperature, top-k, top-p and min-p applied, as unnormalised probabilities [N, V]."""
        temperature = self._row_tensor([p.temperature or 1.0 for p in params], torch.float32)
        x = x / temperature[:, None]
        if any(p.top_k > 0 for p in params):
            x = self._top_k(x, params)
        if any(p.top_p < 1.0 for p in params):
            x = self._top_p(x, params)
        probs = torch.softmax(x, dim=-1)
        if any(p.min_p > 0.0 for p in params):
            min_p = self._row_tensor([p.min_p for p in params], torch.float32)
            threshold = probs.amax(dim=-1, keepdim=True) * min_p[:, None]
            probs = probs.masked_fill(probs < threshold, 0.0)
        return probs

    def _top_k(self, x: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
        """Keep each row's k largest logits (and any tied with the k-th)."""
        top_k = [min(p.top_k, self.vocab_size) if p.top_k > 0 else 0 for p in params]
        largest = x.topk(max(top_k), dim=-1).values  # [N, max_k], a partial sort
        k = self._row_tensor(top_k, torch.long)
        kth = largest.gather(-1, (k - 1).clamp(min=0)[:, None])  # [N, 1]
        kth = kth.masked_fill((k == 0)[:, None], float("-inf"))  # rows without top-k
        return x.masked_fill(x < kth, float("-inf"))

    def _top_p(self, x: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
        """Keep each row's smallest set of most likely tokens whose mass reaches top_p."""
        # Sorting is the costly step on CPU: only rows asking for top-p pay it, and when they
        # all have a top-k only their k survivors (already -inf elsewhere) need sorting.
        rows = [i for i, p in enumerate(params) if p.top_p < 1.0]
        index = self._row_tensor(rows, torch.long)
        candidates = x.index_select(0, index)  # [R, V]
        top_k = [params[i].top_k for i in rows]
        if min(top_k) > 0 and max(top_k) < self.vocab_size:
            sorted_x = candidates.topk(max(top_k), dim=-1).values  # [R, max_k]
        else:
            sorted_x = candidates.sort(dim=-1, descending=True).values  # [R, V]
        sorted_probs = torch.softmax(sorted_x, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        top_p = self._row_tensor([params[i].top_p for i in rows], torch.float32)
        num_kept = (mass_before < top_p[:, None]).sum(dim=-1, keepdim=True)  # >= 1
        cutoff = sorted_x.gather(-1, num_kept - 1)  # [R, 1], the least likely logit kept
        threshold = torch.full((len(params), 1), float("-inf"), device=self.device)
        threshold = threshold.index_copy(0, index, cutoff)
        return x.masked_fill(x < threshold, float("-inf"))

    def _draw(self, probs: torch.Tensor, states: list[SamplingState]) -> torch.Tensor:
        """Exponential race: argmax(p / E) with E = -log(U) ~ Exp(1) picks i with odds p_i."""
        uniform = torch.empty_like(probs)  # [N, V]
        sampled_rows = [i for i, s in enumerate(states) if not s.params.greedy]
        if any(states[i].generator is None for i in sampled_rows):
            uniform.uniform_(generator=self.generator)
        for i in sampled_rows:
            generator = states[i].generator
            if generator is not None:
                uniform[i].uniform_(generator=generator)
        # U = 0 gives E = inf, a score of 0 for that token: a 2**-24 bias, not a NaN.
        return (probs / uniform.log_().neg_()).argmax(dim=-1)

    def _to_host(
        self, logits: torch.Tensor, tokens: torch.Tensor, params: list[SamplingParams]
    ) -> list[Sample]:
        if not any(p.logprobs for p in params):
            return [Sample(token_id) for token_id in tokens.tolist()]
        # Logprobs are of the model's distribution, before penalties and temperature (as OpenAI).
        logprobs = torch.log_softmax(logits.to(torch.float32), dim=-1)  # [N, V]
        chosen = logprobs.gather(-1, tokens[:, None])  # [N, 1]
        k = max(p.top_logprobs for p in params)
        top_values, top_ids = logprobs.topk(k, dim=-1)  # [N, k]
        packed = torch.cat([tokens[:, None].float(), chosen, top_ids.float(), top_values], dim=-1)
        samples = []
        for p, row in zip(params, packed.tolist(), strict=True):
            token_id = int(row[0])
            if not p.logprobs:
                samples.append(Sample(token_id))
                continue
            ids, values = row[2 : 2 + p.top_logprobs], row[2 + k : 2 + k + p.top_logprobs]
            top = [(int(i), v) for i, v in zip(ids, values, strict=True)]
            samples.append(Sample(token_id, row[1], top))
        return samples
