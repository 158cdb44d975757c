from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import joblib
import pytest
import torch

from modelbay.errors import InvalidArtifact
from modelbay.runtimes import FORMATS, detect_format


def _zip(path: Path, members: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in members:
            archive.writestr(name, b"{}")
    return path


def _assert_pickle_refusal(error: pytest.ExceptionInfo[InvalidArtifact]) -> None:
    message = str(error.value)
    assert "pickle" in message.lower()
    assert "arbitrary code" in message
    for alternative in ("skops.io.dump", "torch.jit.script", "torch.export.save", "ONNX"):
        assert alternative in message


@pytest.fixture(scope="module")
def torchscript_bytes(tiny_net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ts") / "model.pt"
    torch.jit.script(tiny_net).save(str(path))
    return path.read_bytes()


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib", ".sav", ".dill"])
def test_pickle_upload_is_refused_with_reason(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not even a pickle")
    with pytest.raises(InvalidArtifact) as error:
        detect_format(path)
    _assert_pickle_refusal(error)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_header_is_refused_whatever_the_extension(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=protocol))
    with pytest.raises(InvalidArtifact) as error:
        detect_format(path, declared="onnx")
    _assert_pickle_refusal(error)


@pytest.mark.parametrize("compress", [("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_compressed_joblib_is_refused_even_when_renamed(
    tmp_path: Path, compress: tuple[str, int]
) -> None:
    path = tmp_path / "model.bin"
    joblib.dump({"weights": list(range(100))}, path, compress=compress)
    with pytest.raises(InvalidArtifact) as error:
        detect_format(path)
    _assert_pickle_refusal(error)


@pytest.mark.parametrize("declared", [None, "torchscript"])
def test_torch_save_zip_is_refused_as_pickled_module(tmp_path: Path, declared: str | None) -> None:
    path = tmp_path / "model.pt"
    # A torch class pickles by reference whichever conftest module is loaded under that name.
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    with pytest.raises(InvalidArtifact, match="torch.save, which pickles the module") as error:
        detect_format(path, declared)
    _assert_pickle_refusal(error)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ts", ".zip", ".jit"])
def test_torchscript_archive_is_detected_whatever_its_extension(
    tmp_path: Path, torchscript_bytes: bytes, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(torchscript_bytes)
    assert detect_format(path) == "torchscript"
    assert detect_format(path, "torchscript") == "torchscript"


@pytest.mark.parametrize(
    ("name", "members"),
    [
        ("model.pt2", ["model/archive_format", "model/models/model.json"]),
        ("model.zip", ["archive/archive_format", "archive/models/model.json"]),
        ("legacy.pt2", ["serialized_exported_program.json", "version"]),
    ],
)
def test_pt2_archive_is_detected(tmp_path: Path, name: str, members: list[str]) -> None:
    assert detect_format(_zip(tmp_path / name, members)) == "torch_export"


def test_skops_archive_is_detected_by_content(tmp_path: Path) -> None:
    path = _zip(tmp_path / "model.zip", ["schema.json", "140.npy"])
    assert detect_format(path) == "sklearn"


def test_onnx_file_is_detected_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08:\x00")
    assert detect_format(path) == "onnx"


def test_declared_format_names_a_file_of_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x08\x08:\x00")
    assert detect_format(path, "onnx") == "onnx"


def test_content_wins_over_a_misleading_extension(tmp_path: Path, torchscript_bytes: bytes) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(torchscript_bytes)
    assert detect_format(path) == "torchscript"


@pytest.mark.parametrize("declared", ["onnx", "torch_export", "sklearn"])
def test_declared_format_contradicted_by_content_is_refused(
    tmp_path: Path, torchscript_bytes: bytes, declared: str
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(torchscript_bytes)
    with pytest.raises(InvalidArtifact, match="declared as .* but is a TorchScript archive"):
        detect_format(path, declared)


@pytest.mark.parametrize("declared", ["torchscript", "torch_export", "sklearn"])
def test_zip_format_declared_on_a_plain_file_is_refused(tmp_path: Path, declared: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08:\x00")
    with pytest.raises(InvalidArtifact, match="not even a zip file"):
        detect_format(path, declared)


def test_onnx_declared_on_an_unknown_zip_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "model.onnx", ["weights.bin"])
    with pytest.raises(InvalidArtifact, match="zip archive of no kind modelbay knows"):
        detect_format(path, "onnx")


@pytest.mark.parametrize("name", ["model.bin", "model.zip"])
def test_unknown_file_asks_for_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".zip"):
        _zip(path, ["weights.bin"])
    else:
        path.write_bytes(b"\x00\x01")
    with pytest.raises(InvalidArtifact, match=f"cannot tell the format of '{name}'.*--format"):
        detect_format(path)


def test_unknown_declared_format_lists_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08")
    with pytest.raises(InvalidArtifact, match=", ".join(FORMATS)):
        detect_format(path, "tensorflow")


def test_missing_file_is_invalid_artifact(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="cannot read 'absent.onnx'"):
        detect_format(tmp_path / "absent.onnx")


def test_damaged_zip_is_invalid_artifact(tmp_path: Path) -> None:
    path = _zip(tmp_path / "model.pt", ["model/code/__torch__.py", "model/data.pkl"])
    # The end record still says "zip", but the directory it points to is gone.
    path.write_bytes(path.read_bytes().replace(b"PK\x01\x02", b"XX\x01\x02"))
    with pytest.raises(InvalidArtifact, match="'model.pt' is a damaged zip archive"):
        detect_format(path)
