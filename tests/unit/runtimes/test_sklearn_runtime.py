from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from modelbay.errors import InvalidArtifact, InvalidRequest
from modelbay.runtimes import detect_format, load_runtime
from modelbay.tensors import Signature

X, Y = load_iris(return_X_y=True)
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def identity(rows: np.ndarray) -> np.ndarray:
    """A user function: skops does not trust it, as loading it imports this module."""
    return rows


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {
        "classifier": LogisticRegression(max_iter=1000).fit(X, Y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, SPECIES[Y]),
        "regressor": LinearRegression().fit(X[:, 2:], X[:, :2]),
        "untrusted": make_pipeline(FunctionTransformer(identity), LogisticRegression()).fit(X, Y),
    }


@pytest.fixture(scope="module")
def model_dir(models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sklearn")
    for name, model in models.items():
        skops.io.dump(model, folder / f"{name}.skops")
    return folder


def test_skops_file_is_detected(model_dir: Path) -> None:
    assert detect_format(model_dir / "classifier.skops") == "sklearn"


def test_classifier_signature_has_predict_and_predict_proba(model_dir: Path) -> None:
    runtime = load_runtime("sklearn", model_dir, "classifier.skops", None, threads=1)
    assert runtime.signature.model_dump() == {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }


@pytest.mark.parametrize("name", ["classifier", "pipeline"])
def test_outputs_match_in_process_inference(
    model_dir: Path, models: dict[str, Any], name: str
) -> None:
    runtime = load_runtime("sklearn", model_dir, f"{name}.skops", None, threads=1)
    model = models[name]
    outputs = runtime.infer({"input": X[::10]})
    np.testing.assert_allclose(outputs["predict_proba"], model.predict_proba(X[::10]), atol=1e-5)
    expected = model.predict(X[::10])
    assert outputs["predict"].tolist() == [
        label.encode() if isinstance(label, str) else label for label in expected.tolist()
    ]


def test_string_labels_come_back_as_bytes(model_dir: Path) -> None:
    runtime = load_runtime("sklearn", model_dir, "pipeline.skops", None, threads=1)
    assert runtime.signature.outputs[0].datatype == "BYTES"
    predicted = runtime.infer({"input": X[:1]})["predict"]
    assert predicted.dtype == object
    assert predicted.tolist() == [b"setosa"]


def test_only_requested_outputs_are_computed(model_dir: Path) -> None:
    runtime = load_runtime("sklearn", model_dir, "classifier.skops", None, threads=1)
    assert set(runtime.infer({"input": X[:3]}, outputs=["predict_proba"])) == {"predict_proba"}


def test_multi_output_regressor_predicts_rows(model_dir: Path, models: dict[str, Any]) -> None:
    runtime = load_runtime("sklearn", model_dir, "regressor.skops", None, threads=1)
    assert runtime.signature.model_dump() == {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 2]}],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1, 2]}],
    }
    predicted = runtime.infer({"input": X[:5, 2:]})["predict"]
    expected = models["regressor"].predict(X[:5, 2:])
    np.testing.assert_allclose(predicted, expected, atol=1e-5)


def test_given_signature_may_rename_input_use_fp32_and_pick_outputs(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [{"name": "flowers", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        }
    )
    runtime = load_runtime("sklearn", model_dir, "classifier.skops", given, threads=1)
    assert runtime.signature == given
    predicted = runtime.infer({"flowers": X[:2].astype(np.float32)})["predict"]
    assert predicted.dtype == np.int64
    assert predicted.tolist() == [0, 0]


def test_given_signature_with_unknown_output_lists_valid_ones(model_dir: Path) -> None:
    given = Signature.parse(
        {
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
            "outputs": [{"name": "decision_function", "datatype": "FP64", "shape": [-1, 3]}],
        }
    )
    with pytest.raises(InvalidArtifact, match="outputs are 'predict', 'predict_proba'"):
        load_runtime("sklearn", model_dir, "classifier.skops", given, threads=1)


def test_untrusted_type_is_refused_by_name(model_dir: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"does not trust by default: '.*\.identity'"):
        load_runtime("sklearn", model_dir, "untrusted.skops", None, threads=1)


def test_wrong_feature_count_is_an_invalid_request(model_dir: Path) -> None:
    runtime = load_runtime("sklearn", model_dir, "classifier.skops", None, threads=1)
    with pytest.raises(InvalidRequest, match="4 features"):
        runtime.infer({"input": np.zeros((2, 3))})


def test_file_that_is_not_skops_is_invalid_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"garbage")
    with pytest.raises(InvalidArtifact, match="'model.skops' is not a skops archive"):
        load_runtime("sklearn", tmp_path, "model.skops", None, threads=1)
