"""API key secrets and their public ids; pure functions, shared by the server and the SDK.

A key reads ``mb_<12 hex>_<43 characters>``; its first part is the key id, safe to show in
logs and the audit trail. A secret in another form (a ``MODELBAY_ADMIN_KEY`` of the
operator's choosing) has the id ``mb_`` + the first 12 hex digits of its sha256.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_TOKEN = re.compile(r"^(mb_[0-9a-f]{12})_[A-Za-z0-9_-]{20,}$")
KEY_ID = re.compile(r"^mb_[0-9a-f]{12}$")


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The key id a well-formed secret starts with; None for other strings."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def key_id_for(token: str) -> str:
    """The id of the key whose secret is ``token``, whatever its form."""
    return key_id_of(token) or f"mb_{hash_secret(token)[:12]}"


def new_token() -> tuple[str, str]:
    """A fresh (key id, secret) pair."""
    key_id = f"mb_{secrets.token_hex(6)}"
    return key_id, f"{key_id}_{secrets.token_urlsafe(32)}"
