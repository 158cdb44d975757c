"""What a dataset's schema says about a training spec: the target column and the task
(classification or regression), the feature columns, and how a row is read (an image of
``[C, H, W]`` for convolutional families, time steps for recurrent ones)."""

from __future__ import annotations

import math

from modelbay.errors import InvalidRequest
from modelbay.training.table import IMAGE_TARGET, ColumnStats, DatasetSchema, Task, column

RECURRENT = ("rnn", "lstm", "gru")
CONVOLUTIONAL = ("cnn", "resnet")
MAX_CLASSES = 1000
INFERRED_CLASSES = 100
"""An integer target with at most this many distinct values is read as classes."""


def fail(param: str, message: str) -> InvalidRequest:
    """The 422 of a spec: ``param`` names the field."""
    return InvalidRequest(message, param=param, status=422)


def target_column(target: str, schema: DatasetSchema, images: bool) -> ColumnStats | None:
    if images:
        if target != IMAGE_TARGET:
            raise fail(
                "target",
                f"unknown target '{target}'; an image dataset has one column, '{IMAGE_TARGET}'",
            )
        return None
    col = column(schema, target)
    if col is None:
        names = _listed(schema.get("columns", []))
        raise fail("target", f"unknown target column '{target}'; columns: {names}")
    return col


def _listed(columns: list[ColumnStats], limit: int = 50) -> str:
    """Column names for a message: the first ``limit``, then how many more."""
    names = [str(c.get("name")) for c in columns]
    more = f" ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _integer_valued(col: ColumnStats) -> bool:
    """Whether the column holds whole numbers (int/bool dtype, or floats that all are)."""
    dtype = col.get("dtype", "").lower()
    if dtype.startswith(("int", "uint", "bool")):
        return True
    top = col.get("top")
    if col.get("numeric") and top and col.get("unique", len(top) + 1) <= len(top):
        try:
            return all(float(value).is_integer() for value in top)
        except ValueError:
            return False
    return False


def task_of(
    family: str,
    target: str,
    col: ColumnStats | None,
    wanted: Task | None,
    images: bool,
    rows: int | None,
) -> Task:
    fixed: Task | None = None
    if family == "linear":
        fixed = "regression"
    elif family in ("logistic", "perceptron"):
        fixed = "classification"
    if fixed is not None and wanted is not None and wanted != fixed:
        raise fail("params.task", f"{family} does {fixed} only; params.task was {wanted}")
    if images:
        if (fixed or wanted) == "regression":
            raise fail(
                "params.task" if wanted else "family",
                "an image dataset is classified by its label; regression needs a tabular "
                "dataset (families for images: logistic, perceptron, mlp, cnn, resnet, rnn, "
                "lstm, gru)",
            )
        return "classification"
    assert col is not None
    numeric = bool(col.get("numeric"))
    unique = int(col.get("unique", 0))
    task = fixed or wanted
    if task is None:
        classes = not numeric or (_integer_valued(col) and unique <= INFERRED_CLASSES)
        task = "classification" if classes else "regression"
    if task == "regression" and not numeric:
        raise fail(
            "target",
            f"target '{target}' is not numeric ({col.get('dtype')}); regression needs a "
            "numeric target (use a classifier: logistic, mlp ...)",
        )
    if task == "classification":
        many = min(INFERRED_CLASSES, (rows or 2 * INFERRED_CLASSES) // 2)
        if numeric and not _integer_valued(col) and unique > many:
            raise fail(
                "target",
                f"target '{target}' is a float column with {unique} distinct values; "
                f"classes of a float target must be few (at most {many} here): use linear, "
                "or task=regression",
            )
        if unique > MAX_CLASSES or unique < 2:
            raise fail(
                "target",
                f"target '{target}' has {unique} distinct values; classification needs "
                f"2 to {MAX_CLASSES} classes",
            )
    return task


def features_of(target: str, wanted: list[str] | None, schema: DatasetSchema) -> list[str]:
    columns = schema.get("columns", [])
    if wanted is None:
        names = [
            str(c.get("name")) for c in columns if c.get("numeric") and c.get("name") != target
        ]
        if not names:
            raise fail(
                "params.features",
                f"params.features: the dataset has no numeric column besides the target "
                f"'{target}' to use as a feature",
            )
        return names
    for name in wanted:
        col = column(schema, name)
        if col is None:
            listed = _listed(columns)
            raise fail(
                "params.features", f"params.features: unknown column '{name}'; columns: {listed}"
            )
        if name == target:
            raise fail(
                "params.features", f"params.features: the target '{target}' cannot be a feature"
            )
        if not col.get("numeric"):
            raise fail(
                "params.features",
                f"params.features: column '{name}' is not numeric ({col.get('dtype')}); "
                "features must be numeric columns",
            )
    if len(set(wanted)) != len(wanted):
        raise fail("params.features", "params.features names a column twice")
    return wanted


def row_shape(features: list[str] | None, schema: DatasetSchema) -> list[int]:
    """The shape of one row as served: ``[F]`` (tabular) or ``[C, H, W]`` (images)."""
    if features is not None:
        return [len(features)]
    shape = list(schema.get("image_shape", []))
    if len(shape) != 3:
        raise fail("dataset", f"the image dataset records no [C, H, W] image shape ({shape})")
    return shape


def _square(n: int) -> int | None:
    side = math.isqrt(n)
    return side if side * side == n else None


def image_view(family: str, row: list[int], wanted: list[int] | None) -> list[int]:
    """``[C, H, W]`` a row is read as by a convolutional model."""
    if len(row) == 3:
        if wanted is not None and wanted != row:
            raise fail(
                "params.input_shape",
                f"images of this dataset are {'x'.join(map(str, row))}; params.input_shape "
                "cannot change that",
            )
        view = row
    elif wanted is not None:
        if math.prod(wanted) != row[0]:
            raise fail(
                "params.input_shape",
                f"params.input_shape {'x'.join(map(str, wanted))} holds {math.prod(wanted)} "
                f"values, but a row has {row[0]} features; the product must equal it",
            )
        view = wanted
    else:
        side = _square(row[0])
        if side is None:
            raise fail(
                "params.input_shape",
                f"{family} reads a row as an image: {row[0]} features is not a perfect square, "
                "so give params.input_shape=CxHxW whose product is the feature count",
            )
        view = [1, side, side]
    if family == "cnn" and min(view[1:]) < 4:
        raise fail(
            "params.input_shape",
            f"cnn pools twice, so its input_shape must be at least 4x4 (got {view[1]}x{view[2]})",
        )
    return view


def steps_of(row: list[int], wanted: int | None) -> int:
    """Time steps a row is read as by a recurrent model."""
    if len(row) == 3:
        if wanted is not None and wanted != row[1]:
            raise fail(
                "params.steps",
                f"an image is read as its {row[1]} rows (steps); params.steps cannot change that",
            )
        return row[1]
    features = row[0]
    if wanted is None:
        return _square(features) or features
    if features % wanted:
        raise fail(
            "params.steps",
            f"params.steps={wanted} does not divide the {features} features of a row",
        )
    return wanted
