"""A bad limit never locks anyone out: the API refuses numbers out of range naming the
field, the limiter survives whatever is stored, an admin can always undo a limit, and
``modelbay admin reset-limits`` removes one offline."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer

from modelbay.security.tokens import key_id_for

# Found by schemathesis: accepted as a positive float, it made every later request of the
# tenant, the admin's PATCH that would undo it included, answer 500.
SUBNORMAL_RATE = 5e-324
# Found by schemathesis: 500 "Python int too large to convert to SQLite INTEGER".
HUGE_QUOTA = 33124251979222312462319616
MAX_QUOTA = 2**63 - 1


def _tenant_url(server: RunningServer, name: str = "default") -> str:
    return f"{server.url}/api/v1/tenants/{name}"


def _refused_naming(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]


@pytest.mark.parametrize("rate", [SUBNORMAL_RATE, 0.0, -1.0, 0.009, 1e6 + 1, True, "5"])
def test_a_rate_limit_out_of_range_is_refused_naming_the_field(
    server: RunningServer, rate: object
) -> None:
    _refused_naming(
        http.patch(_tenant_url(server), json={"rate_limit_rps": rate}), "rate_limit_rps"
    )
    _refused_naming(
        http.post(f"{server.url}/api/v1/tenants", json={"name": "t-bad", "rate_limit_rps": rate}),
        "rate_limit_rps",
    )
    assert http.get(_tenant_url(server)).json()["rate_limit_rps"] is None


def test_nan_and_infinity_are_no_rate_limit(server: RunningServer) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = http.patch(
            _tenant_url(server),
            content=f'{{"rate_limit_rps": {literal}}}',
            headers={"Content-Type": "application/json"},
        )
        _refused_naming(response, "rate_limit_rps")


def test_a_daily_quota_beyond_64_bits_is_refused_and_the_largest_is_kept(
    server: RunningServer,
) -> None:
    server.tenant("quota-range")
    keys = f"{server.url}/api/v1/keys"
    body = {"name": "q", "role": "viewer", "tenant": "quota-range"}
    _refused_naming(http.post(keys, json={**body, "daily_quota": HUGE_QUOTA}), "daily_quota")
    _refused_naming(http.post(keys, json={**body, "daily_quota": 0}), "daily_quota")
    created = http.post(keys, json={**body, "daily_quota": MAX_QUOTA})
    assert created.status_code == 201, created.text
    stored = http.get(f"{keys}/{created.json()['key_id']}").json()
    assert stored["daily_quota"] == MAX_QUOTA
    patched = http.patch(_tenant_url(server, "quota-range"), json={"daily_quota": MAX_QUOTA})
    assert patched.json()["daily_quota"] == MAX_QUOTA


@pytest.mark.parametrize("field", ["tokens_per_minute", "tokens_per_day"])
def test_token_limits_out_of_range_are_refused_and_null_removes_them(
    server: RunningServer, field: str
) -> None:
    server.tenant("token-range")
    tenant, keys = _tenant_url(server, "token-range"), f"{server.url}/api/v1/keys"
    body = {"name": "t", "role": "viewer", "tenant": "token-range"}
    for bad in (0, -1, HUGE_QUOTA, MAX_QUOTA + 1, 1.5, True, "5"):
        _refused_naming(http.patch(tenant, json={field: bad}), field)
        _refused_naming(http.post(keys, json={**body, field: bad}), field)
    created = http.post(keys, json={**body, field: MAX_QUOTA})
    assert created.status_code == 201, created.text
    assert http.get(f"{keys}/{created.json()['key_id']}").json()[field] == MAX_QUOTA
    assert http.patch(tenant, json={field: MAX_QUOTA}).json()[field] == MAX_QUOTA
    assert http.patch(tenant, json={field: None}).json()[field] is None


def _store_tenant_limits(server: RunningServer, rate: float | None, quota: int | None) -> None:
    """Write limits as an older release (or a hand edit) could have left them."""
    with sqlite3.connect(server.data_dir / "registry.db") as db:
        db.execute(
            "UPDATE tenants SET rate_limit_rps = ?, daily_quota = ? WHERE name = 'default'",
            (rate, quota),
        )


def test_a_stored_subnormal_rate_answers_429_with_a_finite_retry_after(
    fresh_server: RunningServer,
) -> None:
    fresh_server.stop()
    _store_tenant_limits(fresh_server, SUBNORMAL_RATE, None)
    fresh_server.start()
    models = f"{fresh_server.url}/api/v1/models"
    answers = [http.get(models) for _ in range(3)]
    refused = [r for r in answers if r.status_code != 200]
    assert refused, [r.status_code for r in answers]
    for response in refused:
        assert response.status_code == 429, response.text
        assert 1 <= int(response.headers["Retry-After"]) <= 100  # the slowest accepted rate
        assert 0 <= int(response.headers["X-RateLimit-Reset"]) <= 100
    undo = http.patch(_tenant_url(fresh_server), json={"rate_limit_rps": None})
    assert undo.status_code == 200, undo.text
    assert http.get(models).status_code == 200


def test_an_admin_is_never_refused_on_tenant_and_key_routes(
    fresh_server: RunningServer,
) -> None:
    tenant = _tenant_url(fresh_server)
    assert http.patch(tenant, json={"daily_quota": 1, "rate_limit_rps": 0.01}).status_code == 200
    assert http.get(f"{fresh_server.url}/api/v1/models").status_code == 429
    for _ in range(3):  # over both limits, and still answered
        assert http.get(f"{fresh_server.url}/api/v1/keys").status_code == 200
        assert http.get(tenant).status_code == 200
    key = http.post(f"{fresh_server.url}/api/v1/keys", json={"name": "new", "role": "viewer"})
    assert key.status_code == 201, key.text
    undo = http.patch(tenant, json={"daily_quota": None, "rate_limit_rps": None})
    assert undo.status_code == 200, undo.text
    assert http.get(f"{fresh_server.url}/api/v1/models").status_code == 200


@pytest.fixture
def locked_out(fresh_server: RunningServer) -> tuple[RunningServer, str]:
    """A stopped server whose default tenant and a key (its id given) have quotas of 1."""
    key = fresh_server.key("viewer", "default", daily_quota=1, tokens_per_day=1)
    tenant_limits = {"daily_quota": 1, "tokens_per_minute": 1, "tokens_per_day": 1}
    http.patch(_tenant_url(fresh_server), json=tenant_limits).raise_for_status()
    fresh_server.stop()
    return fresh_server, key_id_for(key)


def test_reset_limits_offline_removes_a_tenants_and_a_keys_limits(
    locked_out: tuple[RunningServer, str],
) -> None:
    server, key_id = locked_out
    data_dir = str(server.data_dir)
    out = ok(
        modelbay(
            "http://unused",
            "admin",
            "reset-limits",
            "--tenant",
            "default",
            "--key",
            key_id,
            "--data-dir",
            data_dir,
        )
    )
    assert (
        "tenant 'default': limits removed "
        "(were rate limit none/s, daily quota 1, tokens 1/min, 1/day)"
    ) in out
    assert f"key '{key_id}': limits removed" in out
    server.start()
    limits = ("rate_limit_rps", "daily_quota", "tokens_per_minute", "tokens_per_day")
    tenant = http.get(_tenant_url(server)).json()
    key = http.get(f"{server.url}/api/v1/keys/{key_id}").json()
    assert [tenant[field] for field in limits] == [key[field] for field in limits] == [None] * 4
    assert http.get(f"{server.url}/api/v1/models").status_code == 200
    events = http.get(f"{server.url}/api/v1/audit").json()["events"]
    resets = [e for e in events if e["action"] == "access.reset_limits"]
    assert {tuple(e["target"].items())[0] for e in resets} == {
        ("tenant", "default"),
        ("key", key_id),
    }
    assert http.get(f"{server.url}/api/v1/audit/verify").json()["ok"]


def test_reset_limits_names_an_unknown_tenant(locked_out: tuple[RunningServer, str]) -> None:
    server, _ = locked_out
    result = modelbay(
        "http://unused",
        "admin",
        "reset-limits",
        "--tenant",
        "nope",
        "--data-dir",
        str(server.data_dir),
    )
    assert result.returncode == 1
    assert "tenant 'nope' not found" in result.stderr


def test_postgresql_refuses_strings_its_columns_cannot_hold_with_422(
    postgres_server: RunningServer,
) -> None:
    server = postgres_server
    keys = f"{server.url}/api/v1/keys"
    created = http.post(keys, json={"name": "max", "role": "viewer", "daily_quota": MAX_QUOTA})
    assert created.status_code == 201, created.text
    assert created.json()["daily_quota"] == MAX_QUOTA
    for field, value in (("name", "nul\x00name"), ("name", "n" * 129), ("account", "a\x00")):
        body = {"name": "ok", "role": "viewer", field: value}
        _refused_naming(http.post(keys, json=body), field)
    model = {"name": "pg-nul", "description": "with \x00 inside"}
    _refused_naming(http.post(f"{server.url}/api/v1/models", json=model), "description")
    _refused_naming(http.post(f"{server.url}/api/v1/models", json={"name": "a\x00b"}), "name")
    assert http.get(f"{server.url}/api/v1/models/a%00b").status_code == 404
    assert http.get(f"{server.url}/api/v1/tenants/a%00b").status_code == 404
    audit = http.get(f"{server.url}/api/v1/audit", params={"before": 2**63 - 1})
    assert audit.status_code == 200, audit.text
