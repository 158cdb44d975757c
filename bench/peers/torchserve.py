"""TorchServe 0.12 vs modelbay, side by side, same models, same V2 JSON bodies, one run.

    python3.11 -m venv /tmp/ts-venv    # TorchServe in a venv of its own (pin torch exactly:
    /tmp/ts-venv/bin/pip install torch==2.13.0 torchserve==0.12.0 \
        torch-model-archiver==0.12.0 nvgpu pyyaml    # it imports the last two undeclared)
    .venv/bin/python bench/peers/torchserve.py --ts-venv /tmp/ts-venv [--seconds 10]
        [--clients 64,16] [--no-onnx] [--workers N]

Needs Java 17 (Debian's openjdk-17-jre-headless). Not a test, not run by CI.

Builds LeNet (CIFAR-10 CNN) and MLP (64-128-10) as TorchScript with the TorchServe venv's
torch, archives them with torch-model-archiver + v2_handler.py, then, one server at a time:
  1. TorchServe (--ncs --disable-token-auth), batch_size 32, max_batch_delay 5 ms, 1 worker
  2. modelbay serve, the SAME TorchScript files (+ signature), max_batch_size 32,
     max_queue_delay_ms 5, 1 replica (threads_per_replica 1)
  3. (extra) modelbay serving ONNX exports of the same TorchScript modules
Closed-loop load (bench/loadgen.py: 2 client processes, keep-alive sockets, prebuilt
requests), the same JSON body for every server. Server CPU = utime+stime of the server
process tree (/proc) before/after each load run, divided by requests answered.
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
from pathlib import Path

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
            if ("model_service_worker" in cmd or "serving.worker" in cmd)
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


def measure(
    label: str, pid: int, port: int, request: bytes, clients: list[int], seconds: float
) -> dict[int, dict]:
    run_load(port, request, 64, 5)  # warm up (JIT of TorchServe's JVM, caches)
    results = {}
    for c in clients:
        before = cpu_by_process(pid)
        r: LoadResult = run_load(port, request, c, seconds)
        after = cpu_by_process(pid)
        cpu = sum(after.values()) - sum(before.values())
        n = max(1, len(r.latencies))
        split = " ".join(
            f"{k} {1000 * (after[k] - before.get(k, 0)) / n:.3f}"
            for k in sorted(after)
            if after[k] - before.get(k, 0) > 0.005
        )
        results[c] = {
            "rps": r.rps,
            "p50": r.p50,
            "p99": r.percentile(0.99),
            "cpu_ms": 1000 * cpu / n,
            "split": split,
            "statuses": dict(r.statuses),
            "errors": r.errors,
        }
        codes = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        print(
            f"  {label:28} {c:3d} clients {r.rps:8.0f} req/s  p50 {r.p50:7.2f} ms  "
            f"p99 {r.percentile(0.99):7.2f} ms  CPU {1000 * cpu / n:6.3f} ms/req ({split})"
            f"  [{codes}"
            f"{' errors:' + str(r.errors) if r.errors else ''}]",
            flush=True,
        )
    return results


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


def bench_torchserve(models_dir: Path, clients: list[int], seconds: float) -> dict:
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
    results: dict = {}
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
            results[name] = measure(
                f"TorchServe {name}", proc.pid, inf, raw_request(path, body, {}), clients, seconds
            )
            # unregister so the next model's measurement has only its own worker up
            req = urllib.request.Request(f"http://127.0.0.1:{mgmt}/models/{name}", method="DELETE")
            urllib.request.urlopen(req, timeout=60).read()
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
    return results


# ---------------------------------------------------------------- modelbay


def bench_modelbay(
    models_dir: Path, clients: list[int], seconds: float, fmt: str, workers: int = 1
) -> dict:
    data = WORK / f"modelbay-{fmt}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    server = Server(data, workers=workers)
    results: dict = {}
    try:
        print(f"modelbay up (pid {server.process.pid}), models as {fmt}")
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
            results[name] = measure(
                f"modelbay[{fmt}] {name}",
                server.process.pid,
                server.port,
                raw_request(path_, body, auth),
                clients,
                seconds,
            )
            server.http.delete(f"/api/v1/deployments/{name}").raise_for_status()
            time.sleep(1)
    finally:
        server.stop()
    return results


# ---------------------------------------------------------------- main


def main() -> None:
    global TS_VENV, WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", default="64,16")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument(
        "--workers", type=int, default=1, help="modelbay frontend processes (--workers)"
    )
    ap.add_argument("--ts-venv", type=Path, default=TS_VENV, help="TorchServe's venv")
    ap.add_argument("--work", type=Path, default=WORK, help="models, archives, logs")
    args = ap.parse_args()
    TS_VENV, WORK = args.ts_venv, args.work
    clients = [int(c) for c in args.clients.split(",")]
    models_dir = WORK / "models"
    shutil.rmtree(models_dir, ignore_errors=True)
    build(models_dir)
    print(
        f"\n{os.cpu_count()} CPUs, {args.seconds:g} s per measurement, closed loop, "
        "one server up at a time"
    )
    for line in busy_foreign_processes():
        print(f"WARNING: other busy process on this machine: {line}")
    print()
    runs = {"TorchServe": bench_torchserve(models_dir, clients, args.seconds)}
    runs["modelbay (TorchScript)"] = bench_modelbay(
        models_dir, clients, args.seconds, "torchscript", args.workers
    )
    if not args.no_onnx:
        runs["modelbay (ONNX)"] = bench_modelbay(
            models_dir, clients, args.seconds, "onnx", args.workers
        )

    print("\n=== results (V2 JSON bodies, batching 32 / 5 ms, 1 worker/replica, 1 thread) ===")
    print(
        f"{'model':6} {'cl':>3}  {'server':24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10}   {'x req/s':>7} {'x p50':>6} {'x p99':>6} {'x CPU':>6}"
    )
    ts = runs["TorchServe"]
    for name in MODELS:
        for c in clients:
            base = ts[name][c]
            for server, res in runs.items():
                m = res[name][c]
                ok = m["statuses"].get(200, 0) == sum(m["statuses"].values()) and not m["errors"]
                ratio = (
                    ""
                    if server == "TorchServe"
                    else (
                        f"   {m['rps'] / base['rps']:6.2f}x {m['p50'] / base['p50']:5.2f}x "
                        f"{m['p99'] / base['p99']:5.2f}x {m['cpu_ms'] / base['cpu_ms']:5.2f}x"
                    )
                )
                print(
                    f"{name:6} {c:3d}  {server:24} {m['rps']:8.0f} {m['p50']:8.2f} "
                    f"{m['p99']:8.2f} {m['cpu_ms']:10.3f}{ratio}{'' if ok else '  NON-200!'}"
                )
    print("(x = modelbay / TorchServe; all answers 200 unless marked NON-200)")


if __name__ == "__main__":
    main()
