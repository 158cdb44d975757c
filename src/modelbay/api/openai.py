"""The OpenAI API (``/v1``): models, chat completions, completions, embeddings.

Thin: bodies are validated by ``protocols.openai_types``, turned into engine requests by
``protocols.openai``, and run by the ``InferenceService`` on the model's version server
(its replicas run the engine). Streams are server-sent events in OpenAI's chunk format; a
client that leaves cancels its request, which frees its sequences at the engine's next
step. Errors take OpenAI's nested body (``api/errors.py``, by path).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.constants import REF_PREFIX
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from modelbay.api import openai_streams as streams
from modelbay.api.auth import PrincipalDep, caller_of
from modelbay.api.context import AppContext, ContextDep
from modelbay.errors import ClientDisconnected, InvalidRequest
from modelbay.protocols import openai as oai
from modelbay.protocols.openai_types import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from modelbay.security.access import Rule
from modelbay.security.principals import Principal, Scope
from modelbay.serving.version_server import VersionServer

router = APIRouter(prefix="/v1", tags=["OpenAI API"])


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    """Every error of ``/v1``, as OpenAI's clients parse it."""

    error: OpenAIError


_MEANINGS = {
    400: "A bad field (named in param), or a prompt too long for the context",
    404: "Unknown model, or another tenant's private one",
    413: "Body over the configured limit",
    429: "A full queue, or a key or tenant over its limits: retry after Retry-After",
    503: "The model cannot serve right now",
    504: "The request waited past its timeout",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": OpenAIErrorBody, "description": _MEANINGS[s]} for s in statuses}


_GENERATION_ERRORS = _errors(400, 404, 413, 429, 503, 504)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer; with stream: true, server-sent events of chunks",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}


def document_openai_errors(app: FastAPI) -> None:
    """Under ``/v1`` every documented error has OpenAI's body, and field validation
    answers 400 (not the 422 of the rest of the API)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        ours = {"$ref": REF_PREFIX + "OpenAIErrorBody"}
        for path, operations in schema["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for operation in operations.values():
                answers = operation["responses"]
                if "422" in answers:
                    answers.setdefault("400", answers.pop("422"))
                for status, answer in answers.items():
                    if int(status) >= 400:
                        answer["content"] = {"application/json": {"schema": ours}}
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["OpenAIError"] = OpenAIError.model_json_schema()
        body = OpenAIErrorBody.model_json_schema(ref_template=REF_PREFIX + "{model}")
        body.pop("$defs", None)
        schemas["OpenAIErrorBody"] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_INFER = Rule(Scope.INFER, resource="model")
_READ = Rule(Scope.READ, resource="model")
T = TypeVar("T")


@router.get("/models", summary="List the models this key may use")
async def list_models(ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    visible_to = None if principal.is_admin else principal.tenant_id
    models = await asyncio.to_thread(ctx.registry.list_models, visible_to)
    return {"object": "list", "data": [_model_entry(m) for m in models]}


@router.get("/models/{model}", summary="Get a model", responses=_errors(400, 404))
async def get_model(
    ctx: ContextDep, principal: PrincipalDep, request: Request, model: str
) -> dict[str, Any]:
    name, _ = oai.parse_model(model)
    await ctx.guard.authorize(principal, _READ, name, caller_of(request.scope))
    record = await asyncio.to_thread(ctx.registry.get_model, name)
    return _model_entry(record) | {"id": model}


def _model_entry(record: Any) -> dict[str, Any]:
    return {
        "id": record.name,
        "object": "model",
        "created": int(record.created_at.timestamp()),
        "owned_by": record.tenant,
    }


@router.post(
    "/chat/completions",
    summary="Create a chat completion",
    response_model=None,
    responses={**_STREAMED, **_GENERATION_ERRORS},
)
async def chat_completions(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: ChatCompletionRequest
) -> JSONResponse | StreamingResponse:
    server = await _llm(ctx, principal, request, body.model)
    engine_request = oai.chat_request(body)
    names = oai.tool_names(engine_request)
    rid, created = oai.new_id("chatcmpl"), oai.now()
    events = _metered(ctx, principal, ctx.inference.generate(server, engine_request))
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        first = await anext(events)  # errors before the first token keep their status
        chunks = streams.chat_chunks(rid, body.model, created, first, events, names, include_usage)
        return streams.sse(chunks)
    collected = oai.Collected()
    await _until_disconnect(request, _collect(events, collected))
    return JSONResponse(oai.chat_response(rid, body.model, created, collected, names))


@router.post(
    "/completions",
    summary="Create a completion",
    response_model=None,
    responses={**_STREAMED, **_GENERATION_ERRORS},
)
async def completions(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: CompletionRequest
) -> JSONResponse | StreamingResponse:
    server = await _llm(ctx, principal, request, body.model)
    requests = oai.completion_requests(body)
    n = body.n or 1
    rid, created = oai.new_id("cmpl"), oai.now()
    echoes = [r["prompt"] if body.echo and isinstance(r["prompt"], str) else "" for r in requests]
    prompt_streams = [
        _metered(ctx, principal, ctx.inference.generate(server, r), offset=i * n)
        for i, r in enumerate(requests)
    ]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = streams.merge(prompt_streams)
        first = await anext(events)
        chunks = streams.completion_chunks(
            rid, body.model, created, first, events, echoes, n, include_usage
        )
        return streams.sse(chunks)
    results = [oai.Collected() for _ in requests]
    await _until_disconnect(
        request,
        asyncio.gather(*(_collect(s, c) for s, c in zip(prompt_streams, results, strict=True))),
    )
    choices = []
    for i, collected in enumerate(results):
        for index in sorted(collected.choices):
            state = collected.choices[index]
            logprobs = (
                oai.completion_logprobs(state.logprobs, len(echoes[i]))
                if (body.logprobs is not None)
                else None
            )
            choices.append(
                oai.completion_choice(
                    i * n + index, echoes[i] + state.text, state.finish_reason, logprobs
                )
            )
    prompt = sum(c.prompt_tokens for c in results)
    completion = sum(c.completion_tokens for c in results)
    return JSONResponse(
        oai.completion_body(rid, body.model, created, choices, oai.usage(prompt, completion))
    )


@router.post("/embeddings", summary="Create embeddings", responses=_GENERATION_ERRORS)
async def embeddings(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: EmbeddingRequest
) -> dict[str, Any]:
    name, ref = oai.parse_model(body.model)
    await ctx.guard.authorize(principal, _INFER, name, caller_of(request.scope))
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "input must be a string or a non-empty list of strings (token arrays are not "
            "supported)",
            param="input",
        )
    ctx.guard.admit_tokens(principal)
    _, vectors, tokens = await ctx.inference.embed(name, ref, [str(t) for t in texts])
    ctx.guard.add_tokens(principal, tokens, 0)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise InvalidRequest(
            f"this model's embeddings have {vectors.shape[1]} dimensions; dimensions="
            f"{body.dimensions} cannot be served",
            param="dimensions",
        )
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()
    return vector.astype(np.float32).tolist()


async def _llm(
    ctx: AppContext, principal: Principal, request: Request, model: str
) -> VersionServer:
    name, ref = oai.parse_model(model)
    await ctx.guard.authorize(principal, _INFER, name, caller_of(request.scope))
    ctx.guard.admit_tokens(principal)  # a key over its token quota: 429 before any work
    return await ctx.inference.llm(name, ref)


async def _metered(
    ctx: AppContext,
    principal: Principal,
    events: AsyncGenerator[dict[str, Any], None],
    *,
    offset: int = 0,
) -> AsyncGenerator[dict[str, Any], None]:
    """Events (choice indexes shifted by ``offset``) whose tokens are counted to the key
    when the request ends, however it ends."""
    prompt = 0
    completion: dict[str, int] = {}
    try:
        async for data in events:
            prompt = data.get("prompt_tokens", prompt)
            completion.update(data.get("completion_tokens", {}))
            if offset:
                data = {
                    **data,
                    "choices": [{**c, "index": c["index"] + offset} for c in data["choices"]],
                }
            yield data
    finally:
        await events.aclose()
        if prompt or completion:
            ctx.guard.add_tokens(principal, prompt, sum(completion.values()))


async def _collect(events: AsyncIterator[dict[str, Any]], collected: oai.Collected) -> None:
    async for data in events:
        collected.add(data)


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` unless the client goes away first (then it is cancelled: its
    sequences are freed)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnected("the client went away")
    return task.result()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
