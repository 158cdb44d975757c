"""Client mistakes get a 4xx naming the problem; the server never answers 500 for them."""

from __future__ import annotations

import pickle
from pathlib import Path

import httpx
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.models import build_sklearn

NAME = "errors-iris"


@pytest.fixture(scope="module")
def iris_model(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    built = build_sklearn(tmp_path_factory.mktemp("iris"))
    with open(built.path, "rb") as f:
        response = http.post(
            f"{server.url}/api/v1/models/{NAME}/versions",
            files={"files": ("iris.skops", f)},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return NAME


def _infer(server: RunningServer, body: object | bytes, ref: str = "1") -> httpx.Response:
    url = f"{server.url}/v2/models/{NAME}/versions/{ref}/infer"
    if isinstance(body, bytes):
        return http.post(url, content=body, headers={"Content-Type": "application/json"})
    return http.post(url, json=body)


def _tensor(**overrides: object) -> dict[str, object]:
    tensor: dict[str, object] = {
        "name": "input",
        "datatype": "FP64",
        "shape": [1, 4],
        "data": [5.1, 3.5, 1.4, 0.2],
    }
    tensor.update(overrides)
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"inputs": [', "invalid JSON"),
        (_tensor(shape=[1, 5], data=[1, 2, 3, 4, 5]), "shape [1, 5]; the model expects [-1, 4]"),
        (_tensor(datatype="INT64", data=[5, 3, 1, 0]), "datatype INT64; the model expects FP64"),
        (_tensor(name="pixels"), "input 'pixels' not found; inputs are 'input'"),
        (_tensor(shape=[1, 4], data=[1, 2, 3]), "needs 4 elements, data has 3"),
        (_tensor(datatype="INT8", data=[1, 2, 3, 400]), "outside the range of INT8"),
        (_tensor(datatype="FP32", data=[1e39, 1, 1, 1]), "outside the range of FP32"),
        ({"inputs": "x"}, "'inputs' must be a non-empty list"),
        ({**_tensor(), "outputs": [{"name": "nope"}]}, "output 'nope' not found"),
    ],
)
def test_malformed_request_gets_400_naming_the_problem(
    server: RunningServer, iris_model: str, body: object, fragment: str | None
) -> None:
    response = _infer(server, body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    if fragment is not None:
        assert fragment in message
    assert "Traceback" not in message


def test_unknown_model_version_and_alias_are_404(server: RunningServer, iris_model: str) -> None:
    assert _infer(server, _tensor(), ref="9").status_code == 404
    assert _infer(server, _tensor(), ref="staging").status_code == 404
    response = http.post(f"{server.url}/v2/models/nope/infer", json=_tensor())
    assert response.status_code == 404
    assert "model 'nope' not found" in response.json()["error"]


def test_pickle_upload_is_refused_with_reason(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with open(path, "rb") as f:
        response = http.post(
            f"{server.url}/api/v1/models/pickled/versions",
            files={"files": ("model.pkl", f)},
            timeout=60,
        )
    assert response.status_code == 422
    message = response.json()["error"]
    assert "pickle" in message
    assert "skops" in message
    # a pickle renamed to look like a safe format is refused too
    with open(path, "rb") as f:
        response = http.post(
            f"{server.url}/api/v1/models/pickled/versions",
            files={"files": ("model.skops", f)},
            timeout=60,
            data={"format": "sklearn"},
        )
    assert response.status_code == 422
    assert http.get(f"{server.url}/api/v1/models/pickled").status_code == 404


def test_path_traversal_in_upload_is_refused(server: RunningServer, tmp_path: Path) -> None:
    response = http.post(
        f"{server.url}/api/v1/models/slip/versions",
        files={"files": ("../../evil.onnx", b"x")},
        timeout=60,
    )
    assert response.status_code == 400
    assert "relative" in response.json()["error"]


def test_request_without_a_json_object_body_gets_400(
    server: RunningServer, iris_model: str
) -> None:
    assert _infer(server, b"[1, 2]").status_code == 400
    assert _infer(server, b"").status_code == 400


def test_the_infer_path_is_decoded_once(server: RunningServer, iris_model: str) -> None:
    # "%2D" is "-" once decoded; decoded twice, 'errors%2Diris' reached 'errors-iris'.
    body = _tensor()
    twice = iris_model.replace("-", "%252D")
    infer = http.post(f"{server.url}/v2/models/{twice}/infer", json=body)
    metadata = http.get(f"{server.url}/v2/models/{twice}")
    assert infer.status_code == metadata.status_code == 404, infer.text
    assert infer.json()["error"] == "model 'errors%2Diris' not found"
    once = iris_model.replace("-", "%2D")
    assert http.post(f"{server.url}/v2/models/{once}/infer", json=body).status_code == 200


def test_fp32_input_is_widened_for_an_fp64_model_and_said_so(
    server: RunningServer, iris_model: str
) -> None:
    # Most clients send FP32; the scikit-learn model takes FP64 and refused it.
    x = [5.0, 3.5, 1.5, 0.25]  # exact in FP32 too, so both answers are the same
    widened = _infer(server, _tensor(datatype="FP32", data=x))
    exact = _infer(server, _tensor(data=x))
    assert widened.status_code == 200, widened.text
    assert widened.json()["outputs"] == exact.json()["outputs"]
    metadata = http.get(f"{server.url}/v2/models/{iris_model}").json()
    accepts = metadata["inputs"][0]["parameters"]["accepts"]
    assert "FP32" in accepts
    assert "INT64" not in accepts  # it could lose information: refused
    assert "parameters" not in metadata["outputs"][0]
