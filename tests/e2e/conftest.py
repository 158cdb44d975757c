"""The console in a real browser: Debian's Chromium driven by Playwright, against the real
server (``modelbay serve`` on a free 127.0.0.1 port).

``playwright install`` downloads browsers from a host CI cannot reach, so the browser is the
system's Chromium (``apt-get install chromium``; ``.ci/run`` installs it), launched by path.
Without it the tests skip, except in CI, where they fail. A failing test leaves a screenshot
and the page's console messages in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from tests.integration.conftest import (  # the SDK and CLI in tests send the admin key
    RunningServer,
    _admin_key_for_clients,  # noqa: F401
)
from tests.integration.http import ADMIN_KEY

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
TIMEOUT_MS = 20_000
"""How long an expectation waits for the page (a shared, busy machine is slow, never wrong)."""

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Chromium's own calls home are refused on an offline machine: do not make them.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the session's browser tests (with its job worker); tests use their own
    model, dataset and key names."""
    root = tmp_path_factory.mktemp("console")
    running = RunningServer(root / "data", root / "server.log", env={"MODELBAY_JOB_POLL_S": "0.2"})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module. Not for the session: sync Playwright keeps an event
    loop running on the main thread while it is open, and later tests' ``asyncio.run()``
    would fail."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium not found; .ci/run installs Debian's chromium")
        pytest.skip("Chromium not found (apt-get install chromium, or set CHROMIUM=path)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(
    context: BrowserContext, request: pytest.FixtureRequest, server: RunningServer
) -> Iterator[Page]:
    """A fresh page (its own cookies); on failure its screenshot and console log are saved."""
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    expect.set_options(timeout=TIMEOUT_MS)
    yield page
    if request.node.stash.get(_FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = ARTIFACTS / request.node.name.replace("/", "_")
        try:
            page.screenshot(path=f"{stem}.png", full_page=True)
        except Exception as exc:  # a crashed page still gets its log saved
            messages.append(f"screenshot failed: {exc}")
        stem.with_suffix(".log").write_text("\n".join(messages))


def sign_in(page: Page, server: RunningServer, key: str = ADMIN_KEY, at: str = "") -> Page:
    """Open the console (at ``#/...`` when given) and sign in with ``key`` as a user does."""
    page.goto(f"{server.url}/ui/{at}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


@pytest.fixture
def admin(page: Page, server: RunningServer) -> Page:
    """A page signed in with the server's admin key."""
    return sign_in(page, server)
