from __future__ import annotations

import json
import re
from typing import Any

import pytest
import torch
import xgrammar as xgr

from modelbay.llm.grammar import Grammars
from modelbay.llm.params import InvalidParameter, SamplingParams
from modelbay.llm.sampler import Sampler, SamplingState

CPU = torch.device("cpu")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VOCAB = 49152

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z ]{1,12}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}

# A raw vocabulary small enough to reason about by hand; token 7 is the stop token.
TINY_VOCAB = ["{", "}", '"', "a", ":", " ", "1", "</s>", "x", '{"', '"}']


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer: Any) -> Any:
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def grammars(tokenizer: Any) -> Grammars:
    return Grammars(tokenizer, VOCAB)


@pytest.fixture(scope="module")
def closing_push(tokenizer: Any) -> torch.Tensor:
    """+1 for tokens holding a closing character, -1 for an opening one (both: 0)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(VOCAB)))
    closes = torch.tensor([any(c in p for c in '"}]') for p in pieces], dtype=torch.float32)
    opens = torch.tensor([any(c in p for c in "{[") for p in pieces], dtype=torch.float32)
    return closes - opens


@pytest.fixture
def tiny() -> Grammars:
    info = xgr.TokenizerInfo(
        TINY_VOCAB, vocab_type=xgr.VocabType.RAW, vocab_size=len(TINY_VOCAB), stop_token_ids=[7]
    )
    return Grammars(info, len(TINY_VOCAB))


def generate(
    grammars: Grammars, params: SamplingParams, seed: int, push: torch.Tensor | None = None
) -> tuple[list[int], SamplingState]:
    """Drive a grammar with random logits until it stops, for at most 200 steps; `push` [V]
    is added with a weight that grows each step."""
    state = SamplingState.create(params, grammars, [1, 2, 3])
    sampler = Sampler(VOCAB, CPU, seed=seed)
    noise = torch.Generator().manual_seed(seed)
    tokens: list[int] = []
    for step in range(200):
        logits = torch.randn(1, VOCAB, generator=noise) * 3
        if push is not None:
            logits += step / 8 * push
        token = sampler.sample(logits, [state])[0].token_id
        state.accept(token)
        tokens.append(token)
        if state.finished_by_grammar:
            break
    return tokens, state


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_json_schema_output_parses_and_follows_the_schema_under_random_logits(
    tokenizer: Any, grammars: Grammars, seed: int
) -> None:
    params = SamplingParams(json_schema=json.dumps(PERSON_SCHEMA))
    tokens, state = generate(grammars, params, seed)
    assert state.finished_by_grammar
    assert tokens[-1] == tokenizer.eos_token_id
    value = json.loads(tokenizer.decode(tokens[:-1]))
    assert isinstance(value, dict)
    assert {"name", "age", "ok"} <= set(value) <= {"name", "age", "tags", "ok"}
    assert re.fullmatch("[a-z ]{1,12}", value["name"])
    assert type(value["age"]) is int
    assert 0 <= value["age"] <= 150
    assert type(value["ok"]) is bool
    assert set(value.get("tags", [])) <= {"a", "b", "c"}
    assert len(value.get("tags", [])) <= 3


@pytest.mark.parametrize("seed", [0, 3])
def test_json_object_output_is_a_json_object_under_random_logits(
    tokenizer: Any, grammars: Grammars, closing_push: torch.Tensor, seed: int
) -> None:
    # Random text inside strings rarely closes them, and random values nest: closing
    # characters get a growing push and opening ones a growing pull.
    tokens, state = generate(grammars, SamplingParams(json_object=True), seed, closing_push)
    assert state.finished_by_grammar
    assert isinstance(json.loads(tokenizer.decode(tokens[:-1])), dict)


def test_grammar_masks_only_its_own_row(tiny: Grammars) -> None:
    states = [
        SamplingState.create(SamplingParams(temperature=0.0, json_object=True), tiny, [0]),
        SamplingState.create(SamplingParams(temperature=0.0), None, [0]),
    ]
    logits = torch.zeros(2, len(TINY_VOCAB))
    logits[:, TINY_VOCAB.index("x")] = 5.0  # the favourite, but never valid JSON
    samples = Sampler(len(TINY_VOCAB), CPU, seed=0).sample(logits, states)
    assert TINY_VOCAB[samples[0].token_id] in ("{", '{"')
    assert TINY_VOCAB[samples[1].token_id] == "x"


def test_grammar_ends_the_sequence_after_its_stop_token(tiny: Grammars) -> None:
    state = SamplingState.create(SamplingParams(json_object=True), tiny, [0])
    for piece in ("{", "}"):
        state.accept(TINY_VOCAB.index(piece))
    assert not state.finished_by_grammar
    sample = Sampler(len(TINY_VOCAB), CPU, seed=0).sample(torch.zeros(1, len(TINY_VOCAB)), [state])
    assert sample[0].token_id == 7  # a complete object allows only the stop token
    state.accept(7)
    assert state.finished_by_grammar


def test_token_the_grammar_rejects_is_a_bug_that_raises(tiny: Grammars) -> None:
    state = SamplingState.create(SamplingParams(json_object=True), tiny, [0])
    with pytest.raises(RuntimeError, match="rejected token 8"):
        state.accept(TINY_VOCAB.index("x"))


def test_forked_states_continue_from_the_parent_grammar_state_independently(
    tiny: Grammars,
) -> None:
    parent = SamplingState.create(SamplingParams(json_object=True), tiny, [0])
    parent.accept(TINY_VOCAB.index("{"))
    child = parent.fork(1)
    child.accept(TINY_VOCAB.index("}"))
    child.accept(7)
    assert child.finished_by_grammar
    assert not parent.finished_by_grammar
    parent.accept(TINY_VOCAB.index('"'))  # the parent is still inside its object


def test_json_object_refuses_a_top_level_array(tiny: Grammars) -> None:
    compiled = tiny.compile(SamplingParams(json_object=True))
    assert compiled is not None
    assert not xgr.GrammarMatcher(compiled).accept_string("[")
    assert xgr.GrammarMatcher(compiled).accept_string('{"a": 1}')


def test_schema_xgrammar_cannot_compile_is_an_invalid_response_format(tiny: Grammars) -> None:
    params = SamplingParams(json_schema='{"type": "martian"}')
    with pytest.raises(InvalidParameter) as caught:
        tiny.compile(params)
    assert caught.value.param == "response_format"
    assert "martian" in caught.value.message


def test_compiled_grammars_are_cached_by_schema_text_least_recently_used_first() -> None:
    info = xgr.TokenizerInfo(TINY_VOCAB, vocab_type=xgr.VocabType.RAW, stop_token_ids=[7])
    grammars = Grammars(info, len(TINY_VOCAB), cache_size=2)
    a, b, c = (SamplingParams(json_schema=json.dumps({"const": v})) for v in "abc")
    first_a, first_b = grammars.compile(a), grammars.compile(b)
    assert grammars.compile(a) is first_a  # a is now the most recently used
    grammars.compile(c)  # evicts b
    assert grammars.compile(a) is first_a
    assert grammars.compile(b) is not first_b


def test_no_response_format_means_no_grammar(tiny: Grammars) -> None:
    assert tiny.compile(SamplingParams()) is None
    assert SamplingState.create(SamplingParams(), tiny, [0]).matcher is None
