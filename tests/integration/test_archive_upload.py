"""A version pushed as one archive: unpacked safely by the real server, over HTTP and the CLI."""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.archives import MIB, zip_of_zeros
from tests.integration import http
from tests.integration.cli import modelbay
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import BuiltModel, build_onnx

from modelbay.client import Client

ENTRYPOINT = "model/mlp.onnx"
README = "docs/README.txt"


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return build_onnx(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose upload limit a bomb can pass in a test's time (the shared one: 8 GiB)."""
    root = tmp_path_factory.mktemp("small")
    running = RunningServer(
        root / "data", root / "server.log", env={"MODELBAY_MAX_UPLOAD_BYTES": str(10 * MIB)}
    )
    running.start()
    yield running
    running.stop()


def zip_version(path: Path, onnx: BuiltModel, *extra: tuple[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(onnx.path, ENTRYPOINT)
        archive.writestr(README, "A tiny MLP.")
        for name, data in extra:
            archive.writestr(name, data)
    return path


def test_zipped_onnx_with_readme_is_unpacked_recorded_and_served(
    server: RunningServer, onnx: BuiltModel, tmp_path: Path
) -> None:
    archive = zip_version(tmp_path / "version.zip", onnx)
    pushed = upload(server.url, "arch-onnx", archive, archive="true", entrypoint=ENTRYPOINT)
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()
    assert version["format"] == "onnx"
    assert version["entrypoint"] == ENTRYPOINT
    files = {f["path"]: f["size"] for f in version["files"]}
    assert files == {ENTRYPOINT: onnx.path.stat().st_size, README: len("A tiny MLP.")}
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with Client(server.url) as client:
        out = client.predict("arch-onnx", {"x": x})
    np.testing.assert_allclose(out["y"], onnx.reference(x), atol=1e-5)


def test_zip_slip_is_refused_naming_the_member_and_creates_nothing(
    server: RunningServer, onnx: BuiltModel, tmp_path: Path
) -> None:
    archive = zip_version(tmp_path / "slip.zip", onnx, ("../../evil.sh", b"echo owned"))
    refused = upload(server.url, "arch-slip", archive, archive="true", entrypoint=ENTRYPOINT)
    assert refused.status_code == 400
    assert "'../../evil.sh'" in refused.json()["error"]
    assert http.get(f"{server.url}/api/v1/models/arch-slip").status_code == 404


def test_zip_bomb_is_refused_with_413(small_server: RunningServer, tmp_path: Path) -> None:
    bomb = zip_of_zeros(tmp_path / "bomb.zip", 50)
    refused = upload(small_server.url, "arch-bomb", bomb, archive="true")
    assert refused.status_code == 413
    assert "more than 10485760 bytes" in refused.json()["error"]
    assert http.get(f"{small_server.url}/api/v1/models/arch-bomb").status_code == 404
    leftovers = list((small_server.data_dir / "blobs" / "tmp").iterdir())
    assert leftovers == []


def test_cli_pushes_a_tar_gz_with_archive_and_refuses_a_directory(
    server: RunningServer, onnx: BuiltModel, tmp_path: Path
) -> None:
    archive = tmp_path / "version.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(onnx.path, ENTRYPOINT)
    args = ["models", "push", str(archive), "--name", "arch-cli", "--archive", "--json"]
    pushed = modelbay(server.url, *args)
    assert pushed.returncode == 0, pushed.stderr
    assert [f["path"] for f in json.loads(pushed.stdout)["files"]] == [ENTRYPOINT]
    refused = modelbay(server.url, "models", "push", str(tmp_path), "-n", "arch-dir", "--archive")
    assert refused.returncode == 1
    assert "is a directory" in refused.stderr
