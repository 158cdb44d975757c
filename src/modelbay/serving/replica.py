"""Replicas: the frontend's handle on one loaded copy of a version.

``ProcessReplica`` runs the model in a worker process forked by the zygote (isolated
from the frontend's GIL and from other replicas' crashes); ``InProcessReplica`` runs it
on a thread of this process, for tests and debugging. Both implement ``Replica``; a Ray
actor can too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelbay.errors import ModelbayError, ModelNotReady
from modelbay.runtimes import Runtime
from modelbay.serving import ipc
from modelbay.serving.messages import (
    AbortTask,
    GenerateEvent,
    GenerateTask,
    InferDone,
    InferTask,
    Message,
    ReplicaReady,
    ReplicaSpec,
    Shutdown,
    TaskFailed,
)
from modelbay.serving.zygote import Launcher, ZygoteGone, frame_json

log = logging.getLogger("modelbay.replica")

_ids = itertools.count(1)
LOAD_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0


class ReplicaDied(Exception):
    """The replica went away with this task in flight; the task may be retried elsewhere."""


class Replica(Protocol):
    """One compute node serving one version: started once, then many ``infer`` calls."""

    name: str
    inflight: int
    load_s: float
    pid: int | None
    last_event_at: float
    """When the replica last sent anything (``time.monotonic``): it is alive and working."""

    @property
    def alive(self) -> bool: ...

    async def start(self) -> None:
        """Load the model; raises ``ModelbayError`` if it cannot be served."""

    async def infer(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> tuple[dict[str, np.ndarray], float]:
        """Outputs and compute seconds; raises ``ReplicaDied`` if the replica is gone."""
        ...

    def generate(self, request: dict[str, Any]) -> AsyncGenerator[GenerateEvent, None]:
        """An LLM replica's events for ``request`` until its final one; leaving the
        iteration early aborts the request. Raises ``ReplicaDied`` if the replica goes."""
        ...

    async def stop(self) -> None:
        """Finish what is in flight, then release the replica."""

    async def kill(self) -> None:
        """Stop at once, whatever is in flight (a wedged replica): its tasks fail with
        ``ReplicaDied``, and the exit is reported as an unexpected one, to be replaced."""


class ProcessReplica:
    """A worker process forked by the zygote, reached through a socket pair (``ipc``)."""

    def __init__(
        self,
        spec: ReplicaSpec,
        launcher: Launcher | None,
        on_exit: Callable[[ProcessReplica], None] | None = None,
        *,
        sockets_dir: str | None = None,
    ):
        self.spec = spec
        self.launcher = launcher
        number = next(_ids)
        self.name = f"{spec.record.model}:{spec.record.version}#{number}"
        self.listen = f"{sockets_dir}/r{os.getpid()}-{number}.sock" if sockets_dir else None
        """Where other frontends reach this replica (None: this frontend only)."""
        self.inflight = 0
        self.load_s = 0.0
        self.pid: int | None = None
        self.last_event_at = time.monotonic()
        self._on_exit = on_exit
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[dict[str, np.ndarray], float]]] = {}
        self._streams: dict[int, _EventStream] = {}
        self._task_ids = itertools.count()
        self._alive = False
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self) -> None:
        assert self.launcher is not None
        parent, child = socket.socketpair()
        try:
            self.pid = await asyncio.to_thread(
                self.launcher.fork, "replica", child, self.spec.threads
            )
        except ZygoteGone as exc:
            parent.close()
            raise ModelNotReady(f"replica {self.name} could not be started: {exc}") from None
        finally:
            child.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        # The spec (with the keys of encrypted blobs) travels on this socket only.
        spec = dataclasses.replace(self.spec, listen=self.listen)
        self._writer.write(frame_json(spec.to_json()))
        try:
            first = await asyncio.wait_for(_read(reader), LOAD_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            await self._kill()
            self._writer.close()
            raise ModelNotReady(f"replica {self.name} did not start: {exc!r}") from None
        if not isinstance(first, ReplicaReady):
            await self._kill()
            self._writer.close()
            if isinstance(first, TaskFailed):
                raise ModelbayError(first.message, status=first.status)
            raise ModelNotReady(f"replica {self.name} sent {type(first).__name__} first")
        self.load_s = first.load_s
        self._alive = True
        self._reader_task = asyncio.create_task(self._read_replies(reader), name=self.name)

    async def infer(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> tuple[dict[str, np.ndarray], float]:
        if not self._alive or self._writer is None:
            raise ReplicaDied(self.name)
        task_id = next(self._task_ids)
        future: asyncio.Future[tuple[dict[str, np.ndarray], float]]
        future = asyncio.get_running_loop().create_future()
        self._pending[task_id] = future
        self.inflight += 1
        try:
            self._writer.writelines(ipc.encode(InferTask(task_id, inputs, outputs)))
            await self._writer.drain()
            return await future
        except (ConnectionError, RuntimeError) as exc:
            raise ReplicaDied(f"{self.name}: {exc}") from None
        finally:
            self.inflight -= 1
            self._pending.pop(task_id, None)

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[GenerateEvent, None]:
        if not self._alive or self._writer is None:
            raise ReplicaDied(self.name)
        task_id = next(self._task_ids)
        stream = _EventStream()
        self._streams[task_id] = stream
        self.inflight += 1
        try:
            try:
                self._writer.writelines(ipc.encode(GenerateTask(task_id, request)))
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise ReplicaDied(f"{self.name}: {exc}") from None
            async for event in stream.events():
                yield event
        finally:
            self.inflight -= 1
            self._streams.pop(task_id, None)
            if not stream.done and self._alive and self._writer is not None:
                # The client left (or its deadline passed): free its sequences now.
                with contextlib.suppress(ConnectionError, RuntimeError):
                    self._writer.writelines(ipc.encode(AbortTask(task_id)))

    async def stop(self) -> None:
        self._stopping = True
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (self._pending or self._streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._writer is not None and self._alive:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self._writer.writelines(ipc.encode(Shutdown()))
                await self._writer.drain()
        if self._reader_task is not None:  # ends when the process closes its socket
            try:
                await asyncio.wait_for(asyncio.shield(self._reader_task), STOP_TIMEOUT_S)
            except TimeoutError:
                await self.kill()

    async def kill(self) -> None:
        await self._kill()
        if self._reader_task is not None:  # it fails what was in flight, then reports
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await _read(reader)
                self.last_event_at = time.monotonic()
                stream = self._streams.get(getattr(message, "id", -1))
                if stream is not None:
                    if isinstance(message, GenerateEvent | TaskFailed):
                        stream.queue.put_nowait(message)
                    continue
                future = self._pending.get(getattr(message, "id", -1))
                if future is None or future.done():
                    continue
                if isinstance(message, InferDone):
                    future.set_result((message.outputs, message.compute_s))
                elif isinstance(message, TaskFailed):
                    future.set_exception(_error(message))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._alive = False
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ReplicaDied(f"replica {self.name} exited"))
            for stream in self._streams.values():
                stream.queue.put_nowait(ReplicaDied(f"replica {self.name} exited"))
            if self._writer is not None:
                self._writer.close()
            if not self._stopping:
                if self.launcher is not None:  # ours; another frontend's owner reports it
                    log.warning("replica %s (pid %s) exited unexpectedly", self.name, self.pid)
                if self._on_exit is not None:
                    self._on_exit(self)

    async def _kill(self) -> None:
        # The zygote reaps it; its end of the socket closes, which ends the reader.
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class RemoteReplica(ProcessReplica):
    """A replica another frontend (the leader) started, reached on the socket it listens on.

    Stopping it only closes this frontend's connection; killing it (a batch past its
    deadline) kills the process, which its owner then replaces.
    """

    def __init__(
        self,
        spec: ReplicaSpec,
        name: str,
        pid: int,
        path: str,
        on_exit: Callable[[ProcessReplica], None] | None = None,
    ):
        super().__init__(spec, None, on_exit)
        self.name = name
        self.pid = pid
        self.listen = path

    async def start(self) -> None:
        assert self.listen is not None
        try:
            reader, self._writer = await asyncio.open_unix_connection(self.listen)
        except OSError as exc:
            raise ReplicaDied(f"replica {self.name} is not reachable: {exc}") from None
        self._alive = True
        self._reader_task = asyncio.create_task(self._read_replies(reader), name=self.name)

    async def stop(self) -> None:
        self._stopping = True
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


class InProcessReplica:
    """The model on a thread of the frontend process: no isolation, for tests and debugging."""

    def __init__(
        self, spec: ReplicaSpec, on_exit: Callable[[InProcessReplica], None] | None = None
    ):
        self.spec = spec
        self.name = f"{spec.record.model}:{spec.record.version}#{next(_ids)}"
        self.inflight = 0
        self.load_s = 0.0
        self.pid: int | None = os.getpid()
        self.last_event_at = time.monotonic()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._runtime: Runtime | None = None
        self._on_exit = on_exit
        self._generation: Any = None  # a GenerationLoop on its own thread, for an LLM
        self._task_ids = itertools.count()

    @property
    def alive(self) -> bool:
        return self._runtime is not None

    async def start(self) -> None:
        from modelbay.serving.loading import load_version
        from modelbay.store import make_store

        started = time.perf_counter()
        store = make_store(Path(self.spec.blob_dir), self.spec.keyring)
        loop = asyncio.get_running_loop()
        self._runtime = await loop.run_in_executor(
            self._executor,
            lambda: load_version(
                store, self.spec.record, threads=self.spec.threads, options=self.spec.options
            ),
        )
        self.load_s = time.perf_counter() - started
        if self._runtime.format == "llm":
            from modelbay.serving.generation import GenerationLoop

            self._generation = GenerationLoop(self._runtime)
            threading.Thread(target=self._generation.run, name=self.name, daemon=True).start()

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[GenerateEvent, None]:
        if self._generation is None:
            raise ReplicaDied(self.name)
        loop = asyncio.get_running_loop()
        stream = _EventStream()
        task_id = next(self._task_ids)

        def emit(message: GenerateEvent | TaskFailed) -> None:  # on the engine's thread
            self.last_event_at = time.monotonic()
            loop.call_soon_threadsafe(stream.queue.put_nowait, message)

        self._generation.submit("local", task_id, request, emit)
        self.inflight += 1
        try:
            async for event in stream.events():
                yield event
        finally:
            self.inflight -= 1
            if not stream.done:
                self._generation.abort("local", task_id)

    async def infer(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> tuple[dict[str, np.ndarray], float]:
        runtime = self._runtime
        if runtime is None:
            raise ReplicaDied(self.name)
        self.inflight += 1
        try:
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor,
                runtime.infer,
                inputs,
                outputs,  # type: ignore[attr-defined]
            )
            return result, time.perf_counter() - started
        finally:
            self.inflight -= 1

    async def stop(self) -> None:
        self._runtime = None
        if self._generation is not None:
            self._generation.stop()
        self._executor.shutdown(wait=True)

    async def kill(self) -> None:
        # A thread cannot be killed: it is abandoned to finish on its own.
        self._runtime = None
        if self._generation is not None:
            self._generation.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._on_exit is not None:
            self._on_exit(self)


class _EventStream:
    """One LLM request's events as the replica's reader (or engine thread) queues them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[GenerateEvent | TaskFailed | BaseException] = asyncio.Queue()
        self.done = False
        """The final event came, or the request failed: nothing to abort."""

    async def events(self) -> AsyncGenerator[GenerateEvent, None]:
        """Events until the final one; the failure that ends the request is raised."""
        while not self.done:
            item = await self.queue.get()
            if isinstance(item, TaskFailed):
                item = _error(item)
            if isinstance(item, BaseException):
                self.done = True
                raise item
            self.done = item.final
            yield item


def _error(failed: TaskFailed) -> ModelbayError:
    return ModelbayError(failed.message, status=failed.status, param=failed.param, code=failed.code)


async def _read(reader: asyncio.StreamReader) -> Message:
    head_len, payload_len = ipc.PREFIX.unpack(await reader.readexactly(ipc.PREFIX.size))
    head = await reader.readexactly(head_len)
    payload = await reader.readexactly(payload_len) if payload_len else b""
    return ipc.decode(head, payload)


_INHERITED = frozenset(
    {
        "PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
        "HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_OFFLINE",
        "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    }
)  # fmt: skip
_INHERITED_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_", "KMP_", "CUDA_", "PYTORCH_", "ORT_")


def worker_env(parent: Mapping[str, str], threads: int) -> dict[str, str]:
    """What a replica worker inherits: locale, paths, framework and device settings. Never
    modelbay's own settings (the admin key, the database URL, encryption keys) nor anything
    else: the model it runs needs none of them."""
    env = {k: v for k, v in parent.items() if k in _INHERITED or k.startswith(_INHERITED_PREFIXES)}
    # Set before the framework starts its pools, so replicas don't fight for cores.
    value = str(max(1, threads))
    env.update(OMP_NUM_THREADS=value, MKL_NUM_THREADS=value, OPENBLAS_NUM_THREADS=value)
    return env


def replica_factory(
    launcher: Launcher | None, sockets_dir: str | None = None
) -> Callable[[ReplicaSpec, Callable[[Replica], None]], Replica]:
    """Replicas as processes forked by ``launcher``'s zygote (listening in ``sockets_dir``
    for other frontends, if given), or (None) threads of this process
    (``MODELBAY_REPLICA_MODE=inprocess``, for debugging)."""
    if launcher is None:
        return lambda spec, on_exit: InProcessReplica(spec, on_exit)
    return lambda spec, on_exit: ProcessReplica(spec, launcher, on_exit, sockets_dir=sockets_dir)
