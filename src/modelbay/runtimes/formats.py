"""Telling the format of a model file, and refusing files that run code when loaded.

Only the bytes are inspected (extension, header, zip member names): no framework is
imported and nothing is deserialized.
"""

from __future__ import annotations

import bz2
import lzma
import zipfile
import zlib
from pathlib import Path

from modelbay.errors import InvalidArtifact

FORMATS = ("torchscript", "torch_export", "onnx", "sklearn", "llm", "sentence_transformers")

GGUF_MAGIC = b"GGUF"
_BUNDLES = frozenset({"llm", "sentence_transformers"})
"""Formats whose version is a directory (a Hugging Face model folder) or a GGUF file."""

_PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".joblib", ".sav", ".dill"})
_EXTENSIONS = {".onnx": "onnx", ".skops": "sklearn", ".pt2": "torch_export", ".gguf": "llm"}
_WEIGHT_PICKLES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
_ZIP_FORMATS = frozenset({"torchscript", "torch_export", "sklearn"})
_LABELS = {
    "torchscript": "a TorchScript archive",
    "torch_export": "a torch.export (.pt2) archive",
    "sklearn": "a skops archive",
    "onnx": "an ONNX model",
    "llm": "a GGUF file or a Hugging Face model directory",
    "sentence_transformers": "a sentence-transformers model directory",
}
# joblib compresses pickles with these; their magic numbers, and a decompressor for each.
_COMPRESSED = (
    ((b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x1f\x8b"), "zlib"),
    ((b"BZh",), "bz2"),
    ((b"\xfd7zXZ\x00", b"\x5d\x00\x00"), "lzma"),
)
_SAFE_FORMATS = (
    "save scikit-learn models with skops.io.dump(model, 'model.skops'), and PyTorch models "
    "with torch.jit.script(model).save('model.pt') (or torch.jit.trace), "
    "torch.export.save(torch.export.export(model, args), 'model.pt2'), or an ONNX export; "
    "Hugging Face weights as *.safetensors (model.save_pretrained(dir, "
    "safe_serialization=True)) or GGUF"
)


def detect_bundle(stage: Path, paths: list[str], declared: str | None) -> tuple[str, str] | None:
    """``(format, entrypoint)`` when the staged files are an LLM or an embedding model: one
    GGUF file, or a Hugging Face directory (``config.json`` and ``*.safetensors``; with
    ``modules.json``, a sentence-transformers model). None: some other format.

    Every file of such a directory is checked: weights pickled by ``torch.save``
    (``pytorch_model.bin``) are refused even beside safetensors, since a loader may
    prefer them.
    """
    if declared is not None and declared not in _BUNDLES:
        return None
    if len(paths) == 1 and _head(stage / paths[0])[:4] == GGUF_MAGIC:
        if declared == "sentence_transformers":
            raise InvalidArtifact(
                f"'{paths[0]}' is a GGUF file, not {_LABELS[declared]}", param="format"
            )
        return "llm", paths[0]
    if "config.json" not in paths:
        if declared is not None:
            raise InvalidArtifact(
                f"{_LABELS[declared]} needs a config.json and *.safetensors weights; got "
                f"{', '.join(paths)}",
                param="files",
            )
        return None
    for rel in paths:
        _refuse_pickled_weights(stage / rel, rel)
    if not any(p.endswith(".safetensors") for p in paths):
        if declared is None and not any(p.endswith(".gguf") for p in paths):
            return None
        raise InvalidArtifact(f"no *.safetensors weights among {', '.join(paths)}", param="files")
    if "modules.json" in paths:
        return "sentence_transformers", "modules.json"
    if declared == "sentence_transformers":
        raise InvalidArtifact(
            "a sentence-transformers model directory has a modules.json", param="files"
        )
    return "llm", "config.json"


def _refuse_pickled_weights(path: Path, rel: str) -> None:
    suffix = path.suffix.lower()
    head = _head(path)
    if suffix in _WEIGHT_PICKLES or _is_pickle(head):
        raise _pickle_refused(rel, f"is pickled weights ('{suffix or 'no extension'}' file)")
    if head[:2] == b"PK" and zipfile.is_zipfile(path):
        _zip_content(path)  # refuses torch.save archives


def detect_format(path: Path, declared: str | None = None) -> str:
    """The format of the model file at ``path``, checked against ``declared`` when given.

    Raises ``InvalidArtifact`` for pickles in any guise, for content that contradicts the
    declared format, and when the format cannot be told.
    """
    if declared is not None and declared not in FORMATS:
        raise InvalidArtifact(
            f"unknown format '{declared}'; formats are {', '.join(FORMATS)}", param="format"
        )
    name = path.name
    suffix = path.suffix.lower()
    if suffix in _PICKLE_EXTENSIONS:
        raise _pickle_refused(name, f"is a pickle ('{suffix}' file)")
    head = _head(path)
    if _is_pickle(head) or _is_pickle(_decompressed(head)):
        raise _pickle_refused(name, "is a pickle (it starts with a pickle header)")
    expected = declared or _EXTENSIONS.get(suffix)
    if head[:4] == GGUF_MAGIC:
        return _gguf(name, declared)
    if expected == "llm" or expected in _BUNDLES:
        raise InvalidArtifact(f"'{name}' is not {_LABELS[expected]}", param="format")
    if zipfile.is_zipfile(path):
        return _zip_format(path, expected, declared)
    if expected in _ZIP_FORMATS:
        raise InvalidArtifact(
            f"'{name}' is not {_LABELS[expected]}: it is not even a zip file", param="file"
        )
    if expected == "onnx":
        return "onnx"
    raise _unknown(name)


def _gguf(name: str, declared: str | None) -> str:
    if declared not in (None, "llm"):
        raise InvalidArtifact(
            f"'{name}' is declared as {_LABELS[declared]} but is a GGUF file", param="format"
        )
    return "llm"


def _zip_format(path: Path, expected: str | None, declared: str | None) -> str:
    found = _zip_content(path)
    # The content wins over the extension, but must agree with a declared format.
    if found is not None and declared in (None, found):
        return found
    if expected is None:
        raise _unknown(path.name, "a zip archive of no kind modelbay knows")
    what = _LABELS[found] if found else "a zip archive of no kind modelbay knows"
    how = "declared" if declared else "named"
    raise InvalidArtifact(
        f"'{path.name}' is {how} as {_LABELS[expected]} but is {what}", param="format"
    )


def _zip_content(path: Path) -> str | None:
    """The zip-based format of ``path``, refusing archives written by ``torch.save``."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name.split("/") for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArtifact(
            f"'{path.name}' is a damaged zip archive: {exc}", param="file"
        ) from None
    # Members sit under an arbitrary root folder in torch archives ("<root>/code/...").
    if ["schema.json"] in members:
        return "sklearn"
    if any(m[-1] == "serialized_exported_program.json" for m in members) or any(
        m[-1] == "archive_format" and len(m) <= 2 for m in members
    ):
        return "torch_export"
    if any(len(m) >= 3 and m[1] == "code" for m in members):
        return "torchscript"
    if any(m[-1] == "data.pkl" and len(m) <= 2 for m in members):
        raise _pickle_refused(path.name, "was written by torch.save, which pickles the module")
    return None


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            # Enough for a bz2 block: bz2 yields nothing before a whole block is read.
            return file.read(1 << 20)
    except OSError as exc:
        raise InvalidArtifact(f"cannot read '{path.name}': {exc.strerror}", param="file") from None


def _is_pickle(head: bytes) -> bool:
    # Protocols 2 to 5 start with the PROTO opcode (0x80) and the protocol number.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _decompressed(head: bytes) -> bytes:
    """The first bytes of ``head`` decompressed, if it starts like a compressed stream."""
    for magics, codec in _COMPRESSED:
        if not head.startswith(magics):
            continue
        try:
            if codec == "zlib":
                return zlib.decompressobj(wbits=47).decompress(head, 2)  # 47: zlib or gzip
            if codec == "bz2":
                return bz2.BZ2Decompressor().decompress(head, 2)
            return lzma.LZMADecompressor().decompress(head, 2)
        except (zlib.error, OSError, lzma.LZMAError, EOFError):
            return b""
    return b""


def _pickle_refused(name: str, what: str) -> InvalidArtifact:
    return InvalidArtifact(
        f"'{name}' {what}. Pickle runs arbitrary code when it is loaded, so modelbay refuses "
        f"it. Instead, {_SAFE_FORMATS}",
        param="file",
    )


def _unknown(name: str, what: str = "") -> InvalidArtifact:
    detail = f" ({what})" if what else ""
    return InvalidArtifact(
        f"cannot tell the format of '{name}'{detail}; pass --format with one of "
        f"{', '.join(FORMATS)}",
        param="format",
    )
