"""The tokenizer, from local files only, and incremental detokenization for streaming."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

Tokenizer = PreTrainedTokenizerFast

# Tokens of the prompt decoded with the first output token, so its leading space is right.
_PROMPT_CONTEXT = 5


def load_tokenizer(path: Path) -> Tokenizer:
    """A fast tokenizer for a .gguf file (built from its vocabulary) or a model directory."""
    if path.suffix == ".gguf" and path.is_file():
        # The class itself, not AutoTokenizer: that one also parses the whole GGUF for a config
        # it does not need here (seconds for a 49k vocabulary).
        tokenizer = PreTrainedTokenizerFast.from_pretrained(
            path.parent, gguf_file=path.name, local_files_only=True
        )
    elif path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    else:
        raise ValueError(f"{path.name}: expected a .gguf file or a Hugging Face model directory")
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError(f"{path.name}: no fast tokenizer (tokenizer.json) could be built")
    return tokenizer


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of text, never splitting a UTF-8 character.

    Each push decodes a short window of recent tokens twice (with and without the new ones) and
    returns the difference: decoders that depend on context (leading spaces, byte fallback) see
    the same context as a full decode would.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_token_ids: Sequence[int] = (),
        *,
        skip_special_tokens: bool = True,
    ) -> None:
        self._backend = tokenizer.backend_tokenizer
        self._skip_special = skip_special_tokens
        self._ids = list(prompt_token_ids[-_PROMPT_CONTEXT:])  # the window, from its start
        self._read = len(self._ids)  # tokens before this are already returned as text

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=self._skip_special)

    def push(self, token_id: int) -> str:
        """The text `token_id` completes; "" while a character is still incomplete."""
        self._ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """Whatever text is still held back (an incomplete character shows as U+FFFD)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        before = self._decode(self._ids[: self._read])
        text = self._decode(self._ids)
        if len(text) <= len(before) or (text.endswith("\ufffd") and not final):
            return ""
        # The tokens just returned become the next window's context.
        del self._ids[: self._read]
        self._read = len(self._ids)
        return text[len(before) :]
