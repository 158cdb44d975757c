"""The CLI (as the real console script) and the SDK against the real server.

A scikit-learn digits classifier is built here, pushed with ``modelbay models push``,
aliased, served, pulled back, and its answers compared with the in-process model.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from tests.integration.cli import modelbay, ok

from modelbay.client import ApiError, Client

MODEL = "cli-digits"
ALIAS = "production"


class Server(Protocol):
    url: str


@dataclass
class Digits:
    """The fitted model, its file, a few rows to predict, and the pushed version."""

    estimator: Any
    path: Path
    rows: np.ndarray
    version: dict[str, Any]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def digits(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Pushed with the CLI as version 1 of MODEL, with ALIAS pointing at it."""
    import skops.io
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    estimator = LogisticRegression(max_iter=2000).fit(x, y)
    path = tmp_path_factory.mktemp("digits") / "model.skops"
    skops.io.dump(estimator, path)
    push = ["models", "push", str(path), "--name", MODEL, "--description", "first", "--json"]
    fields = ["--tag", "team=vision", "--metadata", '{"dataset": "digits"}']
    pushed = ok(modelbay(server.url, *push, *fields))
    ok(modelbay(server.url, "models", "alias", MODEL, ALIAS, "1"))
    return Digits(estimator, path, x[:7], json.loads(pushed))


def test_push_records_format_digest_signature_and_fields(digits: Digits) -> None:
    version = digits.version
    assert version["model"] == MODEL
    assert version["version"] == 1
    assert version["format"] == "sklearn"
    assert version["files"] == [
        {"path": "model.skops", "digest": sha256(digits.path), "size": digits.path.stat().st_size}
    ]
    assert version["signature"]["inputs"] == [
        {"name": "input", "datatype": "FP64", "shape": [-1, 64]}
    ]
    assert {o["name"] for o in version["signature"]["outputs"]} == {"predict", "predict_proba"}
    assert version["tags"] == {"team": "vision"}
    assert version["metadata"] == {"dataset": "digits"}


def test_push_without_json_prints_version_digest_and_signature(
    server: Server, digits: Digits
) -> None:
    out = ok(modelbay(server.url, "models", "push", str(digits.path), "--name", "cli-digits-2"))
    assert "version 1" in out
    assert "sklearn" in out
    assert sha256(digits.path)[:16] in out
    assert "predict_proba" in out


def test_list_shows_the_model_with_latest_version_and_alias(server: Server, digits: Digits) -> None:
    models = json.loads(ok(modelbay(server.url, "models", "list", "--json")))
    mine = next(m for m in models if m["name"] == MODEL)
    assert mine["latest_version"] == 1
    assert mine["aliases"] == {ALIAS: 1}
    table = ok(modelbay(server.url, "models", "list"))
    assert MODEL in table
    assert f"{ALIAS}=1" in table


def test_show_prints_versions_and_latest_signature(server: Server, digits: Digits) -> None:
    shown = json.loads(ok(modelbay(server.url, "models", "show", MODEL, "--json")))
    assert shown["model"]["name"] == MODEL
    assert [v["version"] for v in shown["versions"]] == [1]
    human = ok(modelbay(server.url, "models", "show", MODEL))
    assert "signature of version 1" in human
    assert "FP64" in human


def test_cli_predict_on_a_mapping_file_matches_the_in_process_model(
    server: Server, digits: Digits, tmp_path: Path
) -> None:
    input_file = tmp_path / "rows.json"
    input_file.write_text(json.dumps({"input": digits.rows.tolist()}))
    out = ok(modelbay(server.url, "predict", f"{MODEL}@{ALIAS}", "--input", str(input_file)))
    outputs = json.loads(out)
    assert outputs["predict"] == digits.estimator.predict(digits.rows).tolist()
    np.testing.assert_allclose(
        outputs["predict_proba"], digits.estimator.predict_proba(digits.rows), atol=1e-5
    )


def test_cli_predict_reads_a_v2_body_from_stdin_and_selects_outputs(
    server: Server, digits: Digits
) -> None:
    rows = digits.rows[:2]
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ]
    }
    out = ok(
        modelbay(
            server.url, "predict", f"{MODEL}:1", "-i", "-", "-o", "predict", stdin=json.dumps(body)
        )
    )
    assert json.loads(out) == {"predict": digits.estimator.predict(rows).tolist()}


@pytest.mark.parametrize("version", [1, ALIAS, None])
def test_sdk_predict_by_number_alias_or_latest_matches_the_in_process_model(
    server: Server, digits: Digits, version: int | str | None
) -> None:
    with Client(server.url) as client:
        outputs = client.predict(MODEL, {"input": digits.rows}, version=version)
    np.testing.assert_array_equal(outputs["predict"], digits.estimator.predict(digits.rows))
    np.testing.assert_allclose(
        outputs["predict_proba"], digits.estimator.predict_proba(digits.rows), atol=1e-5
    )


def test_sdk_reads_metadata_readiness_and_aliases(server: Server, digits: Digits) -> None:
    with Client(server.url) as client:
        assert client.is_live()
        assert client.is_ready()
        assert client.model_ready(MODEL, ALIAS)
        assert client.server_metadata()["name"] == "modelbay"
        meta = client.model_metadata(MODEL, 1)
        assert meta["inputs"][0]["datatype"] == "FP64"
        assert client.list_aliases(MODEL) == {ALIAS: 1}
        assert client.get_version(MODEL, ALIAS)["version"] == 1


def test_pull_and_download_give_back_the_pushed_bytes(
    server: Server, digits: Digits, tmp_path: Path
) -> None:
    ok(
        modelbay(
            server.url, "models", "pull", f"{MODEL}@{ALIAS}", "--output", str(tmp_path / "cli")
        )
    )
    assert sha256(tmp_path / "cli" / "model.skops") == sha256(digits.path)
    with Client(server.url) as client:
        paths = client.download(MODEL, 1, tmp_path / "sdk")
    assert paths == [tmp_path / "sdk" / "model.skops"]
    assert sha256(paths[0]) == sha256(digits.path)


def test_directory_push_keeps_relative_paths_through_a_round_trip(
    server: Server, digits: Digits, tmp_path: Path
) -> None:
    source = tmp_path / "bundle"
    (source / "docs").mkdir(parents=True)
    (source / "model.skops").write_bytes(digits.path.read_bytes())
    (source / "docs" / "model card.md").write_text("# digits\n")
    sent: list[tuple[int, int]] = []
    with Client(server.url) as client:
        version = client.push(
            "cli-digits-bundle", source, progress=lambda done, total: sent.append((done, total))
        )
        assert sorted(f["path"] for f in version["files"]) == ["docs/model card.md", "model.skops"]
        paths = client.download("cli-digits-bundle", version["version"], tmp_path / "back")
    total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    assert sent[-1] == (total, total)
    for path in paths:
        assert path.read_bytes() == (source / path.relative_to(tmp_path / "back")).read_bytes()


def test_rm_deletes_a_version_then_the_whole_model(server: Server, digits: Digits) -> None:
    name = "cli-digits-rm"
    with Client(server.url) as client:
        client.push(name, digits.path)
        client.push(name, digits.path)
    ok(modelbay(server.url, "models", "rm", f"{name}:1"))
    with Client(server.url) as client:
        assert [v["version"] for v in client.list_versions(name)] == [2]
    refused = modelbay(server.url, "models", "rm", name, stdin="n\n")
    assert refused.returncode == 1
    ok(modelbay(server.url, "models", "rm", name, "--yes"))
    with Client(server.url) as client, pytest.raises(ApiError) as info:
        client.get_model(name)
    assert info.value.status == 404


def test_unknown_model_exits_1_with_not_found_on_stderr(server: Server, tmp_path: Path) -> None:
    input_file = tmp_path / "rows.json"
    input_file.write_text(json.dumps({"input": [[0.0] * 64]}))
    for args in (
        ("models", "show", "no-such-model"),
        ("predict", "no-such-model", "-i", str(input_file)),
    ):
        result = modelbay(server.url, *args)
        assert result.returncode == 1
        assert "error:" in result.stderr
        assert "not found" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_reference_is_a_usage_error(server: Server) -> None:
    result = modelbay(server.url, "models", "pull", f"{MODEL}:one", "--output", "x")
    assert result.returncode == 2
    assert "not a number" in result.stderr


def test_unreachable_server_gets_a_friendly_message_and_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = modelbay(url, "models", "list")
    assert result.returncode == 1
    assert f"cannot reach modelbay at {url}" in result.stderr
    assert "modelbay serve" in result.stderr
    assert "Traceback" not in result.stderr
    with Client(url) as client, pytest.raises(ApiError) as info:
        client.list_models()
    assert info.value.status == 0
