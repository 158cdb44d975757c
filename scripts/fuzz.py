"""Explore the HTTP API with schemathesis: every phase, positive and negative data, a new seed.

Starts a real server (SQLite, then PostgreSQL when its binaries are installed) holding the
models the fuzz dictionaries name, and runs ``schemathesis run`` against it with the admin
key. The seed is printed first: ``--seed`` replays a run. Exit status: non-zero when any run
found a failure (a 5xx, an undocumented status, header or body, a wrong acceptance).

    .venv/bin/python scripts/fuzz.py                      # a few hundred examples per operation
    .venv/bin/python scripts/fuzz.py --max-time 120       # CI: a bounded budget per database
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz.target import CONFIG_FILE, fuzz_target
from tests.integration.http import ADMIN_KEY
from tests.postgres import postgres_server

from modelbay.security.tokens import key_id_for

HOOKS = ROOT / "tests" / "fuzz" / "hooks.py"
CI_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
"""What CI holds every new seed to. The stateful checks of resource semantics (a created
resource found, a deleted one gone) and of schema strictness run in ``make fuzz``, where a
developer can act on what they find."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: a new random one")
    parser.add_argument("--examples", type=int, default=300, help="per operation and phase")
    parser.add_argument("--max-time", type=int, default=None, help="seconds per database")
    parser.add_argument(
        "--database", choices=["sqlite", "postgres", "both"], default="both", help="registry"
    )
    parser.add_argument(
        "--phases", default="examples,coverage,fuzzing,stateful", help="schemathesis phases"
    )
    parser.add_argument(
        "--checks",
        default=None,
        help="schemathesis checks to run (comma-separated), or 'ci' for no 5xx and every "
        "answer as documented; default: every check the config enables",
    )
    parser.add_argument("--report-dir", type=Path, default=ROOT / "fuzz-report")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"fuzz seed {seed} (replay with --seed {seed})", flush=True)
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    failed = []
    for database in databases:
        status = fuzz_one(database, seed, args)
        if status is None:
            print(f"{database}: skipped, PostgreSQL server binaries (initdb) not installed")
        elif status != 0:
            failed.append(database)
    print(f"fuzz seed {seed}: " + (f"failures on {', '.join(failed)}" if failed else "no failures"))
    return 1 if failed else 0


def fuzz_one(database: str, seed: int, args: argparse.Namespace) -> int | None:
    """Run schemathesis against a fresh server on ``database``; None when it cannot run."""
    with ExitStack() as stack:
        url = None
        if database == "postgres":
            url = stack.enter_context(postgres_server())
            if url is None:
                return None
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelbay-fuzz-")))
        server = stack.enter_context(fuzz_target(root, url))
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG_FILE),
            "--no-color",
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--seed",
            str(seed),
            "--max-examples",
            str(args.examples),
            "--phases",
            args.phases,
            "--mode",
            "all",
            # one worker: hypothesis describes filters with ast.parse, which CPython 3.11
            # can get wrong from two threads at once ("AST constructor recursion depth")
            "--workers",
            "1",
            "--report",
            "junit,pytest",
            "--report-dir",
            str(args.report_dir / database),
        ]
        if args.max_time is not None:
            command += ["--max-time", str(args.max_time)]
        if args.checks is not None:
            command += ["--checks", CI_CHECKS if args.checks == "ci" else args.checks]
        print(f"{database}: {server.url}, server log {server.log_path}", flush=True)
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "MODELBAY_FUZZ_KEY_ID": key_id_for(ADMIN_KEY),
        }
        done = subprocess.run(command, check=False, env=env)
        if done.returncode != 0:
            log = server.log()
            print(f"--- {database} server log (last 4000 characters) ---\n{log[-4000:]}")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
