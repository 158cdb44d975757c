"""The SDK's tenant, key, usage and model-access calls against a mock transport."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import pytest

from modelbay.client import ApiError, Client
from modelbay.security.tokens import key_id_for

SECRET = "mb_0123456789ab_" + "x" * 43


class Recorder:
    """Answers every request with ``answer`` (status, JSON) and keeps the requests."""

    def __init__(self, answer: dict[str, Any] | None = None, status: int = 200) -> None:
        self.answer = answer or {}
        self.status = status
        self.requests: list[httpx.Request] = []

    def client(self) -> Client:
        return Client("http://mb.test", "admin-key", transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.answer)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self) -> Any:
        return json.loads(self.last.content)


def test_create_key_sends_only_the_fields_given_and_returns_the_secret() -> None:
    server = Recorder({"key_id": "mb_0123456789ab", "secret": SECRET}, status=201)
    created = server.client().create_key(
        "ci", "consumer", tenant="acme", scopes=["read"], expires_in="90d"
    )
    assert created["secret"] == SECRET
    assert (server.last.method, server.last.url.path) == ("POST", "/api/v1/keys")
    assert server.body() == {
        "name": "ci",
        "role": "consumer",
        "tenant": "acme",
        "scopes": ["read"],
        "expires_in": "90d",
    }


@pytest.mark.parametrize("given", ["mb_0123456789ab", SECRET])
def test_revoke_key_by_id_or_secret_puts_only_the_id_in_the_url(given: str) -> None:
    server = Recorder({"key_id": "mb_0123456789ab", "status": "revoked"})
    revoked = server.client().revoke_key(given)
    assert revoked["status"] == "revoked"
    assert server.last.method == "DELETE"
    assert str(server.last.url) == "http://mb.test/api/v1/keys/mb_0123456789ab"


def test_get_key_accepts_a_secret_too() -> None:
    server = Recorder({"key_id": "mb_0123456789ab"})
    server.client().get_key(SECRET)
    assert server.last.url.path == "/api/v1/keys/mb_0123456789ab"


def test_update_tenant_sends_null_to_remove_a_limit_and_leaves_others_out() -> None:
    server = Recorder({"name": "acme", "rate_limit_rps": None, "daily_quota": 100})
    server.client().update_tenant("acme", rate_limit_rps=None)
    assert (server.last.method, server.last.url.path) == ("PATCH", "/api/v1/tenants/acme")
    assert server.body() == {"rate_limit_rps": None}


def test_create_tenant_leaves_unlimited_limits_out() -> None:
    server = Recorder({"name": "acme"}, status=201)
    server.client().create_tenant("acme", daily_quota=1000)
    assert server.body() == {"name": "acme", "daily_quota": 1000}


def test_token_limits_are_sent_when_given() -> None:
    server = Recorder({"name": "acme"}, status=201)
    server.client().create_tenant("acme", tokens_per_minute=1000, tokens_per_day=10**6)
    assert server.body() == {"name": "acme", "tokens_per_minute": 1000, "tokens_per_day": 10**6}
    server.client().create_key("chat", "consumer", tokens_per_day=500)
    assert server.body() == {"name": "chat", "role": "consumer", "tokens_per_day": 500}
    server.client().update_tenant("acme", tokens_per_minute=None)
    assert server.body() == {"tokens_per_minute": None}


def test_usage_sends_days_as_iso_dates_and_only_the_filters_given() -> None:
    row = {"day": "2025-01-02", "tenant": "acme", "key_id": "k", "requests": 3}
    server = Recorder({"usage": [row]})
    rows = server.client().usage(tenant="acme", since=date(2025, 1, 2), until="2025-01-31")
    assert rows == [row]
    assert dict(server.last.url.params) == {
        "tenant": "acme",
        "since": "2025-01-02",
        "until": "2025-01-31",
    }


def test_list_calls_unwrap_their_collections() -> None:
    server = Recorder({"keys": [{"key_id": "a"}], "tenants": [{"name": "t"}]})
    client = server.client()
    assert client.list_keys("acme") == [{"key_id": "a"}]
    assert dict(server.last.url.params) == {"tenant": "acme"}
    assert client.list_tenants() == [{"name": "t"}]


def test_set_model_access_puts_visibility_and_the_full_share_list() -> None:
    server = Recorder({"name": "m", "visibility": "private", "shared_with": ["b", "c"]})
    server.client().set_model_access("m", "private", ("b", "c"))
    assert (server.last.method, server.last.url.path) == ("PUT", "/api/v1/models/m/access")
    assert server.body() == {"visibility": "private", "shared_with": ["b", "c"]}


def test_refusal_raises_api_error_with_the_servers_message() -> None:
    server = Recorder({"error": "key 'mb_x' (role owner) cannot create admin keys"}, status=403)
    with pytest.raises(ApiError) as info:
        server.client().create_key("boss", "admin")
    assert info.value.status == 403
    assert "cannot create admin keys" in info.value.message


def test_a_secret_of_another_form_is_revoked_by_its_derived_id_never_sent() -> None:
    server = Recorder({"status": "revoked"})
    server.client().revoke_key("an-operator-chosen-admin-key")
    path = server.last.url.path
    assert path == f"/api/v1/keys/{key_id_for('an-operator-chosen-admin-key')}"
    assert "operator" not in str(server.last.url)


def test_account_calls_address_the_tenants_accounts() -> None:
    server = Recorder({"name": "ana", "kind": "user"}, status=201)
    client = server.client()
    client.create_account("acme", "ana", "user")
    assert (server.last.method, server.last.url.path) == ("POST", "/api/v1/tenants/acme/accounts")
    assert server.body() == {"name": "ana", "kind": "user"}
    client.disable_account("acme", "ana@x.org")
    assert (server.last.method, server.last.url.path) == (
        "DELETE",
        "/api/v1/tenants/acme/accounts/ana@x.org",
    )
