"""Large language models: a GGUF file or a Hugging Face directory, served by our engine.

The runtime holds an ``LLMEngine`` (``modelbay.llm``) and turns an engine request (what
``protocols.openai`` makes of a chat or completion request) into prompt tokens and
sampling parameters: the chat template is rendered here, next to the tokenizer. The
replica's generation loop (``serving.generation``) steps the engine; ``infer`` (the V2
tensor path) answers that LLMs are called through the OpenAI API.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.llm.chat import ChatTemplate, TemplateFailed
from modelbay.llm.config import LLMInfo, read_llm_info
from modelbay.llm.params import InvalidParameter, SamplingParams
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes.base import Checked, Runtime
from modelbay.tensors import Signature, TensorSpec

if TYPE_CHECKING:  # the engine (torch, transformers, xgrammar) is imported by replicas only
    from modelbay.llm.engine import LLMEngine

LLM_SIGNATURE = Signature(
    inputs=[TensorSpec(name="prompt", datatype="BYTES", shape=[1])],
    outputs=[TensorSpec(name="text", datatype="BYTES", shape=[1])],
)
"""What V2 metadata shows of an LLM; generation itself goes through ``/v1``."""

DEFAULT_KV_CACHE_MB = 256
DEFAULT_MAX_TOKENS = 2048
"""Tokens generated for a request that does not say (at most what the context leaves):
a small model that never emits its end token must not run on for minutes."""
_SAMPLING_FIELDS = frozenset(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class Prepared:
    """An engine request ready to queue."""

    prompt_token_ids: list[int]
    params: SamplingParams


def _model_path(model_dir: Path, entrypoint: str) -> Path:
    # A GGUF version is one file; a Hugging Face one is its directory (entry: config.json).
    return model_dir if entrypoint == "config.json" else model_dir / entrypoint


def describe(info: LLMInfo) -> dict[str, Any]:
    """What the registry records of an LLM version (``metadata["llm"]``)."""
    return {
        "architecture": info.architecture,
        "parameters": info.parameters,
        "context_length": info.context_length,
        "quantization": info.quantization,
        "chat_template": info.chat_template,
    }


class LLMRuntime(Runtime):
    """One engine per replica; requests are prepared here and stepped by the replica."""

    format = "llm"

    def __init__(self, engine: LLMEngine):
        super().__init__(LLM_SIGNATURE)
        self.engine = engine
        special = {
            "bos_token": _token(engine, "bos_token"),
            "eos_token": _token(engine, "eos_token"),
        }
        self.template = ChatTemplate(engine.info.chat_template, special)

    @classmethod
    def check(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> Checked:
        # Reading the metadata, not the weights: a push of a large model must not load it.
        try:
            info = read_llm_info(_model_path(model_dir, entrypoint))
            ChatTemplate(info.chat_template, {})
        except Exception as exc:  # a malformed header can fail anywhere in the reader
            raise InvalidArtifact(
                f"not a usable LLM: {framework_message(exc)}", param="files"
            ) from None
        return Checked(LLM_SIGNATURE, {"llm": describe(info)})

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> LLMRuntime:
        return cls.load_with_options(model_dir, entrypoint, signature, threads=threads, options={})

    @classmethod
    def load_with_options(
        cls,
        model_dir: Path,
        entrypoint: str,
        signature: Signature | None,
        *,
        threads: int,
        options: Mapping[str, Any],
    ) -> LLMRuntime:
        from modelbay.llm.engine import EngineConfig, LLMEngine

        kv_mb = int(options.get("kv_cache_mb") or DEFAULT_KV_CACHE_MB)
        config = EngineConfig(
            dtype=str(options.get("dtype") or "auto"),
            kv_cache_bytes=int(kv_mb) << 20,
            max_num_seqs=int(options.get("max_num_seqs") or 32),
            max_model_len=options.get("max_model_len"),
            threads=threads,
            quantization=str(options.get("quantization") or "none"),
        )
        try:
            engine = LLMEngine.load(_model_path(model_dir, entrypoint), config)
        except Exception as exc:  # the files were checked at push: say what failed now
            raise InvalidArtifact(
                f"the LLM cannot be loaded: {framework_message(exc)}", param="files"
            ) from None
        return cls(engine)

    def prepare(self, request: Mapping[str, Any]) -> Prepared:
        """Prompt tokens and sampling parameters of an engine request; ``InvalidRequest``
        naming the field when it is wrong (a prompt too long: ``context_length_exceeded``)."""
        kind = request.get("kind")
        tokenizer = self.engine.tokenizer
        if kind == "chat":
            field = "messages"
            try:
                text = self.template.render(request["messages"], tools=request.get("tools"))
            except TemplateFailed as exc:
                raise InvalidRequest(str(exc), param="messages") from None
            ids = list(tokenizer.encode(text, add_special_tokens=False))
        elif kind == "completion":
            field = "prompt"
            prompt = request["prompt"]
            if isinstance(prompt, str):
                ids = list(tokenizer.encode(prompt, add_special_tokens=True))
            else:
                ids = [int(t) for t in prompt]
        else:
            raise InvalidRequest(f"unknown request kind {kind!r}", param="kind")
        given = {k: v for k, v in request.get("params", {}).items() if k in _SAMPLING_FIELDS}
        if given.get("max_tokens") is None:
            left = self.engine.max_model_len - len(ids)
            given["max_tokens"] = max(1, min(DEFAULT_MAX_TOKENS, left))
        for key in ("stop", "stop_token_ids"):
            if key in given:
                given[key] = tuple(given[key])
        params = SamplingParams(**given)
        limit = self.engine.max_model_len
        if len(ids) + params.max_tokens > limit:
            raise InvalidRequest(
                f"this model's maximum context length is {limit} tokens; the {field} take "
                f"{len(ids)} and {params.max_tokens} more were asked for "
                f"({len(ids) + params.max_tokens} in all): shorten the {field} or max_tokens",
                param=field,
                code="context_length_exceeded",
            )
        try:
            params.validate()
        except InvalidParameter as exc:
            raise InvalidRequest(exc.message, param=exc.param) from None
        return Prepared(ids, params)

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        raise InvalidRequest(
            "this model is an LLM: call it with POST /v1/chat/completions or /v1/completions",
            param="model",
        )


def _token(engine: LLMEngine, name: str) -> str:
    value = getattr(engine.tokenizer, name, None)
    return value if isinstance(value, str) else ""
