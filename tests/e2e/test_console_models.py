"""The console's models pages in a real browser against the real server: the list and its
search, a model's page (versions, digests, signature, metrics, lineage), pushing by file
upload, moving an alias, sharing, markup shown as text, and what a viewer is not offered.

The models are real: an iris classifier saved with skops, built here in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer

MARKUP = "<script>window.__xss=1</script><b>bold</b>"
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


@dataclass
class Scene:
    """Models pushed once for the module's tests."""

    file: Path
    digest: str
    prefix: str
    alpha: str
    beta: str
    detailed: str
    detailed_version: dict[str, Any]
    aliased: str
    marked: str


def _iris_file(directory: Path) -> Path:
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    path = directory / "iris.skops"
    skops.io.dump(LogisticRegression(max_iter=500).fit(x, y), path)
    return path


def _create(server: RunningServer, name: str, **fields: Any) -> None:
    response = http.post(f"{server.url}/api/v1/models", json={"name": name, **fields})
    assert response.status_code == 201, response.text


def _model(server: RunningServer, name: str) -> dict[str, Any]:
    response = http.get(f"{server.url}/api/v1/models/{name}")
    assert response.status_code == 200, response.text
    model: dict[str, Any] = response.json()
    return model


@pytest.fixture(scope="module")
def scene(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    file = _iris_file(tmp_path_factory.mktemp("models"))
    prefix = f"m{uuid.uuid4().hex[:8]}"
    names = {k: f"{prefix}-{k}" for k in ("alpha", "beta", "detailed", "aliased", "marked")}
    server.push(names["alpha"], file)
    server.push(names["beta"], file)
    _create(server, names["detailed"], labels=IRIS_LABELS, task="classification")
    detailed = server.push(
        names["detailed"],
        file,
        description="iris, first try",
        metrics=json.dumps({"test_accuracy": 0.973}),
        source=json.dumps({"dataset": "iris-csv", "code_version": "abc123"}),
    )
    server.push(names["aliased"], file)
    server.push(names["aliased"], file)
    response = http.request(
        "PUT",
        f"{server.url}/api/v1/models/{names['aliased']}/aliases/production",
        json={"version": 1},
    )
    assert response.status_code == 200, response.text
    _create(server, names["marked"], description=MARKUP, labels=[MARKUP, "plain"])
    server.push(names["marked"], file)
    return Scene(
        file=file,
        digest=hashlib.sha256(file.read_bytes()).hexdigest(),
        prefix=prefix,
        detailed_version=detailed,
        **names,
    )


def _row(page: Page, name: str) -> Any:
    return page.locator(f'table.models tr[data-name="{name}"]')


def test_the_list_shows_pushed_models_and_the_search_filters_them(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at="#/models")
    expect(page.get_by_role("link", name=scene.alpha, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=scene.beta, exact=True)).to_be_visible()
    expect(_row(page, scene.alpha)).to_contain_text("1")  # the latest version

    page.get_by_label("Search models by name").fill(f"{scene.prefix}-AL")  # any case
    expect(_row(page, scene.beta)).to_be_hidden()
    expect(page.get_by_role("link", name=scene.alpha, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=scene.aliased, exact=True)).to_be_visible()
    expect(page.locator(".model-count")).to_contain_text("2 of")

    page.get_by_label("Search models by name").fill("")
    expect(_row(page, scene.beta)).to_be_visible()


def test_a_models_page_shows_versions_digests_signature_metrics_and_lineage(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/models/{scene.detailed}")
    expect(page.get_by_role("heading", name=scene.detailed, exact=True)).to_be_visible()
    version = page.locator('details.version[data-version="1"]')
    expect(version).to_contain_text(scene.digest)
    assert scene.detailed_version["files"][0]["digest"] == scene.digest
    expect(version.locator("table", has_text="Signature")).to_contain_text("predict_proba")
    expect(version.locator("table", has_text="Signature")).to_contain_text("[-1, 3]")
    expect(version.locator("table", has_text="Signature")).to_contain_text("FP64")
    expect(version.locator("dl.metrics")).to_contain_text("test_accuracy")
    expect(version.locator("dl.metrics")).to_contain_text("0.973")
    expect(version.locator("dl.lineage")).to_contain_text("iris-csv")
    expect(version).to_contain_text("iris, first try")
    expect(page.locator(".label-list")).to_contain_text("versicolor")


def test_a_version_pushed_by_file_upload_appears_when_the_progress_is_done(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/models/{scene.beta}")
    expect(page.locator('details.version[data-version="1"]')).to_be_visible()
    form = page.get_by_role("form", name=f"Push a new version of {scene.beta}")
    form.get_by_label("Model files").set_input_files(scene.file)
    form.get_by_label("Description").fill("pushed from the browser")
    form.get_by_role("button", name="Push version").click()

    expect(form.locator("progress")).to_have_js_property("value", 1)
    expect(form).to_have_attribute("data-state", "done")
    expect(page.get_by_text("Pushed version 2.")).to_be_visible()
    expect(page.locator('details.version[data-version="2"]')).to_contain_text(
        "pushed from the browser"
    )
    versions = http.get(f"{server.url}/api/v1/models/{scene.beta}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["files"][0]["digest"] == scene.digest


def test_a_new_model_is_created_by_upload_with_its_labels(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    name = f"{scene.prefix}-uploaded"
    sign_in(page, server, at="#/models")
    page.get_by_text("Push a model").click()
    form = page.get_by_role("form", name="Push a new model")
    form.get_by_label("Model name").fill(name)
    form.get_by_label("Model files").set_input_files(scene.file)
    form.get_by_label("Class labels").fill("setosa, versicolor, virginica")
    form.get_by_role("button", name="Push model").click()

    expect(form.locator("progress")).to_have_js_property("value", 1)
    expect(page.get_by_text(f"Pushed {name} version 1")).to_be_visible()
    expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    model = _model(server, name)
    assert model["latest_version"] == 1
    assert model["labels"] == IRIS_LABELS


def test_moving_an_alias_in_the_ui_moves_it_on_the_server(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/models/{scene.aliased}")
    form = page.get_by_role("form", name="Move an alias")
    form.get_by_label("Alias", exact=True).select_option("production")
    expect(form.get_by_label("Points to")).to_have_value("1")
    form.get_by_label("Points to").select_option("2")
    form.get_by_role("button", name="Save alias").click()

    expect(page.get_by_text("Alias production now points to version 2.")).to_be_visible()
    aliases = http.get(f"{server.url}/api/v1/models/{scene.aliased}/aliases").json()
    assert aliases["aliases"] == {"production": 2}
    expect(page.locator('details.version[data-version="2"] summary')).to_contain_text("production")


def test_making_a_model_public_then_private_is_saved_on_the_server(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at=f"#/models/{scene.alpha}")
    form = page.get_by_role("form", name="Share the model")
    form.get_by_label("Visibility").select_option("public")
    form.get_by_role("button", name="Save access").click()
    expect(page.get_by_text("Access saved: public.")).to_be_visible()
    assert _model(server, scene.alpha)["visibility"] == "public"
    expect(page.locator(".access-now")).to_contain_text("Public")

    server.tenant(f"{scene.prefix}-team")
    form = page.get_by_role("form", name="Share the model")
    form.get_by_label("Visibility").select_option("private")
    form.get_by_label("Shared with tenants").fill(f"{scene.prefix}-team")
    form.get_by_role("button", name="Save access").click()
    expect(page.get_by_text("Access saved: private.")).to_be_visible()
    model = _model(server, scene.alpha)
    assert model["visibility"] == "private"
    assert model["shared_with"] == [f"{scene.prefix}-team"]


def test_markup_in_a_description_and_a_label_shows_as_text(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, at="#/models")
    row = _row(page, scene.marked)
    expect(row.locator("td.description")).to_have_text(MARKUP)
    assert row.locator("td.description b").count() == 0

    page.get_by_role("link", name=scene.marked, exact=True).click()
    expect(page.locator(".model-description")).to_have_text(MARKUP)
    expect(page.locator(".label-list li .label").first).to_have_text(MARKUP)
    assert page.locator("main b, main script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_a_viewer_is_offered_no_upload_alias_or_share_controls(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    sign_in(page, server, server.key("viewer"), at="#/models")
    expect(page.get_by_role("link", name=scene.aliased, exact=True)).to_be_visible()
    expect(page.get_by_text("Push a model")).to_have_count(0)

    page.get_by_role("link", name=scene.aliased, exact=True).click()
    expect(page.locator('details.version[data-version="2"]')).to_be_visible()
    expect(page.get_by_role("link", name="Try it")).to_be_visible()
    main = page.locator("main")
    for button in (
        "Save alias",
        "Save access",
        "Push version",
        "Save details",
        "Delete version 2",
        "Delete model",
    ):
        expect(main.get_by_role("button", name=button)).to_have_count(0)
    expect(main.locator("input[type=file]")).to_have_count(0)
    expect(main.locator("form")).to_have_count(0)


def _versions(server: RunningServer, name: str) -> list[int]:
    response = http.get(f"{server.url}/api/v1/models/{name}/versions")
    assert response.status_code == 200, response.text
    return sorted(v["version"] for v in response.json()["versions"])


def test_a_version_then_the_model_are_deleted_after_asking_and_a_refusal_shows_in_place(
    page: Page, server: RunningServer, scene: Scene
) -> None:
    name = f"{scene.prefix}-doomed"
    server.push(name, scene.file)
    server.push(name, scene.file)
    admin = sign_in(page, server, at=f"#/models/{name}")
    admin.locator('details.version[data-version="1"] summary').click()  # older: folded
    first = admin.get_by_role("button", name="Delete version 1")
    admin.once("dialog", lambda dialog: dialog.dismiss())
    first.click()
    expect(first).to_be_enabled()
    assert _versions(server, name) == [1, 2]  # dismissed: nothing happened
    admin.once("dialog", lambda dialog: dialog.accept())
    first.click()
    expect(admin.get_by_text("Deleted version 1.")).to_be_visible()
    expect(admin.locator('details.version[data-version="1"]')).to_have_count(0)
    assert _versions(server, name) == [2]

    # A deployed version cannot go: the server's reason shows beside the button.
    body = {"model": name, "min_replicas": 0}
    deployed = http.post(f"{server.url}/api/v1/deployments", json=body)
    assert deployed.status_code == 201, deployed.text
    try:
        admin.reload()
        admin.once("dialog", lambda dialog: dialog.accept())
        admin.get_by_role("button", name="Delete version 2").click()
        refusal = admin.locator('details.version[data-version="2"] .notice.error')
        expect(refusal).to_contain_text("deployment")
        assert _versions(server, name) == [2]
    finally:
        assert http.delete(f"{server.url}/api/v1/deployments/{name}").status_code == 204

    admin.reload()
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Delete model").click()
    expect(admin).to_have_url(f"{server.url}/ui/#/models")
    expect(admin.get_by_role("link", name=name, exact=True)).to_have_count(0)
    assert http.get(f"{server.url}/api/v1/models/{name}").status_code == 404
