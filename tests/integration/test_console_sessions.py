"""The web console's sign-in: an API key exchanged for an HttpOnly, SameSite=Strict session
cookie that acts as the key, with a CSRF token on every change, ended by sign-out,
revocation or expiry on every frontend."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY

from modelbay.api.console import STATIC

COOKIE = "modelbay_session"


@contextmanager
def signed_in(server: RunningServer, key: str = ADMIN_KEY) -> Iterator[tuple[httpx.Client, str]]:
    """A client holding a console session of ``key``, and the session's CSRF token."""
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/ui/sign-in", json={"api_key": key})
        assert answer.status_code == 200, answer.text
        yield client, answer.json()["csrf_token"]


def test_signing_in_sets_an_httponly_samesite_strict_cookie_and_answers_who_and_a_csrf_token(
    server: RunningServer,
) -> None:
    key = server.key("developer", "t-console")
    answer = httpx.post(f"{server.url}/ui/sign-in", json={"api_key": key})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tenant"] == "t-console"
    assert body["role"] == "developer"
    assert set(body["scopes"]) == {"read", "infer", "write"}
    assert len(body["csrf_token"]) >= 32
    assert key not in answer.text  # the key is never sent back
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attributes
    assert re.search(r"samesite=strict", cookie, re.I)
    assert re.match(rf"{COOKIE}=[A-Za-z0-9_-]{{40,}};", cookie)
    assert key not in cookie


def test_a_wrong_key_is_refused_without_a_cookie_and_the_refusal_is_audited(
    server: RunningServer,
) -> None:
    forged = "mb_00000000c0de_" + "x" * 43
    answer = httpx.post(f"{server.url}/ui/sign-in", json={"api_key": forged})
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid API key"}
    assert "set-cookie" not in answer.headers
    events = http.get(f"{server.url}/api/v1/audit", params={"limit": 50}).json()["events"]
    assert any(
        e["action"] == "auth.denied" and e["details"].get("claimed_key_id") == "mb_00000000c0de"
        for e in events
    )
    assert httpx.post(f"{server.url}/ui/sign-in", json={}).status_code == 422


def test_a_session_acts_as_its_key_and_a_change_needs_the_csrf_token(
    server: RunningServer,
) -> None:
    with signed_in(server) as (client, csrf):
        assert client.get("/api/v1/whoami").json()["key_id"] == ADMIN_KEY[:15]
        assert client.get("/ui/session").json()["csrf_token"] == csrf
        tenant = {"name": "t-csrf"}
        refused = client.post("/api/v1/tenants", json=tenant)
        assert refused.status_code == 403
        assert "X-CSRF-Token" in refused.json()["error"]
        wrong = client.post("/api/v1/tenants", json=tenant, headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        made = client.post("/api/v1/tenants", json=tenant, headers={"X-CSRF-Token": csrf})
        assert made.status_code in (201, 409), made.text
    events = http.get(f"{server.url}/api/v1/audit", params={"limit": 100}).json()["events"]
    assert any(e["action"] == "console.sign_in" for e in events)


def test_a_viewers_session_is_refused_a_change_even_with_its_csrf_token(
    server: RunningServer,
) -> None:
    with signed_in(server, server.key("viewer", "t-console")) as (client, csrf):
        assert client.get("/api/v1/models").status_code == 200
        refused = client.post(
            "/api/v1/deployments", json={"model": "anything"}, headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code in (403, 404), refused.text
        refused = client.post(
            "/api/v1/keys",
            json={"name": "x", "role": "viewer", "tenant": "t-console"},
            headers={"X-CSRF-Token": csrf},
        )
        assert refused.status_code == 403


def test_signing_out_ends_the_session_on_every_frontend(server: RunningServer) -> None:
    with signed_in(server) as (client, csrf):
        cookie = client.cookies[COOKIE]
        assert client.delete("/ui/session").status_code == 403  # sign-out needs the token too
        out = client.delete("/ui/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert "Max-Age=0" in out.headers["set-cookie"]
    # New connections land on either frontend process: none takes the cookie any more.
    for _ in range(8):
        with httpx.Client(base_url=server.url, cookies={COOKIE: cookie}) as again:
            answer = again.get("/api/v1/whoami")
            assert answer.status_code == 401, answer.text
            assert "sign in again" in answer.json()["error"]


def test_revoking_the_key_ends_its_sessions(server: RunningServer) -> None:
    key = server.key("developer", "t-console")
    with signed_in(server, key) as (client, _):
        assert client.get("/api/v1/whoami").status_code == 200
        key_id = key[:15]
        assert http.delete(f"{server.url}/api/v1/keys/{key_id}").status_code == 200
        answer = client.get("/api/v1/whoami")
        assert answer.status_code == 401
        assert "revoked" in answer.json()["error"]


def test_a_sign_in_posted_by_another_sites_page_is_refused(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/ui/sign-in",
        json={"api_key": ADMIN_KEY},
        headers={"Origin": "https://attacker.example"},
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    same = httpx.post(
        f"{server.url}/ui/sign-in", json={"api_key": ADMIN_KEY}, headers={"Origin": server.url}
    )
    assert same.status_code == 200


def test_a_session_expires(tmp_path: Path) -> None:
    running = RunningServer(
        tmp_path / "data", tmp_path / "server.log", env={"MODELBAY_CONSOLE_SESSION_TTL_S": "1"}
    )
    running.start()
    try:
        with signed_in(running) as (client, _):
            assert client.get("/api/v1/whoami").status_code == 200
            deadline = time.monotonic() + 30
            while client.get("/api/v1/whoami").status_code == 200:
                assert time.monotonic() < deadline, "the session outlived its lifetime"
                time.sleep(0.5)
            assert client.get("/api/v1/whoami").status_code == 401
    finally:
        running.stop()


def test_the_console_is_served_from_the_package_under_a_strict_csp(
    server: RunningServer,
) -> None:
    page = httpx.get(f"{server.url}/ui/")  # no key: the page itself is public
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{server.url}/ui").text == page.text
    assert "//" not in re.sub(r"<!doctype html>", "", page.text, flags=re.I)  # no other origin
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts
    assert all(body.strip() == "" for _, body in scripts)
    assert "style=" not in page.text
    assert "<style" not in page.text
    csp = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    for ref in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        asset = httpx.get(f"{server.url}{ref}")
        assert asset.status_code == 200, ref
        assert "content-security-policy" in asset.headers
    assert httpx.get(f"{server.url}/ui/static/nope.js").status_code == 404
    assert httpx.get(f"{server.url}/ui/session").status_code == 401
    assert httpx.get(f"{server.url}/ui/../api/v1/models").status_code == 401


def test_the_server_prints_the_consoles_address_when_it_is_up(server: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while f"web console {server.url}/ui/" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.2)


def test_the_consoles_scripts_use_no_html_sinks_and_weigh_under_300_kb() -> None:
    """Every text a user typed reaches the page as text: no script assigns HTML. And no page
    loads more than 300 KB of script (the console's own and uPlot's, all of them at most)."""
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    own = sorted((STATIC / "js").rglob("*.js"))
    assert own
    for script in own:
        found = sinks.search(script.read_text())
        assert found is None, f"{script.name} uses {found.group(0) if found else ''}"
    total = sum(p.stat().st_size for p in own)
    vendor = STATIC / "vendor" / "uPlot.iife.min.js"
    if not vendor.exists():
        pytest.skip("uPlot not fetched (make install fetches it)")
    assert total + vendor.stat().st_size < 300_000, total
