"""What a stored dataset is described as (``DatasetSchema``) and what training reads
(``Table``). Shared by the dataset readers, the spec checks and the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import numpy as np

from modelbay.errors import ModelbayError

DatasetKind = Literal["tabular", "images"]
Task = Literal["classification", "regression"]

IMAGE_TARGET = "label"
"""The target of an image dataset (an image folder zip, CIFAR-10 batches)."""


class ColumnStats(TypedDict, total=False):
    """One column of a tabular dataset, as ``datasets show`` reports it."""

    name: str
    dtype: str  # pandas/numpy dtype name: float64, int64, bool, object (strings) ...
    numeric: bool  # usable as a model feature as it is
    missing: int  # null / NaN count
    unique: int  # distinct non-null values
    min: float
    max: float
    mean: float
    std: float
    top: dict[str, int]  # up to 20 most frequent values -> counts (non-numeric or <= 20 unique)


class DatasetSchema(TypedDict, total=False):
    """Recorded with a dataset version when it is pushed (JSON in the registry)."""

    format: str  # csv | parquet | npz | images | cifar10
    kind: DatasetKind
    rows: int
    columns: list[ColumnStats]  # tabular: every column; images: one, IMAGE_TARGET
    image_shape: list[int]  # images: [C, H, W] every image is read as
    classes: list[str]  # images: class names by index
    class_balance: dict[str, int]  # images: class -> count
    preview: list[list[Any]]  # tabular: the first rows (PREVIEW_ROWS), in column order


class InvalidDataset(ModelbayError):
    """A dataset that cannot be read or used: the message names the file, row or column."""

    status = 422


@dataclass
class Table:
    """A dataset read for training: features and target as arrays."""

    features: np.ndarray  # float32, [N, F] (tabular) or [N, C, H, W] (images)
    target: np.ndarray  # [N]: int64 class indices (classification), float32 (regression)
    feature_names: list[str]  # tabular: the feature columns in order; images: ["image"]
    target_name: str
    task: Task
    classes: list[str] | None  # classification: class names by index; regression: None

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])


def column(schema: DatasetSchema, name: str) -> ColumnStats | None:
    """The recorded stats of column ``name``, or None."""
    for col in schema.get("columns", []):
        if col.get("name") == name:
            return col
    return None


def jsonable(value: Any) -> Any:
    """numpy scalars to Python numbers, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value
