"""The console's admin pages in a real browser: a key created with its secret shown once,
working, then revoked and refused; tenants, limits and accounts; usage drawn per day and per
key; the audit log and its verification; an owner confined to its tenant; a viewer kept out;
and names holding markup shown as text."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
from playwright.sync_api import Page, expect
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.conftest import RunningServer

MARKUP = "<img src=x onerror=window.__xss=1>"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _open(page: Page, at: str) -> None:
    page.goto(page.url.split("#")[0] + at)


def _whoami(server: RunningServer, secret: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/whoami", headers=http.auth(secret))


def test_a_key_created_in_the_page_shows_its_secret_once_works_and_is_refused_once_revoked(
    page: Page, server: RunningServer
) -> None:
    name = _unique("ci-key")
    admin = sign_in(page, server, at="#/admin/keys")
    admin.get_by_label("Key name").fill(name)
    admin.get_by_label("Role").select_option("developer")
    admin.get_by_label("Tenant", exact=True).select_option("default")
    admin.get_by_role("button", name="Create key").click()
    box = admin.get_by_role("region", name="New API key")
    expect(box).to_contain_text("will not be shown again")
    secret = box.locator("[data-secret]").inner_text().strip()
    assert re.fullmatch(r"mb_\S+", secret), secret
    box.get_by_role("button", name="Copy key").click()
    expect(box).to_contain_text(re.compile(r"Copied\.|Selected"))

    who = _whoami(server, secret)
    assert who.status_code == 200, who.text
    assert who.json()["key_name"] == name
    assert who.json()["role"] == "developer"
    key_id = who.json()["key_id"]

    # Shown once: the list (and a reload) never shows it again.
    row = admin.locator("main tbody tr").filter(has_text=key_id)
    expect(row).to_contain_text(name)
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "active")
    admin.reload()
    expect(admin.locator("main tbody tr").filter(has_text=key_id)).to_be_visible()
    assert secret not in admin.content()

    admin.once("dialog", lambda dialog: dialog.accept())
    row = admin.locator("main tbody tr").filter(has_text=key_id)
    row.get_by_role("button", name=re.compile("^Revoke key")).click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    assert _whoami(server, secret).status_code == 401


def test_the_audit_page_lists_events_and_shows_the_chain_verified(
    page: Page, server: RunningServer
) -> None:
    server.key("viewer")  # at least one change is on record: a key was created
    admin = sign_in(page, server, at="#/admin/audit")
    verify = admin.locator("[data-verify]")
    expect(verify).to_have_attribute("data-verify", "ok")
    expect(verify).to_contain_text("Audit chain intact")
    checked = http.get(f"{server.url}/api/v1/audit/verify").json()
    assert checked["ok"] is True
    rows = admin.locator("main tbody tr")
    expect(rows.filter(has_text="access.create_key").first).to_be_visible()
    # The page's filter narrows the rows shown to those matching.
    admin.get_by_label("Filter this page").fill("access.create_key")
    expect(rows.filter(has_not_text="access.create_key")).to_have_count(0)
    admin.get_by_label("Events per page").select_option("50")
    expect(admin).to_have_url(re.compile(r"#/admin/audit\?limit=50$"))
    expect(rows.first).to_be_visible()


def test_the_usage_page_draws_requests_per_day_and_counts_them_per_key(
    page: Page, server: RunningServer
) -> None:
    tenant = _unique("usage")
    secret = server.key("consumer", tenant)
    for _ in range(3):
        assert _whoami(server, secret).status_code == 200
    key_id = _whoami(server, secret).json()["key_id"]
    admin = sign_in(page, server, at=f"#/admin/usage?tenant={tenant}")
    # A point per day of the last 30 (today's included), and today's count in the table.
    for chart in ("Requests per day", "Tokens per day", "Seconds per day"):
        expect(admin.locator(f'figure[data-chart="{chart}"]')).to_have_attribute(
            "data-points", "30"
        )
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    day = admin.locator("main tbody tr").filter(has_text=today)
    expect(day).to_have_count(1)
    assert int(day.locator("td").nth(1).inner_text().replace(",", "")) >= 4
    row = admin.locator("main tbody tr").filter(has_text=key_id)
    expect(row).to_contain_text("consumer-test")
    requests = int(row.locator("td").nth(3).inner_text().replace(",", ""))
    assert requests >= 4, requests
    # Every tenant: the per-tenant table has this tenant among others.
    admin.get_by_label("Tenant", exact=True).select_option("")
    admin.get_by_role("button", name="Show").click()
    expect(admin.locator("main tbody tr").filter(has_text=tenant).first).to_be_visible()
    expect(admin.locator("main tbody tr").filter(has_text="default").first).to_be_visible()


def test_an_admin_creates_a_tenant_edits_its_limits_and_manages_its_accounts(
    page: Page, server: RunningServer
) -> None:
    tenant = _unique("tenant")
    account = f"{_unique('alice')}@example.com"
    admin = sign_in(page, server, at="#/admin/tenants")
    admin.get_by_label("Tenant name").fill(tenant)
    admin.get_by_text("Limits (empty: unlimited)").click()
    admin.get_by_label("Training jobs at once").fill("3")
    admin.get_by_role("button", name="Create tenant").click()
    expect(admin.get_by_role("status").first).to_contain_text(f"Created tenant {tenant}")
    assert http.get(f"{server.url}/api/v1/tenants/{tenant}").json()["max_jobs"] == 3

    admin.get_by_role("link", name=tenant, exact=True).click()
    expect(admin.get_by_role("heading", name=f"Tenant {tenant}")).to_be_visible()
    expect(admin.get_by_label("Training jobs at once")).to_have_value("3")
    admin.get_by_label("Requests per day").fill("1000")
    admin.get_by_label("Training jobs at once").fill("")
    admin.get_by_role("button", name="Save limits").click()
    expect(admin.get_by_role("status").first).to_contain_text(f"Saved the limits of {tenant}")
    record = http.get(f"{server.url}/api/v1/tenants/{tenant}").json()
    assert record["daily_quota"] == 1000, record
    assert record["max_jobs"] is None, record

    admin.get_by_label("Account name").fill(account)
    admin.get_by_label("Kind").select_option("service")
    admin.get_by_role("button", name="Create account").click()
    row = admin.locator("main tbody tr").filter(has_text=account)
    expect(row).to_contain_text("service")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "active")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"Delete account {account}").click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "disabled")
    listed = http.get(f"{server.url}/api/v1/tenants/{tenant}/accounts").json()["accounts"]
    assert [a["status"] for a in listed if a["name"] == account] == ["disabled"]


def test_an_owner_sees_and_manages_only_its_own_tenant(page: Page, server: RunningServer) -> None:
    tenant = _unique("owned")
    other = server.key("developer", "default")
    other_id = _whoami(server, other).json()["key_id"]
    sign_in(page, server, server.key("owner", tenant), at="#/admin")
    main = page.locator("main")
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_visible()
    tabs = page.get_by_role("navigation", name="Admin sections")
    expect(tabs.get_by_role("link")).to_have_text(["API keys", "Tenant and accounts", "Usage"])
    expect(main.get_by_role("heading", name=f"Keys of {tenant}")).to_be_visible()
    expect(main.locator("tbody tr")).to_have_count(1)  # its own key only
    expect(main).not_to_contain_text(other_id)
    expect(page.get_by_label("Role").locator("option")).to_have_text(
        ["viewer", "consumer", "developer", "owner"]
    )
    # It makes a key in its tenant, which works there.
    page.get_by_label("Key name").fill("from-the-owner")
    page.get_by_role("button", name="Create key").click()
    secret = main.locator("[data-secret]").inner_text().strip()
    assert _whoami(server, secret).json()["tenant"] == tenant
    expect(main.locator("tbody tr")).to_have_count(2)

    tabs.get_by_role("link", name="Tenant and accounts").click()
    expect(main.get_by_role("heading", name=f"Tenant {tenant}")).to_be_visible()
    expect(page.get_by_role("button", name="Save limits")).to_have_count(0)
    expect(page.get_by_role("button", name="Create account")).to_be_visible()

    _open(page, "#/admin/audit")
    expect(main.get_by_role("alert")).to_contain_text("needs the admin scope")
    _open(page, "#/admin/tenants")
    expect(main.get_by_role("alert")).to_contain_text("needs the admin scope")
    _open(page, "#/admin/usage")
    expect(page.locator('figure[data-chart="Requests per day"]')).to_be_visible()
    expect(main).not_to_contain_text(other_id)


def test_a_viewer_cannot_open_admin(page: Page, server: RunningServer) -> None:
    sign_in(page, server, server.key("viewer"), at="#/admin")
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    main = page.locator("main")
    expect(main.get_by_role("alert")).to_contain_text("needs the manage scope")
    expect(main.locator("button, form, input")).to_have_count(0)
    for at in ("#/admin/keys", "#/admin/usage", "#/admin/tenants/default"):
        _open(page, at)
        expect(main.get_by_role("alert")).to_contain_text("needs the manage scope")
        expect(main.locator("button, form, input")).to_have_count(0)


def test_names_holding_markup_show_as_text(page: Page, server: RunningServer) -> None:
    admin = sign_in(page, server, at="#/admin/keys")
    admin.get_by_label("Key name").fill(MARKUP)
    admin.get_by_role("button", name="Create key").click()
    box = admin.get_by_role("region", name="New API key")
    expect(box).to_contain_text(f'Key "{MARKUP}" created')
    expect(admin.locator("main tbody tr").filter(has_text=MARKUP).first).to_be_visible()
    # Names the server refuses come back in its message: shown as text too.
    _open(admin, "#/admin/tenants")
    admin.get_by_label("Tenant name").fill(MARKUP)
    admin.get_by_role("button", name="Create tenant").click()
    expect(admin.get_by_role("alert")).to_contain_text(MARKUP)
    _open(admin, "#/admin/tenants/default")
    admin.get_by_label("Account name").fill(MARKUP)
    admin.get_by_role("button", name="Create account").click()
    expect(admin.get_by_role("alert")).to_contain_text(MARKUP)
    _open(admin, "#/admin/keys")
    expect(admin.locator("main tbody tr").filter(has_text=MARKUP).first).to_be_visible()
    expect(admin.locator("main img")).to_have_count(0)
    assert admin.evaluate("window.__xss") is None
