"""The pieces of parallel training: how ranks share the rows, the ensemble's answer, the
strategy parameters' checks, and ranks (real processes) that fail or succeed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from modelbay.errors import InvalidRequest, ModelbayError
from modelbay.training.distributed import train_parallel
from modelbay.training.families import build_model
from modelbay.training.parallel import Ensemble, Parallel
from modelbay.training.spec import TrainSpec, resolve_spec
from modelbay.training.table import DatasetSchema, Table
from modelbay.training.trainer import NoHooks

IRIS_SCHEMA: DatasetSchema = {
    "kind": "tabular",
    "rows": 150,
    "columns": [
        *({"name": f"x{i}", "numeric": True, "dtype": "float64"} for i in range(4)),
        {"name": "species", "numeric": True, "dtype": "int64", "unique": 3},
    ],
}


def _spec(**params: Any) -> TrainSpec:
    return resolve_spec("mlp", "species", params, IRIS_SCHEMA)


def _iris() -> Table:
    x, y = load_iris(return_X_y=True)
    return Table(
        features=x.astype(np.float32),
        target=y.astype(np.int64),
        feature_names=[f"x{i}" for i in range(4)],
        target_name="species",
        task="classification",
        classes=["setosa", "versicolor", "virginica"],
    )


@pytest.mark.parametrize("strategy", ["average", "ensemble"])
def test_shards_are_disjoint_equal_and_cover_the_training_rows(strategy: str) -> None:
    spec = _spec(strategy=strategy, workers=3)
    rows = torch.arange(100, 200)  # 100 training rows: shards of 34, 33 and 33 (+1 repeated)
    shards = [Parallel(spec, r, 3, Path(".")).rows(rows, spec) for r in range(3)]
    assert [len(s) for s in shards] == [34, 34, 34]
    distinct = [set(s.tolist()) for s in shards]
    assert set().union(*distinct) == set(range(100, 200))
    assert sum(len(d) for d in distinct) == 100  # disjoint


def test_data_parallel_ranks_split_each_epoch_and_each_takes_a_share_of_the_batch() -> None:
    spec = _spec(strategy="ddp", workers=2, batch_size=32)
    ranks = [Parallel(spec, r, 2, Path(".")) for r in range(2)]
    rows = torch.arange(11)
    assert all(torch.equal(p.rows(rows, spec), rows) for p in ranks)  # every rank: all rows
    order = torch.randperm(11)
    shares = [p.epoch_order(order) for p in ranks]
    assert [len(s) for s in shares] == [6, 6]  # padded to 12, as DistributedSampler does
    assert set(torch.cat(shares).tolist()) == set(range(11))
    assert [p.batch_size(spec, 6) for p in ranks] == [6, 6]
    assert ranks[0].batch_size(spec, 600) == 16  # 32 rows per step, all ranks together


def test_an_ensemble_answers_the_mean_of_its_members() -> None:
    spec = _spec()
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_model(spec, (4,), 3).eval())
    ensemble = Ensemble(members).eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        expected = torch.stack([m(x) for m in members]).mean(dim=0)
        torch.testing.assert_close(ensemble(x), expected)
        torch.testing.assert_close(torch.softmax(ensemble.logits(x), dim=-1), expected)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"workers": 2}, "params.workers"),
        ({"strategy": "ddp", "sync_every": 4}, "params.sync_every"),
        ({"strategy": "ensemble", "clients": 3}, "params.clients"),
        ({"strategy": "ddp", "workers": 0}, "params.workers"),
        ({"strategy": "average", "sync_every": "often"}, "params.sync_every"),
        ({"strategy": "parallel"}, "params.strategy"),
        ({"amp": "fp8"}, "params.amp"),
    ],
)
def test_strategy_parameters_that_do_not_apply_or_are_invalid_get_422(
    params: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _spec(**params)
    assert caught.value.param == param
    assert caught.value.status == 422


def test_a_parallel_strategy_defaults_to_two_workers_and_a_sync_every_epoch() -> None:
    spec = _spec(strategy="average")
    assert (spec.workers, spec.sync_every) == (2, "epoch")
    assert _spec(strategy="average", sync_every="8").sync_every == 8
    assert _spec().workers == 1


def test_two_ranks_train_and_export_one_model(tmp_path: Path) -> None:
    spec = _spec(strategy="ddp", workers=2, epochs=15, lr=0.01)
    logs: list[str] = []

    class Hooks(NoHooks):
        epochs: list[int] = []

        def on_log(self, message: str) -> None:
            logs.append(message)

        def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
            self.epochs.append(epoch)

    hooks = Hooks()
    result = train_parallel(_iris(), spec, tmp_path, hooks)
    assert hooks.epochs == list(range(1, 16))
    assert result.metrics["test_accuracy"] >= 0.85
    assert (result.model_dir / result.entrypoint).is_file()
    assert (tmp_path / "train" / "checkpoint.pt").is_file()


def test_a_rank_that_fails_on_its_data_fails_the_job_without_restarts(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    spec = _spec(strategy="ddp", workers=2, device="cuda")
    logs: list[str] = []

    class Hooks(NoHooks):
        def on_log(self, message: str) -> None:
            logs.append(message)

    with pytest.raises(ModelbayError, match=r"device=cuda, but this worker has no CUDA"):
        train_parallel(_iris(), spec, tmp_path, Hooks())
    assert not [line for line in logs if "restarting" in line]


def test_bf16_autocast_trains_and_exports_a_float32_model(tmp_path: Path) -> None:
    from modelbay.training.trainer import train

    spec = _spec(amp="bf16", epochs=20, lr=0.01)
    result = train(_iris(), spec, tmp_path, NoHooks())
    assert result.metrics["test_accuracy"] >= 0.85
    assert result.signature.inputs[0].datatype == "FP32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("params", [{"device": "cuda"}, {"device": "cuda", "amp": "bf16"}])
def test_a_job_trains_on_cuda_and_exports_for_the_cpu(
    tmp_path: Path, params: dict[str, Any]
) -> None:
    from modelbay.training.trainer import train

    spec = _spec(epochs=20, lr=0.01, **params)
    result = train(_iris(), spec, tmp_path, NoHooks())
    assert result.metrics["test_accuracy"] >= 0.85


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_data_parallel_ranks_train_on_cuda(tmp_path: Path) -> None:
    spec = _spec(strategy="ddp", workers=2, epochs=15, lr=0.01, device="cuda")
    result = train_parallel(_iris(), spec, tmp_path, NoHooks())
    assert result.metrics["test_accuracy"] >= 0.85


def test_ranks_meet_in_a_work_directory_given_relative_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``modelbay demo`` keeps its data in ./demo-data: a relative path must not become the
    host of the rendezvous' file:// URL (the ranks then waited for each other for ever)."""
    monkeypatch.chdir(tmp_path)
    spec = _spec(strategy="average", workers=2, epochs=2, lr=0.01)
    result = train_parallel(_iris(), spec, Path("data/no-such-dir-at-root/work"), NoHooks())
    assert (tmp_path / "data/no-such-dir-at-root/work/train/checkpoint.pt").is_file()
    assert result.metrics["epochs"] == 2


def test_a_rank_that_never_exits_after_the_result_is_stopped_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rank 0 sent the result and ended; another rank hung: the job's process waited on it
    # for ever. Real processes: rank 0 writes a result event, rank 1 sleeps.
    import json
    import os
    import subprocess
    import sys

    from modelbay.training import distributed

    monkeypatch.setattr(distributed, "EXIT_GRACE_S", 0.5)
    tensor = {"datatype": "FP32", "shape": [-1, 4]}
    event = {
        "event": "result",
        "model_dir": str(tmp_path),
        "format": "onnx",
        "entrypoint": "model.onnx",
        "signature": {
            "inputs": [{"name": "input", **tensor}],
            "outputs": [{"name": "probabilities", **tensor}],
        },
        "task": "classification",
        "classes": ["a", "b", "c", "d"],
        "metrics": {"test_accuracy": 1.0},
        "test_indices": [0],
        "test_predictions": [0],
    }
    read_fd, write_fd = os.pipe()
    line = json.dumps(event) + "\n"
    sends = f"import os; os.write({write_fd}, {line!r}.encode())"
    procs = [
        subprocess.Popen([sys.executable, "-c", sends], pass_fds=(write_fd,)),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]),
    ]
    os.close(write_fd)
    logs: list[str] = []

    class Hooks(NoHooks):
        def on_log(self, message: str) -> None:
            logs.append(message)

    try:
        outcome, _ = distributed._follow(procs, read_fd, Hooks(), tmp_path)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        os.close(read_fd)
    assert outcome.result is not None
    assert outcome.result.metrics == {"test_accuracy": 1.0}
    assert logs == ["rank(s) 1 did not exit within 0.5 s of the result: stopped"]
