from __future__ import annotations

import subprocess
import sys

import pytest

from modelbay.errors import InvalidArtifact
from modelbay.runtimes import FORMATS, runtime_class


def test_importing_runtimes_does_not_import_frameworks() -> None:
    code = (
        "import sys, modelbay.runtimes; "
        "print(sorted({'torch', 'onnxruntime', 'skops', 'sklearn'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("format", FORMATS)
def test_each_format_has_a_runtime_of_that_format(format: str) -> None:
    assert runtime_class(format).format == format


def test_unknown_format_lists_valid_ones() -> None:
    with pytest.raises(InvalidArtifact, match="unknown format 'keras'; formats are torchscript"):
        runtime_class("keras")


def test_framework_messages_do_not_reveal_server_paths() -> None:
    from modelbay.runtimes._errors import framework_message

    exc = RuntimeError("Load model from /tmp/x/blobs/tmp/stage-4ewb/big.onnx failed: bad proto")
    assert framework_message(exc) == "Load model from big.onnx failed: bad proto"
