"""Structured output (JSON mode, JSON Schema) as token masks, with xgrammar.

We use xgrammar rather than outlines or lm-format-enforcer because it precomputes most of each
grammar's token masks at compile time in C++ and fills a batch's bitmask in microseconds, on CPU
and CUDA alike; vLLM and SGLang use it as their default structured-output backend.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr

from modelbay.llm.params import InvalidParameter, SamplingParams

# OpenAI's json_object mode promises an object; xgrammar's built-in JSON grammar also accepts a
# top-level array, so JSON mode is the schema "any object" without strict mode's closed objects.
_ANY_OBJECT_SCHEMA = '{"type": "object"}'


class Grammars:
    """Compiles response formats for one tokenizer and hands out a matcher per sequence."""

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        *,
        stop_token_ids: Sequence[int] | None = None,
        cache_size: int = 32,
    ) -> None:
        """`tokenizer`: a transformers tokenizer (or a ready xgrammar TokenizerInfo);
        `vocab_size`: the model's, the width of its logits."""
        if isinstance(tokenizer, xgr.TokenizerInfo):
            info = tokenizer
        else:
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer,
                vocab_size=vocab_size,
                stop_token_ids=None if stop_token_ids is None else list(stop_token_ids),
            )
        if info.vocab_size != vocab_size:
            raise ValueError(f"the tokenizer info has {info.vocab_size} tokens, not {vocab_size}")
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        self._cache: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._cache_size = cache_size

    def compile(self, params: SamplingParams) -> xgr.CompiledGrammar | None:
        """The compiled grammar of the request's response format, or None when it has none."""
        if params.json_schema is not None:
            return self._cached(params.json_schema, strict_mode=True)
        if params.json_object:
            return self._cached(_ANY_OBJECT_SCHEMA, strict_mode=False)
        return None

    def matcher(self, params: SamplingParams) -> xgr.GrammarMatcher | None:
        """A fresh matcher for one sequence, or None when the request has no response format."""
        compiled = self.compile(params)
        return None if compiled is None else xgr.GrammarMatcher(compiled)

    def _cached(self, schema: str, *, strict_mode: bool) -> xgr.CompiledGrammar:
        key = f"{strict_mode}:{schema}"
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
            return compiled
        try:
            # Compact separators: free whitespace lets small models loop on spaces and newlines.
            compiled = self._compiler.compile_json_schema(
                schema, any_whitespace=False, strict_mode=strict_mode
            )
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise InvalidParameter(
                "response_format", f"the JSON schema cannot be used for generation: {reason}"
            ) from exc
        self._cache[key] = compiled
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled


def apply_grammar_masks(
    logits: torch.Tensor, matchers: Sequence[tuple[int, xgr.GrammarMatcher]]
) -> None:
    """Set to -inf, in place, each logit its row's grammar forbids (`matchers`: row, matcher)."""
    num_rows, vocab_size = logits.shape  # [N, V]
    bitmask = xgr.allocate_token_bitmask(num_rows, vocab_size)  # [N, ceil(V / 32)] on CPU
    rows = [row for row, matcher in matchers if matcher.fill_next_token_bitmask(bitmask, row)]
    if not rows:
        return
    bitmask = bitmask.to(logits.device, non_blocking=True)
    xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=vocab_size, indices=rows)
