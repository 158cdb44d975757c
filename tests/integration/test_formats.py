"""Each supported format, built in the test, pushed with the CLI and served over V2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.models import BUILDERS, BuiltModel, iris

from modelbay.protocols import v2


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELBAY_URL": server.url}
    return subprocess.run(
        [sys.executable, "-m", "modelbay", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def infer_json(
    server: RunningServer, name: str, ref: str | int, built: BuiltModel, x: np.ndarray
) -> np.ndarray:
    request = {
        "inputs": [
            {
                "name": built.input_name,
                "datatype": v2.datatype_of(x),
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ],
        "outputs": [{"name": built.output_name}],
    }
    response = http.post(
        f"{server.url}/v2/models/{name}/versions/{ref}/infer", json=request, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name
    out = body["outputs"][0]
    return np.array(out["data"], dtype=np.float64).reshape(out["shape"])


@pytest.mark.parametrize("fmt", list(BUILDERS))
def test_format_is_pushed_listed_aliased_and_served_like_in_process(
    server: RunningServer, tmp_path: Path, fmt: str
) -> None:
    built = BUILDERS[fmt](tmp_path)
    name = f"fmt-{fmt.replace('_', '-')}"
    args = ["models", "push", str(built.path), "--name", name, "--format", fmt]
    if built.signature_file is not None:
        args += ["--signature", str(built.signature_file)]
    pushed = cli(server, *args)
    assert pushed.returncode == 0, pushed.stderr
    assert cli(server, *args).returncode == 0  # version 2, same bytes

    listed = cli(server, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)}
    assert models[name]["latest_version"] == 2

    aliased = cli(server, "models", "alias", name, "production", "1")
    assert aliased.returncode == 0, aliased.stderr

    x = iris()[0][:17].astype(built.input_dtype)
    expected = built.reference(x)
    for ref in (1, 2, "production", "latest"):
        np.testing.assert_allclose(infer_json(server, name, ref, built, x), expected, atol=1e-5)
    binary = _infer_binary(server, name, built, x)
    np.testing.assert_allclose(binary, expected, atol=1e-5)


def _infer_binary(server: RunningServer, name: str, built: BuiltModel, x: np.ndarray) -> np.ndarray:
    body, length = v2.encode_request({built.input_name: x}, [built.output_name])
    headers = {v2.HEADER_LENGTH: str(length), "Content-Type": v2.BINARY_CONTENT_TYPE}
    response = http.post(
        f"{server.url}/v2/models/{name}/versions/production/infer", content=body, headers=headers
    )
    assert response.status_code == 200, response.text
    length_out = response.headers.get(v2.HEADER_LENGTH)
    outputs = v2.decode_response(response.content, int(length_out) if length_out else None)
    return outputs[built.output_name]


def test_torchscript_without_signature_is_refused_with_how_to_fix(
    server: RunningServer, tmp_path: Path
) -> None:
    built = BUILDERS["torchscript"](tmp_path)
    with open(built.path, "rb") as f:
        response = http.post(
            f"{server.url}/api/v1/models/ts-nosig/versions",
            files={"files": ("mlp.pt", f)},
            timeout=60,
        )
    assert response.status_code == 422
    assert "signature" in response.json()["error"]
