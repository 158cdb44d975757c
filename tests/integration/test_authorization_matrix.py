"""Every route and gRPC method × every role × own and other tenant gets the answer the
access model promises: public, 401 without a key, 403 below the needed role, and 404 for a
resource of a tenant one may not see (the same answer an unknown name gets).

The expectations are written here, independently of ``security/policy.py``; the test fails
when the server has a route or RPC this table does not cover.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from tests.integration import http
from tests.integration.bearer import grpc_metadata
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import SKLEARN_INFER_BODY, build_sklearn, sklearn_grpc_request

from modelbay.protocols.grpc import grpc_predict_v2_pb2 as pb
from modelbay.protocols.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

ROLES = ["viewer", "consumer", "developer", "owner", "admin"]
OWN, OTHER = "t-own", "t-other"
MODEL = DEPLOYMENT = "m-own"  # a deployment is named after its model
DATASET = "d-own"
JOB = 1  # the first job of the world's server, t-own's


@dataclass(frozen=True)
class Caller:
    label: str
    key: str | None
    role: str | None  # None: anonymous
    tenant: str | None


@dataclass(frozen=True)
class Expect:
    """Who may: ``least`` role; ``scope``: "public", "own" (resource of tenant t-own: others
    get 404), "create" (a name of t-own: others get 409), "global" (no resource) or "admin";
    ``ok``: the status a permitted call gets."""

    least: str | None
    scope: str
    ok: int


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    expect: Expect
    kwargs: Callable[[], dict[str, Any]] = dict
    victim: str | None = None  # a fresh resource per call, for calls that destroy one


def public(ok: int = 200) -> Expect:
    return Expect(None, "public", ok)


def own(least: str, ok: int = 200) -> Expect:
    return Expect(least, "own", ok)


def anywhere(least: str, ok: int = 200) -> Expect:
    return Expect(least, "global", ok)


ADMIN_ONLY = Expect("admin", "admin", 200)
_CLIENT = "c1-000000"  # a federated job's client
M = f"/api/v1/models/{MODEL}"

PROBES: list[Probe] = [
    Probe("GET", "/v2", public()),
    Probe("GET", "/v2/health/live", public()),
    Probe("GET", "/v2/health/ready", public()),
    Probe("GET", f"/v2/models/{MODEL}", own("viewer")),
    Probe("GET", f"/v2/models/{MODEL}/versions/1", own("viewer")),
    Probe("GET", f"/v2/models/{MODEL}/ready", own("viewer")),
    Probe("GET", f"/v2/models/{MODEL}/versions/1/ready", own("viewer")),
    Probe(
        "POST", f"/v2/models/{MODEL}/infer", own("consumer"), lambda: {"json": SKLEARN_INFER_BODY}
    ),
    Probe(
        "POST",
        f"/v2/models/{MODEL}/versions/1/infer",
        own("consumer"),
        lambda: {"json": SKLEARN_INFER_BODY},
    ),
    # the OpenAI API: the model (a tensor model here) is named in the body; permitted
    # callers get 400, since it is not a language (or embedding) model
    Probe("GET", "/v1/models", anywhere("viewer")),
    Probe("GET", f"/v1/models/{MODEL}", own("viewer")),
    Probe(
        "POST",
        "/v1/chat/completions",
        own("consumer", 400),
        lambda: {"json": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}},
    ),
    Probe(
        "POST",
        "/v1/completions",
        own("consumer", 400),
        lambda: {"json": {"model": MODEL, "prompt": "hi"}},
    ),
    Probe(
        "POST",
        "/v1/embeddings",
        own("consumer", 400),
        lambda: {"json": {"model": MODEL, "input": "hi"}},
    ),
    Probe("GET", "/api/v1/models", anywhere("viewer")),
    # the name exists: permitted callers get 409 (model names are global)
    Probe("POST", "/api/v1/models", anywhere("developer", 409), lambda: {"json": {"name": MODEL}}),
    Probe("GET", M, own("viewer")),
    Probe("PATCH", M, own("developer"), lambda: {"json": {"description": "probed"}}),
    Probe("DELETE", "/api/v1/models/{victim}", own("developer", 204), victim="model"),
    Probe(
        "PUT",
        M + "/access",
        own("owner"),
        lambda: {"json": {"visibility": "private", "shared_with": []}},
    ),
    Probe("GET", M + "/versions", own("viewer")),
    # no files: a permitted caller gets the validation error, after authorization
    Probe(
        "POST",
        M + "/versions",
        Expect("developer", "create", 422),
        lambda: {"data": {"format": "onnx"}},
    ),
    Probe("GET", M + "/versions/1", own("viewer")),
    Probe("DELETE", M + "/versions/999", own("developer", 404)),
    Probe("GET", M + "/versions/1/files/iris.skops", own("viewer")),
    Probe("GET", M + "/aliases", own("viewer")),
    Probe("PUT", M + "/aliases/prod", own("developer"), lambda: {"json": {"version": 1}}),
    Probe("DELETE", M + "/aliases/absent", own("developer", 404)),
    Probe(
        "POST",
        "/api/v1/deployments",
        own("developer", 409),
        lambda: {"json": {"model": MODEL, "version": "1"}},
    ),
    Probe("GET", "/api/v1/deployments", anywhere("viewer")),
    Probe("GET", f"/api/v1/deployments/{DEPLOYMENT}", own("viewer")),
    Probe("GET", f"/api/v1/deployments/{DEPLOYMENT}/stats", own("viewer")),
    Probe(
        "PATCH",
        f"/api/v1/deployments/{DEPLOYMENT}",
        own("developer"),
        lambda: {"json": {"version": "1"}},
    ),
    Probe("DELETE", "/api/v1/deployments/{victim}", own("developer", 204), victim="deployment"),
    Probe("GET", "/api/v1/datasets", anywhere("viewer")),
    Probe("GET", f"/api/v1/datasets/{DATASET}", own("viewer")),
    Probe("GET", f"/api/v1/datasets/{DATASET}/versions", own("viewer")),
    # neither a file nor a sample: a permitted caller gets the validation error
    Probe(
        "POST",
        f"/api/v1/datasets/{DATASET}/versions",
        Expect("developer", "create", 400),
        lambda: {"data": {"description": "probed"}},
    ),
    Probe("DELETE", "/api/v1/datasets/{victim}", own("developer", 204), victim="dataset"),
    # training needs developer; the dataset is the resource (jobs stay queued: no workers)
    Probe(
        "POST",
        "/api/v1/jobs",
        own("developer", 201),
        lambda: {"json": {"dataset": DATASET, "family": "logistic", "target": "target"}},
    ),
    Probe("GET", "/api/v1/jobs", anywhere("viewer")),
    Probe("GET", f"/api/v1/jobs/{JOB}", own("viewer")),
    Probe("GET", f"/api/v1/jobs/{JOB}/events", own("viewer")),
    Probe("POST", "/api/v1/jobs/{victim}/cancel", own("developer"), victim="job"),
    # a federated job's clients take part as developers; job 1 is a plain training job,
    # which these routes refuse with 409 once the caller may see it
    Probe("GET", f"/api/v1/jobs/{JOB}/federated", own("viewer", 409)),
    Probe(
        "POST",
        f"/api/v1/jobs/{JOB}/federated/clients",
        own("developer", 409),
        lambda: {"json": {"examples": 1, "feature_sum": [0.0], "feature_sum_sq": [0.0]}},
    ),
    Probe("GET", f"/api/v1/jobs/{JOB}/federated/clients/{_CLIENT}", own("developer", 409)),
    Probe("GET", f"/api/v1/jobs/{JOB}/federated/rounds/1/model", own("developer", 409)),
    Probe(
        "PUT",
        f"/api/v1/jobs/{JOB}/federated/rounds/1/updates/{_CLIENT}",
        own("developer", 409),
        lambda: {"params": {"examples": 1}, "content": b"weights"},
    ),
    Probe("GET", "/api/v1/whoami", anywhere("viewer")),
    Probe(
        "POST", "/api/v1/tenants", Expect("admin", "admin", 409), lambda: {"json": {"name": OWN}}
    ),
    Probe("GET", "/api/v1/tenants", ADMIN_ONLY),
    Probe("GET", f"/api/v1/tenants/{OWN}", own("owner")),
    Probe("PATCH", f"/api/v1/tenants/{OWN}", ADMIN_ONLY, lambda: {"json": {}}),
    Probe(
        "POST",
        f"/api/v1/tenants/{OWN}/accounts",
        own("owner", 201),
        lambda: {"json": {"name": f"probe-{next(_victims)}", "kind": "service"}},
    ),
    Probe("GET", f"/api/v1/tenants/{OWN}/accounts", own("owner")),
    Probe("DELETE", f"/api/v1/tenants/{OWN}/accounts/{{victim}}", own("owner"), victim="account"),
    Probe(
        "POST",
        "/api/v1/keys",
        own("owner", 201),
        lambda: {"json": {"name": "probe", "role": "viewer", "tenant": OWN}},
    ),
    Probe("GET", "/api/v1/keys", anywhere("owner")),
    Probe("GET", "/api/v1/keys/{victim}", own("owner"), victim="key"),
    Probe("DELETE", "/api/v1/keys/{victim}", own("owner"), victim="key"),
    Probe("GET", "/api/v1/usage", anywhere("owner")),
    Probe("GET", "/api/v1/audit", ADMIN_ONLY),
    Probe("GET", "/api/v1/audit/verify", ADMIN_ONLY),
    Probe("GET", "/metrics", ADMIN_ONLY),
    Probe("GET", "/openapi.json", public()),
    Probe("GET", "/docs", public()),
]

GRPC_PROBES: dict[str, tuple[Expect, Any]] = {
    "ServerLive": (public(), pb.ServerLiveRequest()),
    "ServerReady": (public(), pb.ServerReadyRequest()),
    "ServerMetadata": (public(), pb.ServerMetadataRequest()),
    "ModelMetadata": (own("viewer"), pb.ModelMetadataRequest(name=MODEL)),
    "ModelReady": (own("viewer"), pb.ModelReadyRequest(name=MODEL)),
    "ModelInfer": (
        own("consumer"),
        sklearn_grpc_request(MODEL),
    ),
}


def expected(expect: Expect, caller: Caller) -> str:
    """ "ok", or the refusal: "401", "403" or "404"."""
    if expect.scope == "public":
        return "ok"
    if caller.role is None:
        return "401"
    if caller.role == "admin":
        return "ok"
    if expect.scope == "own" and caller.tenant != OWN:
        return "404"
    if expect.scope == "create" and caller.tenant != OWN:
        # pushing to a name another tenant holds: the name is taken (names are global)
        return "409" if ROLES.index(caller.role) >= ROLES.index("developer") else "403"
    if expect.scope == "admin":
        return "403"
    assert expect.least is not None
    return "ok" if ROLES.index(caller.role) >= ROLES.index(expect.least) else "403"


@dataclass
class World:
    server: RunningServer
    callers: list[Caller]
    developer: str  # a developer key of t-own, which makes the victims
    model_file: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    server = RunningServer(
        root / "data",
        root / "server.log",
        env={"MODELBAY_REPLICA_MODE": "inprocess", "MODELBAY_JOB_WORKERS": "0"},
    )
    server.start()
    try:
        callers = [
            Caller("anonymous", None, None, None),
            Caller("admin", ADMIN_KEY, "admin", "default"),
        ]
        for tenant, role in itertools.product((OWN, OTHER), ROLES[:-1]):
            callers.append(Caller(f"{role}@{tenant}", server.key(role, tenant), role, tenant))
        w = World(server, callers, server.key("developer", OWN), build_sklearn(root).path)
        _as(w, "POST", "/api/v1/models/{MODEL}/versions", 201, files=_files(w))
        _as(w, "PUT", M + "/aliases/prod", 200, json={"version": 1})
        _as(w, "POST", "/api/v1/deployments", 201, json={"model": MODEL, "version": "1"})
        _as(w, "POST", f"/api/v1/datasets/{DATASET}/versions", 201, data={"sample": "iris"})
        job = _as(w, "POST", "/api/v1/jobs", 201, json=_JOB_BODY)
        assert job["id"] == JOB
        for _ in range(300):  # the deployment's replica loads in the background
            status = http.get(f"{server.url}/api/v1/deployments/{DEPLOYMENT}").json()
            if status["status"]["state"] == "ready":
                break
            time.sleep(0.1)
        # Every frontend (the server runs several) knows of it: readiness holds in a row.
        ready = 0
        for _ in range(300):
            answer = http.get(f"{server.url}/v2/models/{MODEL}/ready").status_code
            ready = ready + 1 if answer == 200 else 0
            if ready == 10:
                break
            time.sleep(0.05)
        yield w
    finally:
        server.stop()


def _files(w: World) -> dict[str, Any]:
    return {"files": (w.model_file.name, w.model_file.read_bytes())}


def _as(w: World, method: str, path: str, expect: int, **kw: Any) -> Any:
    """A call as t-own's developer that must succeed."""
    path = path.replace("{MODEL}", MODEL)
    response = httpx.request(
        method, w.server.url + path, headers=http.auth(w.developer), timeout=60, **kw
    )
    assert response.status_code == expect, f"{method} {path}: {response.text}"
    return response.json() if response.content else None


_victims = itertools.count()
_JOB_BODY = {"dataset": DATASET, "family": "logistic", "target": "target"}


def _victim(w: World, kind: str) -> str:
    """A fresh resource of tenant t-own that a permitted call may destroy."""
    name = f"victim-{next(_victims)}"
    if kind == "model":
        _as(w, "POST", "/api/v1/models", 201, json={"name": name})
        return name
    if kind == "deployment":
        _as(w, "POST", f"/api/v1/models/{name}/versions", 201, files=_files(w))
        _as(w, "POST", "/api/v1/deployments", 201, json={"model": name, "min_replicas": 0})
        return name
    if kind == "dataset":
        _as(w, "POST", f"/api/v1/datasets/{name}/versions", 201, data={"sample": "iris"})
        return name
    if kind == "job":
        return str(_as(w, "POST", "/api/v1/jobs", 201, json=_JOB_BODY)["id"])
    if kind == "account":
        response = http.post(
            f"{w.server.url}/api/v1/tenants/{OWN}/accounts", json={"name": name, "kind": "user"}
        )
        assert response.status_code == 201, response.text
        return name
    response = http.post(
        f"{w.server.url}/api/v1/keys", json={"name": name, "role": "viewer", "tenant": OWN}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key_id"])


def _call(w: World, probe: Probe, caller: Caller) -> httpx.Response:
    path = probe.path
    if probe.victim is not None:
        path = path.replace("{victim}", _victim(w, probe.victim))
    headers = http.auth(caller.key) if caller.key else {}
    return httpx.request(
        probe.method, w.server.url + path, headers=headers, timeout=30, **probe.kwargs()
    )


def _outcome(response: httpx.Response, probe: Probe) -> str:
    """ "401", "403", "404" (not found, as for an unknown name), or "ok": the permitted
    answer, whose status must then be the probe's (a permitted 404 says what is missing)."""
    status = response.status_code
    if status in (401, 403):
        return str(status)
    if status == 404 and "has no" not in response.json()["error"]:
        return "404"
    if status == 409 and probe.expect.ok != 409:
        return "409"
    assert status == probe.expect.ok, f"{probe.method} {probe.path}: {status} {response.text}"
    return "ok"


def _unknown_answer(path: str) -> str:
    """What a caller that may not see t-own's resource at ``path`` is told."""
    if path.startswith("/api/v1/tenants/"):
        return f"tenant '{OWN}' not found"
    if path.startswith("/api/v1/keys/"):
        return f"API key '{path.rsplit('/', 1)[1]}' not found"
    if path.startswith("/api/v1/deployments/"):
        return f"deployment '{DEPLOYMENT}' not found"
    if path.startswith("/api/v1/datasets/"):
        return f"dataset '{DATASET}' not found"
    if path.startswith("/api/v1/jobs/"):
        return f"job '{JOB}' not found"
    return f"model '{MODEL}' not found"


def test_every_route_answers_every_caller_as_the_access_model_says(world: World) -> None:
    wrong = []
    for probe, caller in itertools.product(PROBES, world.callers):
        response = _call(world, probe, caller)
        got, want = _outcome(response, probe), expected(probe.expect, caller)
        if got != want:
            wrong.append(
                f"{probe.method} {probe.path} as {caller.label}: {want} expected, "
                f"got {response.status_code} {response.text[:160]}"
            )
        elif got == "404" and probe.victim is None and probe.method != "POST":
            # a resource one may not see answers exactly as an unknown name does
            error = response.json()["error"]
            if probe.path.startswith("/v1/"):  # OpenAI's body: the message is inside
                error = error["message"]
            assert error == _unknown_answer(probe.path), response.text
    assert not wrong, "\n".join(wrong)


def test_every_grpc_method_answers_every_caller_as_the_access_model_says(world: World) -> None:
    wrong = []
    callers = world.callers
    with grpc.insecure_channel(world.server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        for (method, (expect, request)), caller in itertools.product(GRPC_PROBES.items(), callers):
            metadata = grpc_metadata(caller.key) if caller.key else ()
            try:
                getattr(stub, method)(request, metadata=metadata, timeout=30)
                got = "ok"
            except grpc.RpcError as exc:
                got = {
                    grpc.StatusCode.UNAUTHENTICATED: "401",
                    grpc.StatusCode.PERMISSION_DENIED: "403",
                    grpc.StatusCode.NOT_FOUND: "404",
                }.get(exc.code(), f"{exc.code()} {exc.details()}")
            want = expected(expect, caller)
            if got != want:
                wrong.append(f"{method} as {caller.label}: {want} expected, got {got}")
    assert not wrong, "\n".join(wrong)


def test_the_tables_cover_every_route_and_rpc(world: World) -> None:
    schema = http.get(f"{world.server.url}/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    }
    served |= {("GET", p) for p in ("/openapi.json", "/docs")}
    probed = {(p.method, _template(p.path)) for p in PROBES}
    assert served == probed, f"not probed: {served - probed}; not served: {probed - served}"
    rpcs = set(pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)
    assert rpcs == set(GRPC_PROBES), f"gRPC methods not probed: {rpcs - set(GRPC_PROBES)}"


def _template(path: str) -> str:
    """The OpenAPI path of a probed URL."""
    replacements = [
        (f"/api/v1/models/{MODEL}", "/api/v1/models/{name}"),
        (f"/v2/models/{MODEL}", "/v2/models/{name}"),
        (f"/v1/models/{MODEL}", "/v1/models/{model}"),
        ("/versions/1/files/iris.skops", "/versions/{version}/files/{path}"),
        ("/versions/999", "/versions/{version}"),
        ("/versions/1", "/versions/{version}"),
        ("/aliases/prod", "/aliases/{alias}"),
        ("/aliases/absent", "/aliases/{alias}"),
        (f"/api/v1/deployments/{DEPLOYMENT}", "/api/v1/deployments/{name}"),
        ("/api/v1/deployments/{victim}", "/api/v1/deployments/{name}"),
        ("/api/v1/models/{victim}", "/api/v1/models/{name}"),
        ("/api/v1/keys/{victim}", "/api/v1/keys/{key_id}"),
        (f"/api/v1/tenants/{OWN}", "/api/v1/tenants/{name}"),
        ("/accounts/{victim}", "/accounts/{account}"),
        (f"/api/v1/datasets/{DATASET}", "/api/v1/datasets/{name}"),
        ("/api/v1/datasets/{victim}", "/api/v1/datasets/{name}"),
        (f"/api/v1/jobs/{JOB}", "/api/v1/jobs/{job}"),
        ("/api/v1/jobs/{victim}", "/api/v1/jobs/{job}"),
        (f"/federated/clients/{_CLIENT}", "/federated/clients/{client}"),
        (f"/updates/{_CLIENT}", "/updates/{client}"),
        ("/federated/rounds/1/", "/federated/rounds/{round}/"),
    ]
    for old, new in replacements:
        path = path.replace(old, new)
    return path
