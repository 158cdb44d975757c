"""Image datasets: a zip of ``<class>/<image>`` folders, CIFAR-10 binary batches, and
image arrays; each read as float32 ``[N, C, H, W]`` in [0, 1] with class indices."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from modelbay.training.dataset_tabular import column_stats
from modelbay.training.table import IMAGE_TARGET, DatasetSchema, InvalidDataset

MAX_ENTRIES = 100_000
MAX_BYTES = 4 * 1024**3
"""Refused above this many entries or uncompressed bytes (an image zip, a CIFAR-10 tar)."""

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR10_RECORD = 1 + 3 * 32 * 32
"""Bytes per CIFAR-10 record: the label, then the R, G and B planes of 32x32."""

_JUNK = {"thumbs.db", "desktop.ini"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_LAYOUT = (
    "images must be in <class>/<file> folders, at the top of the zip or under one common "
    "folder (train/cat/1.png)"
)


def images_schema(
    fmt: str, labels: np.ndarray, classes: list[str], shape: list[int]
) -> DatasetSchema:
    """The schema of an image dataset whose labels are class indices."""
    counts = np.bincount(labels, minlength=len(classes))
    return {
        "format": fmt,
        "kind": "images",
        "rows": int(len(labels)),
        "columns": [column_stats(IMAGE_TARGET, pd.Series(labels, dtype="int64"))],
        "image_shape": shape,
        "classes": classes,
        "class_balance": {name: int(count) for name, count in zip(classes, counts, strict=True)},
    }


# Image folder zip


def _zip_images(archive: zipfile.ZipFile, source: str) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """The image entries of the zip and the class folder of each."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InvalidDataset(f"{source} has {len(infos)} entries; at most {MAX_ENTRIES} allowed")
    total = sum(info.file_size for info in infos)
    if total > MAX_BYTES:
        raise InvalidDataset(
            f"{source} holds {total} bytes uncompressed; at most {MAX_BYTES} (4 GiB) allowed"
        )
    entries: list[tuple[zipfile.ZipInfo, list[str]]] = []
    for info in infos:
        name = info.filename
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if name.startswith("/") or "\\" in name or _DRIVE.match(name) or ".." in parts:
            raise InvalidDataset(f"{source}: unsafe path {name!r} (absolute or with '..')")
        if info.is_dir() or not parts:
            continue
        hidden = any(part.startswith(".") for part in parts) or parts[0] == "__MACOSX"
        if hidden or parts[-1].lower() in _JUNK:
            continue
        entries.append((info, parts))
    if not entries:
        raise InvalidDataset(f"{source} holds no images; {_LAYOUT}")
    depths = {len(parts) for _, parts in entries}
    tops = {parts[0] for _, parts in entries}
    if depths == {2}:
        labels = [parts[0] for _, parts in entries]
    elif depths == {3} and len(tops) == 1:
        labels = [parts[1] for _, parts in entries]
    else:
        shallow = [info.filename for info, parts in entries if len(parts) == 1]
        if shallow:
            raise InvalidDataset(f"{source}: {shallow[0]!r} is not in a class folder; {_LAYOUT}")
        example = max(entries, key=lambda entry: len(entry[1]))[0].filename
        raise InvalidDataset(f"{source}: unexpected path {example!r}; {_LAYOUT}")
    if len(set(labels)) < 2:
        raise InvalidDataset(
            f"{source} has {len(set(labels))} class folder ({', '.join(sorted(set(labels)))}); "
            f"at least 2 classes are needed: {_LAYOUT}"
        )
    return [info for info, _ in entries], labels


def _open_image(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> Image.Image:
    try:
        with archive.open(info) as member:
            image = Image.open(io.BytesIO(member.read()))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return image
    except Exception as exc:  # any failure to decode means the entry is not a usable image
        raise InvalidDataset(
            f"{source}: {info.filename!r} is not a readable image ({exc})"
        ) from exc


def _is_colour(image: Image.Image) -> bool:
    return Image.getmodebase(image.mode) != "L"


def zip_schema(path: Path) -> DatasetSchema:
    """Opens every image: the most common size, colour if any image is, and the classes."""
    with _open_zip(path) as archive:
        infos, labels = _zip_images(archive, path.name)
        sizes: Counter[tuple[int, int]] = Counter()
        colour = False
        for info in infos:
            with _open_image(archive, info, path.name) as image:
                sizes[image.size] += 1
                colour = colour or _is_colour(image)
    (width, height), _ = sizes.most_common(1)[0]
    classes = sorted(set(labels))
    return images_schema(
        "images", _indices(labels, classes), classes, [3 if colour else 1, height, width]
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDataset(f"{path.name} is not a readable zip file: {exc}") from exc


def _indices(labels: list[str], classes: list[str]) -> np.ndarray:
    index = {name: number for number, name in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def _pixels(image: Image.Image, shape: list[int]) -> np.ndarray:
    """[C, H, W] float32 in [0, 1]: converted to RGB or L and resized to ``shape``."""
    channels, height, width = shape
    mode = "RGB" if channels == 3 else "L"
    if image.mode == "P":
        image = image.convert("RGBA")  # applies palette transparency before dropping it
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (width, height):
        image = image.resize((width, height))
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_zip(path: Path, schema: DatasetSchema) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image as ``schema``'s image_shape, class indices, and the class names."""
    shape = schema.get("image_shape") or zip_schema(path)["image_shape"]
    with _open_zip(path) as archive:
        infos, labels = _zip_images(archive, path.name)
        classes = sorted(set(labels))
        features = np.empty((len(infos), *shape), dtype=np.float32)
        for row, info in enumerate(infos):
            with _open_image(archive, info, path.name) as image:
                features[row] = _pixels(image, shape)
    return features, _indices(labels, classes), classes


# CIFAR-10 binary


def _cifar_records(name: str, data: np.ndarray) -> np.ndarray:
    """``data`` (uint8) as [N, 3073] records, after checking size and labels."""
    if data.size == 0:
        raise InvalidDataset(f"{name} is empty")
    if data.size % CIFAR10_RECORD:
        raise InvalidDataset(
            f"{name}: size {data.size} bytes is not a multiple of {CIFAR10_RECORD} (a CIFAR-10 "
            "record is 1 label byte and 3072 pixel bytes); use the CIFAR-10 binary version"
        )
    records = data.reshape(-1, CIFAR10_RECORD)
    bad = np.flatnonzero(records[:, 0] > 9)
    if bad.size:
        record = int(bad[0])
        raise InvalidDataset(
            f"{name}: record {record + 1} has label {int(records[record, 0])}; CIFAR-10 "
            "labels are 0..9"
        )
    return records


def cifar_batches(path: Path) -> Iterator[np.ndarray]:
    """The records of a CIFAR-10 .bin file, or of the .bin batches in a tar (only the
    data_batch_* training batches where there are any)."""
    if not tarfile.is_tarfile(path):
        if path.stat().st_size == 0:
            raise InvalidDataset(f"{path.name} is empty")
        yield _cifar_records(path.name, np.memmap(path, dtype=np.uint8, mode="r"))
        return
    try:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".bin")]
            training = [m for m in members if PurePosixPath(m.name).name.startswith("data_batch")]
            members = sorted(training or members, key=lambda member: member.name)
            if not members:
                raise InvalidDataset(f"{path.name} holds no CIFAR-10 .bin batches")
            if sum(member.size for member in members) > MAX_BYTES:
                raise InvalidDataset(f"{path.name}: the batches exceed {MAX_BYTES} bytes")
            for member in members:
                stream: Any = tar.extractfile(member)
                data = np.frombuffer(stream.read(), dtype=np.uint8)
                yield _cifar_records(f"{path.name}: {member.name}", data)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidDataset(f"{path.name} is not a readable tar file: {exc}") from exc


def cifar_schema(path: Path) -> DatasetSchema:
    labels = np.concatenate([records[:, 0] for records in cifar_batches(path)])
    return images_schema("cifar10", labels.astype(np.int64), CIFAR10_CLASSES, [3, 32, 32])


def load_cifar(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images [N, 3, 32, 32] / 255, labels, and the ten class names."""
    batches = list(cifar_batches(path))
    rows = sum(len(records) for records in batches)
    features = np.empty((rows, 3, 32, 32), dtype=np.float32)
    target = np.empty(rows, dtype=np.int64)
    start = 0
    for records in batches:
        end = start + len(records)
        features[start:end] = records[:, 1:].reshape(-1, 3, 32, 32)
        target[start:end] = records[:, 0]
        start = end
    features /= 255.0
    return features, target, list(CIFAR10_CLASSES)


# Arrays (npz)


def array_images(x: np.ndarray, source: str) -> np.ndarray:
    """[N, C, H, W] or [N, H, W] numbers as float32 [N, C, H, W]; uint8 scaled by 1/255."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InvalidDataset(f"{source}: image array has dtype {x.dtype}; numbers are needed")
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        raise InvalidDataset(
            f"{source}: image array of shape {list(x.shape)} looks channels-last; save it as "
            "[N, C, H, W] (x.transpose(0, 3, 1, 2))"
        )
    features = x.astype(np.float32)
    if x.dtype == np.uint8:
        features /= 255.0
    return features
