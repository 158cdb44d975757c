"""A replica's process (a "compute node"): loads one version once, then runs tasks.

Forked by the zygote (``zygote.py``) for ``ProcessReplica``, with the ``ReplicaSpec`` as
the first frame on its socket. It talks over that socket: a ``ReplicaReady`` (or a
``TaskFailed`` with id -1 if loading fails), then one reply per task, in order. It exits
on ``Shutdown`` or when the frontend's end of the socket closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from modelbay.errors import ModelbayError
from modelbay.runtimes import Runtime
from modelbay.serving import ipc
from modelbay.serving.messages import (
    AbortTask,
    GenerateTask,
    InferDone,
    InferTask,
    Message,
    ReplicaReady,
    ReplicaSpec,
    Shutdown,
    TaskFailed,
)

log = logging.getLogger("modelbay.worker")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its frontend dies, however it dies: a replica
    busy in a model call would otherwise never read the socket's end and run on, orphaned."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def serve(sock: socket.socket, spec: ReplicaSpec) -> None:
    """Load the version, announce readiness, answer tasks until told to stop."""
    from modelbay.serving.loading import load_version
    from modelbay.store import make_store

    started = time.perf_counter()
    try:
        store = make_store(Path(spec.blob_dir), spec.keyring)
        runtime = load_version(store, spec.record, threads=spec.threads, options=spec.options)
    except ModelbayError as exc:
        _send(sock, TaskFailed(-1, exc.status, exc.message, type(exc).__name__))
        return
    listener = None
    if spec.listen is not None:
        # Other frontends of this server send their batches here (see ``frontends``).
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(spec.listen)
        listener.listen(64)
    ready = ReplicaReady(os.getpid(), time.perf_counter() - started, runtime.signature.model_dump())
    gc.freeze()  # the framework and the model stay: full collections skip them (see api/app.py)
    _send(sock, ready)
    try:
        if runtime.format == "llm":
            _generate(runtime, sock, listener)
        else:
            _answer(runtime, sock, listener)
    finally:
        if listener is not None:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(spec.listen)  # type: ignore[arg-type]


def _answer(runtime: Runtime, owner: socket.socket, listener: socket.socket | None) -> None:
    """Run tasks from the owner's socket and from every frontend connected to the
    listener, one at a time, each answered on its own connection, until the owner says
    stop or goes away."""
    if listener is None:
        while True:
            message = _receive(owner)
            if message is None or isinstance(message, Shutdown):
                return
            if isinstance(message, InferTask):
                _send(owner, _run(runtime, message))
    with selectors.DefaultSelector() as selector:
        selector.register(owner, selectors.EVENT_READ)
        selector.register(listener, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                conn: socket.socket = key.fileobj  # type: ignore[assignment]
                if conn is listener:
                    peer, _ = listener.accept()
                    selector.register(peer, selectors.EVENT_READ)
                    continue
                try:
                    message = _receive(conn)
                except OSError:
                    message = None
                if conn is owner and (message is None or isinstance(message, Shutdown)):
                    return
                if message is None:
                    selector.unregister(conn)
                    conn.close()
                elif isinstance(message, InferTask):
                    with contextlib.suppress(OSError):  # that frontend went away
                        _send(conn, _run(runtime, message))


def _generate(runtime: Runtime, owner: socket.socket, listener: socket.socket | None) -> None:
    """An LLM replica: one thread reads each connection, the engine steps on this one."""
    from modelbay.serving.generation import GenerationLoop

    loop = GenerationLoop(runtime)

    def read(conn: socket.socket, name: str) -> None:
        lock = threading.Lock()

        def emit(message: Message) -> None:
            with lock:
                _send(conn, message)

        try:
            while True:
                try:
                    message = _receive(conn)
                except OSError:
                    message = None
                if message is None or isinstance(message, Shutdown):
                    break
                if isinstance(message, GenerateTask):
                    loop.submit(name, message.id, message.request, emit)
                elif isinstance(message, AbortTask):
                    loop.abort(name, message.id)
                elif isinstance(message, InferTask):
                    with contextlib.suppress(OSError):
                        emit(_run(runtime, message))
        finally:
            if conn is owner:
                loop.stop()
            else:
                loop.drop(name)
                conn.close()

    def accept() -> None:
        assert listener is not None
        for number in itertools.count(1):
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=read, args=(peer, f"peer{number}"), daemon=True).start()

    threading.Thread(target=read, args=(owner, "owner"), daemon=True).start()
    if listener is not None:
        threading.Thread(target=accept, daemon=True).start()
    loop.run()


def _run(runtime: Runtime, task: InferTask) -> Message:
    started = time.perf_counter()
    try:
        outputs = runtime.infer(task.inputs, task.outputs)
    except ModelbayError as exc:
        return TaskFailed(task.id, exc.status, exc.message, type(exc).__name__)
    except Exception as exc:  # a runtime bug must not kill the replica or reach clients
        log.error("task %d failed: %s", task.id, "".join(traceback.format_exception(exc)))
        return TaskFailed(task.id, 500, "the model failed on this batch", type(exc).__name__)
    return InferDone(task.id, outputs, time.perf_counter() - started)


def _receive(sock: socket.socket) -> Message | None:
    prefix = _read_exactly(sock, ipc.PREFIX.size)
    if prefix is None:
        return None
    head_len, payload_len = ipc.PREFIX.unpack(prefix)
    head = _read_exactly(sock, head_len)
    payload = _read_exactly(sock, payload_len)
    if head is None or payload is None:
        return None
    return ipc.decode(bytes(head), payload)


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    # A writable buffer, so arrays decoded from it are writable (torch wants that).
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return buffer


def _send(sock: socket.socket, message: Message) -> None:
    sock.sendall(b"".join(ipc.encode(message)))
