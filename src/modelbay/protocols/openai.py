"""The OpenAI API as pure codecs: request bodies -> engine requests, engine events ->
responses and stream chunks, errors -> OpenAI's nested error body. No web framework here.

An engine request is a plain dict a replica turns into tokens (``runtimes.llm``):
``{"kind": "chat", "messages", "tools"}`` or ``{"kind": "completion", "prompt"}``, with
``"params"`` holding ``SamplingParams`` fields.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from modelbay.errors import InvalidRequest
from modelbay.llm.chat import ToolCall, parse_tool_calls
from modelbay.llm.params import InvalidParameter, SamplingParams
from modelbay.protocols.openai_types import (
    ChatCompletionRequest,
    CompletionRequest,
    NamedToolChoice,
    _Sampling,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


def error_body(status: int, message: str, param: str | None, code: str | None) -> dict[str, Any]:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
    if code is None:
        code = {404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)
    kind = _ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parse_model(model: str) -> tuple[str, str | int | None]:
    """``name``, ``name:version`` or ``name@alias`` as (name, reference)."""
    if "@" in model:
        name, alias = model.split("@", 1)
        return name, alias or None
    name, sep, version = model.partition(":")
    if sep and version.isdigit():
        return name, int(version)
    if sep:
        raise InvalidRequest(
            f"model '{model}': after ':' comes a version number; use name@alias for an alias",
            param="model",
        )
    return name, None


def _params(body: _Sampling, max_tokens: int | None) -> dict[str, Any]:
    if body.logit_bias:
        raise InvalidRequest("logit_bias is not supported by this server", param="logit_bias")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    given = {
        "max_tokens": max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "repetition_penalty": body.repetition_penalty,
        "seed": body.seed,
        "n": body.n,
        "ignore_eos": body.ignore_eos,
        "stop": stop,
        "stop_token_ids": body.stop_token_ids,
    }
    return {k: v for k, v in given.items() if v is not None}


def check_params(params: dict[str, Any]) -> None:
    """Refuse parameters out of range here, before a replica is asked (400 naming one)."""
    values = dict(params)
    values.setdefault("max_tokens", 1)
    for key in ("stop", "stop_token_ids"):
        if key in values:
            values[key] = tuple(values[key])
    try:
        SamplingParams(**values).validate()
    except InvalidParameter as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


def chat_request(body: ChatCompletionRequest) -> dict[str, Any]:
    """The engine request of a chat completion."""
    params = _params(body, body.max_completion_tokens or body.max_tokens)
    if body.logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = body.top_logprobs or 0
    elif body.top_logprobs:
        raise InvalidRequest("top_logprobs requires logprobs: true", param="top_logprobs")
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice or ("auto" if tools else "none")
    if choice != "none" and not tools:
        raise InvalidRequest("tool_choice needs tools", param="tool_choice")
    schema = _tool_schema(body, choice) if tools and choice != "none" else None
    if schema is None and body.response_format is not None:
        fmt = body.response_format
        if fmt.type == "json_object":
            params["json_object"] = True
        elif fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise InvalidRequest(
                    "response_format json_schema needs json_schema.schema",
                    param="response_format",
                )
            params["json_schema"] = json.dumps(fmt.json_schema.schema_)
    elif schema is not None:
        params["json_schema"] = json.dumps(schema)
    check_params(params)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    return {
        "kind": "chat",
        "messages": messages,
        "tools": tools if choice != "none" and tools else None,
        "params": params,
    }


def _tool_schema(body: ChatCompletionRequest, choice: Any) -> dict[str, Any] | None:
    """``required`` or a named tool: the answer is constrained to a call of it."""
    tools = body.tools or []
    if isinstance(choice, NamedToolChoice):
        chosen = [t for t in tools if t.function.name == choice.function.name]
        if not chosen:
            names = ", ".join(t.function.name for t in tools)
            raise InvalidRequest(
                f"tool_choice names '{choice.function.name}', which is not among the tools "
                f"({names})",
                param="tool_choice",
            )
        tools = chosen
    elif choice != "required":
        return None
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def completion_requests(body: CompletionRequest) -> list[dict[str, Any]]:
    """One engine request per prompt (a list of prompts gives choices for each)."""
    if body.suffix:
        raise InvalidRequest("suffix is not supported by this server", param="suffix")
    if body.best_of not in (None, 1, body.n):
        raise InvalidRequest("best_of other than n is not supported", param="best_of")
    params = _params(body, body.max_tokens or 16)
    if body.logprobs is not None:
        params["logprobs"] = True
        params["top_logprobs"] = body.logprobs
    check_params(params)
    prompts: list[str | list[int]] = []
    raw: Any = body.prompt
    if isinstance(raw, str):
        prompts = [raw]
    elif raw and all(isinstance(p, int) for p in raw):
        prompts = [[int(t) for t in raw]]
    else:
        prompts = list(raw)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InvalidRequest("prompt is empty", param="prompt")
    return [{"kind": "completion", "prompt": p, "params": params} for p in prompts]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass
class ChoiceState:
    """One choice as it accumulates: text, logprobs, finish reason, tokens."""

    text: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    tokens: int = 0


@dataclass
class Collected:
    """A whole request's choices from its events (for answers that are not streamed)."""

    prompt_tokens: int = 0
    choices: dict[int, ChoiceState] = field(default_factory=dict)

    def add(self, data: dict[str, Any]) -> None:
        self.prompt_tokens = data.get("prompt_tokens", self.prompt_tokens)
        for part in data["choices"]:
            state = self.choices.setdefault(part["index"], ChoiceState())
            state.text += part["text"]
            state.logprobs.extend(part.get("logprobs") or [])
            state.finish_reason = part["finish_reason"] or state.finish_reason
        for index, tokens in data.get("completion_tokens", {}).items():
            self.choices.setdefault(int(index), ChoiceState()).tokens = tokens

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices.values())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def tool_names(request: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools") or []}


def message_of(state: ChoiceState, names: set[str]) -> tuple[dict[str, Any], str | None]:
    """The assistant message of a finished choice, tool calls parsed out when tools were
    offered; and its finish reason (``tool_calls`` when it called some)."""
    content, calls = parse_tool_calls(state.text, names) if names else (state.text, [])
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [_tool_call(c) for c in calls]
        return message, "tool_calls"
    message["content"] = content
    return message, state.finish_reason


def _tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        out["index"] = index
    return out


def chat_response(
    rid: str, model: str, created: int, collected: Collected, names: set[str]
) -> dict[str, Any]:
    choices = []
    for index in sorted(collected.choices):
        state = collected.choices[index]
        message, reason = message_of(state, names)
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": {"content": state.logprobs} if state.logprobs else None,
                "finish_reason": reason,
            }
        )
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(collected.prompt_tokens, collected.completion_tokens),
    }


def chat_chunk(
    rid: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_value: dict[str, int] | None = None,
    *,
    with_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; with ``with_usage`` it carries ``usage`` (null but in
    the last one, as OpenAI streams do with ``include_usage``)."""
    return _body("chat.completion.chunk", rid, model, created, choices, usage_value, with_usage)


def _body(
    kind: str,
    rid: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_value: dict[str, int] | None,
    with_usage: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "object": kind,
        "created": created,
        "model": model,
        "choices": choices,
    }
    if with_usage:
        body["usage"] = usage_value
    return body


def chat_delta(
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "delta": delta,
        "logprobs": {"content": logprobs} if logprobs else None,
        "finish_reason": finish_reason,
    }


def tool_call_delta_of(message: dict[str, Any]) -> dict[str, Any]:
    """A stream delta with the tool calls of a finished message (indexed, as chunks say)."""
    return {"tool_calls": [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]}


def completion_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """The completions API's older logprobs layout (parallel lists)."""
    offsets = []
    position = offset
    for entry in entries:
        offsets.append(position)
        position += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


def completion_choice(
    index: int, text: str, reason: str | None, logprobs: dict[str, Any] | None
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}


def completion_body(
    rid: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_value: dict[str, int] | None,
    *,
    with_usage: bool = True,
) -> dict[str, Any]:
    return _body("text_completion", rid, model, created, choices, usage_value, with_usage)


def now() -> int:
    return int(time.time())
