"""The console's deployments pages: deploy a real model from the form, watch its live charts
grow from the server's own metrics while requests arrive, scale and undeploy it, and what a
viewer may not do."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import SKLEARN_INFER_BODY, build_sklearn

TENANT = f"t-deploy-{uuid.uuid4().hex[:6]}"
READY_MS = 60_000  # a replica's first start loads scikit-learn: slow on a busy machine


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sklearn(tmp_path_factory.mktemp("deployments")).path


@pytest.fixture(scope="module")
def developer(server: RunningServer) -> str:
    return server.key("developer", TENANT)


def push(server: RunningServer, developer: str, model_file: Path) -> str:
    """A new model of the module's tenant; returns its name."""
    name = unique("iris")
    pushed = upload(server.url, name, model_file, headers=http.auth(developer))
    assert pushed.status_code == 201, pushed.text
    return name


def deployment(server: RunningServer, name: str) -> httpx.Response:
    return http.get(f"{server.url}/api/v1/deployments/{name}")


def wait_ready(server: RunningServer, name: str, replicas: int = 1) -> None:
    deadline = time.monotonic() + READY_MS / 1000
    while True:
        status = deployment(server, name).json()["status"]
        ready = sum(v["replicas"] for v in status["versions"])
        if status["state"] == "ready" and ready >= replicas:
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployed(server: RunningServer, developer: str, model_file: Path) -> Iterator[str]:
    """A model deployed through the API (batching up to 8 rows), ready; undeployed after."""
    name = push(server, developer, model_file)
    created = http.post(
        f"{server.url}/api/v1/deployments",
        json={"model": name, "max_batch_size": 8, "max_queue_delay_ms": 5},
    )
    assert created.status_code == 201, created.text
    wait_ready(server, name)
    yield name
    http.delete(f"{server.url}/api/v1/deployments/{name}")


class Load:
    """Inference requests sent without pause from a few threads until stopped."""

    def __init__(self, server: RunningServer, name: str, threads: int = 4):
        self.url = f"{server.url}/v2/models/{name}/infer"
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with http.client() as client:
            while not self.stop.is_set():
                self.answers.append(client.post(self.url, json=SKLEARN_INFER_BODY).status_code)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def points(page: Page, title: str) -> int:
    return int(page.locator(f'figure[data-chart="{title}"]').get_attribute("data-points") or 0)


def test_a_model_deployed_from_the_form_shows_its_replicas_batching_and_state(
    page: Page, server: RunningServer, developer: str, model_file: Path
) -> None:
    name = push(server, developer, model_file)
    admin = sign_in(page, server, at=f"#/deployments?model={name}")
    form = admin.get_by_role("form", name="Deploy a model")
    expect(form.get_by_label("Model")).to_have_value(name)
    form.get_by_label("Version or alias").fill("1")
    form.get_by_label("Min replicas").fill("1")
    form.get_by_label("Max replicas").fill("2")
    form.get_by_label("Max batch size").fill("8")
    form.get_by_label("Max queue delay (ms)").fill("5")
    form.get_by_role("button", name="Deploy").click()
    try:
        expect(admin).to_have_url(f"{server.url}/ui/#/deployments/{name}")
        expect(admin.locator(".status-line [data-state]")).to_have_text("ready", timeout=READY_MS)
        expect(admin.locator(".status-line .replicas")).to_have_text("1 ready")
        expect(admin.locator('[data-setting="Replicas"]')).to_have_text("1–2")
        expect(admin.locator('[data-setting="Max batch size"]')).to_have_text("8 rows")
        expect(admin.locator('[data-setting="Max queue delay"]')).to_have_text("5 ms")
        expect(admin.get_by_role("link", name="Try it")).to_have_attribute("href", f"#/try/{name}")
        record = deployment(server, name).json()
        assert record["target"] == "1"
        assert record["config"]["max_batch_size"] == 8
        assert record["config"]["max_replicas"] == 2
        # The list shows it too, its model linked to the Try it page.
        admin.get_by_role("link", name="Deployments", exact=True).first.click()
        row = admin.get_by_role("row").filter(
            has=admin.get_by_role("link", name=name, exact=True).first
        )
        expect(row.locator("[data-state]")).to_have_text("ready")
        expect(row.locator(".replicas")).to_contain_text("1 ready")
        expect(row).to_contain_text("≤ 8 rows, 5 ms")
        model_link = row.get_by_role("link", name=name, exact=True).nth(1)
        expect(model_link).to_have_attribute("href", f"#/try/{name}")
    finally:
        http.delete(f"{server.url}/api/v1/deployments/{name}")


def test_live_charts_grow_from_the_servers_metrics_while_requests_arrive(
    page: Page, server: RunningServer, deployed: str
) -> None:
    admin = sign_in(page, server, at=f"#/deployments/{deployed}")
    expect(admin.get_by_role("heading", name=deployed)).to_be_visible()
    charts = ["Requests per second", "Latency", "Batch size", "Queue wait"]
    for title in charts:
        expect(admin.locator(f'figure[data-chart="{title}"] canvas')).to_be_visible()
    with Load(server, deployed) as load:
        rps = admin.locator('[data-stat="requests-per-second"]')
        admin.wait_for_function(
            "el => Number(el.dataset.value) > 0", arg=rps.element_handle(), timeout=30_000
        )
        seen = points(admin, "Requests per second")
        admin.wait_for_function(
            "([title, n]) => Number(document.querySelector(`figure[data-chart='${title}']`)"
            ".dataset.points) > n",
            arg=["Requests per second", seen],
        )
        expect(admin.locator('[data-stat="latency-p99"]')).to_contain_text(" ms")
        expect(admin.locator('[data-stat="batch-mean"]')).to_contain_text(" rows")
    assert load.answers
    assert set(load.answers) == {200}
    for title in charts:
        assert points(admin, title) >= 2, title


def test_scaling_from_the_page_changes_the_deployment(
    page: Page, server: RunningServer, deployed: str
) -> None:
    admin = sign_in(page, server, at=f"#/deployments/{deployed}")
    scale = admin.get_by_role("form", name="Scale")
    scale.get_by_label("Min replicas").fill("2")
    scale.get_by_label("Max replicas").fill("3")
    scale.get_by_role("button", name="Scale").click()
    expect(scale.get_by_role("status")).to_have_text("Replicas set to 2–3.")
    config = deployment(server, deployed).json()["config"]
    assert (config["min_replicas"], config["max_replicas"]) == (2, 3)
    expect(admin.locator('[data-setting="Replicas"]')).to_have_text("2–3")
    expect(admin.locator(".status-line .replicas")).to_have_text("2 ready", timeout=READY_MS)
    # A refused change says why, and changes nothing.
    scale.get_by_label("Min replicas").fill("5")
    scale.get_by_label("Max replicas").fill("4")
    scale.get_by_role("button", name="Scale").click()
    expect(scale.get_by_role("alert")).to_contain_text("exceeds max_replicas")
    assert deployment(server, deployed).json()["config"]["min_replicas"] == 2


def test_a_canary_is_set_and_removed_from_the_page(
    page: Page, server: RunningServer, developer: str, model_file: Path
) -> None:
    name = push(server, developer, model_file)
    again = upload(server.url, name, model_file, headers=http.auth(developer))
    assert again.status_code == 201, again.text
    assert again.json()["version"] == 2
    created = http.post(f"{server.url}/api/v1/deployments", json={"model": name, "version": "1"})
    assert created.status_code == 201, created.text
    try:
        admin = sign_in(page, server, at=f"#/deployments/{name}")
        versions = admin.get_by_role("form", name="Version and canary")
        versions.get_by_label("Canary version").fill("2")
        versions.get_by_label("Canary weight (%)").fill("25")
        versions.get_by_role("button", name="Save versions").click()
        expect(versions.get_by_role("status")).to_contain_text("Serves")
        record = deployment(server, name).json()
        assert (record["target"], record["canary_target"], record["canary_weight"]) == (
            "1",
            "2",
            25,
        )
        versions.get_by_label("Canary version").fill("")
        versions.get_by_role("button", name="Save versions").click()
        expect(versions.get_by_role("status")).to_contain_text("Serves")
        assert deployment(server, name).json()["canary_target"] is None
    finally:
        http.delete(f"{server.url}/api/v1/deployments/{name}")


def test_undeploy_asks_first_and_removes_the_deployment(
    page: Page, server: RunningServer, developer: str, model_file: Path
) -> None:
    name = push(server, developer, model_file)
    created = http.post(f"{server.url}/api/v1/deployments", json={"model": name})
    assert created.status_code == 201, created.text
    admin = sign_in(page, server, at=f"#/deployments/{name}")
    undeploy = admin.get_by_role("button", name="Undeploy")
    admin.once("dialog", lambda dialog: dialog.dismiss())
    undeploy.click()
    expect(undeploy).to_be_enabled()
    assert deployment(server, name).status_code == 200  # dismissed: nothing happened
    admin.once("dialog", lambda dialog: dialog.accept())
    undeploy.click()
    expect(admin).to_have_url(f"{server.url}/ui/#/deployments")
    expect(admin.get_by_role("heading", name="Deployments")).to_be_visible()
    assert deployment(server, name).status_code == 404
    expect(admin.get_by_role("link", name=name, exact=True)).to_have_count(0)


def test_a_viewer_sees_state_and_charts_but_no_way_to_change_them(
    page: Page, server: RunningServer, deployed: str
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    viewer = server.key("viewer", TENANT)
    sign_in(page, server, viewer, at=f"#/deployments/{deployed}")
    expect(page.get_by_role("heading", name=deployed)).to_be_visible()
    expect(page.locator(".status-line [data-state]")).to_have_text("ready")
    # The charts read the stats endpoint, which a viewer may read.
    expect(page.locator('figure[data-chart="Requests per second"]')).to_have_attribute(
        "data-points", re.compile(r"^[1-9]\d*$")
    )
    expect(page.get_by_role("alert")).to_have_count(0)
    for button in ("Scale", "Save batching", "Save versions", "Undeploy"):
        expect(page.get_by_role("button", name=button)).to_have_count(0)
    page.get_by_role("link", name="Deployments", exact=True).first.click()
    expect(page.get_by_role("link", name=deployed, exact=True).first).to_be_visible()
    expect(page.get_by_role("form", name="Deploy a model")).to_have_count(0)
    expect(page.get_by_text("Deploy a model")).to_have_count(0)
    # Nothing is wider than the phone's screen but the tables, which scroll in their box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
