"""The ``modelbay`` console script as the tests run it: a subprocess against a test server."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.integration.http import ADMIN_KEY


def modelbay(
    url: str, *args: str, key: str = ADMIN_KEY, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``modelbay ARGS`` against ``url`` with ``key`` in ``MODELBAY_API_KEY``."""
    env = {**os.environ, "MODELBAY_URL": url, "MODELBAY_API_KEY": key}
    env.update(NO_COLOR="1", COLUMNS="200")  # plain, unwrapped output to assert on
    return subprocess.run(
        [sys.executable, "-m", "modelbay", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout; it must have succeeded."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout
