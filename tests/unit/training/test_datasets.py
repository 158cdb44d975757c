"""Dataset readers: every format is inspected and loaded from files built here, and bad
files are refused with a message naming the file, row, column or entry."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modelbay.training.datasets import (
    FORMATS,
    SAMPLES,
    detect_format,
    inspect,
    load_table,
    write_sample,
)
from modelbay.training.table import IMAGE_TARGET, InvalidDataset, column


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def png(size: tuple[int, int], colour: tuple[int, int, int] | int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def cifar_bytes(labels: list[int]) -> bytes:
    records = np.zeros((len(labels), 3073), dtype=np.uint8)
    records[:, 0] = labels
    for row in range(len(labels)):
        records[row, 1:] = np.repeat([row, 100, 255], 1024)  # R, G, B planes
    return records.tobytes()


GOOD_CSV = "a,b,city,y\n1,2.5,paris,cat\n2,,rome,dog\n3,4.5,paris,cat\n4,5.5,oslo,\n"


# detect_format


def test_detect_format_given_wins_and_extensions() -> None:
    assert detect_format("data.csv", "parquet") == "parquet"
    assert detect_format("x.tar.gz", "cifar10") == "cifar10"
    expected = {"a.csv": "csv", "a.parquet": "parquet", "a.PQ": "parquet", "a.npz": "npz"}
    expected |= {"a.zip": "images", "data_batch_1.bin": "cifar10"}
    for name, fmt in expected.items():
        assert detect_format(name, None) == fmt


def test_detect_format_refuses_unknown() -> None:
    with pytest.raises(InvalidDataset) as error:
        detect_format("a.csv", "excel")
    assert error.value.param == "format"
    with pytest.raises(InvalidDataset, match="notes.txt") as error:
        detect_format("notes.txt", None)
    assert all(fmt in error.value.message for fmt in FORMATS)


# CSV


def test_csv_inspect_reports_column_stats(tmp_path: Path) -> None:
    schema = inspect(write(tmp_path / "good.csv", GOOD_CSV), "csv")
    assert schema["format"] == "csv"
    assert schema["kind"] == "tabular"
    assert schema["rows"] == 4
    assert [col["name"] for col in schema["columns"]] == ["a", "b", "city", "y"]
    b = column(schema, "b")
    assert b is not None
    assert (b["dtype"], b["numeric"], b["missing"], b["unique"]) == ("float64", True, 1, 3)
    assert (b["min"], b["max"]) == (2.5, 5.5)
    assert b["mean"] == pytest.approx(12.5 / 3)
    city = column(schema, "city")
    assert city is not None
    assert (city["dtype"], city["numeric"]) == ("object", False)
    assert city["top"] == {"paris": 2, "rome": 1, "oslo": 1}
    assert len(schema["preview"]) == 4  # the first rows, in column order, missing as None
    assert schema["preview"][1][1] is None
    assert all(len(row) == 4 for row in schema["preview"])


def test_csv_load_classification(tmp_path: Path) -> None:
    path = write(tmp_path / "good.csv", GOOD_CSV)
    table = load_table(path, "csv", inspect(path, "csv"), "y", "classification")
    assert table.feature_names == ["a", "b"]  # the string column is left out
    assert table.features.dtype == np.float32
    assert table.rows == 3  # the row without a target is dropped
    assert table.features[1, 1] == pytest.approx(12.5 / 3)  # missing b: the column mean
    assert table.classes == ["cat", "dog"]
    assert table.target.tolist() == [0, 1, 0]
    assert table.target.dtype == np.int64


def test_csv_load_regression_and_numeric_classes(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "x,y,k\n1,0.5,10\n2,1.5,2\n3,2.5,10\n")
    schema = inspect(path, "csv")
    table = load_table(path, "csv", schema, "y", "regression", features=["x"])
    assert table.target.dtype == np.float32
    assert table.target.tolist() == [0.5, 1.5, 2.5]
    assert table.classes is None
    table = load_table(path, "csv", schema, "k", "classification")
    assert table.classes == ["2", "10"]  # sorted as numbers
    assert table.target.tolist() == [1, 0, 1]


@pytest.mark.parametrize("text", ["", "\n", "a,b,y\n"])
def test_csv_empty_names_the_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidDataset, match="empty.csv"):
        inspect(write(tmp_path / "empty.csv", text), "csv")


@pytest.mark.parametrize(
    ("text", "line"),
    [("a,b\n1,2\n3,4,5\n", "line 3"), ("a,b\n1,2\n3,4\n\n5\n", "line 5")],
)
def test_csv_ragged_names_the_line(tmp_path: Path, text: str, line: str) -> None:
    with pytest.raises(InvalidDataset, match=line) as error:
        inspect(write(tmp_path / "ragged.csv", text), "csv")
    assert "ragged.csv" in error.value.message


@pytest.mark.parametrize(
    ("header", "name"), [("a,b,a", "'a'"), (",a,b", "column 1"), ("a, ,b", "column 2")]
)
def test_csv_bad_column_names(tmp_path: Path, header: str, name: str) -> None:
    with pytest.raises(InvalidDataset, match=name):
        inspect(write(tmp_path / "names.csv", f"{header}\n1,2,3\n"), "csv")


def test_csv_string_feature_and_missing_target(tmp_path: Path) -> None:
    path = write(tmp_path / "good.csv", GOOD_CSV)
    schema = inspect(path, "csv")
    with pytest.raises(InvalidDataset, match="'city'.*exclude") as error:
        load_table(path, "csv", schema, "y", "classification", features=["a", "city"])
    assert error.value.param == "features"
    with pytest.raises(InvalidDataset, match="'label'.*a, b, city, y") as error:
        load_table(path, "csv", schema, "label", "classification")
    assert error.value.param == "target"
    with pytest.raises(InvalidDataset, match="'y' is not numeric"):
        load_table(path, "csv", schema, "y", "regression")


def test_csv_all_targets_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "a,y\n1,\n2,\n")
    with pytest.raises(InvalidDataset, match="missing the target 'y'"):
        load_table(path, "csv", inspect(path, "csv"), "y", "regression")


# Parquet


def test_parquet_inspect_and_load(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, 5.0], "flag": [True, False, True, True]})
    frame["label"] = ["b", "a", "b", "a"]
    frame.to_parquet(path, index=False)
    schema = inspect(path, "parquet")
    assert schema["rows"] == 4
    x = column(schema, "x")
    assert x is not None
    assert (x["missing"], x["mean"]) == (1, 3.0)
    assert schema["preview"] == [
        [1.0, True, "b"],
        [None, False, "a"],
        [3.0, True, "b"],
        [5.0, True, "a"],
    ]
    table = load_table(path, "parquet", schema, "label", "classification", features=["flag", "x"])
    assert table.feature_names == ["flag", "x"]
    assert table.features.tolist() == [[1, 1], [0, 3], [1, 3], [1, 5]]
    assert table.classes == ["a", "b"]


def test_parquet_unreadable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidDataset, match="broken.parquet"):
        inspect(path, "parquet")


# npz


def test_npz_columns(tmp_path: Path) -> None:
    path = tmp_path / "cols.npz"
    np.savez(path, a=np.arange(4.0), b=np.array([1, 2, 3, 4]), y=np.array([0, 1, 0, 1]))
    schema = inspect(path, "npz")
    assert (schema["kind"], schema["rows"]) == ("tabular", 4)
    table = load_table(path, "npz", schema, "y", "classification")
    assert table.feature_names == ["a", "b"]
    assert table.classes == ["0", "1"]


def test_npz_ragged_names_the_arrays(tmp_path: Path) -> None:
    path = tmp_path / "ragged.npz"
    np.savez(path, a=np.arange(4), b=np.arange(3))
    with pytest.raises(InvalidDataset, match=r"a \(4\), b \(3\)"):
        inspect(path, "npz")
    np.savez(path, x=np.zeros((4, 2)), y=np.arange(3))
    with pytest.raises(InvalidDataset, match=r"x \(4\), y \(3\)"):
        inspect(path, "npz")


def test_npz_x_y_matrix(tmp_path: Path) -> None:
    path = tmp_path / "xy.npz"
    np.savez_compressed(path, X=np.arange(12.0).reshape(4, 3), target=np.array([1.5, 2, 3, 4]))
    schema = inspect(path, "npz")
    assert [col["name"] for col in schema["columns"]] == ["f0", "f1", "f2", "target"]
    table = load_table(path, "npz", schema, "target", "regression")
    assert table.features.shape == (4, 3)
    assert table.target.tolist() == [1.5, 2, 3, 4]


def test_npz_images(tmp_path: Path) -> None:
    path = tmp_path / "img.npz"
    x = np.full((6, 5, 7), 255, dtype=np.uint8)
    np.savez(path, x=x, y=np.array([2, 0, 2, 0, 2, 7]))
    schema = inspect(path, "npz")
    assert (schema["kind"], schema["image_shape"]) == ("images", [1, 5, 7])
    assert schema["classes"] == ["0", "2", "7"]
    assert schema["class_balance"] == {"0": 2, "2": 3, "7": 1}
    table = load_table(path, "npz", schema, IMAGE_TARGET, "classification")
    assert table.features.shape == (6, 1, 5, 7)
    assert table.features.max() == 1.0
    assert table.target.tolist() == [1, 0, 1, 0, 1, 2]
    np.savez(path, features=np.zeros((3, 3, 4, 4), dtype=np.float32), y=np.arange(3))
    assert inspect(path, "npz")["image_shape"] == [3, 4, 4]


def test_npz_unreadable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidDataset, match="bad.npz"):
        inspect(path, "npz")


# Image zip


def image_zip(path: Path, top: str = "") -> Path:
    members = {
        f"{top}cat/1.png": png((8, 8), (255, 0, 0)),
        f"{top}cat/2.png": png((8, 8), (0, 255, 0)),
        f"{top}dog/1.png": png((8, 8), 128, mode="L"),
        f"{top}dog/big.png": png((16, 12), 0, mode="L"),
        f"{top}owl/1.png": png((8, 8), (0, 0, 255)),
        "__MACOSX/._junk": b"junk",
    }
    return make_zip(path, members)


@pytest.mark.parametrize("top", ["", "train/"])
def test_images_inspect_and_load(tmp_path: Path, top: str) -> None:
    path = image_zip(tmp_path / "pets.zip", top)
    schema = inspect(path, "images")
    assert (schema["kind"], schema["rows"]) == ("images", 5)
    assert schema["image_shape"] == [3, 8, 8]  # colour, the most common size
    assert schema["classes"] == ["cat", "dog", "owl"]
    assert schema["class_balance"] == {"cat": 2, "dog": 2, "owl": 1}
    assert [col["name"] for col in schema["columns"]] == [IMAGE_TARGET]
    assert schema["columns"][0]["dtype"] == "int64"
    table = load_table(path, "images", schema, IMAGE_TARGET, "classification")
    assert table.features.shape == (5, 3, 8, 8)
    assert table.features.dtype == np.float32
    assert table.features[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert table.features[2, :, 0, 0].tolist() == pytest.approx([128 / 255] * 3)
    assert table.target.tolist() == [0, 0, 1, 1, 2]
    assert (table.classes, table.feature_names) == (["cat", "dog", "owl"], ["image"])


def test_images_grayscale_shape(tmp_path: Path) -> None:
    members = {f"{c}/{i}.png": png((8, 6), 10 * i, mode="L") for c in "ab" for i in range(2)}
    path = make_zip(tmp_path / "g.zip", members)
    assert inspect(path, "images")["image_shape"] == [1, 6, 8]


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"cat/1.png": b"not an image"}, "'cat/1.png' is not a readable image"),
        ({"1.png": None}, "'1.png' is not in a class folder"),
        ({"only/2.png": None}, "at least 2 classes"),
        ({"../cat/2.png": None}, "unsafe path '../cat/2.png'"),
        ({"/abs/2.png": None}, "unsafe path"),
        ({"train/cat/2.png": None}, "unexpected path"),
    ],
)
def test_images_refused(tmp_path: Path, members: dict[str, bytes | None], match: str) -> None:
    content = {"dog/1.png": png((8, 8), 0, mode="L"), "only/1.png": png((8, 8), 0, mode="L")}
    for name, data in members.items():
        content[name] = data if data is not None else png((8, 8), 0, mode="L")
    if "only/2.png" in members:
        del content["dog/1.png"]
    path = make_zip(tmp_path / "bad.zip", content)
    with pytest.raises(InvalidDataset, match=match):
        inspect(path, "images")


def test_images_wrong_target_or_task(tmp_path: Path) -> None:
    path = image_zip(tmp_path / "pets.zip")
    schema = inspect(path, "images")
    with pytest.raises(InvalidDataset, match="'label'"):
        load_table(path, "images", schema, "y", "classification")
    with pytest.raises(InvalidDataset, match="classification"):
        load_table(path, "images", schema, IMAGE_TARGET, "regression")


# CIFAR-10


def test_cifar10_bin(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(cifar_bytes([3, 0, 9, 3]))
    schema = inspect(path, "cifar10")
    assert (schema["rows"], schema["image_shape"]) == (4, [3, 32, 32])
    assert schema["classes"][:3] == ["airplane", "automobile", "bird"]
    assert schema["class_balance"]["cat"] == 2
    assert schema["class_balance"]["truck"] == 1
    table = load_table(path, "cifar10", schema, IMAGE_TARGET, "classification")
    assert table.features.shape == (4, 3, 32, 32)
    assert table.target.tolist() == [3, 0, 9, 3]
    assert table.features[1, :, 5, 5].tolist() == pytest.approx([1 / 255, 100 / 255, 1.0])
    assert table.classes is not None
    assert len(table.classes) == 10


def test_cifar10_tar(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, labels in [("data_batch_1.bin", [1, 2]), ("test_batch.bin", [5])]:
            data = cifar_bytes(labels)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    schema = inspect(path, "cifar10")
    assert schema["rows"] == 2  # the training batches only
    table = load_table(path, "cifar10", schema, IMAGE_TARGET, "classification")
    assert table.target.tolist() == [1, 2]


def test_cifar10_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.bin"
    path.write_bytes(cifar_bytes([1, 2])[:-5])
    with pytest.raises(InvalidDataset, match="not a multiple of 3073"):
        inspect(path, "cifar10")
    path.write_bytes(cifar_bytes([1, 2, 12]))
    with pytest.raises(InvalidDataset, match="record 3 has label 12"):
        inspect(path, "cifar10")


# Samples


def test_sample_digits(tmp_path: Path) -> None:
    path = write_sample("digits", tmp_path / "samples")
    assert path.suffix == ".parquet"
    schema = inspect(path, "parquet")
    assert schema["rows"] == 1797
    table = load_table(path, "parquet", schema, "target", "classification")
    assert table.features.shape == (1797, 64)
    assert table.feature_names[0] == "pixel_0_0"
    assert table.classes == [str(digit) for digit in range(10)]


@pytest.mark.parametrize(
    ("name", "rows", "classes"),
    [
        ("iris", 150, ["setosa", "versicolor", "virginica"]),
        ("wine", 178, ["class_0", "class_1", "class_2"]),
        ("breast_cancer", 569, ["benign", "malignant"]),
    ],
)
def test_sample_class_names(tmp_path: Path, name: str, rows: int, classes: list[str]) -> None:
    path = write_sample(name, tmp_path)
    table = load_table(path, "parquet", inspect(path, "parquet"), "target", "classification")
    assert (table.rows, table.classes) == (rows, classes)


def test_sample_regression_and_unknown(tmp_path: Path) -> None:
    path = write_sample("diabetes", tmp_path)
    table = load_table(path, "parquet", inspect(path, "parquet"), "target", "regression")
    assert table.features.shape == (442, 10)
    with pytest.raises(InvalidDataset) as error:
        write_sample("mnist", tmp_path)
    assert error.value.param == "name"
    assert all(sample in error.value.message for sample in SAMPLES)
