"""Settings validation: TLS needs a readable certificate and its key, or neither."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.tls import TlsFiles, make_tls_files
from typer.testing import CliRunner

from modelbay.cli import app
from modelbay.settings import Settings


@pytest.fixture(autouse=True)
def _no_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELBAY_TLS_CERT_FILE", raising=False)
    monkeypatch.delenv("MODELBAY_TLS_KEY_FILE", raising=False)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_tls_is_off_without_certificate_and_key() -> None:
    assert Settings().tls_pem() is None


def test_certificate_and_key_give_their_pem(tls_files: TlsFiles) -> None:
    settings = Settings(tls_cert_file=tls_files.server_cert, tls_key_file=tls_files.server_key)
    assert settings.tls_pem() == (
        tls_files.server_cert.read_bytes(),
        tls_files.server_key.read_bytes(),
    )


def test_certificate_without_key_names_the_missing_setting(tls_files: TlsFiles) -> None:
    with pytest.raises(ValidationError, match="tls_key_file is not"):
        Settings(tls_cert_file=tls_files.server_cert)


def test_key_from_the_environment_without_certificate_names_the_missing_setting(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELBAY_TLS_KEY_FILE", str(tls_files.server_key))
    with pytest.raises(ValidationError, match="MODELBAY_TLS_CERT_FILE"):
        Settings()


def test_unreadable_certificate_is_named_with_its_path(tls_files: TlsFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValidationError, match=f"tls_cert_file '{missing}' cannot be read"):
        Settings(tls_cert_file=missing, tls_key_file=tls_files.server_key)


def test_key_of_another_certificate_is_refused(tls_files: TlsFiles) -> None:
    with pytest.raises(ValidationError, match="not a certificate chain and its unencrypted"):
        Settings(tls_cert_file=tls_files.ca_cert, tls_key_file=tls_files.server_key)


def test_serve_with_certificate_only_exits_2_without_traceback(tls_files: TlsFiles) -> None:
    result = CliRunner().invoke(app, ["serve", "--tls-cert", str(tls_files.server_cert)])
    assert result.exit_code == 2
    assert "tls_key_file is not" in result.output
    assert "Traceback" not in result.output


def test_every_setting_is_documented_in_the_configuration_guide() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [
        f"MODELBAY_{name.upper()}"
        for name in Settings.model_fields
        if f"`MODELBAY_{name.upper()}`" not in guide
    ]
    assert not missing, f"docs/configuration.md does not list {missing}"
