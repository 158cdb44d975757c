"""What a training job trains: the model family, the target and the hyperparameters,
checked against the dataset's schema before anything runs.

``resolve_spec`` turns CLI/API parameters (strings such as ``lr=0.01`` or JSON values) into
a ``TrainSpec`` with every value filled in (family defaults included), or raises
``InvalidRequest`` (422) naming the parameter and what would have been valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from modelbay.training.spec_schema import (
    CONVOLUTIONAL,
    RECURRENT,
    fail,
    features_of,
    image_view,
    row_shape,
    steps_of,
    target_column,
    task_of,
)
from modelbay.training.table import DatasetSchema, Task

Family = Literal["linear", "logistic", "perceptron", "mlp", "cnn", "resnet", "rnn", "lstm", "gru"]
FAMILIES: tuple[str, ...] = get_args(Family)

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "cosine", "onecycle", "plateau"]
Monitor = Literal["val_loss", "val_accuracy", "val_r2"]
BatchSize = Annotated[int, Field(ge=1)] | Literal["full"]
Strategy = Literal["single", "ddp", "average", "ensemble", "federated"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PARALLEL = ("ddp", "average", "ensemble")
"""Strategies that train in ``workers`` processes of one job."""
SyncEvery = Annotated[int, Field(ge=1)] | Literal["epoch", "end"]
Partition = Literal["iid", "label"]
Amp = Literal["none", "bf16"]
Device = Literal["auto", "cpu", "cuda"]


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
    strategy: Strategy = "single"
    workers: int = Field(default=1, ge=1, le=64)
    sync_every: SyncEvery = "epoch"
    clients: int = Field(default=2, ge=1, le=1000)
    min_clients: int | None = None
    rounds: int = Field(default=10, ge=1, le=10_000)
    local_epochs: int = Field(default=1, ge=1, le=1000)
    simulate: bool = False
    partition: Partition = "iid"
    round_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    proximal_mu: float = Field(default=0.0, ge=0, le=100)
    dp_clip: float | None = Field(default=None, gt=0)
    dp_noise: float = Field(default=0.0, ge=0, le=100)
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)
    device: Device = "auto"
    amp: Amp = "none"


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
    strategy: Annotated[Strategy | None, BeforeValidator(_lower)] = None
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    sync_every: Annotated[SyncEvery | None, BeforeValidator(_lower)] = None
    clients: Annotated[int, Field(ge=1, le=1000)] | None = None
    min_clients: Annotated[int, Field(ge=1, le=1000)] | None = None
    rounds: Annotated[int, Field(ge=1, le=10_000)] | None = None
    local_epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    simulate: bool | None = None
    partition: Annotated[Partition | None, BeforeValidator(_lower)] = None
    round_timeout_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    proximal_mu: Annotated[float, Field(ge=0, le=100)] | None = None
    dp_clip: Annotated[float, Field(gt=0, le=1e6)] | None = None
    dp_noise: Annotated[float, Field(ge=0, le=100)] | None = None
    dp_delta: Annotated[float, Field(gt=0, lt=1)] | None = None
    device: Annotated[Device | None, BeforeValidator(_lower)] = None
    amp: Annotated[Amp | None, BeforeValidator(_lower)] = None


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
    "strategy": "single, ddp, average, ensemble or federated",
    "workers": "an integer from 1 to 64 (processes; strategy ddp, average or ensemble)",
    "sync_every": "an integer >= 1 (steps), epoch or end (strategy average)",
    "clients": "an integer from 1 to 1000 (strategy federated)",
    "min_clients": "an integer from 1 to clients (strategy federated)",
    "rounds": "an integer from 1 to 10000 (strategy federated)",
    "local_epochs": "an integer from 1 to 1000 (strategy federated)",
    "simulate": "true or false (strategy federated)",
    "partition": "iid or label (strategy federated with simulate)",
    "round_timeout_s": "a number of seconds > 0 (strategy federated)",
    "proximal_mu": "a number >= 0 (FedProx; strategy federated)",
    "dp_clip": "a number > 0 (the clipping norm of updates; strategy federated)",
    "dp_noise": "a number >= 0 (the noise multiplier; strategy federated, with dp_clip)",
    "dp_delta": "a number > 0 and < 1 (strategy federated, with dp_clip)",
    "device": "auto, cpu or cuda",
    "amp": "none or bf16 (mixed precision)",
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

FEDERATED_PARAMS = (
    "clients",
    "min_clients",
    "rounds",
    "local_epochs",
    "simulate",
    "partition",
    "round_timeout_s",
    "proximal_mu",
    "dp_clip",
    "dp_noise",
    "dp_delta",
)
_STRATEGY_ONLY: dict[str, tuple[str, ...]] = {
    "workers": PARALLEL,
    "sync_every": ("average",),
    **{name: ("federated",) for name in FEDERATED_PARAMS},
}
"""Parameters that mean something for some strategies only."""


def applies(name: str, spec: Mapping[str, Any]) -> bool:
    """Whether hyperparameter ``name`` means something for ``spec`` (a ``TrainSpec`` as a
    dict: every field is filled in, used or not)."""
    if name in _ONLY_FOR:
        return spec.get("family") in _ONLY_FOR[name]
    if name in _STRATEGY_ONLY:
        if name == "partition" and not spec.get("simulate"):
            return False
        if name in ("dp_noise", "dp_delta") and spec.get("dp_clip") is None:
            return False
        return spec.get("strategy", "single") in _STRATEGY_ONLY[name]
    if name == "momentum":
        return spec.get("optimizer") == "sgd"
    if name in ("step_size", "gamma"):
        return spec.get("lr_schedule") in ("step", "plateau")
    return True


def resolve_spec(
    family: str, target: str, params: Mapping[str, Any], schema: DatasetSchema
) -> TrainSpec:
    """The checked ``TrainSpec`` of training ``family`` to predict ``target`` of a dataset
    with ``schema``; ``InvalidRequest`` (422) naming the field if it makes no sense."""
    if family not in FAMILIES:
        raise fail("family", f"unknown model family '{family}'; families: {', '.join(FAMILIES)}")
    given = _parse(params)
    for name, families in _ONLY_FOR.items():
        if getattr(given, name) is not None and family not in families:
            raise fail(
                f"params.{name}",
                f"params.{name} applies to {', '.join(families)} only, not {family}",
            )
    images = schema.get("kind") == "images"
    target_col = target_column(target, schema, images)
    task = task_of(family, target, target_col, given.task, images, schema.get("rows"))
    values: dict[str, Any] = dict(FAMILY_DEFAULTS[family])
    values.update(given.model_dump(exclude_none=True, exclude={"task", "features"}))
    values.update(family=family, target=target, task=task)
    values["features"] = None if images else features_of(target, given.features, schema)
    if images and given.features is not None:
        raise fail(
            "params.features", "params.features: an image dataset has one feature, the image"
        )
    row = row_shape(values["features"], schema)
    if family in CONVOLUTIONAL:
        values["input_shape"] = image_view(family, row, given.input_shape)
    if family in RECURRENT:
        values["steps"] = steps_of(row, given.steps)
    _check_training(values, given, task)
    _check_strategy(values, given)
    if given.step_size is None and values.get("lr_schedule") in ("step", "plateau"):
        epochs = values.get("epochs", 20)
        values["step_size"] = max(1, epochs // 3) if values["lr_schedule"] == "step" else 2
    return TrainSpec.model_validate(values)


def _parse(params: Mapping[str, Any]) -> _Params:
    known = _Params.model_fields
    for name in params:
        if name not in known:
            raise fail(
                f"params.{name}",
                f"unknown parameter '{name}'; parameters: {', '.join(sorted(known))}",
            )
    try:
        return _Params.model_validate(dict(params))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        raise fail(
            f"params.{name}",
            f"params.{name}: invalid value {error['input']!r} ({error['msg']}); "
            f"expected {EXPECTED[name]}",
        ) from None


def _check_training(values: dict[str, Any], given: _Params, task: Task) -> None:
    """Hyperparameters that only make sense together."""
    if given.momentum is not None and values.get("optimizer", "adam") != "sgd":
        raise fail("params.momentum", "params.momentum applies to optimizer=sgd only")
    schedule = values.get("lr_schedule", "none")
    for name in ("step_size", "gamma"):
        if getattr(given, name) is not None and schedule not in ("step", "plateau"):
            raise fail(
                f"params.{name}", f"params.{name} applies to lr_schedule step or plateau only"
            )
    if given.class_weights is not None and task != "classification":
        raise fail("params.class_weights", "params.class_weights applies to classification")
    monitor = values.get("monitor", "val_loss")
    if monitor == "val_accuracy" and task != "classification":
        raise fail("params.monitor", "monitor val_accuracy needs classification; use val_r2")
    if monitor == "val_r2" and task != "regression":
        raise fail("params.monitor", "monitor val_r2 needs regression; use val_accuracy")
    if values["family"] == "resnet" and values.get("batch_size") == 1:
        raise fail("params.batch_size", "resnet's BatchNorm needs batch_size >= 2 (or full)")
    validation = values.get("validation_split", 0.1)
    test = values.get("test_split", 0.2)
    if validation + test > 0.8:
        raise fail(
            "params.validation_split"
            if given.validation_split is not None
            else "params.test_split",
            f"validation_split + test_split is {validation + test:g}; at most 0.8, so that "
            "training keeps at least a fifth of the rows",
        )
    if validation == 0:
        if values.get("early_stopping", 0) > 0:
            raise fail(
                "params.early_stopping", "params.early_stopping needs a validation_split above 0"
            )
        if schedule == "plateau":
            raise fail("params.lr_schedule", "lr_schedule plateau needs a validation_split above 0")
        if given.monitor is not None:
            raise fail("params.monitor", "params.monitor needs a validation_split above 0")


def _check_strategy(values: dict[str, Any], given: _Params) -> None:
    """Parameters of a strategy other than the job's, and strategy defaults."""
    strategy = values.get("strategy", "single")
    for name, strategies in _STRATEGY_ONLY.items():
        if getattr(given, name) is not None and strategy not in strategies:
            raise fail(
                f"params.{name}",
                f"params.{name} applies to strategy {' or '.join(strategies)} only, not {strategy}",
            )
    if strategy in PARALLEL and given.workers is None:
        values["workers"] = 2
    if strategy == "federated":
        clients = values.get("clients", 2)
        minimum = values.get("min_clients") or clients
        if minimum > clients:
            raise fail(
                "params.min_clients",
                f"params.min_clients ({minimum}) cannot exceed params.clients ({clients})",
            )
        values["min_clients"] = minimum
        if given.partition is not None and not values.get("simulate"):
            raise fail(
                "params.partition",
                "params.partition applies to a simulated federation (simulate=true): real "
                "clients bring their own data",
            )
        schedule = values.get("lr_schedule", "none")
        if schedule in ("onecycle", "plateau"):
            raise fail(
                "params.lr_schedule",
                f"lr_schedule {schedule} does not apply to strategy federated, whose schedule "
                "runs over rounds: use none, step or cosine",
            )
        if values.get("early_stopping", 0):
            raise fail(
                "params.early_stopping",
                "params.early_stopping does not apply to strategy federated: it runs all its "
                "rounds",
            )
        if (given.dp_noise is not None or given.dp_delta is not None) and values.get(
            "dp_clip"
        ) is None:
            raise fail(
                "params.dp_clip",
                "differential privacy needs params.dp_clip (the clipping norm) with dp_noise",
            )
