"""Sentence-embedding models (a sentence-transformers directory with safetensors weights).

Texts in (``text``, BYTES), one vector each out (``embedding``, FP32) with the number of
tokens each text was read as (``tokens``, INT64, for usage metering). Batched like any
model: requests stack along the first axis.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from modelbay.errors import InvalidArtifact
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes._text import as_text
from modelbay.runtimes._torch import use_threads
from modelbay.runtimes.base import Checked, Runtime
from modelbay.tensors import Signature, TensorSpec

_MODULE_PREFIX = "sentence_transformers."
"""modules.json names classes to import: only the library's own are allowed, so a pushed
directory cannot make the loader import anything else."""


def embedding_signature(dimensions: int) -> Signature:
    return Signature(
        inputs=[TensorSpec(name="text", datatype="BYTES", shape=[-1])],
        outputs=[
            TensorSpec(name="embedding", datatype="FP32", shape=[-1, dimensions]),
            TensorSpec(name="tokens", datatype="INT64", shape=[-1]),
        ],
    )


class SentenceTransformerRuntime(Runtime):
    """A sentence-transformers model on the CPU (or CUDA when present)."""

    format = "sentence_transformers"

    def __init__(self, model: SentenceTransformer, signature: Signature):
        super().__init__(signature)
        self.model = model

    @classmethod
    def check(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> Checked:
        runtime = cls.load(model_dir, entrypoint, signature, threads=threads)
        model = runtime.model
        return Checked(
            runtime.signature,
            {
                "embedding": {
                    "dimensions": runtime.dimensions,
                    "max_seq_length": int(model.max_seq_length or 0),
                }
            },
        )

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> SentenceTransformerRuntime:
        _check_modules(model_dir / entrypoint)
        use_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = SentenceTransformer(
                str(model_dir), device=device, local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:  # the library raises many kinds for a bad directory
            raise InvalidArtifact(
                f"not a loadable sentence-transformers model: {framework_message(exc)}",
                param="files",
            ) from None
        model.eval()
        named = getattr(model, "get_embedding_dimension", None)  # the newer name
        dimensions = named() if named else model.get_sentence_embedding_dimension()
        if not dimensions:
            raise InvalidArtifact("the model does not say its embedding size", param="files")
        return cls(model, embedding_signature(int(dimensions)))

    @property
    def dimensions(self) -> int:
        return int(self.signature.outputs[0].shape[1])

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        texts = [str(t) for t in as_text(inputs["text"], "text").ravel()]
        with torch.inference_mode():
            vectors = self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True)
        tokens = self.model.tokenize(texts)["attention_mask"].sum(dim=1)
        return {
            "embedding": np.asarray(vectors, dtype=np.float32),
            "tokens": tokens.numpy().astype(np.int64),
        }


def _check_modules(path: Path) -> None:
    try:
        modules: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArtifact(f"modules.json is not readable JSON: {exc}", param="files") from None
    if not isinstance(modules, list) or not modules:
        raise InvalidArtifact("modules.json must list the model's modules", param="files")
    for module in modules:
        kind = module.get("type") if isinstance(module, dict) else None
        if not isinstance(kind, str) or not kind.startswith(_MODULE_PREFIX):
            raise InvalidArtifact(
                f"modules.json names module type {kind!r}; only sentence-transformers' own "
                f"modules ({_MODULE_PREFIX}*) are loaded",
                param="files",
            )
