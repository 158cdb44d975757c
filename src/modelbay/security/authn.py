"""Authentication: a secret to a principal, cached; and the first start's admin key."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from modelbay.errors import Unauthenticated
from modelbay.registry.tables import utcnow
from modelbay.security.audit import AuditLog
from modelbay.security.keys import BOOTSTRAP_NAME, KeyStore, StoredKey
from modelbay.security.principals import Principal, Role
from modelbay.security.tokens import key_id_for

log = logging.getLogger("modelbay.security")

CACHE_TTL_S = 5.0
"""How long a looked-up key is trusted before the database is asked again; a revocation
on this server takes effect at once, on other servers sharing the database within this."""
_MAX_CACHED = 10_000
ADMIN_KEY_FILE = "admin.key"
_T = TypeVar("_T")


class Authenticator:
    """Resolves secrets to principals; known and unknown secrets are cached briefly.

    Secrets of real keys and other strings are cached apart: a flood of random or forged
    tokens fills and flushes only its own cache, never the one of valid keys.
    """

    def __init__(self, keys: KeyStore, clock: Callable[[], float] = time.monotonic):
        self._keys = keys
        self._clock = clock
        self._known: dict[str, tuple[float, StoredKey]] = {}
        self._unknown: dict[str, tuple[float, StoredKey | None]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        """Counts ``forget`` calls: a read that began before one is not cached after it."""

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the cache alone; a hit may still raise for a bad key."""
        entry = self._known.get(token) or self._unknown.get(token)
        if entry is None or self._clock() - entry[0] > CACHE_TTL_S:
            return False, None
        return True, _check(entry[1], token)

    def due(self, token: str) -> bool:
        """Whether ``token``'s cached entry is fresh but past half its lifetime: time to
        read it again in the background, before requests have to wait for it."""
        entry = self._known.get(token) or self._unknown.get(token)
        return entry is not None and CACHE_TTL_S / 2 < self._clock() - entry[0] <= CACHE_TTL_S

    def resolve(self, token: str) -> Principal:
        """The principal behind ``token`` (may query the database)."""
        hit, principal = self.cached(token)
        if hit:
            assert principal is not None
            return principal
        return self.refresh(token)

    def refresh(self, token: str) -> Principal:
        """Read ``token``'s key from the database (not the cache) and cache it, unless the
        cache was dropped meanwhile (the key may have been revoked after this read)."""
        generation = self._generation
        stored = self._keys.lookup(token)
        now = self._clock()
        with self._lock:
            if generation != self._generation:
                return _check(stored, token)
            if stored is not None and stored.matches(token):
                _put(self._known, token, (now, stored))
            else:
                _put(self._unknown, token, (now, stored))
        return _check(stored, token)

    def forget(self) -> None:
        """Drop the cache, after a key or tenant changed on this server."""
        with self._lock:
            self._generation += 1
            self._known.clear()
            self._unknown.clear()


def _put(cache: dict[str, _T], token: str, entry: _T) -> None:
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[token] = entry


def _check(stored: StoredKey | None, token: str) -> Principal:
    if stored is None or not stored.matches(token):
        raise Unauthenticated("invalid API key")
    return usable(stored)


def usable(stored: StoredKey) -> Principal:
    """The key's principal; raises 401 for a revoked or expired key."""
    if stored.revoked_at is not None:
        raise Unauthenticated(f"API key '{stored.key_id}' has been revoked")
    if stored.expires_at is not None and stored.expires_at <= utcnow():
        raise Unauthenticated(
            f"API key '{stored.key_id}' expired at {stored.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    return stored.principal


def bootstrap_admin(
    keys: KeyStore, data_dir: Path, env_key: str | None, audit: AuditLog | None = None
) -> None:
    """Make sure someone can administer the server.

    With ``MODELBAY_ADMIN_KEY`` that key is the admin key. Otherwise, when no admin key
    is active, one is created, logged once and written to ``data_dir/admin.key`` (0600).
    """
    if env_key is not None:
        created = keys.ensure_env_admin(env_key)
        if created is None:
            log.warning("MODELBAY_ADMIN_KEY names a revoked key; it stays revoked")
        elif audit is not None and created:
            _audit_created(audit, key_id_for(env_key))
        return
    path = data_dir / ADMIN_KEY_FILE
    if keys.has_active_admin():
        if path.exists():
            log.info("the admin key is in %s", path)
        return
    record, token = keys.create_key(tenant="default", role=Role.ADMIN, name=BOOTSTRAP_NAME)
    _write_private(path, token + "\n")
    if audit is not None:
        _audit_created(audit, record.key_id)
    log.warning(
        "\n\n  modelbay created an admin API key (%s); it is shown this once:\n\n"
        "      %s\n\n  It is also in %s (readable only by you). Use it with\n"
        "      export MODELBAY_API_KEY=$(cat %s)\n",
        record.key_id,
        token,
        path,
        path,
    )


def _audit_created(audit: AuditLog, key_id: str) -> None:
    audit.append(
        actor="system",
        action="access.bootstrap_admin",
        target={"key_id": key_id, "tenant": "default", "role": "admin"},
        result=201,
    )


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
