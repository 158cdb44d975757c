"""Runtimes: one adapter per model format behind the ``Runtime`` contract.

Framework modules (torch, onnxruntime, skops) are imported only when a runtime of their
format is asked for: they are optional extras and slow to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelbay.errors import InvalidArtifact
from modelbay.runtimes.base import Checked, Runtime
from modelbay.runtimes.formats import FORMATS, detect_format
from modelbay.tensors import Signature

PLATFORMS = {
    "torchscript": "pytorch_libtorch",
    "torch_export": "pytorch_export",
    "onnx": "onnxruntime_onnx",
    "sklearn": "sklearn",
    "llm": "modelbay_llm",
    "sentence_transformers": "sentence_transformers",
}
"""Platform names reported in V2 model metadata, by format (no framework import needed)."""

_EXTRAS = {
    "torchscript": "torch",
    "torch_export": "torch",
    "onnx": "onnx",
    "sklearn": "sklearn",
    "llm": "llm",
    "sentence_transformers": "llm",
}
_FRAMEWORK_PACKAGES = frozenset(
    {
        "torch", "onnxruntime", "onnx", "sklearn", "skops", "scipy", "transformers",
        "tokenizers", "safetensors", "gguf", "xgrammar", "sentence_transformers", "jinja2",
    }
)  # fmt: skip


def runtime_class(format: str) -> type[Runtime]:
    """The runtime class of ``format``, importing its framework now."""
    try:
        return _import_runtime(format)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _FRAMEWORK_PACKAGES:
            raise
        extra = _EXTRAS[format]
        raise InvalidArtifact(
            f"format '{format}' needs the '{extra}' extra, which this server lacks "
            f"(pip install 'modelbay[{extra}]')",
            param="format",
        ) from exc


def load_runtime(
    format: str,
    model_dir: Path,
    entrypoint: str,
    signature: Signature | None,
    *,
    threads: int,
    options: Mapping[str, Any] | None = None,
) -> Runtime:
    """Load ``model_dir / entrypoint`` with the runtime of ``format`` (``options``: the
    deployment's runtime options, for runtimes that take some)."""
    cls = runtime_class(format)
    if options:
        return cls.load_with_options(
            model_dir, entrypoint, signature, threads=threads, options=options
        )
    return cls.load(model_dir, entrypoint, signature, threads=threads)


def _import_runtime(format: str) -> type[Runtime]:
    if format == "torchscript":
        from modelbay.runtimes.torchscript import TorchScriptRuntime

        return TorchScriptRuntime
    if format == "torch_export":
        from modelbay.runtimes.torch_export import TorchExportRuntime

        return TorchExportRuntime
    if format == "onnx":
        from modelbay.runtimes.onnx import OnnxRuntime

        return OnnxRuntime
    if format == "sklearn":
        from modelbay.runtimes.sklearn import SklearnRuntime

        return SklearnRuntime
    if format == "llm":
        from modelbay.runtimes.llm import LLMRuntime

        return LLMRuntime
    if format == "sentence_transformers":
        from modelbay.runtimes.sentence_transformers import SentenceTransformerRuntime

        return SentenceTransformerRuntime
    raise InvalidArtifact(
        f"unknown format '{format}'; formats are {', '.join(FORMATS)}", param="format"
    )


__all__ = [
    "FORMATS",
    "PLATFORMS",
    "Checked",
    "Runtime",
    "detect_format",
    "load_runtime",
    "runtime_class",
]
