"""Serving benchmark: the real server under load from separate processes, side by side
with the in-process limit of the same runtime, printing ratios measured in one run.

    .venv/bin/python bench/serving.py [--seconds 5] [--only json,cifar,resnet,binary,overload,kill]

Scenarios (models are built here with random weights; only speed is measured):
  json      what peers are compared on: the CIFAR CNN ("LeNet") and a 64-128-10 MLP, V2 JSON
            bodies, batching 32 / 5 ms, one replica, at 16 and 64 clients: req/s, p50, p99,
            p99/p50 and server CPU per request (JSON and binary)
  cifar     the CIFAR-10 CNN of seed 000 at 64 clients: max_batch_size=64 vs 1
  resnet    a ResNet-18-style CNN on [N,3,64,64]: served vs in-process best batch
  binary    a [1,3,224,224] FP32 request: server CPU per request, JSON vs binary
  overload  twice the clients the server sustains, small queue: every request answered
  frontends binary CIFAR requests with --workers 1 and --workers N (``--workers``)
  kill      kill -9 of a replica under load: answers, and time to a ready replacement
Not a test: figures depend on the machine; docs/performance.md records measured ones.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import LoadResult, http_request, run_load  # noqa: E402
from models import cifar_cnn, image_mean, mlp, resnet18_style  # noqa: E402

from modelbay.protocols import v2  # noqa: E402


class Server:
    """``modelbay serve`` in a subprocess, with the management calls the scenarios need.

    It accepts ``key`` as an admin API key (``MODELBAY_ADMIN_KEY``); every request sends it.
    """

    def __init__(self, data_dir: Path, workers: int = 1):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = f"mb_bench_{secrets.token_urlsafe(32)}"
        env = {**os.environ, "MODELBAY_LOG_LEVEL": "warning", "MODELBAY_ADMIN_KEY": self.key}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelbay",
                "serve",
                "--port",
                str(self.port),
                "--grpc-port",
                "0",
                "--data-dir",
                str(data_dir),
                "--workers",
                str(workers),
            ],
            env=env,
        )
        self.http = self.client(timeout=120)
        _wait(lambda: self._ok("/v2/health/ready"), 60)

    def client(self, timeout: float) -> httpx.Client:
        """A new connection pool whose requests carry the admin key."""
        return httpx.Client(base_url=self.url, timeout=timeout, headers=_auth(self.key))

    def _ok(self, path: str) -> bool:
        try:
            return self.http.get(path).status_code == 200
        except httpx.TransportError:
            return False

    def push(self, name: str, path: Path) -> None:
        with open(path, "rb") as f:
            r = self.http.post(f"/api/v1/models/{name}/versions", files={"files": (path.name, f)})
        r.raise_for_status()

    def deploy(self, name: str, **config: Any) -> None:
        self.http.post("/api/v1/deployments", json={"model": name, **config}).raise_for_status()
        want = config.get("min_replicas", 1)
        _wait(lambda: self.replicas(name) >= want, 120)

    def replicas(self, name: str) -> int:
        status = self.http.get(f"/api/v1/deployments/{name}").json()["status"]
        return sum(v["replicas"] for v in status["versions"])

    def pids(self, name: str) -> list[int]:
        status = self.http.get(f"/api/v1/deployments/{name}").json()["status"]
        return [p for v in status["versions"] for p in v["pids"]]

    def cpu_seconds(self) -> float:
        """CPU time of the server: its frontends, zygote and replicas, so far."""
        pids, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo += _children(pid)
        return sum(_cpu(pid) for pid in pids)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def infer_request(server: Server, name: str, array: np.ndarray, *, binary: bool) -> bytes:
    body, length = v2.encode_request({"image": array}, binary=binary)
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers = {"Content-Type": "application/octet-stream", v2.HEADER_LENGTH: str(length)}
    return http_request(f"/v2/models/{name}/infer", body, headers, key=server.key)


def row(label: str, r: LoadResult) -> str:
    codes = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
    return (
        f"  {label:34} {r.rps:9.0f} req/s   p50 {r.p50:7.2f} ms   p99 {r.percentile(0.99):7.2f} ms"
        f"   [{codes}{' errors:' + str(r.errors) if r.errors else ''}]"
    )


def in_process(
    path: Path, shape: tuple[int, ...], threads: int, seconds: float
) -> dict[int, float]:
    """Samples/s of the ONNX runtime called directly, by batch size, in a fresh process
    (as a replica is: no torch, no server in the same interpreter)."""
    with mp.get_context("spawn").Pool(1) as pool:
        result: dict[int, float] = pool.apply(_in_process, (path, shape, threads, seconds))
    return result


def _in_process(
    path: Path, shape: tuple[int, ...], threads: int, seconds: float
) -> dict[int, float]:
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    from modelbay.runtimes import load_runtime

    runtime = load_runtime("onnx", path.parent, path.name, None, threads=threads)
    result = {}
    for batch in (1, 8, 32, 64):
        x = {"image": np.random.default_rng(0).random((batch, *shape), np.float32)}
        runtime.infer(x)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            runtime.infer(x)
            calls += 1
        result[batch] = calls * batch / (time.perf_counter() - start)
    return result


def scenario_json(server: Server, models: Path, seconds: float) -> None:
    print("\n[json] V2 JSON (and binary) bodies, batching 32 / 5 ms, one replica")
    for name, shape in (("cifar", (1, 3, 32, 32)), ("mlp", (1, 64))):
        server.push(f"json-{name}", models / f"{name}.onnx")
        server.deploy(f"json-{name}", max_batch_size=32, max_queue_delay_ms=5)
        x = np.random.default_rng(1).random(shape, np.float32)
        for binary in (False, True):
            request = infer_request(server, f"json-{name}", x, binary=binary)
            run_load(server.port, request, 16, 1)  # warm up
            for clients in (16, 64):
                before = server.cpu_seconds()
                result = run_load(server.port, request, clients, seconds)
                cpu_ms = 1000 * (server.cpu_seconds() - before) / max(1, len(result.latencies))
                label = f"{name} {'binary' if binary else 'JSON'}, {clients} clients"
                tail = result.percentile(0.99) / max(result.p50, 1e-9)
                print(row(label, result) + f"   p99/p50 {tail:4.1f}   CPU {cpu_ms:.3f} ms/req")
        server.http.delete(f"/api/v1/deployments/json-{name}")


def scenario_cifar(server: Server, models: Path, seconds: float) -> float:
    print("\n[cifar] CIFAR-10 CNN of seed 000, [1,3,32,32] binary requests, 64 clients")
    limit = in_process(models / "cifar.onnx", (3, 32, 32), 1, seconds / 4)
    print(
        "  in-process ONNX, 1 thread, samples/s by batch: "
        + ", ".join(f"{b}: {r:,.0f}" for b, r in limit.items())
    )
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    results = {}
    for mbs in (1, 64):
        name = f"cifar-b{mbs}"
        server.push(name, models / "cifar.onnx")
        server.deploy(name, max_batch_size=mbs, max_queue_delay_ms=2, queue_capacity=1024)
        request = infer_request(server, name, x, binary=True)
        results[mbs] = run_load(server.port, request, 64, seconds)
        print(row(f"max_batch_size={mbs}", results[mbs]))
        server.http.delete(f"/api/v1/deployments/{name}")
    ratio = results[64].rps / results[1].rps
    print(f"  => batched / unbatched throughput: {ratio:.2f}x")
    print(
        f"  => served req/s / in-process batch-1 calls/s: {results[64].rps / limit[1]:.3f} "
        "(the rest of the machine goes to HTTP, decoding, queueing and IPC)"
    )
    return results[64].rps


def scenario_resnet(server: Server, models: Path, seconds: float) -> None:
    print("\n[resnet] ResNet-18-style CNN, [1,3,64,64] binary requests")
    limit = in_process(models / "resnet.onnx", (3, 64, 64), 2, seconds / 4)
    best = max(limit.values())
    print(
        "  in-process ONNX, 2 threads, samples/s by batch: "
        + ", ".join(f"{b}: {r:,.1f}" for b, r in limit.items())
    )
    x = np.random.default_rng(1).random((1, 3, 64, 64), np.float32)
    server.push("resnet", models / "resnet.onnx")
    server.deploy(
        "resnet",
        min_replicas=1,
        max_replicas=1,
        threads_per_replica=2,
        max_batch_size=32,
        max_queue_delay_ms=5,
    )
    served = run_load(server.port, infer_request(server, "resnet", x, binary=True), 32, seconds)
    print(row("served, 1 replica x 2 threads", served))
    print(f"  => served / in-process best-batch throughput: {served.rps / best:.2f}")
    server.http.delete("/api/v1/deployments/resnet")


def scenario_binary(server: Server, models: Path, seconds: float) -> None:
    print("\n[binary] [1,3,224,224] FP32 request to a near-free model: server CPU per request")
    server.push("mean224", models / "mean224.onnx")
    server.deploy("mean224", max_batch_size=1)
    x = np.random.default_rng(1).random((1, 3, 224, 224), np.float32)
    cost = {}
    for binary in (False, True):
        request = infer_request(server, "mean224", x, binary=binary)
        before = server.cpu_seconds()
        result = run_load(server.port, request, 4, seconds)
        spent = server.cpu_seconds() - before
        count = len(result.latencies)
        cost[binary] = spent / max(1, count)
        label = f"{'binary' if binary else 'JSON':6} ({len(request) / 1e6:.2f} MB body)"
        print(row(label, result) + f"   server CPU {1000 * cost[binary]:.2f} ms/request")
    print(f"  => JSON / binary server CPU per request: {cost[False] / cost[True]:.1f}x")
    server.http.delete("/api/v1/deployments/mean224")


def scenario_overload(server: Server, models: Path, seconds: float, sustained: float) -> None:
    print("\n[overload] CIFAR CNN, queue of 64, 2 s timeout, 256 clients (4x those measured)")
    server.push("cifar-over", models / "cifar.onnx")
    server.deploy(
        "cifar-over",
        max_batch_size=64,
        max_queue_delay_ms=2,
        queue_capacity=64,
        request_timeout_ms=2000,
    )
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    request = infer_request(server, "cifar-over", x, binary=True)
    result = run_load(server.port, request, 256, seconds)
    print(row("256 clients", result))
    accepted_p50 = result.percentile(0.5, ok_only=True)
    accepted_p99 = result.percentile(0.99, ok_only=True)
    print(f"  accepted (200) requests: p50 {accepted_p50:.1f} ms, p99 {accepted_p99:.1f} ms")
    unexpected = {k: v for k, v in result.statuses.items() if k not in (200, 429, 503, 504)}
    print(
        f"  => answered 200 at {result.statuses.get(200, 0) / seconds:,.0f}/s "
        f"(sustained {sustained:,.0f}/s); unexpected statuses: {unexpected or 'none'}; "
        f"connection errors: {result.errors}; slowest answer {1000 * max(result.latencies):.0f} ms"
    )
    server.http.delete("/api/v1/deployments/cifar-over")


def scenario_kill(server: Server, models: Path, seconds: float) -> None:
    print("\n[kill] kill -9 of one of 2 replicas under load (16 clients)")
    server.push("cifar-kill", models / "cifar.onnx")
    server.deploy("cifar-kill", min_replicas=2, max_replicas=2, max_batch_size=32)
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    victim = server.pids("cifar-kill")[0]
    pid = os.fork()
    if pid == 0:  # the killer: waits a third of the run, then kills and times the replacement
        watcher = server.client(timeout=30)  # not the parent's connection

        def pids() -> list[int]:
            status = watcher.get("/api/v1/deployments/cifar-kill").json()["status"]
            return [p for v in status["versions"] for p in v["pids"]]

        time.sleep(seconds / 3)
        os.kill(victim, signal.SIGKILL)
        killed = time.perf_counter()
        _wait(lambda: victim not in pids(), 30)
        noticed = time.perf_counter() - killed
        _wait(lambda: len(pids()) == 2, 30)
        print(
            f"  replica death noticed after {noticed:.3f} s; replacement ready "
            f"{time.perf_counter() - killed:.2f} s after the kill"
        )
        os._exit(0)
    result = run_load(server.port, infer_request(server, "cifar-kill", x, binary=True), 16, seconds)
    os.waitpid(pid, 0)
    print(row("16 clients through the kill", result))
    server.http.delete("/api/v1/deployments/cifar-kill")


def scenario_frontends(models: Path, tmp: Path, seconds: float, workers: int) -> None:
    print(
        f"\n[frontends] CIFAR-10 CNN, binary requests, 64 clients: --workers 1 vs {workers} "
        "(two replicas, batching 32 / 2 ms, both runs)"
    )
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    rates = {}
    for n in (1, workers):
        server = Server(tmp / f"data-frontends-{n}", workers=n)
        try:
            server.push("fe", models / "cifar.onnx")
            server.deploy(
                "fe", min_replicas=2, max_replicas=2, max_batch_size=32, max_queue_delay_ms=2
            )
            request = infer_request(server, "fe", x, binary=True)
            run_load(server.port, request, 64, 1)  # warm up: every frontend connected
            result = run_load(server.port, request, 64, seconds, processes=4)
            rates[n] = result.rps
            print(row(f"--workers {n}", result))
        finally:
            server.stop()
    print(f"  => --workers {workers} / --workers 1: {rates[workers] / rates[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--only", default="json,cifar,resnet,binary,overload,kill,frontends")
    parser.add_argument(
        "--workers", type=int, default=2, help="frontend processes compared with one"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="modelbay-bench-"))
    models = tmp / "models"
    models.mkdir()
    cifar_cnn(models / "cifar.onnx")
    mlp(models / "mlp.onnx")
    resnet18_style(models / "resnet.onnx")
    image_mean(models / "mean224.onnx")
    print(f"modelbay serving benchmark: {os.cpu_count()} CPUs, {args.seconds:g} s per load run")
    server = Server(tmp / "data")
    try:
        if "frontends" in only:
            scenario_frontends(models, tmp, args.seconds, args.workers)
        if "json" in only:
            scenario_json(server, models, args.seconds)
        sustained = scenario_cifar(server, models, args.seconds) if "cifar" in only else 0.0
        if "resnet" in only:
            scenario_resnet(server, models, args.seconds)
        if "binary" in only:
            scenario_binary(server, models, args.seconds)
        if "overload" in only:
            scenario_overload(server, models, args.seconds, sustained)
        if "kill" in only:
            scenario_kill(server, models, args.seconds)
    finally:
        server.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the server")
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(c) for c in children]
    return found


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
