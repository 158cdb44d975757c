"""``modelbay admin ...``: operator commands that work on the data directory, not a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from modelbay.cli._session import console, err_console, fail

app = typer.Typer(
    help="Operator commands on the data directory (no server needed).", no_args_is_help=True
)


@app.command("gen-key")
def gen_key() -> None:
    """Print a new random AES-256 key (base64) for MODELBAY_ENCRYPTION_KEY."""
    from modelbay.store import generate_key

    typer.echo(generate_key())


@app.command("rotate-key")
def rotate_key(
    data_dir: Annotated[
        Path | None, typer.Option(help="Registry and artifact directory (env MODELBAY_DATA_DIR)")
    ] = None,
    new_key_file: Annotated[
        Path | None,
        typer.Option(help="File with the new key (env MODELBAY_ENCRYPTION_KEY or _KEY_FILE)"),
    ] = None,
    old_keys_file: Annotated[
        Path | None,
        typer.Option(
            help="Old keys, one base64 key a line (env MODELBAY_ENCRYPTION_OLD_KEYS_FILE)"
        ),
    ] = None,
) -> None:
    """Re-encrypt every artifact blob under the new key; safe to interrupt and run again."""
    from modelbay.settings import Settings
    from modelbay.store import keyring_from_settings, rotate

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if new_key_file is not None:
        # The flag replaces a key from the environment rather than conflicting with it.
        overrides.update(encryption_key=None, encryption_key_file=new_key_file)
    if old_keys_file is not None:
        overrides["encryption_old_keys_file"] = old_keys_file
    settings = Settings(**overrides)
    try:
        keyring = keyring_from_settings(settings)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if keyring is None:
        fail("no new key: pass --new-key-file or set MODELBAY_ENCRYPTION_KEY")
    if not settings.blob_dir.is_dir():
        fail(f"{settings.blob_dir} does not exist; pass the server's --data-dir")
    report = rotate(
        settings.blob_dir, keyring, lambda digest, outcome: err_console.print(outcome, digest)
    )
    console.print(
        f"key {report.key_id}: {len(report.rotated)} blobs re-encrypted, "
        f"{report.current} already under it, {report.missing} deleted meanwhile, "
        f"{len(report.failed)} unreadable"
    )
    for digest, reason in report.failed.items():
        err_console.print(Text(f"{digest}: {reason}", style="red"), soft_wrap=True)
    if report.failed:
        fail("some blobs could not be read and were left as they were; see above")
