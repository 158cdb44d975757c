"""The console's shell in a real browser: sign-in and sign-out, the key kept out of URLs and
storage, the CSP never broken, phone width, the keyboard, and what a viewer may do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.e2e.conftest import ARTIFACTS, TIMEOUT_MS, sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import build_sklearn

CHANGES = re.compile(
    r"\b(push|upload|deploy|undeploy|scale|canary|delete|remove|revoke|create|new|save|move|"
    r"share|public|private|cancel|start|train|edit)\b",
    re.I,
)
"""Words on a button that changes something; a viewer must see none."""


@pytest.fixture(scope="module")
def scene(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model, a deployment and a dataset of the default tenant, for the pages to show."""
    name = f"core-{uuid.uuid4().hex[:6]}"
    built = build_sklearn(tmp_path_factory.mktemp("core"))
    server.push(name, built.path)
    answer = http.post(f"{server.url}/api/v1/deployments", json={"model": name}, timeout=60)
    assert answer.status_code in (200, 201, 202), answer.text
    yield name
    http.delete(f"{server.url}/api/v1/deployments/{name}", timeout=60)


def test_signing_in_keeps_the_key_out_of_urls_storage_and_script(
    page: Page, server: RunningServer
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, server)
    expect(page.get_by_role("link", name="Models")).to_be_visible()
    expect(page.locator("#who")).to_contain_text("admin")
    assert ADMIN_KEY not in page.url
    assert not any(ADMIN_KEY in url for url in requests)
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    # The session cookie is HttpOnly: the page's own script cannot read it.
    assert "modelbay_session" not in page.evaluate("document.cookie")
    assert any(c["name"] == "modelbay_session" for c in page.context.cookies())


def test_a_wrong_key_shows_the_servers_refusal(page: Page, server: RunningServer) -> None:
    page.goto(f"{server.url}/ui/")
    page.get_by_label("API key").fill("mb_000000000000_" + "y" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_a_reload_keeps_the_session_and_signing_out_ends_it(
    page: Page, server: RunningServer
) -> None:
    sign_in(page, server)
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()
    status = page.evaluate("fetch('/api/v1/whoami').then(r => r.status)")
    assert status == 401


def test_signing_in_works_from_the_keyboard_alone(page: Page, server: RunningServer) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("main")).to_be_focused()  # a new page takes the focus to its content
    page.keyboard.press("Tab")
    inside = page.evaluate("document.activeElement.closest('main') !== null")
    assert inside, "Tab from the page's top does not reach its first control"
    page.keyboard.press("Shift+Tab")  # back out, into the header: Sign out
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()


def _nav_links(page: Page) -> list[str]:
    hrefs: list[str] = page.locator("#nav a").evaluate_all("links => links.map(a => a.hash)")
    assert hrefs, "no navigation"
    return hrefs


def _visit_every_page(page: Page, server: RunningServer, model: str) -> Iterator[str]:
    """Each page of the navigation, and a model's and a deployment's own page."""
    for href in [*_nav_links(page), f"#/models/{model}", f"#/deployments/{model}"]:
        page.goto(f"{server.url}/ui/{href}")
        expect(page.locator("main .loading")).to_have_count(0)
        page.wait_for_load_state("networkidle")
        yield href


def test_no_page_breaks_the_content_security_policy(
    page: Page, server: RunningServer, scene: str
) -> None:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if "Content Security Policy" in m.text or m.type == "error" and "401" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    sign_in(page, server)
    visited = list(_visit_every_page(page, server, scene))
    assert len(visited) >= 6
    assert problems == []


def test_every_page_fits_a_phone_screen(
    browser: Browser, server: RunningServer, scene: str
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, server)
        for href in _visit_every_page(page, server, scene):
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{href} is {overflow} px wider than the screen"
    finally:
        context.close()


def test_a_viewer_sees_no_button_that_changes_anything_and_a_forced_change_is_refused(
    page: Page, server: RunningServer, scene: str
) -> None:
    sign_in(page, server, server.key("viewer"))
    for href in _visit_every_page(page, server, scene):
        names = page.locator("main button, main input[type=submit]").evaluate_all(
            "els => els.filter(e => e.offsetParent !== null).map(e => e.textContent || e.value)"
        )
        changing = [n for n in names if CHANGES.search(n)]
        assert changing == [], f"{href} offers a viewer {changing}"
        assert page.locator("main input[type=file]").count() == 0, href
    expect(page.locator("#nav a", has_text="Admin")).to_have_count(0)
    # The page's own script, forced to make a change with the session's CSRF token: refused.
    status = page.evaluate(
        """async (model) => {
            const who = await (await fetch('/ui/session')).json();
            const answer = await fetch(`/api/v1/deployments/${model}`, {
                method: 'DELETE', headers: {'X-CSRF-Token': who.csrf_token}});
            return answer.status;
        }""",
        scene,
    )
    assert status == 403
    assert http.get(f"{server.url}/api/v1/deployments/{scene}").status_code == 200


FAILING = """
from tests.e2e.conftest import sign_in


def test_that_fails_on_purpose(page, server):
    sign_in(page, server)
    assert page.title() == "not the console"
"""


def test_a_failing_test_leaves_a_screenshot_and_the_pages_log(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "test_fails.py").write_text(FAILING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MODELBAY_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.e2e.conftest",
            "--rootdir",
            str(root),
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_fails.py"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    shot = ARTIFACTS / "test_that_fails_on_purpose.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (ARTIFACTS / "test_that_fails_on_purpose.log").exists()
