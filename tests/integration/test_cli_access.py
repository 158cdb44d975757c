"""``modelbay tenants|keys|usage|whoami`` and ``models access`` as the real console script.

Tenants and keys are made with the CLI under the session's admin key (``MODELBAY_API_KEY``),
then used with ``--api-key``. The server is shared, so each test names its own tenants.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.integration import cli, http
from tests.integration.cli import ok
from tests.integration.conftest import RunningServer
from tests.integration.models import build_sklearn

SECRET = re.compile(r"^mb_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}$", re.MULTILINE)


def modelbay(
    server: RunningServer, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script against ``server``, as the admin unless ``--api-key`` gives ``key``."""
    return cli.modelbay(server.url, *(["--api-key", key] if key else []), *args)


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The ``error:`` line of a command that ended cleanly with exit 1."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def line_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_tenants_are_created_listed_and_their_limits_changed(server: RunningServer) -> None:
    name = unique("cli-tenant")
    created = ok(modelbay(server, "tenants", "create", name, "--rate-limit", "5"))
    assert f"created tenant {name}" in created

    ok(modelbay(server, "tenants", "update", name, "--daily-quota", "1000"))
    row = line_of(ok(modelbay(server, "tenants", "list")), name)
    assert "5/s" in row
    assert "1000/day" in row

    ok(modelbay(server, "tenants", "update", name, "--no-rate-limit"))
    shown = as_json(modelbay(server, "tenants", "show", name, "--json"))
    assert (shown["rate_limit_rps"], shown["daily_quota"]) == (None, 1000)


def test_tenant_token_limits_are_set_listed_and_removed(server: RunningServer) -> None:
    name = unique("cli-tokens")
    create = ["tenants", "create", name, "--tokens-per-minute", "50000"]
    ok(modelbay(server, *create, "--tokens-per-day", "2000000"))
    row = line_of(ok(modelbay(server, "tenants", "list")), name)
    assert "50000 tokens/min" in row
    assert "2000000 tokens/day" in row

    ok(modelbay(server, "tenants", "update", name, "--no-tokens-per-minute"))
    ok(modelbay(server, "tenants", "update", name, "--tokens-per-day", "7"))
    shown = as_json(modelbay(server, "tenants", "show", name, "--json"))
    assert (shown["tokens_per_minute"], shown["tokens_per_day"]) == (None, 7)
    ok(modelbay(server, "tenants", "update", name, "--no-tokens-per-day"))
    assert as_json(modelbay(server, "tenants", "show", name, "--json"))["tokens_per_day"] is None
    both = modelbay(
        server, "tenants", "update", name, "--tokens-per-day", "1", "--no-tokens-per-day"
    )
    assert both.returncode == 2
    assert "not both" in both.stderr


def test_tenant_mistakes_end_with_a_clean_error(server: RunningServer) -> None:
    name = unique("cli-dup")
    ok(modelbay(server, "tenants", "create", name))
    assert f"tenant '{name}' already exists" in refused(modelbay(server, "tenants", "create", name))
    assert "invalid tenant name" in refused(modelbay(server, "tenants", "create", "Not Valid"))
    nothing = modelbay(server, "tenants", "update", name)
    assert nothing.returncode == 2
    assert "--no-rate-limit" in nothing.stderr


def test_created_key_prints_its_secret_once_and_it_authenticates(server: RunningServer) -> None:
    tenant = unique("cli-keys")
    ok(modelbay(server, "tenants", "create", tenant))
    out = ok(
        modelbay(
            server, "keys", "create", "--tenant", tenant, "--role", "developer", "--name", "ci"
        )
    )
    secrets = SECRET.findall(out)
    assert len(secrets) == 1, out
    assert "cannot be recovered" in out
    secret = secrets[0]
    key_id = secret[: len("mb_") + 12]

    me = as_json(modelbay(server, "whoami", "--json", key=secret))
    assert (me["key_id"], me["tenant"], me["role"]) == (key_id, tenant, "developer")
    assert "write" in me["scopes"]
    assert tenant in ok(modelbay(server, "whoami", key=secret))

    listed = ok(modelbay(server, "keys", "list", "--tenant", tenant))
    row = line_of(listed, key_id)
    assert all(word in row for word in ("ci", tenant, "developer", "active", "never"))
    assert secret not in listed
    assert secret not in ok(modelbay(server, "keys", "list", "--json"))


def test_key_defaults_to_the_callers_tenant_with_the_limits_given(server: RunningServer) -> None:
    tenant = unique("cli-owner")
    owner = server.key("owner", tenant)
    created = as_json(
        modelbay(
            server,
            "keys",
            "create",
            "--role",
            "consumer",
            "--name",
            "app",
            "--scope",
            "infer",
            "--rate-limit",
            "2.5",
            "--daily-quota",
            "100",
            "--tokens-per-minute",
            "4000",
            "--tokens-per-day",
            "90000",
            "--expires",
            "12h",
            "--json",
            key=owner,
        )
    )
    assert created["tenant"] == tenant
    assert created["scopes"] == ["infer"]
    assert (created["rate_limit_rps"], created["daily_quota"]) == (2.5, 100)
    assert (created["tokens_per_minute"], created["tokens_per_day"]) == (4000, 90000)
    assert created["expires_at"] is not None
    row = line_of(ok(modelbay(server, "keys", "list", key=owner)), created["key_id"])
    assert "2.5/s" in row
    assert "100/day" in row
    assert "4000 tokens/min" in row
    assert "90000 tokens/day" in row
    shown = ok(modelbay(server, "keys", "show", created["key_id"], key=owner))
    assert "4000 tokens/min" in line_of(shown, "token rate")


@pytest.mark.parametrize("given", ["id", "secret"])
def test_revoked_key_is_refused_from_then_on(server: RunningServer, given: str) -> None:
    tenant = unique("cli-revoke")
    secret = server.key("viewer", tenant)
    key_id = secret[: len("mb_") + 12]
    assert http.get(f"{server.url}/api/v1/whoami", headers=http.auth(secret)).status_code == 200

    out = ok(modelbay(server, "keys", "revoke", key_id if given == "id" else secret))
    assert f"revoked key {key_id}" in out
    assert secret not in out

    response = http.get(f"{server.url}/api/v1/whoami", headers=http.auth(secret))
    assert response.status_code == 401
    assert "revoked" in refused(modelbay(server, "whoami", key=secret))
    row = line_of(ok(modelbay(server, "keys", "list", "--tenant", tenant)), key_id)
    assert "revoked" in row


def test_bad_expiry_is_a_clean_error_naming_the_valid_units(server: RunningServer) -> None:
    create = ["keys", "create", "--role", "viewer", "--name", "x", "--expires", "5 days"]
    error = refused(modelbay(server, *create))
    assert "invalid expires_in '5 days'" in error
    assert "s, m, h, d or w" in error


def test_owner_cannot_create_an_admin_key(server: RunningServer) -> None:
    owner = server.key("owner", unique("cli-escalate"))
    create = ["keys", "create", "--role", "admin", "--name", "boss"]
    error = refused(modelbay(server, *create, key=owner))
    assert "(role owner) cannot create" in error
    assert "admin keys" in error
    bad_role = modelbay(server, "keys", "create", "--role", "root", "--name", "x", key=owner)
    assert bad_role.returncode == 2


def test_usage_counts_a_keys_requests_with_a_totals_row(server: RunningServer) -> None:
    tenant = unique("cli-usage")
    secret = server.key("viewer", tenant)
    key_id = secret[: len("mb_") + 12]
    for _ in range(3):
        response = http.get(f"{server.url}/api/v1/whoami", headers=http.auth(secret))
        assert response.status_code == 200

    rows = as_json(modelbay(server, "usage", "--tenant", tenant, "--json"))
    assert [(r["tenant"], r["key_id"], r["requests"]) for r in rows] == [(tenant, key_id, 3)]
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (0, 0)
    day = rows[0]["day"]

    table = ok(modelbay(server, "usage", "--key", key_id, "--since", day, "--until", day))
    assert re.search(rf"{key_id}\s*│\s*3\b", table), table
    assert re.search(r"total\s*│.*│\s*3\s*│", table), table
    assert "prompt tokens" in table
    assert "completion tokens" in table
    before = ok(modelbay(server, "usage", "--key", key_id, "--until", "2000-01-01"))
    assert "no usage" in before


def test_model_made_public_or_shared_is_visible_to_another_tenant(
    server: RunningServer, tmp_path: Path
) -> None:
    home, other = unique("cli-home"), unique("cli-other")
    model = unique("cli-shared")
    owner, consumer = server.key("owner", home), server.key("consumer", other)
    built = build_sklearn(tmp_path)
    ok(modelbay(server, "models", "push", str(built.path), "--name", model, "--json", key=owner))
    assert "not found" in refused(modelbay(server, "models", "show", model, key=consumer))

    assert f"model {model}: public" in ok(
        modelbay(server, "models", "access", model, "--public", key=owner)
    )
    shown = ok(modelbay(server, "models", "show", model, key=consumer))
    assert re.search(r"access\s+public", shown), shown

    ok(modelbay(server, "models", "access", model, "--private", key=owner))
    assert "not found" in refused(modelbay(server, "models", "show", model, key=consumer))

    shared = ok(modelbay(server, "models", "access", model, "--share", other, key=owner))
    assert f"private, shared with {other}" in shared  # --share alone keeps the visibility
    record = as_json(modelbay(server, "models", "show", model, "--json", key=consumer))
    assert record["model"]["shared_with"] == [other]
    assert modelbay(server, "models", "access", model, key=owner).returncode == 2


def test_keys_act_for_an_account_and_disabling_it_revokes_them(server: RunningServer) -> None:
    tenant = unique("cli-accounts")
    owner = server.key("owner", tenant)
    as_owner = {"key": owner}
    assert "created user account ana@example.org" in ok(
        modelbay(server, "accounts", "create", "ana@example.org", **as_owner)
    )
    ok(modelbay(server, "accounts", "create", "nightly", "--kind", "service", **as_owner))
    secrets = [
        SECRET.findall(
            ok(
                modelbay(
                    server,
                    *("keys", "create", "--role", "consumer", "--name", f"laptop-{i}"),
                    *("--account", "ana@example.org"),
                    **as_owner,
                )
            )
        )[0]
        for i in range(2)
    ]
    me = as_json(modelbay(server, "whoami", "--json", key=secrets[0]))
    assert (me["account"], me["tenant"]) == ("ana@example.org", tenant)
    listed = ok(modelbay(server, "accounts", "list", **as_owner))
    assert all(w in line_of(listed, "ana@example.org") for w in ("user", "active", "2"))
    assert all(w in line_of(listed, "nightly") for w in ("service", "active", "0"))

    ok(modelbay(server, "accounts", "disable", "ana@example.org", **as_owner))
    for secret in secrets:
        assert "has been revoked" in refused(modelbay(server, "whoami", key=secret))
    assert "disabled" in line_of(ok(modelbay(server, "accounts", "list", **as_owner)), "ana@")
    other = modelbay(server, "accounts", "list", "--tenant", "default", **as_owner)
    assert "tenant 'default' not found" in refused(other)
