"""The server a fuzz runs against: a real ONNX model with an alias and a deployment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fuzz import hooks
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import build_onnx

from modelbay.client import Client

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
MODEL = "fuzz-mlp"
DOOMED = "fuzz-doomed"  # the one model DELETE may remove (see schemathesis.toml)
TENANT = hooks.OTHER_TENANT  # the tenant whose limits the fuzz changes


@contextmanager
def fuzz_target(root: Path, database_url: str | None = None) -> Iterator[RunningServer]:
    """A server under ``root`` holding the models the fuzz dictionaries name.

    At most two in-process replicas, so what a fuzzed ``min_replicas: 48`` with
    ``threads_per_replica: 58`` starts still leaves the two shared cores answering.
    """
    env = {"MODELBAY_REPLICA_MODE": "inprocess", "MODELBAY_MAX_REPLICAS": "2"}
    if database_url is not None:
        env["MODELBAY_DATABASE_URL"] = database_url
    running = RunningServer(root / "data", root / "server.log", env=env)
    running.start()
    try:
        running.tenant(TENANT)
        model = build_onnx(root).path
        with Client(running.url, api_key=ADMIN_KEY) as client:
            client.push(MODEL, model)
            client.push(DOOMED, model)
            client.set_alias(MODEL, "prod", 1)
            client.deploy(MODEL)
        yield running
    finally:
        running.stop()
