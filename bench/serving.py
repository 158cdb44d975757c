"""Serving benchmark: the real server under load from a separate process, side by side
with the in-process limit of the same runtime.

    .venv/bin/python bench/serving.py [--seconds 5] [--concurrency 1,8,32]

Builds the CIFAR-10 CNN of the PyTorch tutorial (seed 000: conv 3->6 k5, pool, conv 6->16
k5, fc 400->120->84->10; random weights: only speed is measured), exports it to ONNX,
starts ``modelbay serve`` on a free 127.0.0.1 port, pushes the model and prints
throughput and latency per concurrency for JSON and binary requests, then the ratios.
Not a test: figures depend on the machine; docs/performance.md records measured ones.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modelbay.protocols import v2  # noqa: E402


def build_cifar_cnn(path: Path) -> None:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(torch.relu(self.conv1(x)))  # [N,6,14,14]
            x = self.pool(torch.relu(self.conv2(x)))  # [N,16,5,5]
            x = torch.flatten(x, 1)  # [N,400]
            x = torch.relu(self.fc1(x))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)  # [N,10]

    torch.onnx.export(
        Net().eval(),
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )


def in_process(path: Path, seconds: float) -> dict[int, float]:
    """Samples/s of the ONNX runtime itself, by batch size (one intra-op thread)."""
    from modelbay.runtimes import load_runtime

    runtime = load_runtime("onnx", path.parent, path.name, None, threads=1)
    result = {}
    for batch in (1, 8, 64):
        x = {"image": np.random.default_rng(0).random((batch, 3, 32, 32), np.float32)}
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            runtime.infer(x)
            calls += 1
        result[batch] = calls * batch / (time.perf_counter() - start)
    return result


def _client(
    port: int,
    body: bytes,
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
    queue: mp.Queue,
) -> None:  # type: ignore[type-arg]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        codes: dict[int, int] = {}
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            conn.request("POST", "/v2/models/cifar-cnn/infer", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t0)
            codes[response.status] = codes.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((latencies, statuses, time.perf_counter() - start))


def load(port: int, binary: bool, seconds: float, concurrency: int) -> dict[str, float]:
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    body, length = v2.encode_request({"image": x}, binary=binary)
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers = {"Content-Type": "application/octet-stream", v2.HEADER_LENGTH: str(length)}
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=_client, args=(port, body, headers, seconds, concurrency, queue))
    proc.start()
    latencies, statuses, elapsed = queue.get(timeout=seconds + 120)
    proc.join()
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "ok": statuses.get(200, 0) / max(1, len(latencies)),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="modelbay-bench-"))
    model = tmp / "cifar_cnn.onnx"
    build_cifar_cnn(model)
    port = _free_port()
    env = {**os.environ, "MODELBAY_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelbay",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "data"),
        ],
        env=env,
    )
    try:
        _wait_ready(port)
        _push(port, model)
        limit = in_process(model, args.seconds)
        print(
            "in-process ONNX runtime, samples/s by batch: "
            + ", ".join(f"{b}: {r:,.0f}" for b, r in limit.items())
        )
        print(f"{'encoding':8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ok':>6}")
        rows = {}
        for binary in (False, True):
            for c in levels:
                r = load(port, binary, args.seconds, c)
                rows[(binary, c)] = r
                print(
                    f"{'binary' if binary else 'json':8} {c:>7} {r['rps']:>8.0f} "
                    f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['ok']:>6.1%}"
                )
        best = max(r["rps"] for r in rows.values())
        print(f"served req/s (best) / in-process batch-1 calls/s: {best / limit[1]:.2f}")
        print(
            f"served req/s (best) / in-process best-batch samples/s: "
            f"{best / max(limit.values()):.3f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become ready")


def _push(port: int, model: Path) -> None:
    boundary = "modelbaybench"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{model.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + model.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/api/v1/models/cifar-cnn/versions",
        body=payload,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    response = conn.getresponse()
    if response.status != 201:
        raise SystemExit(f"push failed: {response.status} {json.loads(response.read())}")


if __name__ == "__main__":
    main()
