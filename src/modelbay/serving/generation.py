"""An LLM replica's loop: requests from any thread, one engine stepped on one thread.

Requests come from the replica's connections (the owner frontend's socket and other
frontends' ones, each read on a thread of its own) or from an in-process replica; each
comes with ``emit``, called on the loop's thread with every ``GenerateEvent`` or the
``TaskFailed`` that ends it. Between two steps the loop takes new requests and aborts, so
sequences join and leave the running batch at every step (continuous batching).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from modelbay.errors import ModelbayError
from modelbay.serving.messages import GenerateEvent, TaskFailed

log = logging.getLogger("modelbay.generation")

Emit = Callable[[GenerateEvent | TaskFailed], None]
"""Sends one event to the request's frontend; raises ``OSError`` if it went away."""

_IDLE_WAIT_S = 1.0


@dataclass(eq=False)
class _Stream:
    task_id: int
    owner: Hashable
    emit: Emit
    n: int
    finished: set[int] = field(default_factory=set)


class GenerationLoop:
    """Steps an ``LLMRuntime``'s engine while it has work; thread-safe ``submit``/``abort``."""

    def __init__(self, runtime: Any):
        self.runtime = runtime  # an LLMRuntime (imported lazily: it needs torch)
        self.engine = runtime.engine
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._stopped = False

    def submit(self, owner: Hashable, task_id: int, request: dict[str, Any], emit: Emit) -> None:
        self._inbox.put(("add", (owner, task_id, request, emit)))

    def abort(self, owner: Hashable, task_id: int) -> None:
        self._inbox.put(("abort", _key(owner, task_id)))

    def drop(self, owner: Hashable) -> None:
        """A connection closed: abort every request it sent."""
        self._inbox.put(("drop", owner))

    def stop(self) -> None:
        self._inbox.put(("stop", None))

    def run(self) -> None:
        """Until ``stop``: take what came in, step, send what each request generated."""
        while not self._stopped:
            self._take(block=not self.engine.has_unfinished())
            if self._stopped or not self.engine.has_unfinished():
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # an engine bug: fail what runs, keep the replica
                log.error("engine step failed: %s", "".join(traceback.format_exception(exc)))
                self._fail_all(ModelbayError("the model failed while generating"))
                continue
            self._send(outputs)

    def _take(self, *, block: bool) -> None:
        try:
            kind, item = (
                self._inbox.get(timeout=_IDLE_WAIT_S) if block else self._inbox.get_nowait()
            )
        except queue.Empty:
            return
        while True:
            self._apply(kind, item)
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _apply(self, kind: str, item: Any) -> None:
        if kind == "add":
            self._add(*item)
        elif kind == "abort":
            self._finish(item)
        elif kind == "drop":
            for key in [k for k, s in self._streams.items() if s.owner == item]:
                self._finish(key)
        elif kind == "stop":
            self._stopped = True

    def _add(self, owner: Hashable, task_id: int, request: dict[str, Any], emit: Emit) -> None:
        key = _key(owner, task_id)
        try:
            prepared = self.runtime.prepare(request)
            self.engine.add_request(key, prepared.prompt_token_ids, prepared.params)
        except ModelbayError as exc:
            _safe(emit, _failed(task_id, exc))
            return
        except Exception as exc:
            log.error("request %s failed: %s", key, "".join(traceback.format_exception(exc)))
            _safe(emit, _failed(task_id, ModelbayError("the request could not be started")))
            return
        self._streams[key] = _Stream(task_id, owner, emit, prepared.params.n)

    def _finish(self, key: str) -> None:
        self.engine.abort(key)
        self._streams.pop(key, None)

    def _send(self, outputs: list[Any]) -> None:
        by_request: dict[str, list[Any]] = {}
        for output in outputs:
            by_request.setdefault(output.request_id, []).append(output)
        stats = self.engine.stats
        engine = {
            "running": stats.running,
            "waiting": stats.waiting,
            "blocks_used": stats.blocks_used,
            "blocks_free": stats.blocks_free,
            "preemptions": stats.preemptions,
        }
        for key, parts in by_request.items():
            stream = self._streams.get(key)
            if stream is None:
                continue
            for part in parts:
                if part.finish_reason is not None:
                    stream.finished.add(part.index)
            final = len(stream.finished) >= stream.n
            data = {
                "choices": [_choice(p) for p in parts],
                "prompt_tokens": parts[0].prompt_tokens,
                "completion_tokens": {str(p.index): p.completion_tokens for p in parts},
                "engine": engine,
            }
            try:
                stream.emit(GenerateEvent(stream.task_id, data, final))
            except OSError:  # that frontend went away
                self._finish(key)
                continue
            if final:
                self._streams.pop(key, None)

    def _fail_all(self, exc: ModelbayError) -> None:
        for key, stream in list(self._streams.items()):
            self._finish(key)
            _safe(stream.emit, _failed(stream.task_id, exc))


def _choice(output: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": output.index,
        "text": output.text,
        "token_ids": output.token_ids,
        "finish_reason": output.finish_reason,
    }
    if output.logprobs is not None:
        choice["logprobs"] = [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": lp.bytes,
                "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, v, b in lp.top],
            }
            for lp in output.logprobs
        ]
    return choice


def _key(owner: Hashable, task_id: int) -> str:
    return f"{owner}/{task_id}"


def _failed(task_id: int, exc: ModelbayError) -> TaskFailed:
    return TaskFailed(task_id, exc.status, exc.message, type(exc).__name__, exc.param, exc.code)


def _safe(emit: Emit, message: GenerateEvent | TaskFailed) -> None:
    with contextlib.suppress(OSError):
        emit(message)
