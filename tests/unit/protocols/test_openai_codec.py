"""The OpenAI codec without a server: bodies to engine requests, events to answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelbay.errors import InvalidRequest
from modelbay.protocols import openai as oai
from modelbay.protocols.openai_types import ChatCompletionRequest, CompletionRequest


def _chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize(
    ("model", "parsed"),
    [("smol", ("smol", None)), ("smol:3", ("smol", 3)), ("smol@prod", ("smol", "prod"))],
)
def test_model_references(model: str, parsed: tuple[str, Any]) -> None:
    assert oai.parse_model(model) == parsed


def test_a_colon_without_a_version_number_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        oai.parse_model("smol:prod")
    assert refused.value.param == "model"
    assert "@" in refused.value.message


def test_chat_request_carries_sampling_parameters() -> None:
    request = oai.chat_request(
        _chat(
            temperature=0.2,
            max_completion_tokens=9,
            max_tokens=99,
            stop="END",
            seed=5,
            n=2,
            logprobs=True,
            top_logprobs=2,
        )
    )
    assert request["kind"] == "chat"
    assert request["params"] == {
        "max_tokens": 9,  # max_completion_tokens wins over the older max_tokens
        "temperature": 0.2,
        "seed": 5,
        "n": 2,
        "stop": ["END"],
        "logprobs": True,
        "top_logprobs": 2,
    }
    assert request["tools"] is None


def test_response_formats_become_grammars() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert json.loads(oai.chat_request(_chat(response_format=fmt))["params"]["json_schema"]) == (
        schema
    )
    assert oai.chat_request(_chat(response_format={"type": "json_object"}))["params"]["json_object"]
    with pytest.raises(InvalidRequest) as missing:
        oai.chat_request(_chat(response_format={"type": "json_schema"}))
    assert missing.value.param == "response_format"


def test_a_named_tool_choice_constrains_the_answer_to_a_call() -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
    }
    request = oai.chat_request(
        _chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "f"}})
    )
    schema = json.loads(request["params"]["json_schema"])
    assert schema["properties"]["name"] == {"const": "f"}
    assert request["tools"][0]["function"]["name"] == "f"
    with pytest.raises(InvalidRequest) as unknown:
        oai.chat_request(
            _chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "g"}})
        )
    assert unknown.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"1": 2.0}}, "logit_bias"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_parameters_name_their_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        oai.chat_request(_chat(**fields))
    assert refused.value.param == param


def test_completion_prompts_fan_out() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"], "logprobs": 2})
    requests = oai.completion_requests(body)
    assert [r["prompt"] for r in requests] == ["a", "b"]
    assert requests[0]["params"]["top_logprobs"] == 2
    tokens = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]})
    assert oai.completion_requests(tokens)[0]["prompt"] == [1, 2, 3]
    with pytest.raises(InvalidRequest):
        oai.completion_requests(CompletionRequest.model_validate({"model": "m", "prompt": ""}))


def test_events_collect_into_a_chat_answer_with_tool_calls() -> None:
    collected = oai.Collected()
    collected.add(
        {
            "choices": [{"index": 0, "text": '{"name": "f", ', "finish_reason": None}],
            "prompt_tokens": 7,
            "completion_tokens": {"0": 3},
        }
    )
    collected.add(
        {
            "choices": [{"index": 0, "text": '"arguments": {"x": 1}}', "finish_reason": "stop"}],
            "completion_tokens": {"0": 9},
        }
    )
    answer = oai.chat_response("id", "m", 0, collected, {"f"})
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}


def test_errors_take_openais_shape() -> None:
    body = oai.error_body(404, "no model 'x'", "model", None)
    assert body == {
        "error": {
            "message": "no model 'x'",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert oai.error_body(429, "slow down", None, None)["error"]["type"] == "rate_limit_error"


def test_completion_logprobs_layout() -> None:
    entries = [
        {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]},
        {"token": "!", "logprob": -0.5, "top_logprobs": [{"token": "!", "logprob": -0.5}]},
    ]
    layout = oai.completion_logprobs(entries, 3)
    assert layout["tokens"] == ["Hi", "!"]
    assert layout["text_offset"] == [3, 5]
    assert layout["top_logprobs"][1] == {"!": -0.5}
