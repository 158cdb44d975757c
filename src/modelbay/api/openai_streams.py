"""Streams of the OpenAI API: several prompts' events merged, and events turned into
OpenAI's chunks and server-sent events (``data: {...}``, then ``data: [DONE]``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from modelbay.errors import ModelbayError
from modelbay.protocols import openai as oai

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def merge(
    streams: list[AsyncGenerator[dict[str, Any], None]],
) -> AsyncIterator[dict[str, Any]]:
    """The events of several streams as they come (one prompt each)."""
    if len(streams) == 1:
        async for data in streams[0]:
            yield data
        return
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for data in stream:
                await queue.put(data)
            await queue.put(None)
        except BaseException as exc:
            await queue.put(exc)
            raise

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        for _ in range(len(tasks)):
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def frames() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        except ModelbayError as exc:  # after the first token the status is sent: say it here
            yield (
                b"data: "
                + orjson.dumps(oai.error_body(exc.status, exc.message, exc.param, exc.code))
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _chained(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for data in rest:
        yield data


async def chat_chunks(
    rid: str,
    model: str,
    created: int,
    first: dict[str, Any],
    rest: AsyncIterator[dict[str, Any]],
    names: set[str],
    include_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    started: set[int] = set()
    held: dict[int, oai.ChoiceState] = {}  # with tools, text waits until it can be parsed
    prompt = 0
    completion: dict[str, int] = {}

    async for data in _chained(first, rest):
        prompt = data.get("prompt_tokens", prompt)
        completion.update(data.get("completion_tokens", {}))
        deltas = []
        for part in data["choices"]:
            index = part["index"]
            delta: dict[str, Any] = {}
            if index not in started:
                started.add(index)
                delta["role"] = "assistant"
            if names:
                state = held.setdefault(index, oai.ChoiceState())
                state.text += part["text"]
                reason = part["finish_reason"]
                if reason is not None:
                    state.finish_reason = reason
                    message, reason = oai.message_of(state, names)
                    if "tool_calls" in message:
                        delta.update(oai.tool_call_delta_of(message))
                    else:
                        delta["content"] = message["content"]
                elif not delta:
                    continue
            else:
                delta["content"] = part["text"]
                reason = part["finish_reason"]
            deltas.append(oai.chat_delta(index, delta, reason, part.get("logprobs")))
        if deltas:
            yield oai.chat_chunk(rid, model, created, deltas, None, with_usage=include_usage)
    if include_usage:
        total = oai.usage(prompt, sum(completion.values()))
        yield oai.chat_chunk(rid, model, created, [], total, with_usage=True)


async def completion_chunks(
    rid: str,
    model: str,
    created: int,
    first: dict[str, Any],
    rest: AsyncIterator[dict[str, Any]],
    echoes: list[str],
    n: int,
    include_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    started: set[int] = set()
    prompts: dict[int, int] = {}
    completion: dict[int, int] = {}

    async for data in _chained(first, rest):
        choices = []
        for part in data["choices"]:
            index = part["index"]
            prompt_index = index // n
            prompts[prompt_index] = data.get("prompt_tokens", 0)
            text = part["text"]
            if index not in started:
                started.add(index)
                text = echoes[prompt_index] + text
            completion[index] = data.get("completion_tokens", {}).get(
                str(index - prompt_index * n), completion.get(index, 0)
            )
            logprobs = (
                oai.completion_logprobs(part["logprobs"], 0) if part.get("logprobs") else None
            )
            choices.append(oai.completion_choice(index, text, part["finish_reason"], logprobs))
        yield oai.completion_body(rid, model, created, choices, None, with_usage=include_usage)
    if include_usage:
        total = oai.usage(sum(prompts.values()), sum(completion.values()))
        yield oai.completion_body(rid, model, created, [], total, with_usage=True)
