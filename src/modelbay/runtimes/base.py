"""The runtime contract: one adapter per model format.

A runtime is created by ``load`` in the process that serves the model (the server process
for now; a replica worker process later), then ``infer`` is called many times, possibly
from several threads at once, and ``unload`` once when the version is deleted or the
server stops. Runtimes know nothing of HTTP, auth, batching or the registry: they get a
directory of verified files and return numpy arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelbay.tensors import Signature


@dataclass
class Checked:
    """What checking a pushed model found: its signature and what it records of itself
    (an LLM's architecture, context length ...), kept in the version's metadata."""

    signature: Signature
    metadata: dict[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    """A loaded model of one format."""

    format: ClassVar[str]
    """Name of the format in the registry (``onnx``, ``torchscript`` ...)."""

    signature_required: ClassVar[bool] = False
    """True when the artifact does not record its inputs/outputs and the user must."""

    @classmethod
    @abstractmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> Runtime:
        """Load ``model_dir / entrypoint``; ``signature`` given at upload overrides or completes
        what the artifact records. Raises ``InvalidArtifact`` when the files are not a
        loadable model of this format or the signature does not fit the model."""

    @classmethod
    def load_with_options(
        cls,
        model_dir: Path,
        entrypoint: str,
        signature: Signature | None,
        *,
        threads: int,
        options: Mapping[str, Any],
    ) -> Runtime:
        """``load`` with a deployment's runtime options; runtimes without any ignore them."""
        return cls.load(model_dir, entrypoint, signature, threads=threads)

    @classmethod
    def check(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> Checked:
        """Check a pushed model (in a short-lived process): by default, load it once.
        Runtimes of large models override this with a cheaper check of their files."""
        runtime = cls.load(model_dir, entrypoint, signature, threads=threads)
        try:
            return Checked(runtime.signature)
        finally:
            runtime.unload()

    def __init__(self, signature: Signature) -> None:
        self._signature = signature

    @property
    def signature(self) -> Signature:
        """Inputs and outputs, as the model records them or as given at upload."""
        return self._signature

    @abstractmethod
    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model on inputs already validated against ``signature`` (names, dtypes,
        shapes). ``outputs`` names the outputs wanted (None: all); a runtime may return more.
        Errors raised by the framework propagate as ``InvalidRequest`` when the input is at
        fault (e.g. a dimension the model rejects)."""

    def unload(self) -> None:  # noqa: B027 - optional hook, most runtimes free on GC
        """Release resources; the runtime is not used afterwards."""
