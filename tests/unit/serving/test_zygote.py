"""The zygote forks validation and replica processes, and comes back if it dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from tests.processes import gone

from modelbay.errors import ModelbayError
from modelbay.serving.validator import WorkerValidator
from modelbay.serving.zygote import Launcher


def test_validation_runs_in_a_child_and_a_dead_zygote_is_replaced(tmp_path: Path) -> None:
    launcher = Launcher()
    try:
        validate = WorkerValidator(launcher, timeout_s=60)
        (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
        with pytest.raises(ModelbayError) as refused:
            validate("onnx", tmp_path, "model.onnx", None, threads=1)
        assert refused.value.status == 422
        assert "model.onnx" in refused.value.message

        zygote = launcher._process
        assert zygote is not None
        os.kill(zygote.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not gone(zygote.pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(ModelbayError) as again:
            validate("onnx", tmp_path, "model.onnx", None, threads=1)
        assert again.value.status == 422
        assert launcher._process is not None
        assert launcher._process.pid != zygote.pid
    finally:
        launcher.close()


def test_a_loader_that_outlives_its_timeout_is_killed_and_refused(tmp_path: Path) -> None:
    # A FIFO nobody writes to: the loader blocks opening it, as a model that never loads.
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    launcher = Launcher()
    try:
        with pytest.raises(ModelbayError) as refused:
            WorkerValidator(launcher, timeout_s=1)("onnx", tmp_path, "model.onnx", None, threads=1)
        assert refused.value.status == 422
        assert "did not load within 1 s" in refused.value.message
    finally:
        launcher.close()
