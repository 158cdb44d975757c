"""A search's Optuna study, kept in the registry database through Optuna's RDB storage.

Optuna's tables (``studies``, ``trials``, ``trial_params``, ``trial_intermediate_values``,
``version_info`` ...) live beside modelbay's; its schema revision is in ``alembic_version``,
modelbay's in its own table (``registry.db.VERSION_TABLE``). A study is named after its
search job, so a coordinator that restarts loads it, and a trial's process reports to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modelbay.registry import make_engine
from modelbay.registry.locks import RegistryLock
from modelbay.settings import Settings
from modelbay.training.search_space import PrunerOptions, SearchSpec

if TYPE_CHECKING:
    from optuna import Study
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import RDBStorage


def study_name(search_id: int) -> str:
    return f"modelbay-search-{search_id}"


def open_storage(settings: Settings) -> RDBStorage:
    """Optuna's storage on the registry database; the first one creates Optuna's tables."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's migrations
    url = settings.registry_url
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        options = {"connect_args": {"timeout": 30}}  # writers wait, as modelbay's engine does
    engine = make_engine(url)
    try:
        # Creating the tables is not safe for two processes at once (two searches starting).
        with RegistryLock(engine).held():
            return optuna.storages.RDBStorage(url, engine_kwargs=options)
    finally:
        engine.dispose()


def load_study(
    settings: Settings,
    search_id: int,
    *,
    sampler: BaseSampler | None = None,
    pruner: BasePruner | None = None,
) -> Study:
    """The study of search ``search_id``, created on first use (its value is maximised)."""
    import optuna

    return optuna.create_study(
        storage=open_storage(settings),
        study_name=study_name(search_id),
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def make_pruner(options: PrunerOptions) -> BasePruner:
    from optuna import pruners

    warmup = options.warmup_epochs or 0
    if options.kind == "median":
        return pruners.MedianPruner(n_startup_trials=options.startup_trials, n_warmup_steps=warmup)
    if options.kind == "percentile":
        return pruners.PercentilePruner(
            options.percentile, n_startup_trials=options.startup_trials, n_warmup_steps=warmup
        )
    if options.kind == "halving":
        return pruners.SuccessiveHalvingPruner(
            min_resource=options.min_epochs, reduction_factor=options.reduction_factor
        )
    return pruners.NopPruner()


def make_sampler(search: SearchSpec) -> BaseSampler:
    """TPE, seeded; trials running at once are assumed to score badly (``constant_liar``)
    so that they spread out instead of drawing the same point."""
    from optuna.samplers import TPESampler

    return TPESampler(
        seed=search.seed, constant_liar=True, n_startup_trials=max(4, search.trials // 4)
    )
