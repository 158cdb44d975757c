"""Checks that a signature given at upload fits what the model itself records."""

from __future__ import annotations

from collections.abc import Iterable

from modelbay.errors import InvalidArtifact
from modelbay.tensors import TensorSpec


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names) or "(none)"


def narrowed(model: TensorSpec, given: TensorSpec, kind: str) -> TensorSpec:
    """``given`` if it describes the same tensor as ``model``, possibly with fixed dimensions
    where the model has variable ones; ``kind`` is "input" or "output", for messages."""
    where = f"signature {kind} '{given.name}'"
    if given.name != model.name:
        where += f" (the model's '{model.name}')"
    if given.datatype != model.datatype:
        raise InvalidArtifact(
            f"{where} has datatype {given.datatype} but the model uses {model.datatype}",
            param="signature",
        )
    fits = len(given.shape) == len(model.shape) and all(
        want in (-1, got) for want, got in zip(model.shape, given.shape, strict=True)
    )
    if not fits:
        raise InvalidArtifact(
            f"{where} has shape {given.shape} but the model accepts {model.shape} "
            "(-1 may be fixed to a size, other dimensions must match)",
            param="signature",
        )
    return given


def picked_by_name(model: list[TensorSpec], given: list[TensorSpec], kind: str) -> list[TensorSpec]:
    """The ``given`` specs, each checked against the model's spec of the same name."""
    by_name = {spec.name: spec for spec in model}
    picked = []
    for spec in given:
        if spec.name not in by_name:
            raise InvalidArtifact(
                f"signature {kind} '{spec.name}' is not in the model; "
                f"its {kind}s are {quoted(by_name)}",
                param="signature",
            )
        picked.append(narrowed(by_name[spec.name], spec, kind))
    return picked
