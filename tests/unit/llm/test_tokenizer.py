"""The GGUF's tokenizer, and streaming detokenization that never splits a character."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbay.llm.tokenizer import IncrementalDetokenizer, Tokenizer, load_tokenizer

TEXTS = (
    "Hello 世界! 🙂🎉 naïve café — 日本語のテキスト",
    "👩‍👩‍👧 family, 🇫🇷 flag, and   three spaces",
    "数学: ∑ x² = 1; emoji at the end 🤖",
)


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer: Tokenizer) -> Tokenizer:
    return smollm2_tokenizer


def test_gguf_tokenizer_round_trips_text_and_carries_the_chat_template(
    tokenizer: Tokenizer,
) -> None:
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(prompt, str)
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("text", TEXTS)
def test_pushed_pieces_concatenate_to_the_full_decode(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.push(token_id) for token_id in ids]
    assert "".join(pieces) + detokenizer.flush() == tokenizer.decode(ids) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert "" in pieces  # some tokens end mid-character and were held back


def test_first_output_token_keeps_its_leading_space_after_the_prompt(tokenizer: Tokenizer) -> None:
    prompt = tokenizer.encode("The capital of France is")
    output = tokenizer.encode(" Paris, of course 🥐.")
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    text = "".join(detokenizer.push(token_id) for token_id in output)
    assert text == " Paris, of course 🥐."


def test_flush_returns_an_unfinished_character_as_a_replacement(tokenizer: Tokenizer) -> None:
    detokenizer = IncrementalDetokenizer(tokenizer)
    first_byte_of_emoji = tokenizer.encode("🤖")[0]
    assert detokenizer.push(first_byte_of_emoji) == ""
    assert detokenizer.flush() == "\ufffd"


def test_special_tokens_are_skipped_in_streamed_text(tokenizer: Tokenizer) -> None:
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.push(t) for t in [*tokenizer.encode("Done."), tokenizer.eos_token_id]]
    assert "".join(pieces) == "Done."


def test_a_saved_tokenizer_directory_loads_the_same_tokenizer(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    for text in TEXTS:
        assert reloaded.encode(text) == tokenizer.encode(text)
