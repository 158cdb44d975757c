"""The console's training pages in a real browser: a CSV uploaded with its progress, statistics
and preview; a job started from the form whose learning curve is drawn as epochs finish; a
long job cancelled; a finished job deployed in one click; and a viewer who can change nothing.

Jobs run in the ``server`` fixture's embedded worker; they are small (iris, a few epochs).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sklearn.datasets import load_iris
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer

TRAINING_MS = 120_000
"""How long a small job may take on a busy machine (a worker process starts torch first)."""
FINISHED = ("succeeded", "failed", "cancelled")
EPOCHS = 6


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's iris as a CSV with a header and the species by name."""
    iris = load_iris()
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for row, label in zip(iris.data, iris.target, strict=True):
        lines.append(",".join(f"{v:g}" for v in row) + f",{iris.target_names[label]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _push_dataset(server: RunningServer, name: str, csv: Path) -> None:
    with open(csv, "rb") as f:
        answer = http.post(
            f"{server.url}/api/v1/datasets/{name}/versions",
            files={"file": (csv.name, f)},
            timeout=60,
        )
    assert answer.status_code == 201, answer.text


def _submit(server: RunningServer, dataset: str, **params: Any) -> dict[str, Any]:
    body = {"dataset": dataset, "family": "logistic", "target": "species", "params": params}
    answer = http.post(f"{server.url}/api/v1/jobs", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    job: dict[str, Any] = answer.json()
    return job


def _wait(server: RunningServer, job_id: int) -> dict[str, Any]:
    """The job once it ended (a fixture's setup, not an assertion on timing)."""
    deadline = time.monotonic() + TRAINING_MS / 1000
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{server.url}/api/v1/jobs/{job_id}").json()
        if job["state"] in FINISHED:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def iris(server: RunningServer, iris_csv: Path) -> str:
    """A dataset holding iris, pushed through the API."""
    name = _unique("iris")
    _push_dataset(server, name, iris_csv)
    return name


@pytest.fixture(scope="module")
def finished_job(server: RunningServer, iris: str) -> dict[str, Any]:
    """A small job trained to the end through the API."""
    job = _wait(server, _submit(server, iris, epochs=3, seed=1)["id"])
    assert job["state"] == "succeeded", job
    return job


@pytest.fixture
def long_job(server: RunningServer, iris: str) -> Iterator[dict[str, Any]]:
    """A job that would run for long (many epochs, one row per batch); cancelled at the end
    if the test did not."""
    job = _submit(server, iris, epochs=5000, batch_size=1)
    yield job
    if http.get(f"{server.url}/api/v1/jobs/{job['id']}").json()["state"] not in FINISHED:
        http.post(f"{server.url}/api/v1/jobs/{job['id']}/cancel")


def test_an_uploaded_csv_shows_its_progress_done_its_statistics_and_a_preview(
    page: Page, server: RunningServer, iris_csv: Path
) -> None:
    name = _unique("uploaded")
    admin = sign_in(page, server, at="#/datasets")
    admin.get_by_label("File", exact=True).set_input_files(str(iris_csv))
    admin.get_by_label("Dataset name").fill(name)
    admin.get_by_role("button", name="Upload").click()
    upload = admin.locator("form.tr-upload")
    expect(upload).to_have_attribute("data-done", "true")
    expect(upload.locator("progress")).to_have_attribute("value", "1")
    expect(upload.locator(".tr-percent")).to_contain_text("100%")
    expect(upload.locator(".notice.ok")).to_contain_text(f"Uploaded {name} version 1")
    stats = upload.locator(".tr-stats")
    expect(stats).to_have_attribute("data-rows", "150")
    expect(stats.locator("tbody tr")).to_have_count(5)
    expect(stats.locator("tbody tr").filter(has_text="petal_length")).to_contain_text("float64")
    preview = upload.locator(".tr-preview")
    expect(preview).to_have_attribute("data-preview-rows", "10")
    expect(preview.locator("thead")).to_contain_text("sepal_width")
    expect(preview.locator("tbody tr").first).to_contain_text("setosa")
    # The dataset's own page shows the same statistics (and the preview of this upload).
    upload.get_by_role("link", name="Open the dataset").click()
    expect(admin.get_by_role("heading", name=f"Dataset {name}")).to_be_visible()
    expect(admin.locator("main .tr-stats")).to_have_attribute("data-rows", "150")
    expect(admin.locator("main .tr-stats tbody tr").filter(has_text="species")).to_contain_text(
        "setosa (50)"
    )
    expect(admin.locator("main .tr-preview tbody tr")).to_have_count(10)


def test_a_job_started_from_the_form_draws_its_curve_as_epochs_finish_and_succeeds(
    page: Page, server: RunningServer, iris: str
) -> None:
    # The value the Loss chart's data-points had before each change, in order.
    page.add_init_script(
        """
        window.__points = [];
        new MutationObserver((changes) => {
          for (const c of changes) {
            if (c.target.dataset && c.target.dataset.chart === "Loss") {
              window.__points.push(Number(c.oldValue || 0));
            }
          }
        }).observe(document, {
          subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["data-points"]
        });
        """
    )
    sign_in(page, server, at=f"#/jobs/new?dataset={iris}")
    expect(page.get_by_label("Dataset", exact=True)).to_have_value(iris)
    page.get_by_label("Model family").select_option("logistic")
    expect(page.get_by_label("Target column").locator("option", has_text="species")).to_have_count(
        1
    )
    page.get_by_label("Target column").select_option("species")
    page.get_by_label("Epochs").fill(str(EPOCHS))
    page.get_by_label("Batch size").fill("16")
    page.get_by_label("Learning rate").fill("0.05")
    page.get_by_label("Optimizer").select_option("adam")
    page.get_by_label("Other parameters (key=value)").fill("seed=3 validation_split=0.2")
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])

    loss = page.locator('figure[data-chart="Loss"]')
    expect(loss).to_have_attribute("data-points", str(EPOCHS), timeout=TRAINING_MS)
    expect(page.locator('figure[data-chart="Accuracy"]')).to_have_attribute(
        "data-points", str(EPOCHS)
    )
    expect(page.locator(".tr-badge-box [data-state]")).to_have_attribute(
        "data-state", "succeeded", timeout=TRAINING_MS
    )
    # The curve grew point by point from the job's metric events, never redrawn smaller.
    seen: list[int] = [*page.evaluate("window.__points"), int(loss.get_attribute("data-points"))]
    assert seen == list(range(EPOCHS + 1)), seen
    expect(page.locator(".tr-log [data-kind=metric]")).to_have_count(EPOCHS)
    final = page.locator(".tr-final tbody tr")
    expect(final.filter(has=page.get_by_role("cell", name="accuracy", exact=True))).to_have_count(1)

    job = http.get(f"{server.url}/api/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded", job
    spec = job["spec"]
    assert (spec["epochs"], spec["batch_size"], spec["lr"]) == (EPOCHS, 16, 0.05), spec
    assert (spec["optimizer"], spec["seed"], spec["validation_split"]) == ("adam", 3, 0.2), spec
    # The jobs list shows it with its state.
    page.get_by_role("link", name="← All jobs").click()
    row = page.locator("main tbody tr").filter(has=page.get_by_role("link", name=f"#{job_id}"))
    expect(row.locator("[data-state]")).to_have_attribute("data-state", "succeeded")


def test_cancelling_a_long_job_from_its_page_ends_it_cancelled(
    page: Page, server: RunningServer, long_job: dict[str, Any]
) -> None:
    job_id = long_job["id"]
    admin = sign_in(page, server, at=f"#/jobs/{job_id}")
    badge = admin.locator(".tr-badge-box [data-state]")
    expect(badge).to_have_attribute("data-state", "running", timeout=TRAINING_MS)
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Cancel job").click()
    expect(badge).to_have_attribute("data-state", "cancelled", timeout=TRAINING_MS)
    expect(admin.get_by_role("button", name="Cancel job")).to_have_count(0)
    assert http.get(f"{server.url}/api/v1/jobs/{job_id}").json()["state"] == "cancelled"


def test_a_finished_job_is_deployed_in_one_click(
    page: Page, server: RunningServer, finished_job: dict[str, Any]
) -> None:
    model, version = finished_job["model"], finished_job["model_version"]
    assert http.get(f"{server.url}/api/v1/deployments/{model}").status_code == 404
    admin = sign_in(page, server, at=f"#/jobs/{finished_job['id']}")
    admin.get_by_role("button", name="Deploy", exact=True).click()
    link = admin.get_by_role("link", name=f"Open deployment {model}")
    expect(link).to_have_attribute("href", f"#/deployments/{model}")
    deployment = http.get(f"{server.url}/api/v1/deployments/{model}")
    assert deployment.status_code == 200, deployment.text
    assert deployment.json()["target"] == str(version)


def test_a_viewer_sees_the_training_pages_without_any_button_that_changes_something(
    page: Page, server: RunningServer, iris: str, finished_job: dict[str, Any]
) -> None:
    sign_in(page, server, server.key("viewer"), at="#/datasets")
    main = page.locator("main")
    expect(main.get_by_role("link", name=iris)).to_be_visible()
    expect(main.locator("button, form, input[type=file]")).to_have_count(0)

    page.goto(page.url.split("#")[0] + f"#/datasets/{iris}")
    expect(page.get_by_role("heading", name=f"Dataset {iris}")).to_be_visible()
    expect(main.locator(".tr-stats")).to_have_attribute("data-rows", "150")
    expect(main.locator("button, form")).to_have_count(0)
    expect(main.get_by_role("link", name="Train a model")).to_have_count(0)

    page.goto(page.url.split("#")[0] + "#/jobs")
    expect(main.get_by_role("link", name=f"#{finished_job['id']}")).to_be_visible()
    expect(main.locator("button, form")).to_have_count(0)
    expect(main.get_by_role("link", name="New job")).to_have_count(0)

    page.goto(page.url.split("#")[0] + f"#/jobs/{finished_job['id']}")
    expect(page.locator(".tr-badge-box [data-state]")).to_have_attribute("data-state", "succeeded")
    expect(page.locator('figure[data-chart="Loss"]')).to_have_attribute("data-points", "3")
    expect(main.locator("button, form")).to_have_count(0)

    page.goto(page.url.split("#")[0] + "#/jobs/new")
    expect(main.get_by_role("alert")).to_contain_text("write scope")
    expect(main.locator("button, form")).to_have_count(0)
