"""What a hyperparameter search varies: the families and hyperparameters of a training spec,
each over a range or a list of choices, checked with the training spec's own rules.

``resolve_search`` turns a request (the primary family, fixed parameters, ``SearchOptions``)
into a ``SearchSpec``, or raises ``InvalidRequest`` (422) naming the field, e.g.
``search.space.lr``: every bound and choice must be a value ``resolve_spec`` accepts for a
family it applies to. ``sample`` draws one trial's hyperparameters from an Optuna trial,
define-by-run: a hyperparameter that does not apply to the family (or optimizer, or
schedule) drawn is not drawn at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelbay.errors import InvalidRequest
from modelbay.training.spec import FAMILIES, applies, resolve_spec
from modelbay.training.table import DatasetSchema, Task

if TYPE_CHECKING:
    from optuna.trial import Trial

Choice = str | int | float | list[int]
FLOATS = ("lr", "momentum", "weight_decay", "l1", "gamma", "dropout")
INTS = ("epochs", "batch_size", "step_size", "early_stopping", "hidden_size", "layers")
CHOICES_ONLY = ("family", "optimizer", "lr_schedule", "class_weights", "hidden", "channels")
SEARCHABLE = (*CHOICES_ONLY, *FLOATS, *INTS)
CONDITIONS = ("family", "optimizer", "lr_schedule")
"""Drawn first: whether other hyperparameters apply depends on them."""
LISTS = ("hidden", "channels")
"""List-valued hyperparameters, drawn as comma-separated choices (``"256,128"``)."""


class Dimension(BaseModel):
    """One hyperparameter's range (``low``, ``high``, ``log``, ``step``) or ``choices``."""

    model_config = ConfigDict(extra="forbid")

    choices: list[Choice] | None = Field(default=None, min_length=1, max_length=64)
    low: float | None = None
    high: float | None = None
    log: bool = Field(default=False, description="Sample on a log scale (low > 0)")
    step: float | None = Field(default=None, gt=0, description="Only multiples of step")


class PrunerOptions(BaseModel):
    """How trials are stopped early from their per-epoch validation metric."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["median", "percentile", "halving", "none"] = Field(
        default="median",
        description="median: below the median of finished trials at the same epoch; "
        "percentile: outside the best `percentile` % of them; halving: asynchronous "
        "successive halving; none",
    )
    startup_trials: int = Field(
        default=3, ge=0, le=1000, description="Trials that finish before any is pruned"
    )
    warmup_epochs: int | None = Field(
        default=None, ge=0, le=10_000, description="Epochs a trial runs before it can be pruned"
    )
    percentile: float = Field(
        default=25.0, gt=0, lt=100, description="percentile: the share (%) of trials kept"
    )
    min_epochs: int = Field(default=1, ge=1, le=10_000, description="halving: the first rung")
    reduction_factor: int = Field(
        default=3, ge=2, le=100, description="halving: 1 in this many goes on at each rung"
    )


class SearchOptions(BaseModel):
    """A hyperparameter search (``search`` of ``POST /api/v1/jobs``)."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=20, ge=1, le=1000, description="Trials to run")
    families: list[str] | None = Field(
        default=None, min_length=1, max_length=9, description="Families searched (a dimension)"
    )
    space: dict[str, Dimension | Annotated[list[Choice], Field(min_length=1, max_length=64)]] = (
        Field(
            default_factory=dict,
            max_length=len(SEARCHABLE),
            description="Hyperparameter: {low, high, log, step} or {choices} (or a list of "
            "choices); empty: the families' default space",
        )
    )
    parallel: int | None = Field(
        default=None, ge=1, le=64, description="Trials run at once (default: the job workers)"
    )
    pruner: PrunerOptions = Field(default_factory=PrunerOptions)
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="The sampler's seed")
    baseline: bool = Field(
        default=True,
        description="Trial 0 trains the family's defaults (when the space holds them)",
    )


class SearchSpec(BaseModel):
    """A checked search, as its job's spec records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str  # the primary family: its defaults are the baseline trial
    families: list[str]
    target: str
    task: Task
    metric: Literal["val_accuracy", "val_r2"]  # maximized
    params: dict[str, Any]  # fixed in every trial
    space: dict[str, dict[str, Any]]  # normalised dimensions; the families apart
    trials: int
    parallel: int | None
    pruner: PrunerOptions
    seed: int
    baseline: dict[str, Any] | None  # trial 0's parameters, or None


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, status=422)


def resolve_search(
    family: str,
    target: str,
    params: Mapping[str, Any],
    options: SearchOptions,
    schema: DatasetSchema,
) -> SearchSpec:
    """The checked ``SearchSpec`` of ``options`` on a dataset with ``schema``."""
    families = _families(family, options)
    bases = base_specs(families, target, params, schema)
    tasks = {f: bases[f]["task"] for f in families}
    if len(set(tasks.values())) > 1:
        named = ", ".join(f"{f} {task}" for f, task in tasks.items())
        raise _fail("search.families", f"the families searched must do one task; {named}")
    if bases[family]["strategy"] != "single":
        raise _fail("params.strategy", "a search's trials train with strategy single")
    if bases[family]["validation_split"] <= 0:
        raise _fail(
            "params.validation_split",
            "a search compares trials on the validation split: it must be above 0",
        )
    raw = {k: v for k, v in options.space.items() if k != "family"}
    space = _checked_space(raw, families, bases, target, params, schema)
    if not space:
        defaults = default_space(families, bases)
        space = {name: dim for name, dim in defaults.items() if name not in params}
    epochs = min(int(bases[f]["epochs"]) for f in families)
    pruner = options.pruner
    if pruner.warmup_epochs is None:
        pruner = pruner.model_copy(update={"warmup_epochs": max(1, epochs // 10)})
    task = tasks[family]
    return SearchSpec(
        family=family,
        families=families,
        target=target,
        task=task,
        metric="val_accuracy" if task == "classification" else "val_r2",
        params=dict(params),
        space=space,
        trials=options.trials,
        parallel=options.parallel,
        pruner=pruner,
        seed=options.seed,
        baseline=baseline(family, families, space, bases) if options.baseline else None,
    )


def base_specs(
    families: list[str], target: str, params: Mapping[str, Any], schema: DatasetSchema
) -> dict[str, dict[str, Any]]:
    """Each family's spec with the fixed parameters and nothing drawn (a ``TrainSpec``
    as a dict); ``resolve_spec``'s 422 if the fixed parameters do not suit a family."""
    return {f: resolve_spec(f, target, params, schema).model_dump(mode="json") for f in families}


def _families(family: str, options: SearchOptions) -> list[str]:
    listed = options.space.get("family")
    choices = listed.choices if isinstance(listed, Dimension) else listed
    if listed is not None and choices is None:
        raise _fail("search.space.family", "give the families as choices")
    from_space = [str(c) for c in choices or []]
    families = list(dict.fromkeys(options.families or from_space or [family]))
    for f in families:
        if f not in FAMILIES:
            raise _fail(
                "search.families", f"unknown model family '{f}'; families: {', '.join(FAMILIES)}"
            )
    if from_space and options.families and set(from_space) != set(families):
        raise _fail("search.space.family", "differs from search.families; give one of them")
    if family not in families:
        raise _fail(
            "family", f"'{family}' is not among the families searched: {', '.join(families)}"
        )
    return families


def _checked_space(
    raw: Mapping[str, Dimension | list[Choice]],
    families: list[str],
    bases: dict[str, dict[str, Any]],
    target: str,
    params: Mapping[str, Any],
    schema: DatasetSchema,
) -> dict[str, dict[str, Any]]:
    space: dict[str, dict[str, Any]] = {}
    for name in sorted(raw, key=_draw_order):
        dim = raw[name]
        field = f"search.space.{name}"
        if name not in SEARCHABLE:
            raise _fail(field, f"'{name}' cannot be searched; searchable: {', '.join(SEARCHABLE)}")
        if name in params:
            raise _fail(field, f"{name} is also fixed by params.{name}; give it in one place")
        shaped = _shape(name, dim if isinstance(dim, Dimension) else Dimension(choices=dim))
        contexts = _contexts(name, families, bases, {**space, name: shaped})
        if not contexts:
            raise _fail(
                field,
                f"{name} applies to none of the families, optimizers and "
                f"schedules searched ({', '.join(families)})",
            )
        f, enabling = contexts[0]
        for value in shaped.get("choices") or [shaped["low"], shaped["high"]]:
            try:
                resolve_spec(f, target, {**params, **enabling, name: value}, schema)
            except InvalidRequest as exc:
                raise _fail(field, f"{value!r} is refused ({exc.message})") from None
        space[name] = shaped
    return space


def _shape(name: str, dim: Dimension) -> dict[str, Any]:
    """A dimension normalised: choices in the form ``sample`` draws them, or a range of
    ints or floats as the hyperparameter is."""
    field = f"search.space.{name}"
    ranged = dim.low is not None or dim.high is not None
    if (dim.choices is None) == (not ranged):
        raise _fail(field, "give either choices or low and high")
    if dim.choices is not None:
        if dim.log or dim.step is not None:
            raise _fail(field, "log and step apply to a range (low, high), not to choices")
        choices = list(dict.fromkeys(_choice(name, c) for c in dim.choices))
        return {"choices": choices}
    if name in CHOICES_ONLY:
        raise _fail(field, f'{name} takes choices, e.g. {{"choices": [...]}}')
    low, high = dim.low, dim.high
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        raise _fail(field, "a range needs finite low and high")
    if low >= high:
        raise _fail(field, f"low ({low:g}) must be below high ({high:g})")
    if dim.log and (low <= 0 or dim.step is not None):
        raise _fail(field, "a log range needs low > 0 and no step")
    if name in INTS:
        if not (low.is_integer() and high.is_integer()):
            raise _fail(field, f"{name} is an integer: low and high must be whole numbers")
        step = dim.step or 1
        if not float(step).is_integer():
            raise _fail(field, "step must be a whole number")
        return {"low": int(low), "high": int(high), "log": dim.log, "step": int(step)}
    return {"low": low, "high": high, "log": dim.log, "step": dim.step}


def _choice(name: str, value: Choice) -> str | int | float:
    if name in LISTS:
        parts = value if isinstance(value, list) else str(value).split(",")
        return ",".join(str(p).strip() for p in parts)
    if isinstance(value, list):
        raise _fail(
            f"search.space.{name}", f"{value!r}: a list is a choice of hidden or channels only"
        )
    if isinstance(value, str) and name in (*INTS, *FLOATS):
        try:  # "32" as read from a file or a command line
            return int(value) if name in INTS else float(value)
        except ValueError:
            return value.strip().lower()  # batch_size "full"; anything else is refused
    return value.strip().lower() if isinstance(value, str) else value


def _contexts(
    name: str,
    families: list[str],
    bases: dict[str, dict[str, Any]],
    space: Mapping[str, dict[str, Any]],
) -> list[tuple[str, dict[str, Any]]]:
    """(family, drawn optimizer and schedule) under which ``name`` applies."""
    found = []
    for f in families:
        for optimizer in space.get("optimizer", {}).get("choices") or [None]:
            for schedule in space.get("lr_schedule", {}).get("choices") or [None]:
                drawn = {"optimizer": optimizer, "lr_schedule": schedule}
                enabling = {k: v for k, v in drawn.items() if v is not None}
                if applies(name, {**bases[f], **enabling}):
                    found.append((f, enabling))
    return found


def _draw_order(name: str) -> tuple[int, str]:
    return (CONDITIONS.index(name) if name in CONDITIONS else len(CONDITIONS), name)


def default_space(
    families: list[str], bases: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The space searched when none is given: the learning rate from a tenth to ten times
    the default, batch size and weight decay, and what each family has of its own; each
    holds the family's defaults. Over several families, the union."""
    merged: dict[str, dict[str, Any]] = {}
    for f in families:
        for name, dim in _family_space(f, bases[f]).items():
            merged[name] = _union(merged[name], dim) if name in merged else dim
    return dict(sorted(merged.items(), key=lambda item: _draw_order(item[0])))


def _family_space(family: str, base: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    lr = float(base["lr"])
    batch: list[Any] = [16, 32, 64, 128]
    if base["batch_size"] not in batch:
        batch.append(base["batch_size"])
    space: dict[str, dict[str, Any]] = {
        "lr": {"low": lr / 10, "high": min(lr * 10, 1.0), "log": True, "step": None},
        "batch_size": {"choices": batch},
        "weight_decay": {"choices": [0.0, 1e-5, 1e-4, 1e-3]},
    }
    if family == "mlp":
        space["hidden"] = {"choices": ["64", "128", "256", "128,64", "256,128"]}
    if family in ("mlp", "cnn", "rnn", "lstm", "gru"):
        space["dropout"] = {"low": 0.0, "high": 0.5, "log": False, "step": None}
    if family == "cnn":
        space["lr_schedule"] = {"choices": ["none", "cosine"]}
    if family == "resnet":
        space["channels"] = {"choices": ["8,16,32", "16,32,64", "32,64,128"]}
    if family in ("rnn", "lstm", "gru"):
        space["hidden_size"] = {"choices": [32, 64, 128]}
        space["layers"] = {"low": 1, "high": 2, "log": False, "step": 1}
    return space


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if "choices" in a:
        return {"choices": list(dict.fromkeys([*a["choices"], *b["choices"]]))}
    return {**a, "low": min(a["low"], b["low"]), "high": max(a["high"], b["high"])}


def baseline(
    family: str,
    families: list[str],
    space: Mapping[str, dict[str, Any]],
    bases: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:
    """The drawn parameters that make a trial train ``family``'s defaults; None if the
    space leaves a default out."""
    base = bases[family]
    params: dict[str, Any] = {"family": family} if len(families) > 1 else {}
    for name, dim in space.items():
        if not applies(name, base):
            continue
        value = base[name]
        value = ",".join(map(str, value)) if isinstance(value, list) else value
        if not contains(dim, value):
            return None
        params[name] = value
    return params


def contains(dim: Mapping[str, Any], value: Any) -> bool:
    if "choices" in dim:
        return value in dim["choices"]
    if isinstance(value, str):
        return False
    return bool(dim["low"] <= value <= dim["high"])


def sample(
    trial: Trial, search: SearchSpec, bases: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Draw a trial's family and its hyperparameters (those of the space that apply)."""
    family = search.family
    if len(search.families) > 1:
        family = str(trial.suggest_categorical("family", search.families))
    drawn: dict[str, Any] = {}
    for name in sorted(search.space, key=_draw_order):
        if applies(name, {**bases[family], **drawn}):
            drawn[name] = _suggest(trial, name, search.space[name])
    return family, drawn


def _suggest(trial: Trial, name: str, dim: Mapping[str, Any]) -> Any:
    if "choices" in dim:
        return trial.suggest_categorical(name, dim["choices"])
    if name in INTS:
        return trial.suggest_int(name, dim["low"], dim["high"], step=dim["step"], log=dim["log"])
    return trial.suggest_float(name, dim["low"], dim["high"], step=dim["step"], log=dim["log"])
