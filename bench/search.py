"""Hyperparameter search benchmark: a search on digits against the family's default
configuration, on the real server with its job workers, measured in one run.

    .venv/bin/python bench/search.py [--family cnn] [--trials 20] [--job-workers 2]
        [--epochs N] [--seeds 0,1,2]

First the default configuration is trained as ``modelbay train --dataset digits --family F``
trains it; then ``modelbay search`` runs ``--trials`` trials of the family's default space
with the default pruner (median), ``--job-workers`` at a time. Printed: the validation
accuracy (what the search maximises) and the test accuracy of the default and of the best
trial, the best trial other than trial 0 (which trains the defaults), and how many trials
the pruner stopped. Targets: best >= default; pruned >= a third of the trials.
``--epochs`` fixes the epochs of every trial (and of the default) to make a run shorter.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modelbay.client import Client  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="cnn")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--job-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", default="0", help="The sampler's seeds: a search each")
    args = parser.parse_args()
    params: dict[str, Any] = {} if args.epochs is None else {"epochs": args.epochs}
    with tempfile.TemporaryDirectory() as root, serving(Path(root), args.job_workers) as client:
        client.push_dataset("digits", sample="digits")
        started = time.perf_counter()
        default = finished(client, client.train("digits", args.family, "target", params=params))
        default_s = time.perf_counter() - started
        epochs = args.epochs or "the family default"
        print(f"digits, {args.family}, epochs: {epochs}; {args.job_workers} job workers")
        print(
            f"default configuration: val_accuracy {_last_val_accuracy(default):.4f}, test "
            f"accuracy {default['metrics']['accuracy']:.4f} ({default_s:.0f} s)"
        )
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            job = client.search(
                "digits", args.family, "target", trials=args.trials, params=params, seed=seed
            )
            search = finished(client, job, timeout=6 * 3600)
            print(f"\nseed {seed}:")
            report(default, search, time.perf_counter() - started)


def report(default: dict[str, Any], search: dict[str, Any], search_s: float) -> None:
    found = search["result"]["search"]
    trials = found["trials"]
    best = found["best"]
    base_val = _last_val_accuracy(default)
    others = [t for t in trials if t["trial"] != 0 and t["state"] == "complete"]
    runner_up = max(others, key=lambda t: t["value"], default=None)
    pruned = sum(t["state"] == "pruned" for t in trials)
    print(
        f"search of {len(trials)} trials: best val_accuracy {best['value']:.4f} (trial "
        f"{best['trial']}: {_params(best['params'])}), test accuracy "
        f"{search['metrics']['accuracy']:.4f} ({search_s:.0f} s)"
    )
    if runner_up is not None:
        print(
            f"best trial other than trial 0 (the defaults): val_accuracy "
            f"{runner_up['value']:.4f} (trial {runner_up['trial']}: {_params(runner_up['params'])})"
        )
    print(f"best / default val_accuracy: {best['value'] / base_val:.4f} (target >= 1)")
    print(
        f"trials pruned: {pruned} / {len(trials)} ({pruned / len(trials):.0%}; target >= 33%), "
        f"at epochs {sorted(t['pruned_at_epoch'] for t in trials if t['state'] == 'pruned')}"
    )
    importances = ", ".join(f"{k} {v:.2f}" for k, v in found["importances"].items())
    print(f"parameter importances: {importances or 'too few complete trials'}")


def _last_val_accuracy(job: dict[str, Any]) -> float:
    """The default's validation accuracy at its last epoch, as a trial is scored."""
    return float(job["metrics"]["val_accuracy"])


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def finished(client: Client, job: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    record = client.wait_job(job["id"], timeout=timeout, poll_s=2.0)
    if record["state"] != "succeeded":
        raise SystemExit(f"job {job['id']} {record['state']}: {record.get('error')}")
    return record


@contextmanager
def serving(data_dir: Path, job_workers: int) -> Iterator[Client]:
    """``modelbay serve`` with ``job_workers`` job workers, in a subprocess, and a client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    key = f"mb_bench_{secrets.token_urlsafe(32)}"
    env = {**os.environ, "MODELBAY_LOG_LEVEL": "warning", "MODELBAY_ADMIN_KEY": key}
    env["MODELBAY_JOB_WORKERS"] = str(job_workers)
    command = [sys.executable, "-m", "modelbay", "serve", "--port", str(port), "--grpc-port"]
    command += ["0", "--data-dir", str(data_dir), "--workers", "1"]
    process = subprocess.Popen(command, env=env)
    try:
        with Client(f"http://127.0.0.1:{port}", key, timeout=120) as client:
            deadline = time.monotonic() + 60
            while not _ready(client):
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start in 60 s")
                time.sleep(0.3)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=60)


def _ready(client: Client) -> bool:
    try:
        return client.is_ready()
    except Exception:  # not listening yet
        return False


if __name__ == "__main__":
    main()
