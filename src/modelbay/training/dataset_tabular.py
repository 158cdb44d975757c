"""Tabular datasets: CSV and Parquet reading and checks, column statistics, and the
feature/target arrays training reads from a data frame."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelbay.training.table import ColumnStats, DatasetSchema, InvalidDataset, Table, Task, column

TOP_VALUES = 20
"""At most this many most-frequent values are recorded per column."""
MAX_CLASSES = 1000
"""A classification target with more distinct values than this is refused."""
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def check_names(source: str, names: list[str]) -> None:
    """Refuse empty and duplicate column names."""
    seen: set[str] = set()
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise InvalidDataset(
                f"{source}: column {number} has an empty name {name!r}; give every column a "
                "name (a CSV saved with its index has an unnamed first column)"
            )
        if name in seen:
            raise InvalidDataset(
                f"{source}: duplicate column name {name!r}; column names must be unique"
            )
        seen.add(name)


def is_numeric(series: Any) -> bool:
    """Whether a column can be a model feature as it is (numbers or booleans)."""
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))


def dtype_name(series: Any) -> str:
    """numpy dtype name; every kind of string column is ``object``."""
    dtype = series.dtype
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "object"
    return str(dtype)


def column_stats(name: str, series: Any) -> ColumnStats:
    """Statistics of one column (a pandas Series)."""
    numeric = is_numeric(series)
    stats: ColumnStats = {"name": name, "dtype": dtype_name(series), "numeric": numeric}
    values = series.dropna()
    stats["missing"] = int(len(series) - len(values))
    try:
        counts = values.value_counts()
    except TypeError:  # unhashable values (lists, structs of nested Parquet types)
        counts = values.astype(str).value_counts()
    stats["unique"] = int(len(counts))
    if numeric and len(values):
        numbers = values.to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            low, high = float(numbers.min()), float(numbers.max())
            mean = float(numbers.mean())
            std = float(numbers.std(ddof=1)) if len(numbers) > 1 else float("nan")
        if np.isfinite(low):
            stats["min"] = low
        if np.isfinite(high):
            stats["max"] = high
        if np.isfinite(mean):
            stats["mean"] = mean
        if np.isfinite(std):
            stats["std"] = std
    if not numeric or stats["unique"] <= TOP_VALUES:
        stats["top"] = {str(key): int(count) for key, count in counts.head(TOP_VALUES).items()}
    return stats


PREVIEW_ROWS = 10
"""Rows of a tabular dataset recorded with its schema, for people to look at."""


def tabular_schema(
    fmt: str, rows: int, columns: list[ColumnStats], head: Any = None
) -> DatasetSchema:
    schema: DatasetSchema = {"format": fmt, "kind": "tabular", "rows": rows, "columns": columns}
    if head is not None:
        schema["preview"] = preview_rows(head)
    return schema


def preview_rows(head: Any) -> list[list[Any]]:
    """The first rows of a data frame as JSON values (numbers, strings; None for missing)."""
    rows = []
    for values in head.head(PREVIEW_ROWS).itertuples(index=False, name=None):
        row: list[Any] = []
        for value in values:
            item = getattr(value, "item", None)  # numpy scalars
            value = item() if callable(item) else value
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif value is not None and not isinstance(value, int | float | str | bool):
                value = str(value)
            row.append(value)
        rows.append(row)
    return rows


def frame_schema(fmt: str, frame: Any) -> DatasetSchema:
    """The schema of a data frame read whole."""
    columns = [column_stats(str(name), frame[name]) for name in frame.columns]
    return tabular_schema(fmt, len(frame), columns, frame)


# CSV


def check_csv(path: Path) -> None:
    """Refuse an empty CSV, bad column names and rows with more or fewer fields than the
    header (streamed with the ``csv`` module, which pandas does not report for short rows)."""
    source = path.name
    reader: Any = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            header = next((row for row in reader if row), None)
            if header is None:
                raise InvalidDataset(f"{source} is empty: a CSV needs a header row and data rows")
            check_names(source, header)
            rows = 0
            for row in reader:
                if not row:
                    continue  # blank line, skipped by pandas too
                if len(row) != len(header):
                    raise InvalidDataset(
                        f"{source}: line {reader.line_num} has {len(row)} fields but the header "
                        f"has {len(header)}; every row needs one value per column (leave a "
                        "missing value empty)"
                    )
                rows += 1
    except UnicodeDecodeError as exc:
        raise InvalidDataset(f"{source} is not UTF-8 text; save the CSV as UTF-8") from exc
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 0
        raise InvalidDataset(f"{source}: line {line}: {exc}") from exc
    if rows == 0:
        raise InvalidDataset(f"{source} has a header but no data rows")


def read_csv(path: Path) -> Any:
    """The whole CSV as a data frame, after ``check_csv``."""
    check_csv(path)
    try:
        return pd.read_csv(path, encoding="utf-8", low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidDataset(f"{path.name} cannot be read as CSV: {exc}") from exc


# Parquet


def open_parquet(path: Path) -> tuple[Any, list[str]]:
    """The Parquet file and its data columns (pandas' ``__index_level_N__`` left out)."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidDataset(f"{path.name} is not a readable Parquet file: {exc}") from exc
    names = [name for name in parquet.schema_arrow.names if not _PANDAS_INDEX.fullmatch(name)]
    if not names:
        raise InvalidDataset(f"{path.name} has no columns")
    check_names(path.name, names)
    if parquet.metadata.num_rows == 0:
        raise InvalidDataset(f"{path.name} has no rows")
    return parquet, names


def parquet_column(parquet: Any, path: Path, name: str) -> Any:
    """One column as a pandas Series."""
    try:
        return parquet.read(columns=[name]).column(0).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise InvalidDataset(f"{path.name}: column {name!r} cannot be read: {exc}") from exc


def parquet_schema(path: Path) -> DatasetSchema:
    """Statistics read one column at a time."""
    parquet, names = open_parquet(path)
    columns = [column_stats(name, parquet_column(parquet, path, name)) for name in names]
    head = None
    if parquet.metadata.num_rows:
        batch = next(parquet.iter_batches(batch_size=PREVIEW_ROWS, columns=names))
        head = batch.to_pandas()
    return tabular_schema("parquet", int(parquet.metadata.num_rows), columns, head)


def read_parquet(path: Path, names: list[str] | None = None) -> Any:
    """The columns ``names`` as a data frame; all of them if ``names`` is None or names a
    column that is not there (so that errors can list the columns)."""
    parquet, available = open_parquet(path)
    wanted = available if names is None or not set(names) <= set(available) else names
    return pd.DataFrame({name: parquet_column(parquet, path, name) for name in wanted})


# Training arrays


def integral(values: np.ndarray) -> bool:
    """Whether float values are all whole numbers that int64 holds exactly."""
    numbers = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
    return bool(whole.all())


def encode_classes(series: Any, name: str) -> tuple[np.ndarray, list[str]]:
    """Class indices 0..K-1 by sorted unique value, and the class names (``str`` of each)."""
    values = series
    if pd.api.types.is_float_dtype(values.dtype) and integral(values.to_numpy()):
        values = pd.Series(values.to_numpy(dtype=np.float64).astype(np.int64), index=values.index)
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed value types cannot be sorted: compare them as text
        codes, uniques = pd.factorize(values.astype(str), sort=True)
    classes = [str(value) for value in uniques]
    if len(classes) < 2:
        raise InvalidDataset(
            f"target {name!r} has a single class {classes[0]!r}; classification needs at least 2",
            param="target",
        )
    if len(classes) > MAX_CLASSES:
        raise InvalidDataset(
            f"target {name!r} has {len(classes)} distinct values, more than {MAX_CLASSES} "
            "classes; is it a regression target?",
            param="target",
        )
    return np.asarray(codes, dtype=np.int64), classes


def _float32(values: np.ndarray, what: str) -> np.ndarray:
    """float64 values as float32, refusing infinities and values float32 cannot hold."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= _FLOAT32_MAX)
    if bad.any():
        value = float(values[bad][0])
        raise InvalidDataset(
            f"{what} has a value that is infinite or too large for float32 ({value})"
        )
    return values.astype(np.float32)


def _feature_names(frame: Any, source: str, target: str, features: list[str] | None) -> list[str]:
    names = [str(name) for name in frame.columns]
    if features is None:
        chosen = [name for name in names if name != target and is_numeric(frame[name])]
        if not chosen:
            raise InvalidDataset(
                f"{source} has no numeric column besides the target {target!r} to use as a feature",
                param="features",
            )
        return chosen
    if not features:
        raise InvalidDataset("features is empty: name at least one column", param="features")
    for name in features:
        if name not in names:
            raise InvalidDataset(
                f"feature column {name!r} is not in {source}; its columns are: " + ", ".join(names),
                param="features",
            )
        if name == target:
            raise InvalidDataset(
                f"column {name!r} is the target; it cannot also be a feature", param="features"
            )
        if not is_numeric(frame[name]):
            raise InvalidDataset(
                f"feature column {name!r} is not numeric (dtype {dtype_name(frame[name])}); "
                "exclude it from the features or encode it as numbers",
                param="features",
            )
    if len(set(features)) != len(features):
        raise InvalidDataset("features names a column more than once", param="features")
    return list(features)


def frame_table(
    frame: Any,
    source: str,
    schema: DatasetSchema,
    target: str,
    task: Task,
    features: list[str] | None,
) -> Table:
    """Features and target of a data frame: rows without a target dropped, missing feature
    values filled with the column mean recorded in ``schema``."""
    if target not in frame.columns:
        raise InvalidDataset(
            f"target column {target!r} is not in {source}; its columns are: "
            + ", ".join(str(name) for name in frame.columns),
            param="target",
        )
    names = _feature_names(frame, source, target, features)
    data = frame.loc[frame[target].notna()]
    if len(data) == 0:
        raise InvalidDataset(f"every row of {source} is missing the target {target!r}")
    matrix = np.empty((len(data), len(names)), dtype=np.float32)
    for index, name in enumerate(names):
        values = data[name].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        missing = np.isnan(values)
        if missing.any():
            stats = column(schema, name) or {}
            if "mean" in stats:
                fill = stats["mean"]
            else:
                fill = float(values[~missing].mean()) if (~missing).any() else 0.0
            values[missing] = fill
        matrix[:, index] = _float32(values, f"feature column {name!r}")
    labels = data[target]
    classes: list[str] | None = None
    if task == "classification":
        y, classes = encode_classes(labels, target)
    elif is_numeric(labels):
        y = _float32(labels.to_numpy(dtype=np.float64), f"target column {target!r}")
    else:
        raise InvalidDataset(
            f"target column {target!r} is not numeric (dtype {dtype_name(labels)}); regression "
            "needs a numeric target, use classification for labels",
            param="target",
        )
    return Table(
        features=matrix,
        target=y,
        feature_names=names,
        target_name=target,
        task=task,
        classes=classes,
    )
