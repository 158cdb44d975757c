"""The federated-learning protocol between a federated job and its clients: the JSON types
of ``/api/v1/jobs/{job}/federated/...`` and the tensor codec of the weights that travel.

Weights travel as safetensors files (a JSON header of names, dtypes, shapes and byte
offsets, then the raw little-endian data): never pickle. The codec is written here, on
numpy alone, so that the API frontends check an update without torch or the safetensors
package; files it writes open with ``safetensors.numpy.load`` and the other way round.
Only float32 tensors travel.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from modelbay.errors import InvalidRequest

Stage = Literal["queued", "waiting", "training", "done", "failed"]
Action = Literal["wait", "train", "done", "dropped"]

MAX_ROW_VALUES = 1 << 20
"""The most feature values of one row a federation's statistics carry."""
HEADER_LIMIT = 16 << 20
"""The largest safetensors header read (the format's own bound is 100 MB)."""
DTYPE = "F32"


class FederationStatus(BaseModel):
    """Where a federated job stands, and what a client needs to take part."""

    job: int
    job_state: str = Field(description="The job's state: queued, running, succeeded ...")
    stage: Stage = Field(
        description="queued (its coordinator has not started), waiting (for clients to "
        "join), training (round `round` is open), done or failed"
    )
    round: int = Field(description="The open round (0 before the first)")
    rounds: int
    clients: int = Field(description="Clients the job waits for")
    min_clients: int = Field(description="Updates a round needs to close")
    joined: int
    active: int = Field(description="Joined clients not dropped")
    answered: int = Field(description="Updates received for the open round")
    deadline: datetime | None = Field(
        description="When the open round (or the wait for clients) times out"
    )
    round_timeout_s: float
    local_epochs: int
    lr: float = Field(description="The learning rate of the open round's local training")
    proximal_mu: float = Field(description="FedProx's proximal term (0: FedAvg)")
    target: str
    task: str
    features: list[str] | None = Field(description="The feature columns, in order")
    row_shape: list[int] = Field(description="The shape of one row of features")
    classes: list[str] | None = Field(description="Class names by index (classification)")
    spec: dict[str, Any] = Field(description="The job's training spec")


class JoinRequest(BaseModel):
    """A client's statistics of its own data, from which the federation's feature
    normalisation is computed: sums over its rows, never the rows."""

    examples: int = Field(ge=1, le=2**40, description="Rows of the client's data")
    feature_sum: list[float] = Field(
        max_length=MAX_ROW_VALUES, description="Per feature value of a row: the sum over rows"
    )
    feature_sum_sq: list[float] = Field(
        max_length=MAX_ROW_VALUES, description="Per feature value: the sum of squares"
    )
    target_sum: float = Field(default=0.0, description="Regression: the target's sum")
    target_sum_sq: float = Field(default=0.0, description="Regression: its sum of squares")


class ClientView(BaseModel):
    """What one client is to do now; polling it also tells the job the client is alive."""

    client: str
    action: Action = Field(
        description="wait (for the next round), train (the open round, not yet answered), "
        "done (the job ended) or dropped (the client missed a round; it takes no more part)"
    )
    round: int
    updates: int = Field(description="Updates this client has sent")
    status: FederationStatus


class UpdateReceipt(BaseModel):
    client: str
    round: int
    examples: int
    answered: int = Field(description="Updates received for this round so far")


def encode_tensors(
    tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> bytes:
    """A safetensors file of float32 ``tensors`` (in name order)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        shape = list(np.shape(tensors[name]))
        header[name] = {
            "dtype": DTYPE,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def decode_tensors(
    data: bytes, expected: Mapping[str, Sequence[int]] | None = None, *, what: str = "update"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The float32 tensors and metadata of a safetensors file; with ``expected`` (name →
    shape) the names and shapes must be exactly those. ``InvalidRequest`` (422) names the
    problem and the tensor."""
    header, body = _header(data, what)
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(what, "__metadata__ must map names to strings")
    if expected is not None:
        _check_names(set(header), set(expected), what)
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        shape = _entry_shape(name, entry, what)
        if expected is not None and list(shape) != list(expected[name]):
            raise _bad(
                what, f"tensor '{name}' has shape {list(shape)}; expected {list(expected[name])}"
            )
        start, stop = entry["data_offsets"]
        if stop - start != 4 * math.prod(shape):
            raise _bad(what, f"tensor '{name}': its byte range does not hold shape {list(shape)}")
        spans.append((start, stop, name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end:
            raise _bad(what, f"tensor '{name}': byte ranges overlap or leave a gap")
        end = stop
    if end != len(body):
        raise _bad(what, f"the data is {len(body)} bytes; the header describes {end}")
    tensors: dict[str, np.ndarray] = {}
    for start, stop, name in spans:
        shape = tuple(header[name]["shape"])
        array = np.frombuffer(body, dtype="<f4", count=(stop - start) // 4, offset=start)
        if not np.isfinite(array).all():
            raise _bad(what, f"tensor '{name}' holds NaN or infinite values")
        tensors[name] = array.reshape(shape).astype(np.float32)
    return tensors, {str(k): str(v) for k, v in meta.items()}


def encoded_size(shapes: Mapping[str, Sequence[int]]) -> int:
    """An upper bound of the size of a file of float32 tensors of ``shapes``."""
    data = sum(4 * math.prod(shape) for shape in shapes.values())
    header = sum(len(name) + 24 * len(shape) + 96 for name, shape in shapes.items())
    return 8 + data + header + 4096


def _header(data: bytes, what: str) -> tuple[dict[str, Any], bytes]:
    if len(data) < 8:
        raise _bad(what, f"{len(data)} bytes are not a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(HEADER_LIMIT, len(data) - 8):
        raise _bad(what, f"its header claims {size} bytes; the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(what, f"its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(what, "its header is not a JSON object")
    return header, data[8 + size :]


def _entry_shape(name: str, entry: Any, what: str) -> tuple[int, ...]:
    if not isinstance(entry, dict):
        raise _bad(what, f"tensor '{name}': its header entry is not an object")
    if entry.get("dtype") != DTYPE:
        raise _bad(what, f"tensor '{name}' is {entry.get('dtype')!r}; tensors must be {DTYPE}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(n, int) and 0 <= n < 2**40 for n in shape):
        raise _bad(what, f"tensor '{name}': shape must be a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(n, int) and n >= 0 for n in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _bad(what, f"tensor '{name}': data_offsets must be [start, end]")
    return tuple(shape)


def _check_names(got: set[str], wanted: set[str], what: str) -> None:
    missing, extra = sorted(wanted - got), sorted(got - wanted)
    if missing:
        raise _bad(what, f"tensor '{missing[0]}' is missing ({len(missing)} missing in all)")
    if extra:
        listed = ", ".join(f"'{n}'" for n in sorted(wanted)[:20])
        raise _bad(what, f"unexpected tensor '{extra[0]}'; the tensors are {listed}")


def _bad(what: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{what}: {message}", param=what, status=422)
