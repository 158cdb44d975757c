from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
import torch

from modelbay.llm.params import InvalidParameter, SamplingParams
from modelbay.llm.sampler import Sampler, SamplingState, apply_penalties

CPU = torch.device("cpu")


def make_state(params: SamplingParams, prompt: Sequence[int] = ()) -> SamplingState:
    return SamplingState.create(params, None, prompt)


def draw(logits: list[float], params: SamplingParams, n: int, seed: int = 0) -> Counter[int]:
    """Sample `n` tokens from the same logits row, as one batch of n rows."""
    sampler = Sampler(len(logits), CPU, seed=seed)
    state = make_state(params)
    batch = torch.tensor([logits]).expand(n, -1)
    return Counter(s.token_id for s in sampler.sample(batch, [state] * n))


def test_greedy_picks_the_argmax_of_each_row() -> None:
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(1))
    state = make_state(SamplingParams(temperature=0.0))
    samples = Sampler(1000, CPU, seed=0).sample(logits, [state] * 6)
    assert [s.token_id for s in samples] == logits.argmax(dim=-1).tolist()


def test_greedy_rows_stay_greedy_in_a_batch_that_samples() -> None:
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(2))
    greedy = make_state(SamplingParams(temperature=0.0))
    hot = make_state(SamplingParams(temperature=2.0))
    samples = Sampler(500, CPU, seed=0).sample(logits, [hot, greedy, hot, greedy])
    argmax = logits.argmax(dim=-1).tolist()
    assert [samples[1].token_id, samples[3].token_id] == [argmax[1], argmax[3]]


def test_sampling_frequencies_follow_the_softmax_of_logits_over_temperature() -> None:
    logits = [1.0, 0.0, -1.0, 0.5]
    for temperature in (1.0, 0.5):
        counts = draw(logits, SamplingParams(temperature=temperature), 40_000)
        expected = torch.softmax(torch.tensor(logits) / temperature, dim=-1).tolist()
        for token, p in enumerate(expected):
            assert counts[token] / 40_000 == pytest.approx(p, abs=0.01)


def test_top_k_samples_only_the_k_most_likely_tokens() -> None:
    logits = [0.3, 2.0, -1.0, 1.5, 0.9, 1.2]
    counts = draw(logits, SamplingParams(top_k=3), 5_000)
    assert set(counts) == {1, 3, 5}


@pytest.mark.parametrize(("top_p", "support"), [(0.45, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2})])
def test_top_p_samples_the_smallest_set_of_likely_tokens_reaching_the_mass(
    top_p: float, support: set[int]
) -> None:
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()
    assert set(draw(logits, SamplingParams(top_p=top_p), 5_000)) == support


@pytest.mark.parametrize(("top_p", "support"), [(0.55, {0}), (0.6, {0, 1})])
def test_top_p_applies_to_the_top_k_survivors_renormalised(top_p: float, support: set[int]) -> None:
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log().tolist()
    # Top-2 renormalised is [4/7, 3/7]: token 0 alone holds 0.57 of the mass (not 0.4).
    assert set(draw(logits, SamplingParams(top_k=2, top_p=top_p), 5_000)) == support


@pytest.mark.parametrize(("min_p", "support"), [(0.2, {0, 1, 2}), (0.5, {0, 1}), (0.9, {0})])
def test_min_p_drops_tokens_below_the_fraction_of_the_top_probability(
    min_p: float, support: set[int]
) -> None:
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()
    assert set(draw(logits, SamplingParams(min_p=min_p), 5_000)) == support


def test_rows_without_filters_keep_the_full_support_next_to_filtered_rows() -> None:
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1]]).log().expand(4000, -1)
    free = make_state(SamplingParams())
    narrow = make_state(SamplingParams(top_k=1, top_p=0.5, min_p=0.9))
    samples = Sampler(4, CPU, seed=0).sample(logits, [free, narrow] * 2000)
    assert {s.token_id for s in samples[0::2]} == {0, 1, 2, 3}
    assert {s.token_id for s in samples[1::2]} == {0}


def run_steps(
    sampler: Sampler, logits: list[torch.Tensor], states: list[SamplingState]
) -> list[list[int]]:
    tokens = []
    for step_logits in logits:
        samples = sampler.sample(step_logits, states)
        for state, sample in zip(states, samples, strict=True):
            state.accept(sample.token_id)
        tokens.append([s.token_id for s in samples])
    return tokens


def test_seeded_row_draws_the_same_tokens_whatever_the_rest_of_the_batch() -> None:
    vocab = 8192
    gen = torch.Generator().manual_seed(3)
    row = [torch.randn(1, vocab, generator=gen) for _ in range(5)]
    others = [torch.randn(3, vocab, generator=gen) for _ in range(5)]
    seeded = SamplingParams(seed=1234, top_p=0.95, presence_penalty=0.5)

    alone = run_steps(Sampler(vocab, CPU, seed=0), row, [make_state(seeded)])
    mixed_states = [
        make_state(SamplingParams(temperature=0.7)),
        make_state(SamplingParams(seed=99, top_k=40)),
        make_state(seeded),
        make_state(SamplingParams(temperature=0.0)),
    ]
    mixed_logits = [torch.cat([o[:2], r, o[2:]]) for r, o in zip(row, others, strict=True)]
    mixed = run_steps(Sampler(vocab, CPU, seed=7), mixed_logits, mixed_states)
    assert [step[2] for step in mixed] == [step[0] for step in alone]


def test_seeded_request_reproduces_its_tokens_and_another_seed_differs() -> None:
    vocab = 5000
    gen = torch.Generator().manual_seed(4)
    steps = [torch.randn(1, vocab, generator=gen) for _ in range(8)]

    def tokens(seed: int, sampler_seed: int) -> list[int]:
        state = make_state(SamplingParams(seed=seed))
        return [t[0] for t in run_steps(Sampler(vocab, CPU, seed=sampler_seed), steps, [state])]

    assert tokens(5, sampler_seed=0) == tokens(5, sampler_seed=1)
    assert tokens(5, sampler_seed=0) != tokens(6, sampler_seed=0)


def test_forked_child_samples_as_a_fresh_request_with_seed_plus_index() -> None:
    vocab = 5000
    step = torch.randn(1, vocab, generator=torch.Generator().manual_seed(5))
    parent = make_state(SamplingParams(seed=10))
    child = parent.fork(2)
    fresh = make_state(SamplingParams(seed=12))
    sampler = Sampler(vocab, CPU, seed=0)
    draws = [sampler.sample(step, [s])[0].token_id for s in (child, fresh)]
    assert draws[0] == draws[1]
    assert child.generator is not parent.generator


def test_forked_child_inherits_the_parents_history_and_then_keeps_its_own() -> None:
    logits = torch.tensor([[3.0, 2.9, 2.5, 0.0]])
    sampler = Sampler(4, CPU, seed=0)
    parent = make_state(SamplingParams(temperature=0.0, frequency_penalty=0.2))
    parent.accept(sampler.sample(logits, [parent])[0].token_id)  # 0
    child = parent.fork(1)
    child.accept(1)
    # The parent saw token 0 (2.8 < 2.9); the child saw 0 and 1 (2.8 > 2.7).
    assert [s.token_id for s in sampler.sample(logits.expand(2, -1), [parent, child])] == [1, 0]
    assert parent.output_token_ids == [0]
    assert child.output_token_ids == [0, 1]


def test_presence_and_frequency_penalties_subtract_as_openai_defines() -> None:
    logits = torch.tensor([[1.0, -1.0, 2.0, 0.5]])
    counts = torch.tensor([[2, 1, 0, 0]], dtype=torch.int32)
    out = apply_penalties(
        logits,
        counts,
        torch.zeros(1, 4, dtype=torch.bool),
        presence=torch.tensor([0.25]),
        frequency=torch.tensor([0.5]),
        repetition=torch.tensor([1.0]),
    )
    # 1 - 2 * 0.5 - 0.25, -1 - 1 * 0.5 - 0.25; unseen tokens unchanged.
    assert out.tolist() == [[-0.25, -1.75, 2.0, 0.5]]


def test_repetition_penalty_shrinks_positive_and_grows_negative_logits_of_seen_tokens() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    counts = torch.tensor([[0, 1, 0, 0]], dtype=torch.int32)
    in_prompt = torch.tensor([[True, False, False, False]])
    zero = torch.tensor([0.0])
    out = apply_penalties(
        logits, counts, in_prompt, presence=zero, frequency=zero, repetition=torch.tensor([2.0])
    )
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]


def test_sampler_penalises_the_tokens_a_state_accepted_and_its_prompt() -> None:
    logits = torch.tensor([[3.0, 2.9, 2.8, 0.0]])
    sampler = Sampler(4, CPU, seed=0)
    greedy = SamplingParams(temperature=0.0, frequency_penalty=0.2)
    state = make_state(greedy)
    assert sampler.sample(logits, [state])[0].token_id == 0
    state.accept(0)  # 3.0 - 0.2 < 2.9
    assert sampler.sample(logits, [state])[0].token_id == 1
    prompted = make_state(SamplingParams(temperature=0.0, repetition_penalty=1.1), [0, 1])
    assert sampler.sample(logits, [prompted])[0].token_id == 2


def test_logprobs_are_the_log_softmax_of_the_raw_logits() -> None:
    vocab = 300
    logits = torch.randn(3, vocab, generator=torch.Generator().manual_seed(6)) * 2
    states = [
        make_state(SamplingParams(temperature=0.3, logprobs=True, top_logprobs=5)),
        make_state(SamplingParams()),
        make_state(SamplingParams(presence_penalty=2.0, logprobs=True)),
    ]
    states[0].accept(int(logits[0].argmax()))
    states[2].accept(int(logits[2].argmax()))
    samples = Sampler(vocab, CPU, seed=0).sample(logits, states)
    expected = torch.log_softmax(logits, dim=-1)
    first, plain, last = samples
    assert first.logprob == pytest.approx(expected[0, first.token_id].item(), abs=1e-5)
    values, ids = expected[0].topk(5)
    assert [i for i, _ in first.top_logprobs] == ids.tolist()
    assert [v for _, v in first.top_logprobs] == pytest.approx(values.tolist(), abs=1e-5)
    assert plain.logprob is None
    assert plain.top_logprobs == []
    assert last.logprob == pytest.approx(expected[2, last.token_id].item(), abs=1e-5)
    assert last.top_logprobs == []


def test_sample_leaves_the_callers_logits_untouched() -> None:
    logits = torch.randn(2, 100, generator=torch.Generator().manual_seed(8))
    before = logits.clone()
    state = make_state(SamplingParams(top_k=5, repetition_penalty=1.5), [1, 2, 3])
    Sampler(100, CPU, seed=0).sample(logits, [state, state])
    assert torch.equal(logits, before)


def test_logits_of_the_wrong_shape_are_refused() -> None:
    state = make_state(SamplingParams())
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        Sampler(10, CPU).sample(torch.zeros(1, 11), [state])


def test_default_and_boundary_params_are_valid() -> None:
    SamplingParams().validate()
    SamplingParams(
        temperature=2.0,
        top_p=1e-9,
        top_k=-1,
        min_p=1.0,
        presence_penalty=-2.0,
        frequency_penalty=2.0,
        repetition_penalty=1e-3,
        seed=-(2**63),
        n=16,
        logprobs=True,
        top_logprobs=20,
        stop=("a", "b", "c", "d"),
        json_schema='{"type": "object"}',
    ).validate()
    SamplingParams(seed=2**63 - 1, json_object=True).validate()


@pytest.mark.parametrize(
    ("fields", "param", "hint"),
    [
        ({"temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"temperature": float("nan")}, "temperature", "between 0 and 2"),
        ({"top_p": 0.0}, "top_p", "(0, 1]"),
        ({"top_p": 1.5}, "top_p", "(0, 1]"),
        ({"top_k": -2}, "top_k", ">= -1"),
        ({"min_p": 1.1}, "min_p", "between 0 and 1"),
        ({"presence_penalty": -2.1}, "presence_penalty", "between -2 and 2"),
        ({"frequency_penalty": 3}, "frequency_penalty", "between -2 and 2"),
        ({"repetition_penalty": 0.0}, "repetition_penalty", "> 0"),
        ({"max_tokens": 0}, "max_tokens", ">= 1"),
        ({"n": 17}, "n", "at most 16"),
        ({"n": 1.5}, "n", "integer"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "between 0 and 20"),
        ({"top_logprobs": 2}, "top_logprobs", "requires logprobs"),
        ({"seed": 2**63}, "seed", "between"),
        ({"stop": ("a", "b", "c", "d", "e")}, "stop", "at most 4"),
        ({"stop": ("",)}, "stop", "non-empty"),
        ({"stop_token_ids": (-1,)}, "stop_token_ids", ">= 0"),
        ({"json_schema": "{nope"}, "json_schema", "not valid JSON"),
        ({"json_schema": "[1]"}, "json_schema", "JSON object"),
        ({"json_schema": "{}", "json_object": True}, "json_schema", "exclusive"),
    ],
)
def test_validate_names_the_bad_field_and_its_valid_range(
    fields: dict[str, object], param: str, hint: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        SamplingParams(**fields).validate()  # type: ignore[arg-type]
    assert caught.value.param == param
    assert param in caught.value.message
    assert hint in caught.value.message
