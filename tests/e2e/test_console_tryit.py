"""Try it in a real browser against the real server: a V2 request built from typed numbers
or from an image file, its outputs and top classes with the model's labels, the same
request as curl, and the read-only page of a key without the infer scope.

The models are real: scikit-learn classifiers (iris; 8x8 digits, whose pixels are 0..16)
saved with skops, and an (untrained) TorchScript CNN taking [-1, 1, 8, 8] images.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
DIGIT_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CNN_SIGNATURE = {
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


@dataclass
class Scene:
    iris: str
    digits: str
    cnn: str
    digit_png: Path
    """A 3 from the digits data, drawn dark on light at 32x32 (4x), as a user's scan is."""


def _labelled(server: RunningServer, name: str, path: Path, labels: list[str], **form: str) -> None:
    response = http.post(
        f"{server.url}/api/v1/models",
        json={"name": name, "labels": labels, "task": "classification"},
    )
    assert response.status_code == 201, response.text
    server.push(name, path, **form)


def _digit_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    ink = np.clip(np.round(image.reshape(8, 8) * 255 / 16), 0, 255).astype(np.uint8)
    paper = (255 - ink).repeat(4, axis=0).repeat(4, axis=1)
    Image.fromarray(paper, mode="L").save(path)
    return path


def _cnn(path: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    torch.jit.trace(net.eval(), torch.zeros(2, 1, 8, 8)).save(str(path))
    return path


@pytest.fixture(scope="module")
def scene(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    import skops.io
    from sklearn.datasets import load_digits, load_iris
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("tryit")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    x, y = load_iris(return_X_y=True)
    skops.io.dump(LogisticRegression(max_iter=500).fit(x, y), tmp / "iris.skops")
    _labelled(server, f"{prefix}-iris", tmp / "iris.skops", IRIS_LABELS)

    x, y = load_digits(return_X_y=True)
    skops.io.dump(LogisticRegression(max_iter=2000).fit(x, y), tmp / "digits.skops")
    _labelled(server, f"{prefix}-digits", tmp / "digits.skops", DIGIT_LABELS)
    three = x[y == 3][0]

    _labelled(
        server,
        f"{prefix}-cnn",
        _cnn(tmp / "cnn.pt"),
        DIGIT_LABELS,
        format="torchscript",
        signature=json.dumps(CNN_SIGNATURE),
    )
    return Scene(
        iris=f"{prefix}-iris",
        digits=f"{prefix}-digits",
        cnn=f"{prefix}-cnn",
        digit_png=_digit_png(three, tmp / "three.png"),
    )


def _curl_body(command: str) -> tuple[str, dict[str, Any]]:
    """The URL and the JSON body of the page's curl command, read as a shell would."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:3] == ["curl", "-X", "POST"], words
    body: dict[str, Any] = json.loads(words[words.index("-d") + 1])
    return words[3], body


def _top_rows(page: Page, output: str) -> Any:
    return page.locator("table.top-classes", has_text=f"Top classes of {output}").locator(
        "tbody tr"
    )


def test_try_it_runs_a_tensor_model_and_shows_its_outputs_and_the_curl_command(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/models/{scene.iris}")
    page.get_by_role("link", name="Try it").click()
    expect(page.get_by_role("heading", name=f"Try {scene.iris}")).to_be_visible()
    values = page.get_by_label("Values of input")
    expect(page.locator(".tensor-input")).to_contain_text("Expected shape [-1, 4]")
    values.fill("5.1, 3.5, 1.4, 0.2\n6.7 3.0 5.2 2.3")
    page.get_by_role("button", name="Run").click()

    result = page.get_by_role("region", name="Result")
    expect(result.locator('[data-output="predict_proba"]')).to_contain_text("FP64 [2, 3]")
    expect(result.locator('[data-output="predict"]')).to_contain_text("0, 2")
    top = _top_rows(page, "predict_proba")
    expect(top).to_have_count(3)
    expect(top.first.locator("td.label")).to_have_text("setosa")

    command = page.locator("pre.curl-command").inner_text()
    assert 'Authorization: Bearer $MODELBAY_API_KEY"' in command
    assert ADMIN_KEY not in command
    url, body = _curl_body(command)
    assert url == f"{server.url}/v2/models/{scene.iris}/infer"
    assert body["inputs"][0]["shape"] == [2, 4]
    answer = http.post(url, json=body)  # the command's request is the page's request
    assert answer.status_code == 200, answer.text
    predicted = next(o for o in answer.json()["outputs"] if o["name"] == "predict")
    assert predicted["data"] == [0, 2]


def test_try_it_with_an_image_file_shows_the_top_classes_with_their_labels(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/try/{scene.digits}")
    page.get_by_label("Image file for input").set_input_files(scene.digit_png)
    # Dark ink on light paper is inverted to the data's light strokes, scaled to 0..16.
    expect(page.get_by_label("Invert (dark strokes on a light background)")).to_be_checked()
    expect(page.get_by_label("Pixel values")).to_have_value("0-16")
    expect(page.get_by_label("Shape of input")).to_have_value("[1, 64]")
    page.get_by_role("button", name="Run").click()

    top = _top_rows(page, "predict_proba")
    expect(top).to_have_count(5)
    expect(top.first.locator("td.label")).to_have_text("three")
    expect(page.locator(".predicted")).to_contain_text("three")
    _, body = _curl_body(page.locator("pre.curl-command").inner_text())
    data = body["inputs"][0]["data"]
    assert len(data) == 64
    assert min(data) >= 0
    assert 8 < max(data) <= 16


def test_try_it_sends_an_image_to_a_channels_first_model(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/try/{scene.cnn}")
    page.get_by_label("Image file for image").set_input_files(scene.digit_png)
    expect(page.get_by_label("Shape of image")).to_have_value("[1, 1, 8, 8]")
    expect(page.get_by_label("Pixel values")).to_have_value("0-1")
    page.get_by_role("button", name="Run").click()

    top = _top_rows(page, "logits")
    expect(top).to_have_count(5)
    labels = top.locator("td.label").all_inner_texts()
    assert len(set(labels)) == 5
    assert set(labels) <= set(DIGIT_LABELS)


def test_a_key_without_infer_sees_try_it_read_only(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, server.key("viewer"), at=f"#/try/{scene.iris}")
    expect(page.get_by_text("Your key has no infer scope")).to_be_visible()
    expect(page.get_by_label("Values of input")).not_to_be_editable()
    expect(page.get_by_role("button", name="Run")).to_have_count(0)
    expect(page.locator("pre.curl-command")).to_contain_text("$MODELBAY_API_KEY")
