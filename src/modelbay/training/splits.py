"""How a job splits its rows: test, validation and training, deterministic from the seed
and stratified for classification."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelbay.training.spec import TrainSpec
from modelbay.training.table import InvalidDataset, Table


@dataclass(frozen=True)
class Splits:
    """Row indices (ascending) of the training, validation and test splits."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_rows(table: Table, spec: TrainSpec) -> Splits:
    """Deterministic splits from ``spec.seed``: ``test_split`` of the rows for testing, then
    ``validation_split`` of the rest for validation, the rest for training. Classification
    splits are stratified: each class gets its share (largest remainders, so the totals are
    the rounded fractions of all rows)."""
    rng = np.random.default_rng(spec.seed)
    if spec.task == "classification":
        groups = [np.flatnonzero(table.target == c) for c in np.unique(table.target)]
    else:
        groups = [np.arange(table.rows)]
    counts = np.array([len(group) for group in groups])
    n_test = _quotas(counts, spec.test_split)
    n_validation = _quotas(counts - n_test, spec.validation_split)
    train, validation, test = [], [], []
    for group, t, v in zip(groups, n_test, n_validation, strict=True):
        rows = rng.permutation(group)
        test.append(rows[:t])
        validation.append(rows[t : t + v])
        train.append(rows[t + v :])
    return Splits(
        *(np.sort(np.concatenate(part)).astype(np.int64) for part in (train, validation, test))
    )


def _quotas(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Rows to take from each group: ``fraction`` of each, rounded so that the total is
    ``round(sum(counts) * fraction)`` (the largest remainders round up)."""
    exact = counts * fraction
    quotas = np.floor(exact).astype(np.int64)
    extra = round(float(counts.sum()) * fraction) - int(quotas.sum())
    if extra > 0:
        quotas[np.argsort(quotas - exact, kind="stable")[:extra]] += 1
    return quotas


def check_splits(splits: Splits, spec: TrainSpec, rows: int) -> None:
    """Refuse splits too small to train, validate or test on."""
    if len(splits.train) < 2:
        raise InvalidDataset(f"{rows} rows leave {len(splits.train)} for training; at least 2")
    if spec.validation_split > 0 and not len(splits.validation):
        raise InvalidDataset(
            f"{rows} rows are too few for validation_split={spec.validation_split}"
        )
    if spec.test_split > 0 and not len(splits.test):
        raise InvalidDataset(f"{rows} rows are too few for test_split={spec.test_split}")
