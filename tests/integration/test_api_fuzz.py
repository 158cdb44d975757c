"""The HTTP API fuzzed from its own OpenAPI schema: no 5xx, and every answer as documented.

A quick, seeded regression run; ``make fuzz`` explores with every phase and a new seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import settings
from tests.fuzz import hooks
from tests.fuzz.target import CONFIG_FILE, fuzz_target
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY

from modelbay.security.tokens import key_id_for

EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with fuzz_target(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: RunningServer) -> schemathesis.BaseSchema:
    hooks.protect(key_id_for(ADMIN_KEY))
    config = schemathesis.Config.from_path(CONFIG_FILE)
    config.update(seed=0, max_failures=None)
    project = config.projects.default
    # Every generated call carries the admin key: the fuzz looks past the 401.
    project.update(headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    project.generation.update(max_examples=EXAMPLES_PER_OPERATION, deterministic=True)
    return schemathesis.openapi.from_url(
        f"{fuzzed_server.url}/openapi.json", config=config, timeout=project.request_timeout
    )


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads `Function._nodeid`, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=None, derandomize=True)
def test_every_operation_answers_as_documented_and_never_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(timeout=10)
