"""Tenants, keys, limits, usage and the audit of refusals, over HTTP and gRPC."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tests.integration import http
from tests.integration.bearer import grpc_metadata
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import SKLEARN_INFER_BODY, build_sklearn, sklearn_grpc_request

from modelbay.protocols.grpc import grpc_predict_v2_pb2_grpc as pb_grpc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sklearn(tmp_path_factory.mktemp("tenancy")).path


def whoami(server: RunningServer, key: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/whoami", headers=http.auth(key))


def test_each_key_header_form_authenticates(server: RunningServer) -> None:
    key = server.key("viewer", unique("hdr"))
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"authorization": f"bearer {key}"},
        {"api-key": key},
        {"x-api-key": key},
    ):
        response = httpx.get(f"{server.url}/api/v1/whoami", headers=headers)
        assert response.status_code == 200, headers
        assert response.json()["role"] == "viewer"


def test_missing_wrong_or_malformed_keys_get_401_with_a_challenge(server: RunningServer) -> None:
    for headers, message in (
        ({}, "needs an API key"),
        ({"Authorization": "Bearer mb_0123456789ab_" + "x" * 43}, "invalid API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "must be 'Bearer"),
    ):
        response = httpx.get(f"{server.url}/api/v1/models", headers=headers)
        assert response.status_code == 401
        assert message in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["x-content-type-options"] == "nosniff"


def test_public_routes_need_no_key(server: RunningServer) -> None:
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/openapi.json"):
        assert httpx.get(server.url + path).status_code == 200, path


def test_revoked_key_is_refused_at_once(server: RunningServer) -> None:
    key = server.key("consumer", unique("rev"))
    key_id = whoami(server, key).json()["key_id"]
    assert key.startswith(key_id + "_")
    revoked = http.delete(f"{server.url}/api/v1/keys/{key_id}")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    response = whoami(server, key)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]
    events = http.get(f"{server.url}/api/v1/audit", params={"limit": 50}).json()["events"]
    assert any(
        e["action"] == "auth.denied" and e["details"].get("claimed_key_id") == key_id
        for e in events
    )


def test_expired_key_is_refused(server: RunningServer) -> None:
    key = server.key("viewer", unique("exp"), expires_in="1s")
    assert whoami(server, key).status_code == 200
    time.sleep(1.2)
    response = whoami(server, key)
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_bad_expiry_is_a_400_naming_the_field(server: RunningServer) -> None:
    server.tenant("bad-expiry")
    response = http.post(
        f"{server.url}/api/v1/keys",
        json={"name": "x", "role": "viewer", "tenant": "bad-expiry", "expires_in": "soon"},
    )
    assert response.status_code == 400
    assert "expires_in" in response.json()["error"]


def test_key_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(
    server: RunningServer,
) -> None:
    key = server.key("viewer", unique("rps"), rate_limit_rps=0.5)
    first = whoami(server, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit"] == "0.5"
    assert first.headers["x-ratelimit-remaining"] == "0"
    refused = whoami(server, key)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-policy"] == "key"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "rate limit of 0.5 requests per second" in refused.json()["error"]


def test_tenant_daily_quota_is_shared_by_its_keys(server: RunningServer) -> None:
    tenant = unique("quota")
    server.tenant(tenant, daily_quota=3)
    a, b = server.key("viewer", tenant), server.key("viewer", tenant)
    assert [whoami(server, k).status_code for k in (a, b, a)] == [200, 200, 200]
    refused = whoami(server, b)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-policy"] == "tenant-day"
    assert int(refused.headers["retry-after"]) <= 86400
    assert f"tenant '{tenant}' has used its daily quota of 3" in refused.json()["error"]


def test_usage_counts_requests_and_seconds_per_key(server: RunningServer, model_file: Path) -> None:
    tenant = unique("usage")
    developer = server.key("developer", tenant)
    owner = server.key("owner", tenant)
    model = unique("metered")
    assert upload(server.url, model, model_file, headers=http.auth(developer)).status_code == 201
    for _ in range(4):
        response = httpx.post(
            f"{server.url}/v2/models/{model}/infer",
            json=SKLEARN_INFER_BODY,
            headers=http.auth(developer),
        )
        assert response.status_code == 200, response.text
    developer_id = whoami(server, developer).json()["key_id"]
    usage = httpx.get(f"{server.url}/api/v1/usage", headers=http.auth(owner)).json()["usage"]
    mine = [u for u in usage if u["key_id"] == developer_id]
    assert len(mine) == 1
    assert mine[0]["tenant"] == tenant
    assert mine[0]["requests"] == 6  # the push, four infers and whoami
    assert mine[0]["compute_seconds"] > 0
    assert {u["tenant"] for u in usage} == {tenant}  # an owner sees only its tenant
    other = httpx.get(
        f"{server.url}/api/v1/usage", params={"tenant": "default"}, headers=http.auth(owner)
    )
    assert other.status_code == 404


def test_models_are_private_until_shared_or_public(server: RunningServer, model_file: Path) -> None:
    home, guest, third = unique("home"), unique("guest"), unique("third")
    developer, owner = server.key("developer", home), server.key("owner", home)
    visitor, stranger = server.key("consumer", guest), server.key("consumer", third)
    model = unique("shy")
    assert upload(server.url, model, model_file, headers=http.auth(developer)).status_code == 201

    def infer(key: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v2/models/{model}/infer", json=SKLEARN_INFER_BODY, headers=http.auth(key)
        )

    def listed(key: str) -> set[str]:
        answer = httpx.get(f"{server.url}/api/v1/models", headers=http.auth(key))
        return {m["name"] for m in answer.json()["models"]}

    assert infer(visitor).status_code == 404
    assert infer(visitor).json()["error"] == f"model '{model}' not found"
    assert model not in listed(visitor)
    shared = httpx.put(
        f"{server.url}/api/v1/models/{model}/access",
        json={"visibility": "private", "shared_with": [guest]},
        headers=http.auth(owner),
    )
    assert shared.status_code == 200, shared.text
    assert shared.json()["shared_with"] == [guest]
    assert infer(visitor).status_code == 200
    assert model in listed(visitor)
    assert infer(stranger).status_code == 404
    files = httpx.get(
        f"{server.url}/api/v1/models/{model}/versions/1/files/{model_file.name}",
        headers=http.auth(visitor),
    )
    assert files.status_code == 403  # shared for inference, not for taking the weights
    made_public = httpx.put(
        f"{server.url}/api/v1/models/{model}/access",
        json={"visibility": "public"},
        headers=http.auth(owner),
    )
    assert made_public.status_code == 200
    assert infer(stranger).status_code == 200
    delete = httpx.delete(f"{server.url}/api/v1/models/{model}", headers=http.auth(stranger))
    assert delete.status_code == 403


def test_refusals_and_changes_are_audited_with_the_key_id(
    server: RunningServer, model_file: Path
) -> None:
    tenant = unique("audited")
    consumer = server.key("consumer", tenant)
    consumer_id = whoami(server, consumer).json()["key_id"]
    httpx.get(f"{server.url}/api/v1/models", headers={"Authorization": "Bearer nope-" + "x" * 20})
    forbidden = httpx.delete(f"{server.url}/api/v1/models/anything", headers=http.auth(consumer))
    assert forbidden.status_code == 404  # unknown: not a refusal, just not there
    push = upload(server.url, unique("nope"), model_file, headers=http.auth(consumer))
    assert push.status_code == 403
    developer = server.key("developer", tenant)
    developer_id = whoami(server, developer).json()["key_id"]
    model = unique("audited-model")
    assert upload(server.url, model, model_file, headers=http.auth(developer)).status_code == 201

    events = http.get(f"{server.url}/api/v1/audit", params={"limit": 200}).json()["events"]
    assert any(
        e["action"] == "auth.denied" and e["result"] == 401 and e["actor"] == "anonymous"
        for e in events
    )
    denied = [e for e in events if e["action"] == "authz.denied" and e["actor"] == consumer_id]
    assert denied
    assert denied[0]["result"] == 403
    assert denied[0]["details"]["tenant"] == tenant
    assert denied[0]["target"]["method"] == "POST"
    pushed = [e for e in events if e["action"] == "management.push_version"]
    assert any(e["actor"] == developer_id and e["target"]["name"] == model for e in pushed)
    assert http.get(f"{server.url}/api/v1/audit/verify").json()["ok"]


def test_grpc_takes_keys_from_metadata_and_refuses_as_rest_does(
    server: RunningServer, model_file: Path
) -> None:
    tenant = unique("grpc")
    developer = server.key("developer", tenant)
    viewer = server.key("viewer", tenant)
    limited = server.key("consumer", tenant, rate_limit_rps=0.5)
    model = unique("rpc")
    assert upload(server.url, model, model_file, headers=http.auth(developer)).status_code == 201
    request = sklearn_grpc_request(model)
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]

        def code(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
            try:
                stub.ModelInfer(request, metadata=metadata, timeout=30)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        assert code(()) == grpc.StatusCode.UNAUTHENTICATED
        assert code((("x-api-key", developer),)) == grpc.StatusCode.OK
        assert code(grpc_metadata(viewer)) == grpc.StatusCode.PERMISSION_DENIED
        assert code(grpc_metadata(limited)) == grpc.StatusCode.OK
        assert code(grpc_metadata(limited)) == (grpc.StatusCode.RESOURCE_EXHAUSTED)


@pytest.fixture
def keyless_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server started without MODELBAY_ADMIN_KEY, with public metrics."""
    running = RunningServer(
        tmp_path / "data",
        tmp_path / "server.log",
        env={"MODELBAY_ADMIN_KEY": "", "MODELBAY_PUBLIC_METRICS": "true"},
    )
    running.start()
    yield running
    running.stop()


def test_first_start_prints_an_admin_key_once_and_keeps_it_in_a_private_file(
    keyless_server: RunningServer,
) -> None:
    path = keyless_server.data_dir / "admin.key"
    key = path.read_text().strip()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyless_server.log().count(key) == 1
    assert whoami(keyless_server, key).json()["role"] == "admin"
    assert httpx.get(f"{keyless_server.url}/metrics").status_code == 200
    assert http.get(f"{keyless_server.url}/api/v1/whoami").status_code == 401  # not its key
    keyless_server.restart()
    assert path.read_text().strip() == key
    assert keyless_server.log().count(key) == 1
    assert whoami(keyless_server, key).status_code == 200


def test_an_owner_can_neither_create_nor_revoke_admin_keys(server: RunningServer) -> None:
    owner = server.key("owner", "default")  # the admin key's own tenant
    admin_id = http.get(f"{server.url}/api/v1/whoami").json()["key_id"]
    revoke = httpx.delete(f"{server.url}/api/v1/keys/{admin_id}", headers=http.auth(owner))
    assert revoke.status_code == 403
    assert "admin keys" in revoke.json()["error"]
    create = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "escalate", "role": "admin"},
        headers=http.auth(owner),
    )
    assert create.status_code == 403
    assert http.get(f"{server.url}/api/v1/whoami").status_code == 200


def test_sharing_with_an_unknown_tenant_is_422_naming_the_field(
    server: RunningServer, model_file: Path
) -> None:
    # Found by the fuzzer: a 404 here reads as "the model is gone", though it is there.
    model = unique("share-ghost")
    assert upload(server.url, model, model_file).status_code == 201
    refused = http.put(
        f"{server.url}/api/v1/models/{model}/access",
        json={"visibility": "private", "shared_with": ["no-such-tenant"]},
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == "shared_with: tenant 'no-such-tenant' not found"
    assert http.get(f"{server.url}/api/v1/models/{model}").status_code == 200
