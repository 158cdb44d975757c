"""Web console sessions: an API key exchanged for a cookie the browser keeps HttpOnly.

The console never holds the key itself: sign-in checks it once and stores a session naming
the key (only the sha256 of the cookie's value is kept). Each request with the cookie acts
as that key, so the key's role, revocation and expiry apply as they do to the key; changes
must also carry the session's CSRF token in ``X-CSRF-Token`` (the cookie is SameSite=Strict
as well). Sign-out ends the session for every frontend sharing the database.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import sessionmaker

from modelbay.errors import Unauthenticated
from modelbay.registry.tables import ConsoleSessionRow, as_utc, utcnow
from modelbay.security.authn import CACHE_TTL_S, usable
from modelbay.security.keys import KeyStore
from modelbay.security.principals import Principal
from modelbay.security.tokens import hash_secret

COOKIE = "modelbay_session"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_CACHED = 10_000
_ENDED = "your console session has ended: sign in again"


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent, self.csrf_token)


class ConsoleSessions:
    """Sessions in the registry's database, looked up through a short cache (as keys are)."""

    def __init__(self, engine: Engine, keys: KeyStore, clock: Callable[[], float] = time.monotonic):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._keys = keys
        self._clock = clock
        self._cache: dict[str, tuple[float, ConsoleSession | None]] = {}
        self._lock = threading.Lock()

    def start(self, key_id: str, ttl_s: float, client: str | None) -> tuple[str, str, datetime]:
        """A new session of ``key_id``: (cookie value, CSRF token, expiry). Sessions that
        ended or expired are deleted on the way."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl_s)
        with self._sessions.begin() as s:
            s.execute(
                delete(ConsoleSessionRow).where(
                    (ConsoleSessionRow.expires_at < now) | ConsoleSessionRow.ended_at.is_not(None)
                )
            )
            s.add(
                ConsoleSessionRow(
                    token_hash=hash_secret(token),
                    key_id=key_id,
                    csrf_token=csrf,
                    client=client[:64] if client else None,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return token, csrf, expires_at

    def cached(self, token: str) -> tuple[bool, ConsoleSession | None]:
        """(hit, session) from the cache alone; a hit may still raise for an ended one."""
        entry = self._cache.get(hash_secret(token))
        if entry is None or self._clock() - entry[0] > CACHE_TTL_S:
            return False, None
        return True, _live(entry[1])

    def resolve(self, token: str) -> ConsoleSession:
        """The live session behind a cookie value (may query the database); 401 otherwise."""
        hit, found = self.cached(token)
        if hit:
            assert found is not None
            return found
        digest = hash_secret(token)
        with self._sessions.begin() as s:
            row = s.scalar(select(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == digest))
            found = None
            if row is not None and row.ended_at is None:
                stored = self._keys.lookup_id(row.key_id)
                if stored is not None:
                    found = ConsoleSession(usable(stored), row.csrf_token, as_utc(row.expires_at))
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (self._clock(), found)
        return _live(found)

    def end(self, token: str) -> None:
        """Sign out: the session no longer authenticates (here at once; on other frontends
        when they apply the access change the caller announces)."""
        digest = hash_secret(token)
        with self._sessions.begin() as s:
            s.execute(
                update(ConsoleSessionRow)
                .where(ConsoleSessionRow.token_hash == digest)
                .values(ended_at=utcnow())
            )
        with self._lock:
            self._cache.pop(digest, None)

    def forget(self) -> None:
        """Drop the cache, after a key, tenant or session changed."""
        with self._lock:
            self._cache.clear()


def _live(found: ConsoleSession | None) -> ConsoleSession:
    if found is None or found.expires_at <= utcnow():
        raise Unauthenticated(_ENDED)
    return found
