"""A lean closed-loop HTTP load generator: keep-alive sockets, prebuilt requests.

Runs in its own processes (so the server under test is measured, not the client's GIL);
each process runs threads that send the same request in a loop until a deadline.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Throughput, latency percentiles (ms) and answers by status of one load run."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    ok_latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float, *, ok_only: bool = False) -> float:
        ordered = sorted(self.ok_latencies if ok_only else self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def p50(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else 0.0


def http_request(path: str, body: bytes, headers: dict[str, str], *, key: str) -> bytes:
    """A prebuilt POST carrying API key ``key`` (every route but health needs one)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines.append(f"Authorization: Bearer {key}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _exchange(sock: socket.socket, request: bytes, buf: bytearray) -> int:
    sock.sendall(request)
    del buf[:]
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    missing = length - len(rest)
    while missing > 0:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise ConnectionError("server closed the connection")
        missing -= len(chunk)
    return status


def _process(port: int, request: bytes, threads: int, seconds: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    ok_latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        mine: list[float] = []
        mine_ok: list[float] = []
        codes: dict[int, int] = {}
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                code = _exchange(sock, request, buf)
            except OSError:
                with lock:
                    errors[0] += 1
                sock.close()
                sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                continue
            took = time.perf_counter() - start
            mine.append(took)
            if code == 200:
                mine_ok.append(took)
            codes[code] = codes.get(code, 0) + 1
        sock.close()
        with lock:
            latencies.extend(mine)
            ok_latencies.extend(mine_ok)
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((latencies, ok_latencies, statuses, errors[0]))


def run_load(
    port: int, request: bytes, concurrency: int, seconds: float, processes: int = 2
) -> LoadResult:
    """``concurrency`` connections spread over ``processes`` client processes."""
    queue: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    per = [
        concurrency // processes + (1 if i < concurrency % processes else 0)
        for i in range(processes)
    ]
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_process, args=(port, request, n, seconds, queue)) for n in per if n
    ]
    for p in procs:
        p.start()
    result = LoadResult(seconds)
    for _ in procs:
        latencies, ok_latencies, statuses, errors = queue.get(timeout=seconds + 120)
        result.latencies.extend(latencies)
        result.ok_latencies.extend(ok_latencies)
        result.errors += errors
        for code, n in statuses.items():
            result.statuses[code] = result.statuses.get(code, 0) + n
    for p in procs:
        p.join()
    return result
