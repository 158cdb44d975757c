"""Where replica and validation processes come from: a zygote that forks them.

Starting a Python process that imports torch, onnxruntime or scikit-learn takes seconds;
forking one that already has takes milliseconds. The frontend starts one zygote
(``python -m modelbay.serving.zygote``) with a worker's environment (``worker_env``:
never modelbay's settings or secrets). The zygote imports the worker code and every model
framework installed, then waits on a control socket. For each request (a kind and one
socket, passed as a file descriptor) it forks a child that serves that socket:

- ``replica``: a replica worker (``worker.serve``): the ``ReplicaSpec`` arrives on the
  socket first, then tasks;
- ``validate``: loads a pushed model once to check it (``validator.answer``), answers, exits.

The frontend talks to the child directly; the zygote only answers the child's pid. Each
child dies with the zygote and the zygote with the frontend (``PR_SET_PDEATHSIG``); the
zygote reaps its children. The frontend never imports a model framework.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

log = logging.getLogger("modelbay.zygote")

PRELOAD = (
    "modelbay.runtimes.onnx",
    "modelbay.runtimes.sklearn",
    "modelbay.runtimes.torchscript",
    "modelbay.runtimes.torch_export",
    "modelbay.runtimes.llm",
)
"""Runtime modules imported once by the zygote (each with its framework) when installed.
Not the LLM engine nor sentence-transformers (transformers, xgrammar: seconds more before
the first replica of any model can start); an LLM replica imports them as it loads."""

_MAX_REQUEST = 4096
_LENGTH = struct.Struct("<Q")


class ZygoteGone(Exception):
    """The zygote exited; a new one is started by the next request."""


class Launcher:
    """The frontend's handle on its zygote: thread-safe, blocking (use from threads)."""

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._lock = threading.Lock()
        self._ctl: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        # The zygote dies with the thread that started it (PR_SET_PDEATHSIG is per thread):
        # always this one, which lives as long as the launcher.
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="zygote-starter")

    def start(self) -> None:
        """Start the zygote now (it imports the frameworks while the server starts)."""
        with self._lock:
            self._ensure()

    def fork(self, kind: str, sock: socket.socket, threads: int) -> int:
        """A new child of ``kind`` serving ``sock`` (the caller closes its copy); its pid."""
        request = orjson.dumps({"kind": kind, "threads": threads})
        with self._lock:
            for attempt in range(2):
                ctl = self._ensure()
                try:
                    socket.send_fds(ctl, [request], [sock.fileno()])
                    reply = ctl.recv(_MAX_REQUEST)
                    if not reply:
                        raise ZygoteGone("the zygote closed its socket")
                except (OSError, ZygoteGone) as exc:
                    self._reset()
                    if attempt:
                        raise ZygoteGone(f"the zygote is not answering: {exc}") from None
                    log.warning("the zygote went away (%s); starting a new one", exc)
                    continue
                answer = orjson.loads(reply)
                if "error" in answer:
                    raise ZygoteGone(answer["error"])
                pid: int = answer["pid"]
                return pid
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._reset()
        self._starter.shutdown(wait=False)

    def _ensure(self) -> socket.socket:
        if self._closed:
            raise ZygoteGone("the server is stopping")
        if self._ctl is not None:
            return self._ctl
        from modelbay.serving.replica import worker_env

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [
            sys.executable,
            "-m",
            "modelbay.serving.zygote",
            "--fd",
            str(theirs.fileno()),
            "--parent",
            str(os.getpid()),
        ]
        try:
            self._process = self._starter.submit(
                subprocess.Popen,
                command,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=worker_env(os.environ, self.threads),
            ).result()
        finally:
            theirs.close()
        self._ctl = ours
        return ours

    def _reset(self) -> None:
        if self._ctl is not None:
            self._ctl.close()  # the zygote exits when it reads the end
            self._ctl = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def frame_json(data: Any) -> bytes:
    """A length-prefixed JSON frame (the first thing a child reads on its socket)."""
    body = orjson.dumps(data)
    return _LENGTH.pack(len(body)) + body


def send_json(sock: socket.socket, data: Any) -> None:
    sock.sendall(frame_json(data))


def recv_json(sock: socket.socket) -> Any:
    """The frame ``send_json`` wrote; None if the socket closed first."""
    head = _recv_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    body = _recv_exactly(sock, _LENGTH.unpack(head)[0])
    return None if body is None else orjson.loads(body)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main() -> None:
    import argparse
    import gc

    from modelbay.serving.worker import die_with_parent

    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="zygote %(process)d: %(message)s")
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the frontend's to handle
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    ctl = socket.socket(fileno=args.fd)
    _name_process("mb-zygote")
    importlib.import_module("modelbay.serving.worker")
    importlib.import_module("modelbay.serving.validator")
    for module in PRELOAD:
        with contextlib.suppress(ImportError):  # a framework this install lacks
            importlib.import_module(module)
    gc.collect()
    gc.freeze()  # children share these pages instead of copying them on first collection
    _serve(ctl)
    # No framework teardown either: some (triton's bindings) report "leaks" at exit.
    os._exit(0)


def _serve(ctl: socket.socket) -> None:
    """Fork a child per request on the control socket until the frontend closes it."""
    from modelbay.serving.worker import die_with_parent

    me = os.getpid()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, _MAX_REQUEST, 1)
        except OSError:
            return
        if not data:
            return
        if not fds:
            ctl.send(orjson.dumps({"error": "no socket came with the request"}))
            continue
        request = orjson.loads(data)
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fds[0])
            ctl.send(orjson.dumps({"error": f"fork failed: {exc}"}))
            continue
        if pid == 0:
            code = 1
            try:
                ctl.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                die_with_parent(me)
                code = _child(request, socket.socket(fileno=fds[0]))
            finally:
                os._exit(code)  # no framework teardown: it can hang in a forked child
        os.close(fds[0])
        ctl.send(orjson.dumps({"pid": pid}))


def _name_process(name: str) -> None:
    """What ``ps`` and ``/proc/<pid>/comm`` show (15 characters at most)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name[:15])


def _child(request: dict[str, Any], sock: socket.socket) -> int:
    _name_process(f"mb-{request['kind']}")
    threads = str(max(1, int(request.get("threads", 1))))
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if request["kind"] == "replica":
        from modelbay.serving.messages import ReplicaSpec
        from modelbay.serving.worker import serve

        spec = recv_json(sock)
        if spec is None:
            return 1
        serve(sock, ReplicaSpec.from_json(spec))
        return 0
    if request["kind"] == "validate":
        from modelbay.serving.validator import answer

        job = recv_json(sock)
        if job is None:
            return 1
        send_json(sock, answer(job))
        return 0
    return 2


if __name__ == "__main__":
    main()
