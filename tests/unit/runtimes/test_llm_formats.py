"""LLM and embedding models are told from their files; pickled weights and malformed
files are refused with a reason, before anything is loaded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from modelbay.errors import InvalidArtifact
from modelbay.runtimes import detect_format
from modelbay.runtimes.formats import detect_bundle
from modelbay.runtimes.llm import LLMRuntime
from modelbay.runtimes.sentence_transformers import SentenceTransformerRuntime


def _files(root: Path, names: dict[str, bytes]) -> list[str]:
    for name, data in names.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return sorted(names)


def test_a_gguf_file_is_an_llm_whatever_its_name(tmp_path: Path) -> None:
    paths = _files(tmp_path, {"weights": b"GGUF" + b"\0" * 64})
    assert detect_bundle(tmp_path, paths, None) == ("llm", "weights")
    assert detect_format(tmp_path / "weights") == "llm"
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(InvalidArtifact, match="is not a GGUF file"):
        detect_format(tmp_path / "fake.gguf")


def test_hugging_face_directories_are_llms_or_sentence_transformers(tmp_path: Path) -> None:
    llm = _files(tmp_path / "llm", {"config.json": b"{}", "model.safetensors": b"x"})
    assert detect_bundle(tmp_path / "llm", llm, None) == ("llm", "config.json")
    st = _files(
        tmp_path / "st",
        {"config.json": b"{}", "modules.json": b"[]", "model.safetensors": b"x"},
    )
    assert detect_bundle(tmp_path / "st", st, None) == ("sentence_transformers", "modules.json")
    other = _files(tmp_path / "other", {"model.onnx": b"x"})
    assert detect_bundle(tmp_path / "other", other, None) is None


def test_pickled_weights_are_refused_even_next_to_safetensors(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    paths = [*_files(tmp_path, {"config.json": b"{}", "model.safetensors": b"x"})]
    paths.append("pytorch_model.bin")
    with pytest.raises(InvalidArtifact) as refused:
        detect_bundle(tmp_path, sorted(paths), None)
    assert "pytorch_model.bin" in refused.value.message
    assert "pickle" in refused.value.message.lower()


def test_a_directory_without_safetensors_is_refused_when_declared(tmp_path: Path) -> None:
    paths = _files(tmp_path, {"config.json": b"{}", "model.onnx": b"x"})
    with pytest.raises(InvalidArtifact, match="safetensors"):
        detect_bundle(tmp_path, paths, "llm")


@pytest.mark.parametrize(
    "content",
    [
        b"GGUF",
        b"GGUF" + struct.pack("<I", 3) + b"\xff" * 40,
        b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 2**60),
    ],
)
def test_a_malformed_gguf_is_refused_at_push(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.gguf").write_bytes(content)
    with pytest.raises(InvalidArtifact) as refused:
        LLMRuntime.check(tmp_path, "model.gguf", None, threads=1)
    assert refused.value.status == 422


def test_smollm2_is_checked_from_its_header(smollm2: Path) -> None:
    checked = LLMRuntime.check(smollm2.parent, smollm2.name, None, threads=1)
    assert checked.metadata["llm"]["quantization"] == "Q4_1"
    assert checked.signature.inputs[0].name == "prompt"


def test_sentence_transformer_modules_may_only_be_the_librarys(tmp_path: Path) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "os.system"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(InvalidArtifact, match="os.system"):
        SentenceTransformerRuntime.load(tmp_path, "modules.json", None, threads=1)
