"""A GGUF file's header (metadata and tensor table), read without parsing the vocabulary.

The ``gguf`` package's ``GGUFReader`` decodes every metadata array, the 49k-token
vocabulary included (about 2 s for a small model); a push and a replica only need the
scalars and the tensor offsets, so this reads those (12 ms) and leaves the vocabulary to
the tokenizer loader. Tensors are dequantized by ``gguf.quants``.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf.quants import dequantize

_GGUF_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
# Longer arrays (the vocabulary, the merges) are skipped: the tokenizer loader reads those.
_GGUF_KEEP_ARRAY_MAX = 256
_SKIPPED = object()


@dataclass(frozen=True)
class GGUFTensorInfo:
    """Where one tensor lies in a GGUF file; `shape` is in PyTorch order (rows last-but-one)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    offset: int  # from the start of the file

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)


class _Cursor:
    """Little-endian reads from a buffer, advancing a position."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.scalar("Q")
        text = self.buf[self.pos : self.pos + size].decode("utf-8", errors="replace")
        self.pos += size
        return text

    def value(self, vtype: int) -> Any:
        if vtype == _GGUF_STRING:
            return self.string()
        if vtype != _GGUF_ARRAY:
            return self.scalar(_GGUF_SCALARS[vtype])
        etype, count = self.scalar("I"), self.scalar("Q")
        if count <= _GGUF_KEEP_ARRAY_MAX:
            return [self.value(etype) for _ in range(count)]
        if etype == _GGUF_STRING:
            buf, pos = self.buf, self.pos
            for _ in range(count):
                pos += 8 + struct.unpack_from("<Q", buf, pos)[0]
            self.pos = pos
        elif etype == _GGUF_ARRAY:
            for _ in range(count):
                self.value(etype)
        else:
            self.pos += count * struct.calcsize(_GGUF_SCALARS[etype])
        return _SKIPPED


class GGUFFile:
    """A GGUF file's metadata and tensor directory; tensors are read (dequantized) on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: dict[str, Any] = {}
        self.tensors: dict[str, GGUFTensorInfo] = {}
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf)
            if buf[:4] != b"GGUF":
                raise ValueError(f"{path.name} is not a GGUF file")
            cur.pos = 4
            version = cur.scalar("I")
            if version not in (2, 3):
                raise ValueError(f"{path.name}: GGUF version {version} is not supported (2, 3)")
            num_tensors, num_kv = cur.scalar("Q"), cur.scalar("Q")
            for _ in range(num_kv):
                key = cur.string()
                value = cur.value(cur.scalar("I"))
                if value is not _SKIPPED:
                    self.metadata[key] = value
            raw = []
            for _ in range(num_tensors):
                name = cur.string()
                dims = [cur.scalar("Q") for _ in range(cur.scalar("I"))]
                raw.append((name, tuple(reversed(dims)), cur.scalar("I"), cur.scalar("Q")))
            alignment = int(self.metadata.get("general.alignment", 32))
            data_start = -(-cur.pos // alignment) * alignment
        for name, shape, ggml_type, offset in raw:
            qtype = GGMLQuantizationType(ggml_type)
            self.tensors[name] = GGUFTensorInfo(name, shape, qtype, data_start + offset)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """The architecture-scoped metadata value `{architecture}.{key}`."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def read_tensor(self, name: str) -> np.ndarray:
        """One tensor dequantized to float32, in PyTorch layout."""
        info = self.tensors[name]
        block_size, type_size = GGML_QUANT_SIZES[info.ggml_type]
        row_bytes = info.shape[-1] // block_size * type_size
        byte_shape = (*info.shape[:-1], row_bytes)
        raw = np.memmap(self.path, np.uint8, "r", offset=info.offset, shape=byte_shape)
        # A plain ndarray view: memmap subclass views are slow in dequantize's row splitting.
        values = dequantize(np.asarray(raw), info.ggml_type)
        # Plain float32 tensors come back as read-only views of the file.
        return values if values.flags.writeable else values.copy()

    def quantization(self) -> str:
        """The file's quantization label (e.g. "Q4_1"), from general.file_type or the tensors."""
        known = {t.value: t.name for t in LlamaFileType if t != LlamaFileType.GUESSED}
        file_type = self.metadata.get("general.file_type")
        if file_type in known:
            return known[file_type].removeprefix("MOSTLY_").removeprefix("ALL_")
        counts: Counter[str] = Counter()
        for info in self.tensors.values():
            counts[info.ggml_type.name] += info.num_elements
        return counts.most_common(1)[0][0] if counts else "unknown"
