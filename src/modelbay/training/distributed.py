"""A job trained by ``workers`` processes (strategies ddp, average and ensemble; see
``parallel``), started and supervised by the job's process.

``train_parallel`` writes the table once for the ranks, starts them
(``python -m modelbay.training.distributed``), which join one ``torch.distributed`` process
group (gloo on the CPU, NCCL on CUDA; rendezvous through a file of the work directory, so no
port is chosen), and relays what rank 0 reports (log lines, epochs, checkpoints, the
result) to the job's hooks. If a rank dies (killed, out of memory), the step it was in
fails in every rank: the supervisor stops them all and starts them again from the last
checkpoint, up to ``MAX_RESTARTS`` times, as ``torchrun --max-restarts`` would. A rank that
fails with an error (bad data) fails the job without a restart. Cancelling the job stops
the ranks at once; the last checkpoint stays.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from modelbay.errors import ModelbayError
from modelbay.tensors import Signature
from modelbay.training.evaluation import TrainResult
from modelbay.training.spec import TrainSpec
from modelbay.training.table import InvalidDataset, Table
from modelbay.training.trainer import Cancelled, Hooks, NoHooks

MAX_RESTARTS = 3
ERROR_EXIT = 3  # a rank's error was reported (bad data, bad spec): restarting cannot help
POLL_S = 0.2
EXIT_GRACE_S = 30.0
"""How long the other ranks have to exit once rank 0 has sent the result and ended; a rank
still running then is stopped (the model is complete), not waited for for ever."""


@dataclass
class _Outcome:
    result: TrainResult | None = None
    failed_rank: int | None = None
    reason: str = ""


def train_parallel(
    table: Table,
    spec: TrainSpec,
    workdir: Path,
    hooks: Hooks,
    *,
    resume: Path | None = None,
    threads: int = 1,
) -> TrainResult:
    """Train ``spec`` (a parallel strategy) in ``spec.workers`` processes of ``threads``
    threads each, as ``trainer.train`` does in one."""
    workdir = workdir.resolve()  # the rendezvous is a file:// URL: a path from the root
    workdir.mkdir(parents=True, exist_ok=True)
    _write_table(table, workdir)
    (workdir / "spec.json").write_text(spec.model_dump_json())
    restarts, checkpoint = 0, resume
    while True:
        outcome, last = _launch(spec, workdir, hooks, checkpoint, threads, restarts)
        if outcome.result is not None:
            return outcome.result
        if last is not None:
            checkpoint = workdir / f"resume-{restarts + 1}.pt"
            shutil.copyfile(last[0], checkpoint)
        if restarts >= MAX_RESTARTS:
            raise ModelbayError(
                f"rank {outcome.failed_rank} {outcome.reason}; gave up after "
                f"{MAX_RESTARTS} restarts",
                status=500,
            )
        restarts += 1
        start = f"the checkpoint of epoch {last[1]}" if last else "the start"
        hooks.on_log(
            f"rank {outcome.failed_rank} {outcome.reason}: restarting the {spec.workers} "
            f"processes from {start} (restart {restarts} of {MAX_RESTARTS})"
        )


def _launch(
    spec: TrainSpec,
    workdir: Path,
    hooks: Hooks,
    resume: Path | None,
    threads: int,
    attempt: int,
) -> tuple[_Outcome, tuple[Path, int] | None]:
    """Run the ranks once: (how it ended, the last checkpoint rank 0 wrote: path, epoch)."""
    rendezvous = workdir / f"rendezvous-{attempt}"
    rendezvous.unlink(missing_ok=True)
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(spec.workers):
            args = [
                sys.executable,
                "-m",
                "modelbay.training.distributed",
                f"--rank={rank}",
                f"--world={spec.workers}",
                f"--workdir={workdir}",
                f"--rendezvous={rendezvous}",
                f"--parent={os.getpid()}",
                f"--threads={threads}",
            ]
            if rank == 0:
                args.append(f"--events-fd={write_fd}")
            if resume is not None:
                args.append(f"--resume={resume}")
            with open(workdir / f"rank-{rank}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        args,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        pass_fds=(write_fd,) if rank == 0 else (),
                    )
                )
        os.close(write_fd)
        write_fd = -1
        return _follow(procs, read_fd, hooks, workdir)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def _follow(
    procs: list[subprocess.Popen[bytes]], fd: int, hooks: Hooks, workdir: Path
) -> tuple[_Outcome, tuple[Path, int] | None]:
    outcome = _Outcome()
    last: tuple[Path, int] | None = None
    buffer = b""
    open_pipe = True
    done_at: float | None = None  # when rank 0 had sent the result and ended
    while True:
        if hooks.cancelled():
            raise Cancelled("cancelled")
        if open_pipe and select.select([fd], [], [], POLL_S)[0]:
            chunk = os.read(fd, 1 << 16)
            open_pipe = bool(chunk)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                kind = event.pop("event")
                if kind == "log":
                    hooks.on_log(event["message"])
                elif kind == "epoch":
                    hooks.on_epoch(event["epoch"], event["metrics"])
                elif kind == "checkpoint":
                    last = (Path(event["path"]), event["epoch"])
                    hooks.on_checkpoint(*last)
                elif kind == "result":
                    outcome.result = _result(event)
                elif kind == "error":
                    raise ModelbayError(event["message"], status=event["status"])
        elif not open_pipe:
            time.sleep(POLL_S)
        codes = [proc.poll() for proc in procs]
        for rank, code in enumerate(codes):
            if code not in (None, 0):
                if code == ERROR_EXIT or (code > 0 and not _any_signalled(procs)):
                    raise ModelbayError(
                        f"rank {rank} failed: {_last_line(workdir / f'rank-{rank}.log')}",
                        status=500,
                    )
                dead = next(r for r, p in enumerate(procs) if (p.poll() or 0) < 0)
                outcome.failed_rank = dead
                name = signal.Signals(-(procs[dead].poll() or 0)).name
                outcome.reason = f"ended with {name}"
                return outcome, last
        if all(code == 0 for code in codes) and not open_pipe:
            if outcome.result is None:
                raise ModelbayError("the ranks ended without a result", status=500)
            return outcome, last
        if outcome.result is not None and not open_pipe and codes[0] == 0:
            done_at = done_at or time.monotonic()
            if time.monotonic() - done_at > EXIT_GRACE_S:
                stuck = [rank for rank, code in enumerate(codes) if code is None]
                hooks.on_log(
                    f"rank(s) {', '.join(map(str, stuck))} did not exit within "
                    f"{EXIT_GRACE_S:g} s of the result: stopped"
                )
                return outcome, last


def _any_signalled(procs: list[subprocess.Popen[bytes]]) -> bool:
    """Whether a rank was killed; its peers then fail with errors of their own."""
    time.sleep(POLL_S)  # let a killed rank's exit be seen before its peers' errors
    return any((p.poll() or 0) < 0 for p in procs)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    return lines[-1][-500:] if lines else "no output"


def _write_table(table: Table, workdir: Path) -> None:
    np.save(workdir / "features.npy", table.features)
    np.save(workdir / "target.npy", table.target)
    meta = {
        "feature_names": table.feature_names,
        "target_name": table.target_name,
        "task": table.task,
        "classes": table.classes,
    }
    (workdir / "table.json").write_text(json.dumps(meta))


def _read_table(workdir: Path) -> Table:
    meta = json.loads((workdir / "table.json").read_text())
    return Table(
        features=np.load(workdir / "features.npy"),
        target=np.load(workdir / "target.npy"),
        feature_names=meta["feature_names"],
        target_name=meta["target_name"],
        task=meta["task"],
        classes=meta["classes"],
    )


def _result(event: dict[str, Any]) -> TrainResult:
    event["model_dir"] = Path(event["model_dir"])
    event["signature"] = Signature.model_validate(event["signature"])
    return TrainResult(**event)


class _PipeHooks(NoHooks):
    """Rank 0's hooks: each report a JSON line to the supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **event: Any) -> None:
        data = (json.dumps(event, default=str) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.send(event="epoch", epoch=epoch, metrics=metrics)

    def on_log(self, message: str) -> None:
        self.send(event="log", message=message)

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        self.send(event="checkpoint", path=str(path), epoch=epoch)


def _rank_main(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from modelbay.training.parallel import Parallel
    from modelbay.training.trainer import run_training, training_device

    workdir = Path(args.workdir)
    spec = TrainSpec.model_validate_json((workdir / "spec.json").read_text())
    hooks: Hooks = _PipeHooks(args.events_fd) if args.events_fd is not None else NoHooks()
    try:
        table = _read_table(workdir)
        device = training_device(spec.device)
        if device.type == "cuda":
            torch.cuda.set_device(args.rank % torch.cuda.device_count())
        # NCCL wants a GPU of its own per rank; more ranks than GPUs share them over gloo.
        nccl = device.type == "cuda" and args.world <= torch.cuda.device_count()
        dist.init_process_group(
            "nccl" if nccl else "gloo",
            init_method=f"file://{args.rendezvous}",
            rank=args.rank,
            world_size=args.world,
            timeout=timedelta(minutes=10),
        )
        plan = Parallel(spec, args.rank, args.world, workdir)
        resume = Path(args.resume) if args.resume else None
        result = run_training(
            table, spec, workdir / "train", hooks, resume=resume, threads=args.threads, plan=plan
        )
    except (InvalidDataset, ModelbayError) as exc:
        if isinstance(hooks, _PipeHooks):
            status = exc.status if isinstance(exc, ModelbayError) else 422
            hooks.send(event="error", message=str(exc), status=status)
        sys.stderr.write(f"rank {args.rank}: {exc}\n")
        return ERROR_EXIT
    if result is not None and isinstance(hooks, _PipeHooks):
        fields = asdict(result)
        fields["signature"] = result.signature.model_dump()
        hooks.send(event="result", **fields)
    dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    from modelbay.jobs.lifetime import die_with_parent

    parser = argparse.ArgumentParser(prog="python -m modelbay.training.distributed")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--rendezvous", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--events-fd", type=int, default=None)
    parser.add_argument("--resume", default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process decides
    return _rank_main(args)


if __name__ == "__main__":
    sys.exit(main())
