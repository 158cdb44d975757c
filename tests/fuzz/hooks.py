"""Schemathesis hooks for fuzzing modelbay: the fuzz never cuts off its own calls.

Revoking one's own admin key is allowed when another admin key is active, and the fuzz
makes other admin keys; revoked, the fuzz would get nothing but 401 for the rest of the run.
Limits set on the admin key's own tenant would leave most operations a 429 (the admin is
exempt only on tenant and key routes), so the fuzz changes another tenant's limits instead;
tests/integration/test_limits_lockout.py covers a bad limit on the admin's own tenant.
A deployment given a request timeout of a few microseconds answers its later inference
calls 504, as it should (tests/integration/test_deployments.py covers that); the fuzz gives
deployments at least a second, so that its inference calls still reach a model.
``make fuzz`` loads this file through ``SCHEMATHESIS_HOOKS`` with the key id in
``MODELBAY_FUZZ_KEY_ID``; the suite's run imports it with the session's admin key.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

NOT_A_KEY = "mb_000000000000"
OWN_TENANT = "default"
OTHER_TENANT = "fuzz-tenant"
PROTECTED_KEY_ID = os.environ.get("MODELBAY_FUZZ_KEY_ID", "")


def protect(key_id: str) -> None:
    global PROTECTED_KEY_ID
    PROTECTED_KEY_ID = key_id


MIN_REQUEST_TIMEOUT_MS = 1000.0


@schemathesis.hook
def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    body = case.body
    if (
        case.path.startswith("/api/v1/deployments")
        and isinstance(body, dict)
        and type(body.get("request_timeout_ms")) in (int, float)
        and 1 <= body["request_timeout_ms"] < MIN_REQUEST_TIMEOUT_MS  # valid but tiny only
    ):
        body["request_timeout_ms"] = MIN_REQUEST_TIMEOUT_MS
    params = case.path_parameters
    if not params:
        return
    method = case.method.upper()
    if method == "DELETE" and params.get("key_id") == PROTECTED_KEY_ID:
        params["key_id"] = NOT_A_KEY
    if (
        method == "PATCH"
        and case.path == "/api/v1/tenants/{name}"
        and params.get("name") == OWN_TENANT
    ):
        params["name"] = OTHER_TENANT
