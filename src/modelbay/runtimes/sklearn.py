"""scikit-learn estimators and pipelines saved with ``skops.io.dump``.

Only the types skops trusts by default are loaded: a file naming any other type is refused,
since loading a foreign type may run its code.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import skops.io

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes._errors import framework_message
from modelbay.runtimes._signatures import narrowed, picked_by_name, quoted
from modelbay.runtimes._text import as_bytes, as_text
from modelbay.runtimes.base import Runtime
from modelbay.tensors import Signature, TensorSpec, numpy_dtype

# Kind of the ``classes_`` dtype -> datatype of ``predict``; anything else is a string label.
_LABEL_DATATYPES = {"i": "INT64", "u": "INT64", "b": "BOOL", "f": "FP64"}


class SklearnRuntime(Runtime):
    """One input ``input`` (rows of features); outputs named after the estimator's methods,
    ``predict`` and, for probabilistic classifiers, ``predict_proba``."""

    format = "sklearn"

    def __init__(self, estimator: Any, signature: Signature) -> None:
        self._estimator = estimator
        super().__init__(signature)

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
    ) -> SklearnRuntime:
        path = model_dir / entrypoint
        untrusted = _untrusted_types(path)
        if untrusted:
            raise InvalidArtifact(
                f"'{entrypoint}' contains types skops does not trust by default: "
                f"{quoted(untrusted)}; loading them could run their code, so modelbay refuses. "
                "Use scikit-learn's own estimators and transformers",
                param="file",
            )
        try:
            estimator = skops.io.load(path)
        except Exception as exc:  # skops raises many types for a malformed file
            raise InvalidArtifact(
                f"cannot load skops model '{entrypoint}': {framework_message(exc)}", param="file"
            ) from exc
        return cls(estimator, _fitted(estimator, signature))

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        spec = self._signature.inputs[0]
        rows = inputs[spec.name]
        if spec.datatype == "BYTES":
            rows = as_text(rows, spec.name)
        results = {}
        for out in self._signature.outputs:
            if outputs is not None and out.name not in outputs:
                continue
            try:
                value = getattr(self._estimator, out.name)(rows)
            except (ValueError, TypeError) as exc:
                raise InvalidRequest(framework_message(exc), param="inputs") from exc
            results[out.name] = _as_datatype(value, out.datatype)
        return results


def _untrusted_types(path: Path) -> list[str]:
    try:
        return list(skops.io.get_untrusted_types(file=path))
    except Exception as exc:  # a file that is not a skops archive
        raise InvalidArtifact(
            f"'{path.name}' is not a skops archive: {framework_message(exc)}", param="file"
        ) from exc


def _fitted(estimator: Any, given: Signature | None) -> Signature:
    """The signature read from the estimator, or ``given`` checked against it."""
    if not hasattr(estimator, "predict"):
        raise InvalidArtifact(
            f"{type(estimator).__name__} has no predict method; upload a fitted estimator",
            param="file",
        )
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise InvalidArtifact(
            f"{type(estimator).__name__} records no n_features_in_; upload a fitted estimator",
            param="file",
        )
    if given is not None and len(given.inputs) != 1:
        raise InvalidArtifact(
            "a scikit-learn model takes one input (rows of features); "
            f"the signature lists {len(given.inputs)}",
            param="signature",
        )
    # A user may send FP32 (or BYTES for string features); sklearn converts as it needs.
    datatype = given.inputs[0].datatype if given else "FP64"
    model = _recorded_signature(estimator, n_features, datatype)
    if given is None:
        return model
    return Signature(
        inputs=[narrowed(model.inputs[0], given.inputs[0], "input")],
        outputs=picked_by_name(model.outputs, given.outputs, "output"),
    )


def _recorded_signature(estimator: Any, n_features: int, datatype: str) -> Signature:
    classes = getattr(estimator, "classes_", None)
    # A multi-output classifier has one array of classes per output.
    multi_output = isinstance(classes, list)
    labels = classes[0] if isinstance(classes, list) else classes
    label_datatype = "FP64" if labels is None else _label_datatype(np.asarray(labels))
    outputs = [
        TensorSpec(
            name="predict",
            datatype=label_datatype,
            shape=_prediction_shape(estimator, n_features, datatype),
        )
    ]
    if hasattr(estimator, "predict_proba") and labels is not None and not multi_output:
        outputs.append(TensorSpec(name="predict_proba", datatype="FP64", shape=[-1, len(labels)]))
    return Signature(
        inputs=[TensorSpec(name="input", datatype=datatype, shape=[-1, n_features])],
        outputs=outputs,
    )


def _label_datatype(labels: np.ndarray) -> str:
    return _LABEL_DATATYPES.get(labels.dtype.kind, "BYTES")


def _prediction_shape(estimator: Any, n_features: int, datatype: str) -> list[int]:
    """``[-1]`` or, for a multi-output estimator, ``[-1, k]``: estimators record this in
    different attributes, so one row is predicted to see it."""
    if datatype == "BYTES":
        return [-1]
    row = np.zeros((1, n_features), dtype=numpy_dtype(datatype))
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            sample = estimator.predict(row)
    except Exception:  # a pipeline may reject zeros; a single output is then assumed
        return [-1]
    return [-1, *np.shape(sample)[1:]]


def _as_datatype(value: Any, datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return as_bytes(value)
    return np.asarray(value).astype(numpy_dtype(datatype), copy=False)
