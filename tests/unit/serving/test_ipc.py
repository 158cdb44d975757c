"""Frames between frontend and replicas: tensors survive exactly, errors cross as data."""

from __future__ import annotations

import numpy as np

from modelbay.serving import ipc
from modelbay.serving.messages import InferDone, InferTask, Message, TaskFailed


def _round_trip(message: Message) -> Message:
    frame = b"".join(ipc.encode(message))
    head_len, payload_len = ipc.PREFIX.unpack_from(frame)
    head = frame[ipc.PREFIX.size : ipc.PREFIX.size + head_len]
    payload = bytearray(frame[ipc.PREFIX.size + head_len :])
    assert len(payload) == payload_len
    return ipc.decode(head, payload)


def test_task_tensors_of_every_kind_survive_a_round_trip() -> None:
    inputs = {
        "f32": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "f16": np.array([[1.5, -2]], dtype=np.float16),
        "i64": np.array([1, -2, 3], dtype=np.int64),
        "b": np.array([True, False]),
        "s": np.array([b"abc", b"", "\u00e9".encode()], dtype=object),
        "empty": np.zeros((0, 5), np.float32),
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],
    }
    decoded = _round_trip(InferTask(7, inputs, ["out"]))
    assert isinstance(decoded, InferTask)
    assert decoded.id == 7
    assert decoded.outputs == ["out"]
    for name, array in inputs.items():
        got = decoded.inputs[name]
        assert got.shape == array.shape, name
        if array.dtype == object:
            assert list(got) == list(array)
        else:
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array)


def test_decoded_arrays_are_writable_views_of_the_payload() -> None:
    decoded = _round_trip(InferDone(1, {"y": np.ones((2, 2), np.float32)}, 0.5))
    assert isinstance(decoded, InferDone)
    assert decoded.outputs["y"].flags.writeable
    assert decoded.compute_s == 0.5


def test_errors_cross_as_status_message_and_type() -> None:
    decoded = _round_trip(TaskFailed(3, 400, "input 'x' is bad", "InvalidRequest"))
    assert decoded == TaskFailed(3, 400, "input 'x' is bad", "InvalidRequest")
