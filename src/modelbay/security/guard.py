"""The gate every transport calls: authenticate, limit, authorize, count, audit refusals.

REST (middleware and one route dependency) and gRPC (one wrapper around every method)
hold one ``Guard``; neither decides anything itself. Cached answers cost no thread hop;
a cache miss reads the database in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelbay.errors import Forbidden, ModelbayError, Overloaded, Unauthenticated
from modelbay.flights import Flights
from modelbay.security.access import Hidden, ResourceDirectory, Rule, authorize
from modelbay.security.audit import AuditLog
from modelbay.security.authn import Authenticator
from modelbay.security.console_sessions import ConsoleSession, ConsoleSessions
from modelbay.security.limits import RateLimiter, Verdict
from modelbay.security.principals import Principal
from modelbay.security.refusals import RefusalThrottle
from modelbay.security.tokens import key_id_of
from modelbay.security.usage import UsageMeter, seconds_to_midnight

log = logging.getLogger("modelbay.security")


@dataclass(frozen=True)
class Caller:
    """Where a request came from, for the audit trail."""

    client: str | None
    action: str
    target: dict[str, Any]


class RateLimited(Overloaded):
    """A 429 from a rate limit or quota; ``verdict`` carries the ``X-RateLimit-*`` state."""

    def __init__(self, message: str, verdict: Verdict):
        super().__init__(message, retry_after=verdict.retry_after)
        self.verdict = verdict


class Guard:
    """Authentication, rate limits, authorization and usage, for every transport."""

    def __init__(
        self,
        authenticator: Authenticator,
        directory: ResourceDirectory,
        limiter: RateLimiter,
        meter: UsageMeter,
        audit: AuditLog,
        refusals: RefusalThrottle | None = None,
        *,
        before_auth: Callable[[], None] | None = None,
        sessions: ConsoleSessions | None = None,
    ):
        self.before_auth = before_auth
        self.sessions = sessions
        """Web console sessions (cookies); None: the console's cookies authenticate nothing."""
        """Called before each authentication: applies other frontends' changes to caches."""
        self.authenticator = authenticator
        self.directory = directory
        self.limiter = limiter
        self.meter = meter
        self.audit = audit
        self.refusals = refusals or RefusalThrottle()
        self.flights = Flights()
        """Database reads behind the caches: one per key at a time."""

    async def authenticate(self, token: str, caller: Caller) -> Principal:
        if self.before_auth is not None:
            self.before_auth()
        try:
            hit, principal = self.authenticator.cached(token)
            if not hit:
                principal = await self.flights.call(
                    ("key", token), self.authenticator.resolve, token
                )
            elif self.authenticator.due(token):
                self.flights.start(("key", token), self.authenticator.refresh, token)
        except Unauthenticated as exc:
            await self.record_refusal(None, exc, caller, claimed=key_id_of(token))
            raise
        assert principal is not None
        return principal

    def forget_principals(self) -> None:
        """Drop cached keys and console sessions, after a key or tenant changed here."""
        self.authenticator.forget()
        if self.sessions is not None:
            self.sessions.forget()

    async def authenticate_session(self, token: str, caller: Caller) -> ConsoleSession:
        """The console session behind a cookie value; refusals are audited as keys' are."""
        if self.sessions is None:
            raise Unauthenticated("console sessions are not enabled on this server")
        if self.before_auth is not None:
            self.before_auth()
        try:
            hit, session = self.sessions.cached(token)
            if not hit:
                session = await asyncio.to_thread(self.sessions.resolve, token)
        except Unauthenticated as exc:
            await self.record_refusal(None, exc, caller)
            raise
        assert session is not None
        return session

    def admit(self, p: Principal, *, exempt: bool = False) -> Verdict:
        """Take one request from ``p``'s limits and count it, or raise ``RateLimited``;
        an ``exempt`` request is counted and let through even when over a limit."""
        now = self.meter.now()
        verdict = self.limiter.admit(p, now, seconds_to_midnight(now), self.meter.used_today)
        if not verdict.admitted and not exempt:
            assert verdict.tightest is not None
            raise RateLimited(_limit_message(p, verdict), verdict)
        self.meter.count(p, now)
        return verdict

    def add_seconds(self, p: Principal, seconds: float) -> None:
        self.meter.add_seconds(p, self.meter.now(), seconds)

    def admit_tokens(self, p: Principal) -> None:
        """Raise ``RateLimited`` when ``p``'s key or tenant has spent its LLM tokens of the
        minute or of the day; takes nothing (``add_tokens`` does, once they are known).
        Call it on the event loop, as ``admit``."""
        now = self.meter.now()
        verdict = self.limiter.admit_tokens(
            p, now, seconds_to_midnight(now), self.meter.tokens_today
        )
        if not verdict.admitted:
            raise RateLimited(_limit_message(p, verdict), verdict)

    def add_tokens(self, p: Principal, prompt_tokens: int, completion_tokens: int) -> None:
        """Take the LLM tokens a request of ``p`` used from its key's and tenant's token
        limits, and count them in its usage. Call it on the event loop, as ``admit``."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError(f"negative token counts: {prompt_tokens}, {completion_tokens}")
        now = self.meter.now()
        self.limiter.debit_tokens(p, now, prompt_tokens + completion_tokens)
        self.meter.add_tokens(p, now, prompt_tokens, completion_tokens)

    async def authorize(
        self, p: Principal | None, rule: Rule, name: str | None, caller: Caller
    ) -> None:
        """Raise the refusal ``p`` gets for ``rule`` on ``name``; refusals are audited."""
        owner = None
        if rule.resource is not None and name is not None and not rule.public and p is not None:
            owner = await self._owner(rule, name)
        try:
            authorize(p, rule, name, owner)
        except (Unauthenticated, Forbidden, Hidden) as exc:
            await self.record_refusal(p, exc, caller)
            raise

    async def record_refusal(
        self,
        p: Principal | None,
        exc: ModelbayError,
        caller: Caller,
        claimed: str | None = None,
    ) -> None:
        """Audit a refusal; ``claimed`` is the key id a refused secret names (maybe forged)."""
        action = "auth.denied" if exc.status == 401 else "authz.denied"
        await self.flush_refusals()  # a window that is over is summed up before this one
        if not self.refusals.admit(caller.client, action, self.meter.now()):
            return
        details = {"reason": exc.message}
        if claimed is not None:
            details["claimed_key_id"] = claimed
        if p is not None:
            details["tenant"] = p.tenant
            if p.account is not None:
                details["account"] = p.account
        try:
            await asyncio.to_thread(
                self.audit.append,
                actor=p.key_id if p is not None else "anonymous",
                action=action,
                target=caller.target,
                result=exc.status,
                client=caller.client,
                details=details,
            )
        except Exception:
            log.exception("could not audit a refused %s", caller.action)

    async def flush_refusals(self, *, final: bool = False) -> None:
        """Audit the summary of a refusal window that is over (called periodically, and
        with ``final`` at shutdown)."""
        held_back = self.refusals.summary(self.meter.now(), final=final)
        if held_back is not None:
            await self._audit_held_back(held_back)

    async def _audit_held_back(self, details: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self.audit.append,
                actor="anonymous",
                action="auth.denied.held_back",
                target={},
                result=429,
                details=details,
            )
        except Exception:
            log.exception("could not audit %d held-back refusals", details["held_back"])

    async def _owner(self, rule: Rule, name: str) -> Any:
        assert rule.resource is not None
        if rule.resource == "model":
            hit, owner = self.directory.cached_model(name)
            if hit:
                if self.directory.model_due(name):
                    self.flights.start(("owner", name), self.directory.refresh_model, name)
                return owner
            return await self.flights.call(("owner", name), self.directory.owner, "model", name)
        return await asyncio.to_thread(self.directory.owner, rule.resource, name)


def _limit_message(p: Principal, verdict: Verdict) -> str:
    assert verdict.tightest is not None
    t = verdict.tightest
    key, tenant = f"key '{p.key_id}'", f"tenant '{p.tenant}'"
    what = {
        "key": f"{key} is over its rate limit of {t.limit:g} requests per second",
        "tenant": f"{tenant} is over its rate limit of {t.limit:g} requests per second",
        "key-day": f"{key} has used its daily quota of {t.limit:g} requests",
        "tenant-day": f"{tenant} has used its daily quota of {t.limit:g} requests",
        "key-tokens": f"{key} has used its {t.limit:.0f} tokens per minute",
        "tenant-tokens": f"{tenant} has used its {t.limit:.0f} tokens per minute",
        "key-tokens-day": f"{key} has used its daily quota of {t.limit:.0f} tokens",
        "tenant-tokens-day": f"{tenant} has used its daily quota of {t.limit:.0f} tokens",
    }[t.name]
    return f"{what}; retry after {verdict.retry_after:.1f} s"
