"""The engine end to end on the real SmolLM2-135M (float32, CPU): continuous batching does
not change what a sequence generates, preemption recomputes it exactly, ``n`` choices
share a prompt, and stop strings, stop tokens and max_tokens end sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbay.llm.engine import EngineConfig, LLMEngine, RequestOutput
from modelbay.llm.params import InvalidParameter, SamplingParams

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colours are",
]


@pytest.fixture(scope="module")
def engine(smollm2: Path) -> LLMEngine:
    return LLMEngine.load(
        smollm2, EngineConfig(dtype="float32", kv_cache_bytes=64 << 20, max_num_seqs=8, threads=2)
    )


def _ids(engine: LLMEngine, prompt: str) -> list[int]:
    return list(engine.tokenizer.encode(prompt, add_special_tokens=True))


def _run(engine: LLMEngine) -> dict[str, list[RequestOutput]]:
    outputs: dict[str, list[RequestOutput]] = {}
    steps = 0
    while engine.has_unfinished():
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
        steps += 1
        assert steps < 10_000
    return outputs


def _tokens(outputs: list[RequestOutput], index: int = 0) -> list[int]:
    return [t for o in outputs if o.index == index for t in o.token_ids]


def _greedy(n: int, **kwargs: object) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kwargs)  # type: ignore[arg-type]


def test_batching_does_not_change_a_sequences_tokens(engine: LLMEngine) -> None:
    alone = {}
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(f"alone{i}", _ids(engine, prompt), _greedy(24))
        alone[i] = _tokens(_run(engine)[f"alone{i}"])
    # Now together, joining at different steps, with different lengths (others leave).
    engine.add_request("t0", _ids(engine, PROMPTS[0]), _greedy(24))
    engine.add_request("t1", _ids(engine, PROMPTS[1]), _greedy(8))
    outputs: dict[str, list[RequestOutput]] = {}
    for step in range(200):
        if step == 3:
            engine.add_request("t2", _ids(engine, PROMPTS[2]), _greedy(24))
        if step == 6:
            engine.add_request("t3", _ids(engine, PROMPTS[3]), _greedy(24))
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
        if step > 6 and not engine.has_unfinished():
            break
    assert _tokens(outputs["t0"]) == alone[0]
    assert _tokens(outputs["t1"]) == alone[1][:8]
    assert _tokens(outputs["t2"]) == alone[2]
    assert _tokens(outputs["t3"]) == alone[3]


def test_preempted_sequences_are_recomputed_exactly(smollm2: Path) -> None:
    roomy = LLMEngine.load(smollm2, EngineConfig(dtype="float32", kv_cache_bytes=32 << 20))
    # 12 blocks of 16 tokens: four sequences of ~60 tokens cannot all stay.
    tight = LLMEngine.load(
        smollm2,
        EngineConfig(
            dtype="float32", kv_cache_bytes=12 * 16 * 2 * 30 * 3 * 64 * 4, max_model_len=96
        ),
    )
    assert tight.scheduler.block_manager.num_blocks == 12
    expected = {}
    for i, prompt in enumerate(PROMPTS):
        roomy.add_request(str(i), _ids(roomy, prompt), _greedy(48))
    for rid, outs in _run(roomy).items():
        expected[rid] = _tokens(outs)
    for i, prompt in enumerate(PROMPTS):
        tight.add_request(str(i), _ids(tight, prompt), _greedy(48))
    got = {rid: _tokens(outs) for rid, outs in _run(tight).items()}
    assert tight.stats.preemptions > 0
    assert got == expected
    assert tight.stats.blocks_used == 0


def test_n_choices_share_the_prompt_and_differ(engine: LLMEngine) -> None:
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=3, n=3, ignore_eos=True)
    engine.add_request("n3", _ids(engine, PROMPTS[2]), params)
    outputs = _run(engine)["n3"]
    choices = [_tokens(outputs, i) for i in range(3)]
    assert all(len(c) == 12 for c in choices)
    assert len({tuple(c) for c in choices}) > 1
    # Seeded: the same request gives the same choices.
    engine.add_request("again", _ids(engine, PROMPTS[2]), params)
    again = _run(engine)["again"]
    assert [_tokens(again, i) for i in range(3)] == choices
    assert engine.stats.blocks_used == 0


def test_stop_strings_tokens_and_max_tokens_end_sequences(engine: LLMEngine) -> None:
    prompt = _ids(engine, "Count: 1, 2, 3, 4,")
    engine.add_request("free", prompt, _greedy(16))
    free = "".join(o.text for o in _run(engine)["free"])
    stop = free.strip()[:3]
    assert stop
    engine.add_request("stopped", prompt, _greedy(16, stop=(stop,)))
    outs = _run(engine)["stopped"]
    text = "".join(o.text for o in outs)
    assert stop not in text
    assert free.startswith(text)
    assert outs[-1].finish_reason == "stop"
    first_token = _tokens(_run_one(engine, prompt, _greedy(4)))[0]
    ended = _run_one(engine, prompt, _greedy(16, stop_token_ids=(first_token,)))
    assert ended[-1].finish_reason == "stop"
    assert "".join(o.text for o in ended) == ""
    capped = _run_one(engine, prompt, _greedy(5))
    assert capped[-1].finish_reason == "length"
    assert capped[-1].completion_tokens == 5


def _run_one(engine: LLMEngine, prompt: list[int], params: SamplingParams) -> list[RequestOutput]:
    engine.add_request("one", prompt, params)
    return _run(engine)["one"]


def test_abort_frees_blocks_and_bad_requests_are_refused(engine: LLMEngine) -> None:
    engine.add_request("gone", _ids(engine, PROMPTS[0]), _greedy(100))
    engine.step()
    assert engine.stats.blocks_used > 0
    engine.abort("gone")
    assert engine.stats.blocks_used == 0
    assert not engine.has_unfinished()
    with pytest.raises(InvalidParameter) as too_long:
        engine.add_request("long", [1] * 10, _greedy(engine.max_model_len))
    assert too_long.value.param == "max_tokens"
    with pytest.raises(InvalidParameter) as bad:
        engine.add_request("bad", [1, 2], SamplingParams(temperature=5.0))
    assert bad.value.param == "temperature"
