"""Training benchmark: the job's training loop (``modelbay.training.trainer.train``) side by
side with a plain PyTorch loop on the same model, data, optimizer, batch size and threads,
measured in one run; then time to accuracy on digits.

    .venv/bin/python bench/training.py [--threads 2] [--epochs 3] [--rows 20000] [--repeats 2]
        [--processes 1,2] [--only parallel]

Throughput: the MLP and the CNN of ``build_model`` on scikit-learn's digits tiled to about
``--rows`` rows, default hyperparameters (Adam, batch 32): samples/s of the batch loop and
of whole epochs (the trainer's include its validation pass and checkpoint), the median over
the epochs after the first, best of ``--repeats`` alternated runs. The plain loop is the
tightest one: a shuffled copy, slices, forward, loss, backward, step, nothing else.
Target: trainer / plain >= 0.95.
Time to accuracy: seconds from calling ``train`` until the validation accuracy first
reaches 0.95 (logistic, MLP, CNN; digits as they are, default hyperparameters).
Data-parallel (``--processes 1,2``; on a machine with more cores, ``1,2,4,8``): the CNN's
samples/s with strategy ddp in N processes of one thread each (all processes together,
median epoch after the first) against one process of one thread: the CNN at its default
batch of 32 rows and at 256, a ResNet at 128; bf16 autocast against float32; with CUDA,
one CNN epoch on the GPU against the CPU.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modelbay.training.distributed import train_parallel  # noqa: E402
from modelbay.training.families import build_model  # noqa: E402
from modelbay.training.spec import TrainSpec, resolve_spec  # noqa: E402
from modelbay.training.splits import split_rows  # noqa: E402
from modelbay.training.table import ColumnStats, DatasetSchema, Table  # noqa: E402
from modelbay.training.trainer import Cancelled, NoHooks, train  # noqa: E402


def digits(rows: int) -> Table:
    """scikit-learn's digits (1797 rows, 64 features, 10 classes), tiled to ``rows`` or more."""
    data = load_digits()
    copies = max(1, -(-rows // len(data.target)))
    return Table(
        features=np.tile(data.data.astype(np.float32), (copies, 1)),
        target=np.tile(data.target.astype(np.int64), copies),
        feature_names=[f"pixel_{i}" for i in range(64)],
        target_name="target",
        task="classification",
        classes=[str(i) for i in range(10)],
    )


def schema(table: Table) -> DatasetSchema:
    """What the dataset reader would record: 64 numeric features, an integer target."""
    columns: list[ColumnStats] = [
        {"name": name, "dtype": "float32", "numeric": True} for name in table.feature_names
    ]
    columns.append({"name": "target", "dtype": "int64", "numeric": True, "unique": 10})
    return {"format": "npz", "kind": "tabular", "rows": table.rows, "columns": columns}


class Timings(NoHooks):
    """Keeps each epoch's metrics; optionally stops once val_accuracy reaches ``target``."""

    def __init__(self, target: float | None = None) -> None:
        self.epochs: list[dict[str, float]] = []
        self.target = target
        self.started = time.perf_counter()
        self.reached: tuple[int, float] | None = None

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(metrics)
        reached = self.target is not None and metrics.get("val_accuracy", 0.0) >= self.target
        if reached and self.reached is None:
            self.reached = (epoch, time.perf_counter() - self.started)

    def cancelled(self) -> bool:
        return self.reached is not None


def trainer_rates(table: Table, spec: TrainSpec, threads: int) -> tuple[float, float]:
    """Samples/s of the trainer: batch loop (median) and whole epochs (median)."""
    hooks = Timings()
    with tempfile.TemporaryDirectory(prefix="mb-bench-train-") as tmp:
        train(table, spec, Path(tmp), hooks, threads=threads)
    loop = statistics.median(m["samples_per_s"] for m in hooks.epochs[1:] or hooks.epochs)
    rows = len(split_rows(table, spec).train)
    whole = statistics.median(rows / m["seconds"] for m in hooks.epochs[1:] or hooks.epochs)
    return loop, whole


def plain_rate(table: Table, spec: TrainSpec, threads: int) -> float:
    """Samples/s of a plain PyTorch loop over the trainer's training split (median epoch)."""
    torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    rows = split_rows(table, spec).train
    x = torch.from_numpy(table.features[rows])
    y = torch.from_numpy(table.target[rows])
    model = build_model(spec, (x.shape[1],), 10)
    model.normalize.fit(x)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = spec.batch_size if isinstance(spec.batch_size, int) else len(x)
    rates = []
    for _ in range(spec.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x))
        xs, ys = x[order], y[order]
        for start in range(0, len(x), batch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model.logits(xs[start : start + batch]), ys[start : start + batch])
            loss.backward()
            optimizer.step()
        rates.append(len(x) / (time.perf_counter() - started))
    return statistics.median(rates[1:] or rates)


def time_to_accuracy(family: str, threads: int, target: float) -> tuple[int, float] | None:
    """(epoch, seconds since ``train`` was called) when val_accuracy first reached
    ``target``, or None within the family's default epochs."""
    table = digits(0)
    spec = resolve_spec(family, "target", {}, schema(table))
    hooks = Timings(target)
    with (
        tempfile.TemporaryDirectory(prefix="mb-bench-train-") as tmp,
        contextlib.suppress(Cancelled),
    ):
        train(table, spec, Path(tmp), hooks, threads=threads)
    return hooks.reached


def parallel_rate(
    table: Table, params: dict[str, object], processes: int, family: str = "cnn"
) -> float:
    """Samples/s (median epoch after the first) of ``family`` in ``processes`` ddp processes
    of one thread each (1: the plain trainer, one thread)."""
    if processes > 1:
        params = {**params, "strategy": "ddp", "workers": processes}
    spec = resolve_spec(family, "target", params, schema(table))
    hooks = Timings()
    with tempfile.TemporaryDirectory(prefix="mb-bench-train-") as tmp:
        if processes > 1:
            train_parallel(table, spec, Path(tmp), hooks, threads=1)
        else:
            train(table, spec, Path(tmp), hooks, threads=1)
    return statistics.median(m["samples_per_s"] for m in hooks.epochs[1:] or hooks.epochs)


def epoch_seconds(table: Table, device: str, threads: int, epochs: int) -> float:
    """Median seconds of a whole CNN epoch (after the first) on ``device``."""
    spec = resolve_spec("cnn", "target", {"epochs": epochs, "device": device}, schema(table))
    hooks = Timings()
    with tempfile.TemporaryDirectory(prefix="mb-bench-train-") as tmp:
        train(table, spec, Path(tmp), hooks, threads=threads)
    return statistics.median(m["seconds"] for m in hooks.epochs[1:] or hooks.epochs)


def parallel_section(table: Table, processes: list[int], epochs: int, threads: int) -> None:
    print(f"\ndata-parallel (ddp, one thread per process, {table.rows} rows):", flush=True)
    # The CNN at its default batch and at 256; a ResNet, whose steps are long enough to
    # hide an all-reduce.
    for family, batch in (("cnn", 32), ("cnn", 256), ("resnet", 128)):
        base: dict[str, object] = {"epochs": epochs, "batch_size": batch}
        single = 0.0
        for n in processes:
            rate = parallel_rate(table, base, n, family)
            single = single or rate
            print(
                f"  {family:6} batch {batch:3}, {n} process{'es' if n > 1 else '  '}: "
                f"{rate:9.0f} samples/s  ({rate / single:4.2f}x one process)",
                flush=True,
            )
    base = {"epochs": epochs}
    fp32 = parallel_rate(table, base, 1)
    bf16 = parallel_rate(table, {**base, "amp": "bf16"}, 1)
    print(f"  amp bf16 / float32, one process: {bf16 / fp32:4.2f}x ({bf16:.0f} vs {fp32:.0f})")
    if torch.cuda.is_available():
        gpu = epoch_seconds(table, "cuda", threads, epochs)
        cpu = epoch_seconds(table, "cpu", threads, epochs)
        print(
            f"  CNN epoch on {torch.cuda.get_device_name()}: {gpu:.2f} s, on the CPU "
            f"({threads} threads): {cpu:.2f} s: GPU {cpu / gpu:.1f}x faster"
        )
    else:
        print("  no CUDA device here: the GPU-vs-CPU epoch is measured on a GPU machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput run")
    parser.add_argument("--rows", type=int, default=20_000, help="digits tiled to this")
    parser.add_argument("--target", type=float, default=0.95, help="validation accuracy")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop; best kept")
    parser.add_argument(
        "--processes", default="1,2", help="data-parallel process counts (1,2,4,8 with cores)"
    )
    parser.add_argument(
        "--only", choices=["all", "parallel"], default="all", help="parallel: that part alone"
    )
    args = parser.parse_args()
    if args.only == "parallel":
        processes = [int(n) for n in args.processes.split(",")]
        parallel_section(digits(args.rows), processes, max(args.epochs, 3), args.threads)
        return
    table = digits(args.rows)
    print(
        f"digits tiled to {table.rows} rows, {args.epochs} epochs per run, best of "
        f"{args.repeats} runs, default hyperparameters, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    ratios = {}
    for family in ("mlp", "cnn"):
        spec = resolve_spec(family, "target", {"epochs": args.epochs}, schema(table))
        plain, loop, whole = 0.0, 0.0, 0.0
        for _ in range(args.repeats):  # alternated, so that a busy moment hits both alike
            plain = max(plain, plain_rate(table, spec, args.threads))
            rates = trainer_rates(table, spec, args.threads)
            loop, whole = max(loop, rates[0]), max(whole, rates[1])
        print(
            f"{family:4} batch {spec.batch_size}: plain loop {plain:9.0f} samples/s | trainer "
            f"loop {loop:9.0f} samples/s, whole epoch {whole:9.0f} samples/s",
            flush=True,
        )
        ratios[family] = (loop / plain, whole / plain)
    for family in ("logistic", "mlp", "cnn"):
        reached = time_to_accuracy(family, args.threads, args.target)
        if reached is None:
            print(f"{family:8} time to val accuracy {args.target}: not reached", flush=True)
        else:
            epoch, seconds = reached
            print(
                f"{family:8} time to val accuracy {args.target}: {seconds:6.2f} s (epoch {epoch})",
                flush=True,
            )
    print("\nratios (same run):")
    for family, (loop, whole) in ratios.items():
        print(
            f"  {family} trainer / plain loop samples/s: {loop:5.2f} (whole epochs: {whole:5.2f})"
        )
    processes = [int(n) for n in args.processes.split(",")]
    parallel_section(table, processes, max(args.epochs, 3), args.threads)


if __name__ == "__main__":
    main()
