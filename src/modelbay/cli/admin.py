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


DataDirOpt = Annotated[
    Path | None, typer.Option(help="Registry and artifact directory (env MODELBAY_DATA_DIR)")
]


@app.command("reset-limits")
def reset_limits(
    tenant: Annotated[
        str | None, typer.Option(help="Remove this tenant's limits (requests and tokens)")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Remove this key's (mb_...) limits (requests and tokens)")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: Annotated[
        str | None, typer.Option(help="Registry database URL (env MODELBAY_DATABASE_URL)")
    ] = None,
) -> None:
    """Remove limits that lock a tenant or key out, with the server stopped (audited).

    Any limit can also be changed through the API by an admin key, which limits never
    refuse on the tenant and key routes; this is for when no admin key is at hand.
    """
    from modelbay.errors import ModelbayError
    from modelbay.registry import make_engine
    from modelbay.security.audit import AuditLog
    from modelbay.security.keys import LIMIT_FIELDS, KeyStore
    from modelbay.settings import Settings

    if tenant is None and key is None:
        fail("name what to reset: --tenant NAME and/or --key KEY_ID")
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = Settings(**overrides)
    if settings.database_url is None and not (settings.data_dir / "registry.db").is_file():
        fail(f"no registry in {settings.data_dir}; pass the server's --data-dir")
    engine = make_engine(settings.registry_url)
    keys = KeyStore(engine)
    audit = AuditLog(engine, *settings.audit_files)
    try:
        if tenant is not None:
            before = keys.get_tenant(tenant)
            keys.update_tenant(tenant, **dict.fromkeys(LIMIT_FIELDS))
            _report_reset(audit, "tenant", tenant, before.model_dump(include=set(LIMIT_FIELDS)))
        if key is not None:
            record = keys.get_key(key)
            keys.clear_key_limits(key)
            _report_reset(audit, "key", key, record.model_dump(include=set(LIMIT_FIELDS)))
    except ModelbayError as exc:
        fail(exc.message)
    finally:
        engine.dispose()


def _report_reset(audit: Any, kind: str, name: str, limits: dict[str, Any]) -> None:
    audit.append(
        actor="cli",
        action="access.reset_limits",
        target={kind: name},
        result=200,
        details=limits,
    )
    rate, quota = limits["rate_limit_rps"], limits["daily_quota"]
    was = (
        f"rate limit {rate if rate is not None else 'none'}/s, daily quota {quota or 'none'}, "
        f"tokens {limits['tokens_per_minute'] or 'none'}/min, "
        f"{limits['tokens_per_day'] or 'none'}/day"
    )
    console.print(f"{kind} '{name}': limits removed (were {was})")


@app.command("rotate-key")
def rotate_key(
    data_dir: DataDirOpt = None,
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
