"""What authentication, limits, authorization and usage counting cost per request.

Runs the ``Guard`` in-process exactly as the V2 infer fast path calls it (cached key and
model, as on a warm server), with and without limits, and prints microseconds per request
and the share of a served request that is (``--served-rps``: req/s measured by
``bench/serving.py``; its default is the CIFAR CNN's unbatched figure in
docs/performance.md).

    .venv/bin/python bench/guard.py [--requests 50000] [--served-rps 2110]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from modelbay.api.auth import bearer_token
from modelbay.registry import Registry, make_engine, migrate
from modelbay.security.access import ResourceDirectory
from modelbay.security.audit import AuditLog
from modelbay.security.authn import Authenticator
from modelbay.security.guard import Caller, Guard
from modelbay.security.keys import KeyStore
from modelbay.security.limits import RateLimiter
from modelbay.security.policy import REST_RULES
from modelbay.security.principals import Role
from modelbay.security.usage import UsageMeter

INFER = REST_RULES[("POST", "/v2/models/{name}/infer")]


async def per_request_us(guard: Guard, token: str, n: int) -> float:
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    caller = Caller("127.0.0.1", "bench", {})
    for _ in range(100):  # warm the key and model caches
        await guard.authorize(await guard.authenticate(token, caller), INFER, "m", caller)
    started = time.perf_counter()
    for _ in range(n):
        principal = await guard.authenticate(bearer_token(headers) or "", caller)
        guard.admit(principal).headers()
        await guard.authorize(principal, INFER, "m", caller)
        guard.add_seconds(principal, 0.001)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--served-rps", type=float, default=2110.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'registry.db'}")
        migrate(engine)
        keys = KeyStore(engine)
        Registry(engine).create_model("m")
        guard = Guard(
            Authenticator(keys),
            ResourceDirectory(engine),
            RateLimiter(),
            UsageMeter(engine),
            AuditLog(engine),
        )
        cases: dict[str, tuple[float | None, int | None]] = {  # (rate limit, daily quota)
            "no limits": (None, None),
            "key rate limit": (1e9, None),
            "rate limit and daily quota": (1e9, 10**12),
        }
        served_us = 1e6 / args.served_rps
        print(f"a served request at {args.served_rps:g} req/s takes {served_us:.0f} us")
        for label, (rps, quota) in cases.items():
            _, token = keys.create_key(
                tenant="default",
                role=Role.CONSUMER,
                name=label,
                rate_limit_rps=rps,
                daily_quota=quota,
            )
            cost = asyncio.run(per_request_us(guard, token, args.requests))
            print(f"{label:28s} {cost:6.1f} us per request = {cost / served_us:6.1%} of it")
        engine.dispose()


if __name__ == "__main__":
    main()
