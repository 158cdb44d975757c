"""BYTES tensors at the framework boundary: frameworks want ``str``, the protocol ``bytes``."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelbay.errors import InvalidRequest


def as_text(array: np.ndarray, name: str) -> np.ndarray:
    """An object array of ``str`` decoded (UTF-8) from a BYTES input."""
    try:
        texts = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    except UnicodeDecodeError:
        raise InvalidRequest(
            f"input '{name}' holds bytes that are not UTF-8 text", param="inputs"
        ) from None
    return np.array(texts, dtype=object).reshape(array.shape)


def as_bytes(array: Any) -> np.ndarray:
    """An object array of UTF-8 ``bytes`` from an array of strings (or other labels)."""
    values = np.asarray(array)
    encoded = [v if isinstance(v, bytes) else str(v).encode() for v in values.ravel()]
    return np.array(encoded, dtype=object).reshape(values.shape)
