"""TorchServe 0.12 vs modelbay, side by side, same models, same V2 JSON bodies, one run.

    python3.11 -m venv /tmp/ts-venv    # TorchServe in a venv of its own (pin torch exactly:
    /tmp/ts-venv/bin/pip install torch==2.13.0 torchserve==0.12.0 \
        torch-model-archiver==0.12.0 nvgpu pyyaml    # it imports the last two undeclared)
    .venv/bin/python bench/peers/torchserve.py --ts-venv /tmp/ts-venv [--seconds 10]
        [--rounds 3] [--clients 64,16] [--no-onnx] [--workers N] [--models LeNet,MLP]

Needs Java 17 (Debian's openjdk-17-jre-headless). Not a test, not run by CI.

Builds LeNet (CIFAR-10 CNN) and MLP (64-128-10) as TorchScript with the TorchServe venv's
torch, archives them with torch-model-archiver + v2_handler.py, then starts:
  1. TorchServe (--ncs --disable-token-auth), batch_size 32, max_batch_delay 5 ms, 1 worker
  2. modelbay serve, the SAME TorchScript files (+ signature), max_batch_size 32,
     max_queue_delay_ms 5, 1 replica (threads_per_replica 1)
  3. (extra) modelbay serving ONNX exports of the same TorchScript modules
Every server stays up; each round loads each server once, one after the other (a shared
machine's speed drifts over minutes: alternating slows every server alike), and the ratios
are taken within a round. Closed-loop load (bench/loadgen.py: 2 client processes, keep-alive
sockets, prebuilt requests), the same JSON body for every server. Server CPU = utime+stime
of the server's process tree (/proc) before/after each load run, divided by requests answered.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

_REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_REPO / "bench"))
sys.path.insert(0, str(_REPO / "src"))

from loadgen import LoadResult, run_load  # noqa: E402
from serving import Server  # noqa: E402

HERE = Path(__file__).resolve().parent
TS_VENV = Path("/tmp/ts-venv")  # set by --ts-venv
WORK = Path("/tmp/modelbay-peers")  # set by --work
MODELS = {"LeNet": (1, 3, 32, 32), "MLP": (1, 64)}
SIGNATURES = {
    name: {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, *shape[1:]]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}],
    }
    for name, shape in MODELS.items()
}


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    """pid and all its descendants (recursively, through every thread's children list)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def cpu_by_process(pid: int) -> dict[str, float]:
    """utime+stime (s) of pid's tree, keyed by a short process kind (frontend/worker)."""
    out: dict[str, float] = {}
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        kind = (
            "worker"
            if any(w in cmd for w in ("model_service_worker", "serving.worker", "serving.zygote"))
            else "java"
            if cmd.split(" ")[0].endswith("java")
            else "frontend"
        )
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12]))
    return {k: v / os.sysconf("SC_CLK_TCK") for k, v in out.items()}


def cpu_seconds(pid: int) -> float:
    return sum(cpu_by_process(pid).values())


def body_for(shape: tuple[int, ...]) -> bytes:
    x = np.random.default_rng(1).random(shape, np.float32)
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(shape),
                "data": [float(v) for v in x.ravel()],
            }
        ]
    }
    return json.dumps(doc).encode()


def raw_request(path: str, body: bytes, extra: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def check_answer(port: int, path: str, body: bytes, headers: dict[str, str]) -> str:
    """One request: must be 200 with an output of shape [1,10] holding 10 numbers."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        status, answer = r.status, json.loads(r.read())
    out = answer["outputs"][0]
    ok = status == 200 and list(out["shape"]) == [1, 10] and len(out["data"]) == 10
    if not ok:
        raise SystemExit(f"bad answer from :{port}{path}: {status} {answer}")
    return f"200, outputs[0] {out['name']} {out['datatype']} shape {out['shape']}"


@dataclass
class Target:
    """A server that is up, with the request to send for each model."""

    label: str
    pid: int
    port: int
    requests: dict[str, bytes] = field(default_factory=dict)


def measure(target: Target, name: str, clients: int, seconds: float) -> dict[str, Any]:
    """One closed-loop load run against ``target``; its figures, printed as one line."""
    before = cpu_by_process(target.pid)
    r: LoadResult = run_load(target.port, target.requests[name], clients, seconds)
    after = cpu_by_process(target.pid)
    cpu = sum(after.values()) - sum(before.values())
    n = max(1, len(r.latencies))
    split = " ".join(
        f"{k} {1000 * (after[k] - before.get(k, 0)) / n:.3f}"
        for k in sorted(after)
        if after[k] - before.get(k, 0) > 0.005
    )
    codes = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
    print(
        f"  {target.label:24} {name:6} {clients:3d} clients {r.rps:8.0f} req/s  "
        f"p50 {r.p50:7.2f} ms  p99 {r.percentile(0.99):7.2f} ms  "
        f"CPU {1000 * cpu / n:6.3f} ms/req ({split})  [{codes}"
        f"{' errors:' + str(r.errors) if r.errors else ''}]",
        flush=True,
    )
    return {
        "rps": r.rps,
        "p50": r.p50,
        "p99": r.percentile(0.99),
        "cpu_ms": 1000 * cpu / n,
        "ok": r.statuses.get(200, 0) == sum(r.statuses.values()) and not r.errors,
    }


def busy_foreign_processes(window: float = 2.0) -> list[str]:
    """Processes outside this script's tree using >5% CPU now (they would skew the bench)."""

    def snap() -> dict[int, tuple[float, str]]:
        out = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:110]
                except (FileNotFoundError, ProcessLookupError):
                    continue
                out[int(d.name)] = ((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), cmd)
        return out

    mine = set(tree(os.getpid()))
    a = snap()
    time.sleep(window)
    b = snap()
    return [
        f"pid {p} {100 * (b[p][0] - a[p][0]) / window:.0f}% {b[p][1]}"
        for p in b
        if p in a and p not in mine and (b[p][0] - a[p][0]) / window > 0.05
    ]


# ---------------------------------------------------------------- build


def build(models_dir: Path) -> None:
    subprocess.run(
        [str(TS_VENV / "bin/python"), str(HERE / "build_models.py"), str(models_dir)], check=True
    )
    # ONNX exports of the very same TorchScript modules (modelbay venv's torch + onnx).
    import warnings

    import torch

    for name, shape in MODELS.items():
        module = torch.jit.load(str(models_dir / f"{name}.pt")).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros(*shape),),
                str(models_dir / f"{name}.onnx"),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                dynamo=False,
            )
    store = models_dir / "store"
    store.mkdir(exist_ok=True)
    for name in MODELS:
        subprocess.run(
            [
                str(TS_VENV / "bin/torch-model-archiver"),
                "--model-name",
                name,
                "--version",
                "1.0",
                "--serialized-file",
                str(models_dir / f"{name}.pt"),
                "--handler",
                str(HERE / "v2_handler.py"),
                "--export-path",
                str(store),
                "--force",
            ],
            check=True,
        )


# ---------------------------------------------------------------- TorchServe


@contextmanager
def torchserve(models_dir: Path) -> Iterator[Target]:
    """TorchServe up, every model registered with one worker and checked."""
    run_dir = WORK / "torchserve"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    inf, mgmt, met = free_port(), free_port(), free_port()
    (run_dir / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{inf}\n"
        f"management_address=http://127.0.0.1:{mgmt}\n"
        f"metrics_address=http://127.0.0.1:{met}\n"
        "disable_system_metrics=true\n"
        "default_workers_per_model=1\n"
        "enable_model_api=true\n"
        "enable_envvars_config=false\n"
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PATH": f"{TS_VENV / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(TS_VENV),
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        [
            str(TS_VENV / "bin/torchserve"),
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--model-store",
            str(models_dir / "store"),
            "--ts-config",
            str(run_dir / "config.properties"),
        ],
        cwd=run_dir,
        env=env,
        stdout=open(run_dir / "stdout.log", "wb"),  # noqa: SIM115 - the server's whole life
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{inf}/ping", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"TorchServe did not start; see {run_dir}/stdout.log"
                    ) from None
                time.sleep(0.5)
        java = [
            p
            for p in tree(proc.pid)
            if "java" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode()
        ]
        print(f"TorchServe 0.12 up (launcher pid {proc.pid}, java pid {java})")
        target = Target("TorchServe", proc.pid, inf)
        for name, shape in MODELS.items():
            q = (
                f"url={name}.mar&model_name={name}&batch_size=32&max_batch_delay=5"
                "&initial_workers=1&synchronous=true"
            )
            req = urllib.request.Request(f"http://127.0.0.1:{mgmt}/models?{q}", method="POST")
            urllib.request.urlopen(req, timeout=120).read()
            desc = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{mgmt}/models/{name}", timeout=10).read()
            )[0]
            print(
                f"  registered {name}: batchSize {desc['batchSize']}, maxBatchDelay "
                f"{desc['maxBatchDelay']} ms, workers {len(desc['workers'])} "
                f"(min {desc['minWorkers']}, max {desc['maxWorkers']})"
            )
            body = body_for(shape)
            path = f"/v2/models/{name}/infer"
            print(f"  check {name}: {check_answer(inf, path, body, {})}")
            target.requests[name] = raw_request(path, body, {})
        yield target
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1)
        for p in tree(proc.pid):  # nothing should be left
            if p != proc.pid:
                os.kill(p, signal.SIGKILL)


# ---------------------------------------------------------------- modelbay


@contextmanager
def modelbay(models_dir: Path, fmt: str, workers: int) -> Iterator[Target]:
    """modelbay up, every model deployed (one replica, one thread) and checked."""
    data = WORK / f"modelbay-{fmt}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    server = Server(data, workers=workers)
    try:
        print(f"modelbay up (pid {server.process.pid}), models as {fmt}")
        label = f"modelbay ({'TorchScript' if fmt == 'torchscript' else 'ONNX'})"
        target = Target(label, server.process.pid, server.port)
        for name, shape in MODELS.items():
            path = models_dir / f"{name}.{'pt' if fmt == 'torchscript' else 'onnx'}"
            form = {"format": fmt}
            if fmt == "torchscript":
                form["signature"] = json.dumps(SIGNATURES[name])
            with open(path, "rb") as f:
                r = server.http.post(
                    f"/api/v1/models/{name}/versions", files={"files": (path.name, f)}, data=form
                )
            r.raise_for_status()
            server.deploy(
                name,
                max_batch_size=32,
                max_queue_delay_ms=5,
                min_replicas=1,
                max_replicas=1,
                threads_per_replica=1,
            )
            body = body_for(shape)
            path_ = f"/v2/models/{name}/infer"
            auth = {"Authorization": f"Bearer {server.key}"}
            print(f"  check {name}: {check_answer(server.port, path_, body, auth)}")
            target.requests[name] = raw_request(path_, body, auth)
        yield target
    finally:
        server.stop()


# ---------------------------------------------------------------- main


def main() -> None:
    global TS_VENV, WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs per measurement")
    ap.add_argument("--clients", default="64,16")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS), help="of: " + ", ".join(MODELS))
    ap.add_argument(
        "--workers", type=int, default=1, help="modelbay frontend processes (--workers)"
    )
    ap.add_argument("--ts-venv", type=Path, default=TS_VENV, help="TorchServe's venv")
    ap.add_argument("--work", type=Path, default=WORK, help="models, archives, logs")
    args = ap.parse_args()
    TS_VENV, WORK = args.ts_venv, args.work
    clients = [int(c) for c in args.clients.split(",")]
    for name in set(MODELS) - set(args.models.split(",")):
        del MODELS[name]
    if not MODELS:
        ap.error(f"--models: none of {args.models}")
    models_dir = WORK / "models"
    shutil.rmtree(models_dir, ignore_errors=True)
    build(models_dir)
    print(
        f"\n{os.cpu_count()} CPUs, {args.seconds:g} s per run, {args.rounds} rounds, closed "
        "loop; every server stays up and the runs alternate between them, one loaded at a time"
    )
    for line in busy_foreign_processes():
        print(f"WARNING: other busy process on this machine: {line}")
    print()
    with ExitStack() as up:
        targets = [up.enter_context(torchserve(models_dir))]
        targets.append(up.enter_context(modelbay(models_dir, "torchscript", args.workers)))
        if not args.no_onnx:
            targets.append(up.enter_context(modelbay(models_dir, "onnx", args.workers)))
        runs = alternate(targets, clients, args.rounds, args.seconds)
    report(runs, clients)


Runs = dict[tuple[str, str, int], list[dict[str, Any]]]
"""(server, model, clients) -> one result per round."""


def alternate(targets: list[Target], clients: list[int], rounds: int, seconds: float) -> Runs:
    """Each round loads every server once, one after the other, so that a machine whose
    speed drifts (a shared one does) slows each server alike."""
    runs: Runs = {}
    for name in MODELS:
        for target in targets:
            run_load(target.port, target.requests[name], 64, 5)  # warm up: JVM JIT, caches
        for c in clients:
            for r in range(rounds):
                print(f"{name}, {c} clients, round {r + 1} of {rounds}")
                for target in targets:
                    runs.setdefault((target.label, name, c), []).append(
                        measure(target, name, c, seconds)
                    )
    return runs


def report(runs: Runs, clients: list[int]) -> None:
    print("\n=== results (V2 JSON bodies, batching 32 / 5 ms, 1 worker/replica, 1 thread) ===")
    print("median over the rounds; x = modelbay / TorchServe in the same round, median (min-max)")
    print(
        f"{'model':6} {'cl':>3}  {'server':24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10}   {'x req/s':>18} {'x p50':>6} {'x p99':>6} {'x CPU':>6}"
    )
    servers = list(dict.fromkeys(label for label, _, _ in runs))
    for name in MODELS:
        for c in clients:
            base = runs[("TorchServe", name, c)]
            for server in servers:
                rounds = runs[(server, name, c)]
                mid = {k: median(r[k] for r in rounds) for k in ("rps", "p50", "p99", "cpu_ms")}
                ratio = ""
                if server != "TorchServe":
                    x = [r["rps"] / b["rps"] for r, b in zip(rounds, base, strict=True)]
                    each = {
                        k: median(r[k] / b[k] for r, b in zip(rounds, base, strict=True))
                        for k in ("p50", "p99", "cpu_ms")
                    }
                    ratio = (
                        f"   {median(x):6.2f}x ({min(x):.2f}-{max(x):.2f}) "
                        f"{each['p50']:5.2f}x {each['p99']:5.2f}x {each['cpu_ms']:5.2f}x"
                    )
                ok = all(r["ok"] for r in rounds)
                print(
                    f"{name:6} {c:3d}  {server:24} {mid['rps']:8.0f} {mid['p50']:8.2f} "
                    f"{mid['p99']:8.2f} {mid['cpu_ms']:10.3f}{ratio}{'' if ok else '  NON-200!'}"
                )
    print("(all answers 200 unless marked NON-200)")


if __name__ == "__main__":
    main()
