from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelbay.errors import InvalidArtifact, InvalidRequest, ModelbayError
from modelbay.runtimes import load_runtime
from modelbay.runtimes.torchscript import TorchScriptRuntime
from modelbay.tensors import Signature

SIGNATURE = Signature.parse(
    {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "doubled", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
)


class HalvesNet(torch.nn.Module):
    """Outputs by name: the input doubled and halved."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"double": x * 2, "half": x / 2}


@pytest.fixture(scope="module")
def model_dir(tiny_net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torchscript")
    torch.jit.script(tiny_net).save(str(folder / "scripted.pt"))
    torch.jit.trace(tiny_net, torch.zeros(1, 3)).save(str(folder / "traced.pt"))
    torch.jit.script(HalvesNet()).save(str(folder / "halves.pt"))
    return folder


@pytest.fixture(scope="module")
def runtime(model_dir: Path) -> TorchScriptRuntime:
    loaded = load_runtime("torchscript", model_dir, "scripted.pt", SIGNATURE, threads=1)
    assert isinstance(loaded, TorchScriptRuntime)
    return loaded


def _rows(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)


def test_torchscript_without_signature_is_refused_with_an_example(model_dir: Path) -> None:
    with pytest.raises(InvalidArtifact, match='records no input or output specs.*"datatype"'):
        load_runtime("torchscript", model_dir, "scripted.pt", None, threads=1)


def test_signature_is_the_one_given(runtime: TorchScriptRuntime) -> None:
    assert runtime.signature == SIGNATURE
    assert TorchScriptRuntime.signature_required


@pytest.mark.parametrize("entrypoint", ["scripted.pt", "traced.pt"])
def test_outputs_match_in_process_inference(
    model_dir: Path, tiny_net: torch.nn.Module, entrypoint: str
) -> None:
    runtime = load_runtime("torchscript", model_dir, entrypoint, SIGNATURE, threads=1)
    rows = _rows(5)
    outputs = runtime.infer({"x": rows})
    with torch.no_grad():
        scores, doubled = tiny_net(torch.from_numpy(rows))
    np.testing.assert_allclose(outputs["scores"], scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["doubled"], doubled.numpy(), atol=1e-5)
    assert outputs["scores"].dtype == np.float32


def test_read_only_and_strided_inputs_are_accepted(runtime: TorchScriptRuntime) -> None:
    rows = np.asfortranarray(_rows(4))
    rows.flags.writeable = False
    outputs = runtime.infer({"x": rows})
    np.testing.assert_allclose(outputs["doubled"], rows * 2, atol=1e-6)


def test_only_requested_outputs_are_returned(runtime: TorchScriptRuntime) -> None:
    assert set(runtime.infer({"x": _rows(2)}, outputs=["doubled"])) == {"doubled"}


def test_dict_outputs_are_matched_by_name(model_dir: Path) -> None:
    signature = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
            "outputs": [
                {"name": "half", "datatype": "FP64", "shape": [-1]},
                {"name": "double", "datatype": "FP32", "shape": [-1]},
            ],
        }
    )
    runtime = load_runtime("torchscript", model_dir, "halves.pt", signature, threads=1)
    outputs = runtime.infer({"x": np.array([2.0, 4.0], dtype=np.float32)})
    np.testing.assert_array_equal(outputs["half"], [1.0, 2.0])
    np.testing.assert_array_equal(outputs["double"], [4.0, 8.0])
    assert outputs["half"].dtype == np.float64  # converted to the signature's datatype


def test_more_outputs_in_signature_than_returned_is_a_server_error(model_dir: Path) -> None:
    signature = SIGNATURE.model_copy(
        update={
            "outputs": [*SIGNATURE.outputs, SIGNATURE.outputs[0].model_copy(update={"name": "z"})]
        }
    )
    runtime = load_runtime("torchscript", model_dir, "scripted.pt", signature, threads=1)
    with pytest.raises(
        ModelbayError, match="returned 2 outputs but the signature lists 3"
    ) as error:
        runtime.infer({"x": _rows(1)})
    assert error.value.status == 500


def test_rejected_dimension_is_an_invalid_request_without_traceback(model_dir: Path) -> None:
    signature = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
            "outputs": SIGNATURE.model_dump()["outputs"],
        }
    )
    runtime = load_runtime("torchscript", model_dir, "scripted.pt", signature, threads=1)
    with pytest.raises(
        InvalidRequest, match=r"^mat1 and mat2 shapes cannot be multiplied"
    ) as error:
        runtime.infer({"x": np.zeros((2, 4), dtype=np.float32)})
    assert "Traceback" not in str(error.value)


def test_bytes_signature_is_refused(model_dir: Path) -> None:
    signature = Signature.parse(
        {
            "inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1]}],
            "outputs": SIGNATURE.model_dump()["outputs"],
        }
    )
    with pytest.raises(InvalidArtifact, match="'x' has datatype BYTES"):
        load_runtime("torchscript", model_dir, "scripted.pt", signature, threads=1)


def test_file_that_is_not_torchscript_is_invalid_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(InvalidArtifact, match="cannot load TorchScript model 'model.pt'"):
        load_runtime("torchscript", tmp_path, "model.pt", SIGNATURE, threads=1)
