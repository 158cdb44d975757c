"""The HTTP API fuzzed from its own OpenAPI schema: no 5xx, and every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import build_onnx

from modelbay.client import Client

MODEL = "fuzz-mlp"
DOOMED = "fuzz-doomed"
# Every request ends: a hung answer fails its case instead of the suite.
REQUEST_TIMEOUT_S = 10
# Half the generated names, versions and tensors are real ones, so requests get past the
# 404 into the registry, the deployment and the model runtime.
REAL_HALF_THE_TIME = 0.5

CONFIG: dict[str, Any] = {
    "seed": 0,
    "request-timeout": REQUEST_TIMEOUT_S,
    # Every generated call carries the admin key: the fuzz looks past the 401.
    "headers": {"Authorization": f"Bearer {ADMIN_KEY}"},
    "generation": {"max-examples": 40, "deterministic": True},
    # Every built-in check but one: no 5xx; status code, content type, headers and body as
    # documented; schema-violating requests refused with a 4xx; other methods get 405 and
    # an Allow header that lists the documented ones.
    "checks": {
        # The schema cannot say every rule: names ([A-Za-z0-9][A-Za-z0-9._-]*), a tensor's
        # data length is its shape's product, binary bodies need Inference-Header-Content-
        # Length. Such schema-valid requests are answered 400 naming the rule, and the 400
        # is checked to be documented.
        "positive_data_acceptance": {"enabled": False},
    },
    "dictionaries": {
        "models": {"values": [MODEL]},
        "doomed": {"values": [DOOMED]},
        "refs": {"values": ["1", "prod", "latest"]},
        "inputs": {"values": ["x"]},
        "datatypes": {"values": ["FP32"]},
    },
    "parameters": {
        "path.name": {"dictionary": "models", "probability": REAL_HALF_THE_TIME},
        "path.version": {"dictionary": "refs", "probability": REAL_HALF_THE_TIME},
        "body.model": {"dictionary": "models", "probability": REAL_HALF_THE_TIME},
        "body.inputs[*].name": {"dictionary": "inputs", "probability": REAL_HALF_THE_TIME},
        "body.inputs[*].datatype": {"dictionary": "datatypes", "probability": REAL_HALF_THE_TIME},
    },
    "operations": [
        {
            # Deleting the model every other operation uses would leave them only 404s.
            "include-path": "/api/v1/models/{name}",
            "include-method": "DELETE",
            "parameters": {
                "path.name": {"dictionary": "doomed", "probability": REAL_HALF_THE_TIME}
            },
        }
    ],
}


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of the fuzz's own: a real ONNX model with an alias and a deployment.

    At most two in-process replicas, so what a fuzzed ``min_replicas: 48`` with
    ``threads_per_replica: 58`` starts still leaves the two shared cores answering.
    """
    root = tmp_path_factory.mktemp("fuzz")
    running = RunningServer(
        root / "data",
        root / "server.log",
        env={"MODELBAY_REPLICA_MODE": "inprocess", "MODELBAY_MAX_REPLICAS": "2"},
    )
    running.start()
    try:
        model = build_onnx(root).path
        with Client(running.url) as client:
            client.push(MODEL, model)
            client.push(DOOMED, model)
            client.set_alias(MODEL, "prod", 1)
            client.deploy(MODEL)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: RunningServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(
        f"{fuzzed_server.url}/openapi.json",
        config=schemathesis.Config.from_dict(CONFIG),
        timeout=REQUEST_TIMEOUT_S,
    )


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads `Function._nodeid`, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=None, derandomize=True)
def test_every_operation_answers_as_documented_and_never_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(timeout=REQUEST_TIMEOUT_S)
