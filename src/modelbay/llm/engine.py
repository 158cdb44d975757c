"""The engine: requests in, token deltas out, one continuous-batching step at a time.

``step`` asks the scheduler what to compute, has the runner compute it, samples the next
token of every sequence that reached its end, and turns tokens into text (stop tokens,
stop strings, max_tokens, the context limit and grammars end sequences). A request with
``n`` > 1 runs one sequence over its prompt, then forks ``n`` sequences that share the
prompt's blocks. Not thread-safe: one loop drives it (``serving.generation`` in a replica).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modelbay.llm.config import LLMInfo
from modelbay.llm.grammar import Grammars
from modelbay.llm.model import LlamaForCausalLM
from modelbay.llm.params import InvalidParameter, SamplingParams
from modelbay.llm.quant import QUANTIZATIONS, can_pack
from modelbay.llm.runner import ModelRunner, blocks_for_budget
from modelbay.llm.sampler import Sample, Sampler, SamplingState
from modelbay.llm.scheduler import Scheduler, SchedulerConfig
from modelbay.llm.sequence import Sequence
from modelbay.llm.tokenizer import IncrementalDetokenizer, Tokenizer, load_tokenizer
from modelbay.llm.weights import load_model


@dataclass(frozen=True)
class EngineConfig:
    """How an engine is sized; every field has a default that fits a small CPU model."""

    dtype: str = "auto"
    """float32, bfloat16, or auto: bfloat16 on CUDA and on CPUs with native bfloat16
    (AVX512-BF16 or AMX; about twice fp32's tokens/s there), else float32."""
    device: str = "auto"
    """cuda, cpu, or auto (cuda when present)."""
    kv_cache_bytes: int = 256 << 20
    """Memory for the paged KV cache; it bounds how many tokens are in flight."""
    block_size: int = 16
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512
    """Tokens per step: decodes plus prefill chunks."""
    max_model_len: int | None = None
    """Prompt plus output, at most; default: the model's context, capped by the cache."""
    threads: int = 0
    """CPU threads for torch (0: leave torch's default)."""
    quantization: str = "none"
    """none, or int8: weight-only int8 per output channel (half bf16's bytes per token)."""


class PromptTooLong(InvalidParameter):
    """The prompt (and the tokens asked for) do not fit the model's context."""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]]


@dataclass
class RequestOutput:
    """What one choice of a request generated in a step."""

    request_id: str
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int
    blocks_used: int
    blocks_free: int
    preemptions: int


@dataclass(eq=False)
class _Choice:
    seq: Sequence
    state: SamplingState
    detokenizer: IncrementalDetokenizer
    index: int
    text: str = ""
    sent: int = 0
    """Characters of ``text`` already handed out (some are held back while they may
    begin a stop string)."""
    finish_reason: str | None = None


@dataclass(eq=False)
class _Request:
    request_id: str
    params: SamplingParams
    prompt_tokens: int
    choices: list[_Choice] = field(default_factory=list)
    forked: bool = False


class LLMEngine:
    """A model, its tokenizer and a paged KV cache, stepped by the caller."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        tokenizer: Tokenizer,
        info: LLMInfo,
        config: EngineConfig,
        *,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.info = info
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.dtype = dtype
        num_blocks = blocks_for_budget(
            model.config, config.kv_cache_bytes, config.block_size, dtype
        )
        context = min(info.context_length, num_blocks * config.block_size)
        self.max_model_len = min(config.max_model_len or context, context)
        self.scheduler = Scheduler(
            SchedulerConfig(
                num_blocks=num_blocks,
                block_size=config.block_size,
                max_num_seqs=config.max_num_seqs,
                max_num_batched_tokens=max(config.max_num_batched_tokens, config.max_num_seqs),
                max_model_len=self.max_model_len,
            )
        )
        self.runner = ModelRunner(
            model,
            model.config,
            num_blocks=num_blocks,
            block_size=config.block_size,
            dtype=dtype,
            device=device,
        )
        self.vocab_size = model.config.vocab_size
        self.sampler = Sampler(self.vocab_size, device)
        self.grammars = Grammars(tokenizer, self.vocab_size)
        self.eos_token_ids = frozenset(info.eos_token_ids)
        self._requests: dict[str, _Request] = {}
        self._by_seq: dict[int, _Choice] = {}
        self._request_of: dict[int, _Request] = {}
        self._seq_ids = itertools.count()

    @classmethod
    def load(cls, path: Path, config: EngineConfig | None = None) -> LLMEngine:
        """Load a GGUF file or a Hugging Face directory (local files only)."""
        config = config or EngineConfig()
        device = _device(config.device)
        dtype = _dtype(config.dtype, device)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        if config.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"unknown quantization {config.quantization!r}; one of {', '.join(QUANTIZATIONS)}"
            )
        model, _, info = load_model(path, dtype=dtype, device=device)
        if config.quantization == "int8":
            model.quantize_int8()
        elif can_pack(device, dtype):
            model.pack_for_cpu()
        tokenizer = load_tokenizer(path)
        return cls(model, tokenizer, info, config, dtype=dtype, device=device)

    # -- requests ------------------------------------------------------------------------

    def add_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> None:
        """Queue a request; raises ``InvalidParameter`` (``PromptTooLong``) when its
        parameters are invalid or it cannot fit the context."""
        if request_id in self._requests:
            raise ValueError(f"request {request_id!r} is already running")
        params.validate()
        if not prompt_token_ids:
            raise InvalidParameter("prompt", "the prompt is empty")
        if len(prompt_token_ids) + params.max_tokens > self.max_model_len:
            raise PromptTooLong(
                "max_tokens",
                f"this model's maximum context length is {self.max_model_len} tokens; the "
                f"prompt has {len(prompt_token_ids)} and {params.max_tokens} more were asked "
                f"for ({len(prompt_token_ids) + params.max_tokens} in all)",
            )
        bad = [t for t in prompt_token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise InvalidParameter(
                "prompt", f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        request = _Request(request_id, params, len(prompt_token_ids))
        seq = Sequence(next(self._seq_ids), list(prompt_token_ids), params.max_tokens)
        state = SamplingState.create(
            params, self.grammars if _wants_grammar(params) else None, prompt_token_ids
        )
        self._track(request, seq, state, 0)
        self.scheduler.add(seq)
        self._requests[request_id] = request

    def abort(self, request_id: str) -> None:
        """Forget a request (its client left): its sequences free their blocks now."""
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        for choice in request.choices:
            self._drop(choice)

    def has_unfinished(self) -> bool:
        return bool(self._requests)

    @property
    def stats(self) -> EngineStats:
        s = self.scheduler
        return EngineStats(
            s.num_running, s.num_waiting, s.num_used_blocks, s.num_free_blocks, s.num_preemptions
        )

    # -- the step ------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """Compute one step; the deltas of every choice that produced something."""
        output = self.scheduler.schedule()
        if output.is_empty:
            return []
        sampling = [e.seq for e in output.scheduled if e.samples]
        logits = self.runner.execute(output)
        rows, states, owners = self._sampling_rows(sampling)
        if len(rows) != logits.shape[0]:
            logits = logits[torch.tensor(rows, dtype=torch.long, device=logits.device)]
        samples = self.sampler.sample(logits, states)
        firsts: dict[int, int] = {}
        forked: list[tuple[_Choice, int]] = []
        for owner, sample in zip(owners, samples, strict=True):
            if owner.seq.num_output_tokens or owner.index == 0:
                firsts[owner.seq.seq_id] = sample.token_id
            else:
                forked.append((owner, sample.token_id))
        self.scheduler.update(output, firsts)
        for child, token in forked:
            # The child shares the prompt's blocks of the first choice, then goes its own way.
            self.scheduler.fork(self._request_of[child.seq.seq_id].choices[0].seq, child.seq)
            child.seq.output_token_ids.append(token)
        results = []
        for owner, sample in zip(owners, samples, strict=True):
            delta = self._advance(owner, sample)
            if delta is not None:
                results.append(delta)
        return results

    def _sampling_rows(
        self, sampling: list[Sequence]
    ) -> tuple[list[int], list[SamplingState], list[_Choice]]:
        """One logits row per sampling sequence, and ``n`` - 1 more copies of a request's
        first row when it forks into ``n`` choices at its first token."""
        rows: list[int] = []
        states: list[SamplingState] = []
        owners: list[_Choice] = []
        for row, seq in enumerate(sampling):
            choice = self._by_seq[seq.seq_id]
            rows.append(row)
            states.append(choice.state)
            owners.append(choice)
            request = self._request_of[seq.seq_id]
            if not request.forked and request.params.n > 1:
                request.forked = True
                for index in range(1, request.params.n):
                    child_seq = Sequence(
                        next(self._seq_ids), list(seq.prompt_token_ids), request.params.max_tokens
                    )
                    child = self._track(request, child_seq, choice.state.fork(index), index)
                    rows.append(row)
                    states.append(child.state)
                    owners.append(child)
        return rows, states, owners

    def _track(self, request: _Request, seq: Sequence, state: SamplingState, index: int) -> _Choice:
        detokenizer = IncrementalDetokenizer(self.tokenizer, seq.prompt_token_ids)
        choice = _Choice(seq, state, detokenizer, index)
        request.choices.append(choice)
        self._by_seq[seq.seq_id] = choice
        self._request_of[seq.seq_id] = request
        return choice

    def _advance(self, choice: _Choice, sample: Sample) -> RequestOutput | None:
        request = self._request_of.get(choice.seq.seq_id)
        if request is None:
            return None
        token = sample.token_id
        params = request.params
        choice.state.accept(token)
        ended_by_token = (token in self.eos_token_ids and not params.ignore_eos) or (
            token in params.stop_token_ids
        )
        if not ended_by_token:
            choice.text += choice.detokenizer.push(token)
        finish = "stop" if ended_by_token else None
        if finish is None and params.stop:
            finish = self._cut_at_stop(choice, params.stop)
            if finish is not None:
                ended_by_token = True  # the text ends at the stop string: nothing to flush
        if finish is None and choice.state.finished_by_grammar:
            finish = "stop"
        if finish is None and (
            choice.seq.num_output_tokens >= params.max_tokens
            or choice.seq.num_tokens >= self.max_model_len
        ):
            finish = "length"
        if finish is not None and not ended_by_token:
            choice.text += choice.detokenizer.flush()  # a character left incomplete
        end = len(choice.text) if finish else _safe_end(choice.text, params.stop)
        text = choice.text[choice.sent : end]
        choice.sent = max(choice.sent, end)
        result = RequestOutput(
            request.request_id,
            choice.index,
            text,
            [token],
            [self._logprob(sample)] if params.logprobs else None,
            finish,
            request.prompt_tokens,
            choice.seq.num_output_tokens,
        )
        if finish is not None:
            choice.finish_reason = finish
            self._drop(choice)
            if all(c.finish_reason is not None for c in request.choices) and (
                request.forked or params.n == 1
            ):
                self._requests.pop(request.request_id, None)
        return result

    def _cut_at_stop(self, choice: _Choice, stops: tuple[str, ...]) -> str | None:
        # Only the new text (plus a stop's length back) can hold a stop string's first match.
        window = max(len(s) for s in stops) + 8
        start = max(0, choice.sent - window)
        hits = [i for s in stops if (i := choice.text.find(s, start)) >= 0]
        if not hits:
            return None
        choice.text = choice.text[: min(hits)]
        return "stop"

    def _logprob(self, sample: Sample) -> TokenLogprob:
        def described(token_id: int, logprob: float) -> tuple[str, float, list[int]]:
            text = str(self.tokenizer.decode([token_id]))
            return text, logprob, list(text.encode())

        token, logprob, raw = described(sample.token_id, sample.logprob or 0.0)
        return TokenLogprob(
            token, logprob, raw, [described(t, lp) for t, lp in sample.top_logprobs]
        )

    def _drop(self, choice: _Choice) -> None:
        self.scheduler.finish(choice.seq.seq_id)
        self._by_seq.pop(choice.seq.seq_id, None)
        self._request_of.pop(choice.seq.seq_id, None)


def _safe_end(text: str, stops: tuple[str, ...]) -> int:
    """How much of ``text`` can be handed out: all but a tail that may begin a stop string."""
    for keep in range(min(len(text), max((len(s) for s in stops), default=1) - 1), 0, -1):
        tail = text[-keep:]
        if any(s.startswith(tail) for s in stops):
            return len(text) - keep
    return len(text)


def _wants_grammar(params: SamplingParams) -> bool:
    return params.json_object or params.json_schema is not None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" or _cpu_has_bf16() else torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"unknown dtype {name!r}; dtypes are {', '.join(dtypes)}")
    return dtypes[name]


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
