"""A trained model to ONNX, as modelbay serves it (``modelbay.runtimes.onnx``).

The export uses torch's ``torch.export``-based ONNX exporter (``dynamo=True``, the default
since torch 2.9; the TorchScript exporter is deprecated): it handles the RNN/LSTM/GRU
families too. The written model is run once with onnxruntime and compared with torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from modelbay.tensors import Signature, TensorSpec
from modelbay.training.table import Task

ENTRYPOINT = "model.onnx"
INPUT = "input"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"
TOLERANCE = 1e-4


def export_onnx(
    model: torch.nn.Module, example: torch.Tensor, out_dir: Path, task: Task, num_outputs: int
) -> tuple[str, Signature]:
    """Write ``out_dir/model.onnx`` (batch dimension variable) and return its entrypoint and
    signature: input ``input`` FP32 ``[-1, *row_shape]``; output ``probabilities`` FP32
    ``[-1, K]`` (classification) or ``prediction`` FP32 ``[-1]`` (regression).
    ``example``: a few rows (at least 2) the export traces and the check runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ENTRYPOINT
    output = PROBABILITIES if task == "classification" else PREDICTION
    model.eval()
    example = example.to(torch.float32)
    batch = torch.export.Dim("batch", min=1)
    quiet = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(quiet),
        _quiet_logger("torch.onnx"),
        _quiet_logger("torch.export"),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT],
            output_names=[output],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        assert program is not None
        program.save(str(path), external_data=False)
        expected = model(example).numpy()
    _check(path, example.numpy(), expected)
    row_shape = list(example.shape[1:])
    out_shape = [-1, num_outputs] if task == "classification" else [-1]
    signature = Signature(
        inputs=[TensorSpec(name=INPUT, datatype="FP32", shape=[-1, *row_shape])],
        outputs=[TensorSpec(name=output, datatype="FP32", shape=out_shape)],
    )
    return ENTRYPOINT, signature


def _check(path: Path, example: np.ndarray, expected: np.ndarray) -> None:
    """The ONNX model must give torch's outputs (to ``TOLERANCE``) on the example."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT: example})
    if got.shape != expected.shape or not np.allclose(
        got, expected, rtol=TOLERANCE, atol=TOLERANCE
    ):
        diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else "n/a"
        raise RuntimeError(
            f"the exported ONNX model differs from torch (shape {got.shape} vs "
            f"{expected.shape}, max abs difference {diff})"
        )


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger (the exporter logs its steps and missing torchvision ops)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
