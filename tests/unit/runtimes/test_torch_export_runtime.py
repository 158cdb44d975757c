from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes import detect_format, load_runtime
from modelbay.tensors import Signature


class PairNet(torch.nn.Module):
    """Sum of a (B, 3) and a (B, 3), taking ``b`` as a keyword at export."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


@pytest.fixture(scope="module")
def model_dir(tiny_net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    batch = torch.export.Dim("batch")
    program = torch.export.export(tiny_net, (torch.zeros(4, 3),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, folder / "model.pt2")
    return folder


def _rows(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)


def _with_member(source: Path, target: Path, member: str, data: bytes) -> Path:
    """A copy of the archive ``source`` with ``member`` (under its root folder) replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        root = old.namelist()[0].split("/")[0]
        for info in old.infolist():
            if info.filename != f"{root}/{member}":
                new.writestr(info, old.read(info))
        new.writestr(f"{root}/{member}", data)
    return target


def test_pt2_archive_is_detected(model_dir: Path) -> None:
    assert detect_format(model_dir / "model.pt2") == "torch_export"


def test_signature_is_read_from_the_program(model_dir: Path) -> None:
    runtime = load_runtime("torch_export", model_dir, "model.pt2", None, threads=1)
    assert runtime.signature.model_dump() == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [
            {"name": "output_0", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "output_1", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }


@pytest.mark.parametrize("batch", [1, 7])
def test_outputs_match_in_process_inference(
    model_dir: Path, tiny_net: torch.nn.Module, batch: int
) -> None:
    runtime = load_runtime("torch_export", model_dir, "model.pt2", None, threads=1)
    rows = _rows(batch)
    outputs = runtime.infer({"x": rows})
    with torch.no_grad():
        scores, doubled = tiny_net(torch.from_numpy(rows))
    np.testing.assert_allclose(outputs["output_0"], scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["output_1"], doubled.numpy(), atol=1e-5)


def test_only_requested_outputs_are_returned(model_dir: Path) -> None:
    runtime = load_runtime("torch_export", model_dir, "model.pt2", None, threads=1)
    assert set(runtime.infer({"x": _rows(2)}, outputs=["output_1"])) == {"output_1"}


def test_given_signature_renames_and_narrows(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [8, 3]}],
            "outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [8, 2]},
                {"name": "doubled", "datatype": "FP32", "shape": [-1, 3]},
            ],
        }
    )
    runtime = load_runtime("torch_export", model_dir, "model.pt2", given, threads=1)
    assert runtime.signature == given
    outputs = runtime.infer({"features": _rows(8)})
    np.testing.assert_allclose(outputs["doubled"], _rows(8) * 2, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "lists 0 inputs but the exported program has 1: 'x'"),
        ([{"name": "x", "datatype": "FP64", "shape": [-1, 3]}], "datatype FP64 .* uses FP32"),
        ([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], r"shape \[-1, 4\] .* \[-1, 3\]"),
    ],
)
def test_given_signature_that_does_not_fit_is_refused(
    model_dir: Path, inputs: list[dict[str, object]], message: str
) -> None:
    given = Signature.parse(
        {
            "inputs": inputs,
            "outputs": [
                {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "b", "datatype": "FP32", "shape": [-1, 3]},
            ],
        }
    )
    with pytest.raises(InvalidArtifact, match=message):
        load_runtime("torch_export", model_dir, "model.pt2", given, threads=1)


def test_keyword_inputs_are_passed_as_exported(tmp_path: Path) -> None:
    program = torch.export.export(PairNet(), (torch.zeros(2, 3),), {"b": torch.ones(2, 3)})
    torch.export.save(program, tmp_path / "pair.pt2")
    runtime = load_runtime("torch_export", tmp_path, "pair.pt2", None, threads=1)
    assert [spec.name for spec in runtime.signature.inputs] == ["a", "b"]
    a, b = _rows(2), np.full((2, 3), 10, dtype=np.float32)
    np.testing.assert_allclose(runtime.infer({"a": a, "b": b})["output_0"], a + b, atol=1e-6)


def test_dimension_violating_a_guard_is_an_invalid_request(model_dir: Path) -> None:
    runtime = load_runtime("torch_export", model_dir, "model.pt2", None, threads=1)
    with pytest.raises(InvalidRequest, match="Guard failed"):
        runtime.infer({"x": np.zeros((2, 4), dtype=np.float32)})


def test_archive_with_an_unrestricted_pickle_is_refused(model_dir: Path, tmp_path: Path) -> None:
    # A pickle referring to a function: weights_only loading rejects it, full unpickling
    # would import it. os.getcwd is harmless should the check ever let it through.
    payload = tmp_path / "payload.pt"
    torch.save((os.getcwd,), payload)
    archive = _with_member(
        model_dir / "model.pt2",
        tmp_path / "model.pt2",
        "data/sample_inputs/model.pt",
        payload.read_bytes(),
    )
    with pytest.raises(InvalidArtifact, match="holds pickled objects other than tensors"):
        load_runtime("torch_export", archive.parent, archive.name, None, threads=1)


def test_archive_with_compiled_native_code_is_refused(model_dir: Path, tmp_path: Path) -> None:
    archive = _with_member(
        model_dir / "model.pt2", tmp_path / "model.pt2", "data/aotinductor/model/model.so", b""
    )
    with pytest.raises(InvalidArtifact, match="compiled native code"):
        load_runtime("torch_export", archive.parent, archive.name, None, threads=1)


def test_file_that_is_not_a_pt2_archive_is_invalid_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.pt2").write_bytes(b"garbage")
    with pytest.raises(InvalidArtifact, match="'model.pt2' is not a .pt2 archive"):
        load_runtime("torch_export", tmp_path, "model.pt2", None, threads=1)
