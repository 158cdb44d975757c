"""The SDK's OpenAI-API calls: chat (streamed or not) and embeddings, mixed into ``Client``.

The official ``openai`` package works against the server too; these exist so the CLI and
scripts need nothing beyond modelbay's own light client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import httpx

from modelbay.client.access import JsonCall
from modelbay.client.errors import ApiError


class LLMCalls:
    """``/v1`` chat completions and embeddings."""

    _json: JsonCall
    _stream_post: Callable[..., AbstractContextManager[httpx.Response]]

    def chat(self, model: str, messages: Sequence[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """A chat completion (the OpenAI response body); ``params``: temperature,
        max_tokens, seed, response_format ..."""
        body = {"model": model, "messages": list(messages), **params, "stream": False}
        return self._json("POST", "/v1/chat/completions", json=body)

    def chat_stream(
        self, model: str, messages: Sequence[dict[str, Any]], **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed chat completion as they arrive (server-sent events);
        the last one carries the usage."""
        body = {
            "model": model,
            "messages": list(messages),
            **params,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with self._stream_post("/v1/chat/completions", body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise ApiError(500, str(error.get("message", error)))
                yield chunk

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One embedding per text."""
        doc = self._json("POST", "/v1/embeddings", json={"model": model, "input": list(texts)})
        return [item["embedding"] for item in sorted(doc["data"], key=lambda d: d["index"])]
