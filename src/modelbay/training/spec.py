"""What a training job trains: the model family, the target and the hyperparameters,
checked against the dataset's schema before anything runs.

``resolve_spec`` turns CLI/API parameters (strings such as ``lr=0.01`` or JSON values) into
a ``TrainSpec`` with every value filled in (family defaults included), or raises
``InvalidRequest`` (422) naming the parameter and what would have been valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from modelbay.errors import InvalidRequest
from modelbay.training.table import IMAGE_TARGET, ColumnStats, DatasetSchema, Task, column

Family = Literal["linear", "logistic", "perceptron", "mlp", "cnn", "resnet", "rnn", "lstm", "gru"]
FAMILIES: tuple[str, ...] = get_args(Family)
RECURRENT = ("rnn", "lstm", "gru")
CONVOLUTIONAL = ("cnn", "resnet")

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "cosine", "onecycle", "plateau"]
Monitor = Literal["val_loss", "val_accuracy", "val_r2"]
BatchSize = Annotated[int, Field(ge=1)] | Literal["full"]

MAX_CLASSES = 1000
INFERRED_CLASSES = 100
"""An integer target with at most this many distinct values is read as classes."""


def _comma_list(value: Any) -> Any:
    """``"128,64"`` or ``128`` as ``[128, 64]`` / ``[128]``; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


def _shape(value: Any) -> Any:
    """``"3x32x32"`` (or ``"3,32,32"``) as ``[3, 32, 32]``; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.lower().replace(",", "x").split("x")]
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Sizes = Annotated[
    list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=1), BeforeValidator(_comma_list)
]
Names = Annotated[list[str], Field(min_length=1), BeforeValidator(_comma_list)]
Shape = Annotated[
    list[Annotated[int, Field(ge=1, le=65536)]],
    Field(min_length=3, max_length=3),
    BeforeValidator(_shape),
]


class TrainSpec(BaseModel):
    """A checked training specification with every value resolved (JSON-serialisable).

    ``features``: the tabular feature columns in order (None for image datasets).
    ``input_shape``: ``[C, H, W]`` a row is read as by ``cnn``/``resnet`` (else None).
    ``steps``: time steps a row is read as by ``rnn``/``lstm``/``gru`` (else None).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Family
    target: str
    task: Task
    features: list[str] | None = None
    input_shape: list[int] | None = None
    steps: int | None = None
    optimizer: Optimizer = "adam"
    lr: float = Field(default=1e-3, gt=0, le=10)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    l1: float = Field(default=0.0, ge=0, le=1)
    lr_schedule: Schedule = "none"
    step_size: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.1, gt=0, le=1)
    batch_size: BatchSize = 32
    epochs: int = Field(default=20, ge=1, le=10_000)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    early_stopping: int = Field(default=0, ge=0)
    monitor: Monitor = "val_loss"
    validation_split: float = Field(default=0.1, ge=0, lt=1)
    test_split: float = Field(default=0.2, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    seed: int = Field(default=0, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [128])
    hidden_size: int = Field(default=64, ge=1)
    layers: int = Field(default=1, ge=1)
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64])


class _Params(BaseModel):
    """The parameters a user may give; None: not given (the family default applies)."""

    model_config = ConfigDict(extra="forbid")

    task: Annotated[Task | None, BeforeValidator(_lower)] = None
    features: Names | None = None
    input_shape: Shape | None = None
    steps: Annotated[int, Field(ge=1, le=65536)] | None = None
    optimizer: Annotated[Optimizer | None, BeforeValidator(_lower)] = None
    lr: Annotated[float, Field(gt=0, le=10)] | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0, le=1)] | None = None
    l1: Annotated[float, Field(ge=0, le=1)] | None = None
    lr_schedule: Annotated[Schedule | None, BeforeValidator(_lower)] = None
    step_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    gamma: Annotated[float, Field(gt=0, le=1)] | None = None
    batch_size: Annotated[BatchSize | None, BeforeValidator(_lower)] = None
    epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None
    early_stopping: Annotated[int, Field(ge=0, le=10_000)] | None = None
    monitor: Annotated[Monitor | None, BeforeValidator(_lower)] = None
    validation_split: Annotated[float, Field(ge=0, lt=1)] | None = None
    test_split: Annotated[float, Field(ge=0, lt=1)] | None = None
    class_weights: Annotated[Literal["none", "balanced"] | None, BeforeValidator(_lower)] = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    hidden: Sizes | None = None
    hidden_size: Annotated[int, Field(ge=1, le=4096)] | None = None
    layers: Annotated[int, Field(ge=1, le=8)] | None = None
    channels: Sizes | None = None


EXPECTED: dict[str, str] = {
    "task": "classification or regression",
    "features": "comma-separated numeric column names",
    "input_shape": "CxHxW, e.g. 1x8x8 (cnn, resnet)",
    "steps": "an integer >= 1 dividing the feature count (rnn, lstm, gru)",
    "optimizer": "sgd, adam or adamw",
    "lr": "a number > 0 and <= 10",
    "momentum": "a number >= 0 and < 1 (sgd)",
    "weight_decay": "a number >= 0 and <= 1 (L2)",
    "l1": "a number >= 0 and <= 1",
    "lr_schedule": "none, step, cosine, onecycle or plateau",
    "step_size": "an integer from 1 to 10000 (epochs; lr_schedule step or plateau)",
    "gamma": "a number > 0 and <= 1 (lr factor; lr_schedule step or plateau)",
    "batch_size": "an integer >= 1, or full",
    "epochs": "an integer from 1 to 10000",
    "dropout": "a number >= 0 and < 1",
    "early_stopping": "an integer >= 0 (patience in epochs; 0 = off)",
    "monitor": "val_loss, val_accuracy (classification) or val_r2 (regression)",
    "validation_split": "a number >= 0 and < 1",
    "test_split": "a number >= 0 and < 1",
    "class_weights": "none or balanced",
    "seed": "an integer >= 0",
    "hidden": "comma-separated layer sizes, e.g. 128,64 (mlp)",
    "hidden_size": "an integer from 1 to 4096 (rnn, lstm, gru)",
    "layers": "an integer from 1 to 8 (rnn, lstm, gru)",
    "channels": "comma-separated stage widths, e.g. 16,32,64 (resnet)",
}
"""What each parameter accepts, as error messages say it."""

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"lr": 0.05, "batch_size": "full", "epochs": 300, "lr_schedule": "cosine"},
    "logistic": {"lr": 0.01, "batch_size": 16, "epochs": 30},
    "perceptron": {"lr": 0.01, "batch_size": 32, "epochs": 20},
    "mlp": {"lr": 1e-3, "batch_size": 32, "epochs": 30, "hidden": [128]},
    "cnn": {"lr": 2e-3, "batch_size": 32, "epochs": 25, "dropout": 0.1, "lr_schedule": "cosine"},
    "resnet": {"lr": 2e-3, "batch_size": 64, "epochs": 15, "channels": [16, 32, 64]},
    "rnn": {"lr": 3e-3, "batch_size": 32, "epochs": 20, "hidden_size": 64, "layers": 1},
    "lstm": {"lr": 3e-3, "batch_size": 32, "epochs": 20, "hidden_size": 64, "layers": 1},
    "gru": {"lr": 3e-3, "batch_size": 32, "epochs": 20, "hidden_size": 64, "layers": 1},
}
"""Per-family defaults of the hyperparameters (the rest: ``TrainSpec``'s field defaults)."""

_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "hidden": ("mlp",),
    "hidden_size": RECURRENT,
    "layers": RECURRENT,
    "steps": RECURRENT,
    "channels": ("resnet",),
    "input_shape": CONVOLUTIONAL,
    "dropout": ("mlp", *CONVOLUTIONAL, *RECURRENT),
}
"""Parameters that mean something for some families only."""


def applies(name: str, spec: Mapping[str, Any]) -> bool:
    """Whether hyperparameter ``name`` means something for ``spec`` (a ``TrainSpec`` as a
    dict: every field is filled in, used or not)."""
    if name in _ONLY_FOR:
        return spec.get("family") in _ONLY_FOR[name]
    if name == "momentum":
        return spec.get("optimizer") == "sgd"
    if name in ("step_size", "gamma"):
        return spec.get("lr_schedule") in ("step", "plateau")
    return True


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, status=422)


def resolve_spec(
    family: str, target: str, params: Mapping[str, Any], schema: DatasetSchema
) -> TrainSpec:
    """The checked ``TrainSpec`` of training ``family`` to predict ``target`` of a dataset
    with ``schema``; ``InvalidRequest`` (422) naming the field if it makes no sense."""
    if family not in FAMILIES:
        raise _fail("family", f"unknown model family '{family}'; families: {', '.join(FAMILIES)}")
    given = _parse(params)
    for name, families in _ONLY_FOR.items():
        if getattr(given, name) is not None and family not in families:
            raise _fail(
                f"params.{name}",
                f"params.{name} applies to {', '.join(families)} only, not {family}",
            )
    images = schema.get("kind") == "images"
    target_col = _target_column(target, schema, images)
    task = _task(family, target, target_col, given.task, images, schema.get("rows"))
    values: dict[str, Any] = dict(FAMILY_DEFAULTS[family])
    values.update(given.model_dump(exclude_none=True, exclude={"task", "features"}))
    values.update(family=family, target=target, task=task)
    values["features"] = None if images else _features(target, given.features, schema)
    if images and given.features is not None:
        raise _fail(
            "params.features", "params.features: an image dataset has one feature, the image"
        )
    row_shape = _row_shape(values["features"], schema)
    if family in CONVOLUTIONAL:
        values["input_shape"] = _image_view(family, row_shape, given.input_shape)
    if family in RECURRENT:
        values["steps"] = _steps(row_shape, given.steps)
    _check_training(values, given, task)
    if given.step_size is None and values.get("lr_schedule") in ("step", "plateau"):
        epochs = values.get("epochs", 20)
        values["step_size"] = max(1, epochs // 3) if values["lr_schedule"] == "step" else 2
    return TrainSpec.model_validate(values)


def _parse(params: Mapping[str, Any]) -> _Params:
    known = _Params.model_fields
    for name in params:
        if name not in known:
            raise _fail(
                f"params.{name}",
                f"unknown parameter '{name}'; parameters: {', '.join(sorted(known))}",
            )
    try:
        return _Params.model_validate(dict(params))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        raise _fail(
            f"params.{name}",
            f"params.{name}: invalid value {error['input']!r} ({error['msg']}); "
            f"expected {EXPECTED[name]}",
        ) from None


def _target_column(target: str, schema: DatasetSchema, images: bool) -> ColumnStats | None:
    if images:
        if target != IMAGE_TARGET:
            raise _fail(
                "target",
                f"unknown target '{target}'; an image dataset has one column, '{IMAGE_TARGET}'",
            )
        return None
    col = column(schema, target)
    if col is None:
        names = _listed(schema.get("columns", []))
        raise _fail("target", f"unknown target column '{target}'; columns: {names}")
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


def _task(
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
        raise _fail("params.task", f"{family} does {fixed} only; params.task was {wanted}")
    if images:
        if (fixed or wanted) == "regression":
            raise _fail(
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
        raise _fail(
            "target",
            f"target '{target}' is not numeric ({col.get('dtype')}); regression needs a "
            "numeric target (use a classifier: logistic, mlp ...)",
        )
    if task == "classification":
        many = min(INFERRED_CLASSES, (rows or 2 * INFERRED_CLASSES) // 2)
        if numeric and not _integer_valued(col) and unique > many:
            raise _fail(
                "target",
                f"target '{target}' is a float column with {unique} distinct values; "
                f"classes of a float target must be few (at most {many} here): use linear, "
                "or task=regression",
            )
        if unique > MAX_CLASSES or unique < 2:
            raise _fail(
                "target",
                f"target '{target}' has {unique} distinct values; classification needs "
                f"2 to {MAX_CLASSES} classes",
            )
    return task


def _features(target: str, wanted: list[str] | None, schema: DatasetSchema) -> list[str]:
    columns = schema.get("columns", [])
    if wanted is None:
        names = [
            str(c.get("name")) for c in columns if c.get("numeric") and c.get("name") != target
        ]
        if not names:
            raise _fail(
                "params.features",
                f"params.features: the dataset has no numeric column besides the target "
                f"'{target}' to use as a feature",
            )
        return names
    for name in wanted:
        col = column(schema, name)
        if col is None:
            listed = _listed(columns)
            raise _fail(
                "params.features", f"params.features: unknown column '{name}'; columns: {listed}"
            )
        if name == target:
            raise _fail(
                "params.features", f"params.features: the target '{target}' cannot be a feature"
            )
        if not col.get("numeric"):
            raise _fail(
                "params.features",
                f"params.features: column '{name}' is not numeric ({col.get('dtype')}); "
                "features must be numeric columns",
            )
    if len(set(wanted)) != len(wanted):
        raise _fail("params.features", "params.features names a column twice")
    return wanted


def _row_shape(features: list[str] | None, schema: DatasetSchema) -> list[int]:
    """The shape of one row as served: ``[F]`` (tabular) or ``[C, H, W]`` (images)."""
    if features is not None:
        return [len(features)]
    shape = list(schema.get("image_shape", []))
    if len(shape) != 3:
        raise _fail("dataset", f"the image dataset records no [C, H, W] image shape ({shape})")
    return shape


def _square(n: int) -> int | None:
    side = math.isqrt(n)
    return side if side * side == n else None


def _image_view(family: str, row: list[int], wanted: list[int] | None) -> list[int]:
    """``[C, H, W]`` a row is read as by a convolutional model."""
    if len(row) == 3:
        if wanted is not None and wanted != row:
            raise _fail(
                "params.input_shape",
                f"images of this dataset are {'x'.join(map(str, row))}; params.input_shape "
                "cannot change that",
            )
        view = row
    elif wanted is not None:
        if math.prod(wanted) != row[0]:
            raise _fail(
                "params.input_shape",
                f"params.input_shape {'x'.join(map(str, wanted))} holds {math.prod(wanted)} "
                f"values, but a row has {row[0]} features; the product must equal it",
            )
        view = wanted
    else:
        side = _square(row[0])
        if side is None:
            raise _fail(
                "params.input_shape",
                f"{family} reads a row as an image: {row[0]} features is not a perfect square, "
                "so give params.input_shape=CxHxW whose product is the feature count",
            )
        view = [1, side, side]
    if family == "cnn" and min(view[1:]) < 4:
        raise _fail(
            "params.input_shape",
            f"cnn pools twice, so its input_shape must be at least 4x4 (got {view[1]}x{view[2]})",
        )
    return view


def _steps(row: list[int], wanted: int | None) -> int:
    """Time steps a row is read as by a recurrent model."""
    if len(row) == 3:
        if wanted is not None and wanted != row[1]:
            raise _fail(
                "params.steps",
                f"an image is read as its {row[1]} rows (steps); params.steps cannot change that",
            )
        return row[1]
    features = row[0]
    if wanted is None:
        return _square(features) or features
    if features % wanted:
        raise _fail(
            "params.steps",
            f"params.steps={wanted} does not divide the {features} features of a row",
        )
    return wanted


def _check_training(values: dict[str, Any], given: _Params, task: Task) -> None:
    """Hyperparameters that only make sense together."""
    if given.momentum is not None and values.get("optimizer", "adam") != "sgd":
        raise _fail("params.momentum", "params.momentum applies to optimizer=sgd only")
    schedule = values.get("lr_schedule", "none")
    for name in ("step_size", "gamma"):
        if getattr(given, name) is not None and schedule not in ("step", "plateau"):
            raise _fail(
                f"params.{name}", f"params.{name} applies to lr_schedule step or plateau only"
            )
    if given.class_weights is not None and task != "classification":
        raise _fail("params.class_weights", "params.class_weights applies to classification")
    monitor = values.get("monitor", "val_loss")
    if monitor == "val_accuracy" and task != "classification":
        raise _fail("params.monitor", "monitor val_accuracy needs classification; use val_r2")
    if monitor == "val_r2" and task != "regression":
        raise _fail("params.monitor", "monitor val_r2 needs regression; use val_accuracy")
    if values["family"] == "resnet" and values.get("batch_size") == 1:
        raise _fail("params.batch_size", "resnet's BatchNorm needs batch_size >= 2 (or full)")
    validation = values.get("validation_split", 0.1)
    test = values.get("test_split", 0.2)
    if validation + test > 0.8:
        raise _fail(
            "params.validation_split"
            if given.validation_split is not None
            else "params.test_split",
            f"validation_split + test_split is {validation + test:g}; at most 0.8, so that "
            "training keeps at least a fifth of the rows",
        )
    if validation == 0:
        if values.get("early_stopping", 0) > 0:
            raise _fail(
                "params.early_stopping", "params.early_stopping needs a validation_split above 0"
            )
        if schedule == "plateau":
            raise _fail(
                "params.lr_schedule", "lr_schedule plateau needs a validation_split above 0"
            )
        if given.monitor is not None:
            raise _fail("params.monitor", "params.monitor needs a validation_split above 0")
