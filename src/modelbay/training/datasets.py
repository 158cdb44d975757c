"""Dataset readers for training: format detection, bundled samples, ``inspect`` (validate
and describe a pushed file) and ``load_table`` (read it whole for training).

Formats: ``csv`` and ``parquet`` (a column per feature), ``npz`` (1-D arrays as columns, or
an ``x`` array with ``y`` labels), ``images`` (a zip of ``<class>/<image>`` folders) and
``cifar10`` (CIFAR-10 binary batches, a .bin or a tar of them).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelbay.training import dataset_images as images
from modelbay.training import dataset_tabular as tabular
from modelbay.training.table import IMAGE_TARGET, DatasetSchema, InvalidDataset, Table, Task

FORMATS = ("csv", "parquet", "npz", "images", "cifar10")
SAMPLES = ("digits", "iris", "wine", "breast_cancer", "diabetes")

_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".zip": "images",
    ".bin": "cifar10",
}
_X_KEYS = ("x", "X", "features")
_Y_KEYS = ("y", "Y", "target")
_NPZ_LAYOUTS = (
    "an npz dataset is either 1-D arrays of equal length (one per column) or a 2-D, 3-D or "
    "4-D array x/X/features with a 1-D y/target array"
)


def detect_format(filename: str, given: str | None) -> str:
    """``given`` if set (one of FORMATS, any case), else the format of the file's extension."""
    if given:
        given = given.strip().lower()
        if given not in FORMATS:
            raise InvalidDataset(
                f"unknown dataset format {given!r}; formats: {', '.join(FORMATS)}",
                param="format",
            )
        return given
    fmt = _EXTENSIONS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise InvalidDataset(
            f"cannot tell the format of {filename!r} from its extension; name it .csv, "
            ".parquet, .npz, .zip (images) or .bin (cifar10), or give the format: "
            + ", ".join(FORMATS),
            param="format",
        )
    return fmt


def write_sample(name: str, dest_dir: Path) -> Path:
    """scikit-learn's bundled dataset ``name`` as ``dest_dir/<name>.parquet``: its feature
    columns and ``target`` (class names where scikit-learn has them)."""
    if name not in SAMPLES:
        raise InvalidDataset(
            f"unknown sample dataset {name!r}; samples: {', '.join(SAMPLES)}", param="name"
        )
    from sklearn import datasets as sklearn_datasets

    bunch = getattr(sklearn_datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    names = np.asarray(getattr(bunch, "target_names", []))
    if names.dtype.kind in "US":
        frame["target"] = names[frame["target"].to_numpy()].astype(str)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), dest)
    return dest


def inspect(path: Path, fmt: str) -> DatasetSchema:
    """Read and check the file; its schema with column (or class) statistics."""
    if fmt == "csv":
        return tabular.frame_schema("csv", tabular.read_csv(path))
    if fmt == "parquet":
        return tabular.parquet_schema(path)
    if fmt == "npz":
        return _npz_schema(path)
    if fmt == "images":
        return images.zip_schema(path)
    if fmt == "cifar10":
        return images.cifar_schema(path)
    raise InvalidDataset(
        f"unknown dataset format {fmt!r}; formats: {', '.join(FORMATS)}", param="format"
    )


def load_table(
    path: Path,
    fmt: str,
    schema: DatasetSchema,
    target: str,
    task: Task,
    features: list[str] | None = None,
) -> Table:
    """The whole dataset as training arrays (see ``Table``)."""
    if fmt == "csv":
        frame = tabular.read_csv(path)
    elif fmt == "parquet":
        wanted = None if features is None else [target, *features]
        frame = tabular.read_parquet(path, wanted)
    elif fmt == "npz":
        return _npz_table(path, schema, target, task, features)
    elif fmt in ("images", "cifar10"):
        _check_image_inputs(path, target, features)
        if task != "classification":
            raise InvalidDataset(
                f"{path.name} is an image dataset with class labels: use task classification",
                param="task",
            )
        load = images.load_zip(path, schema) if fmt == "images" else images.load_cifar(path)
        return _image_table(*load, task)
    else:
        raise InvalidDataset(
            f"unknown dataset format {fmt!r}; formats: {', '.join(FORMATS)}", param="format"
        )
    return tabular.frame_table(frame, path.name, schema, target, task, features)


def _check_image_inputs(path: Path, target: str, features: list[str] | None) -> None:
    if target != IMAGE_TARGET:
        raise InvalidDataset(
            f"{path.name} is an image dataset: its target is {IMAGE_TARGET!r}, not {target!r}",
            param="target",
        )
    if features not in (None, ["image"]):
        raise InvalidDataset(
            f"{path.name} is an image dataset: the whole image is the input, it has no "
            "feature columns to choose",
            param="features",
        )


def _image_table(x: np.ndarray, y: np.ndarray, classes: list[str] | None, task: Task) -> Table:
    return Table(
        features=x,
        target=y,
        feature_names=["image"],
        target_name=IMAGE_TARGET,
        task=task,
        classes=classes,
    )


# npz


def _open_npz(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidDataset(f"{path.name} is not a readable .npz file: {exc}") from exc


def _array(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except ValueError as exc:
        raise InvalidDataset(
            f"{path.name}: array {key!r} cannot be read without pickle (object arrays are "
            f"refused; store numbers or fixed-width strings): {exc}"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidDataset(f"{path.name}: array {key!r} cannot be read: {exc}") from exc


def _npz_shapes(npz: Any, path: Path) -> dict[str, tuple[int, ...]]:
    """Each array's shape, from the .npy headers without reading the data."""
    shapes: dict[str, tuple[int, ...]] = {}
    for member in npz.zip.namelist():
        key = member[:-4] if member.endswith(".npy") else member
        try:
            with npz.zip.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape = np.lib.format.read_array_header_1_0(stream)[0]
                elif version == (2, 0):
                    shape = np.lib.format.read_array_header_2_0(stream)[0]
                else:
                    shape = _array(npz, key, path).shape
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidDataset(f"{path.name}: array {key!r} cannot be read: {exc}") from exc
        shapes[key] = tuple(shape)
    if not shapes:
        raise InvalidDataset(f"{path.name} holds no arrays")
    return shapes


def _npz_xy(path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[str, str] | None:
    """The (x, y) keys of an x/y npz; None for one of 1-D columns (checked)."""
    name = path.name
    x_key = next((key for key in _X_KEYS if len(shapes.get(key, ())) >= 2), None)
    if x_key is None:
        lengths: dict[str, int] = {}
        for key, shape in shapes.items():
            if len(shape) != 1:
                raise InvalidDataset(
                    f"{name}: array {key!r} has shape {list(shape)}; {_NPZ_LAYOUTS}"
                )
            lengths[key] = shape[0]
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{key} ({length})" for key, length in lengths.items())
            raise InvalidDataset(f"{name}: arrays have different lengths: {listed}; {_NPZ_LAYOUTS}")
        if not next(iter(lengths.values())):
            raise InvalidDataset(f"{name}: the arrays are empty")
        return None
    x_shape = shapes[x_key]
    y_key = next((key for key in _Y_KEYS if key in shapes), None)
    if y_key is None or len(shapes[y_key]) != 1:
        raise InvalidDataset(
            f"{name}: array {x_key!r} has shape {list(x_shape)} but there is no 1-D y/target "
            f"array of labels; {_NPZ_LAYOUTS}"
        )
    if len(x_shape) > 4:
        raise InvalidDataset(f"{name}: array {x_key!r} has shape {list(x_shape)}; {_NPZ_LAYOUTS}")
    if x_shape[0] != shapes[y_key][0]:
        raise InvalidDataset(
            f"{name}: arrays have different lengths: {x_key} ({x_shape[0]}), "
            f"{y_key} ({shapes[y_key][0]})"
        )
    if not x_shape[0]:
        raise InvalidDataset(f"{name}: the arrays are empty")
    return x_key, y_key


def _npz_frame(path: Path, npz: Any, keys: tuple[str, str] | None) -> Any:
    """A tabular npz as a data frame (x/y: columns f0..fN-1 and the y array)."""
    if keys is None:
        return pd.DataFrame({key: _array(npz, key, path) for key in npz.files})
    x = _array(npz, keys[0], path)
    frame = pd.DataFrame(x, columns=[f"f{index}" for index in range(x.shape[1])])
    frame[keys[1]] = _array(npz, keys[1], path)
    return frame


def _npz_schema(path: Path) -> DatasetSchema:
    with _open_npz(path) as npz:
        shapes = _npz_shapes(npz, path)
        keys = _npz_xy(path, shapes)
        if keys is None or len(shapes[keys[0]]) == 2:
            return tabular.frame_schema("npz", _npz_frame(path, npz, keys))
        x_shape, y = shapes[keys[0]], pd.Series(_array(npz, keys[1], path))
    channels = 1 if len(x_shape) == 3 else x_shape[1]
    schema: DatasetSchema = {
        "format": "npz",
        "kind": "images",
        "rows": len(y),
        "columns": [tabular.column_stats(IMAGE_TARGET, y)],
        "image_shape": [channels, *x_shape[-2:]],
    }
    if pd.api.types.is_float_dtype(y.dtype) and not tabular.integral(y.to_numpy()):
        return schema  # continuous labels (a regression target): no classes
    try:
        codes, classes = tabular.encode_classes(y, IMAGE_TARGET)
    except InvalidDataset:
        return schema  # a single class or too many: load_table says so for classification
    counts = np.bincount(codes, minlength=len(classes))
    schema["classes"] = classes
    schema["class_balance"] = {
        name: int(count) for name, count in zip(classes, counts, strict=True)
    }
    return schema


def _npz_table(
    path: Path, schema: DatasetSchema, target: str, task: Task, features: list[str] | None
) -> Table:
    with _open_npz(path) as npz:
        shapes = _npz_shapes(npz, path)
        keys = _npz_xy(path, shapes)
        if keys is None or len(shapes[keys[0]]) == 2:
            frame = _npz_frame(path, npz, keys)
            return tabular.frame_table(frame, path.name, schema, target, task, features)
        _check_image_inputs(path, target if target != keys[1] else IMAGE_TARGET, features)
        x = images.array_images(_array(npz, keys[0], path), path.name)
        labels = pd.Series(_array(npz, keys[1], path))
    if task == "classification":
        y, classes = tabular.encode_classes(labels, IMAGE_TARGET)
        return _image_table(x, y, classes, task)
    if not tabular.is_numeric(labels):
        raise InvalidDataset(
            f"{path.name}: labels {keys[1]!r} are not numeric; use task classification",
            param="task",
        )
    return _image_table(x, labels.to_numpy(dtype=np.float32), None, task)
