"""Checking a pushed model by loading it, in a short-lived process of its own.

The frontend never imports a model framework nor runs an uploaded model's code: the
catalog stages the files, then ``WorkerValidator`` has the zygote fork a child that loads
the model with its runtime (which reads or checks the signature), answers the signature
or the refusal, and exits. A model that takes longer than the timeout to load, or that
kills its process, is refused with a message that says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import traceback
from pathlib import Path
from typing import Any

from modelbay.errors import InvalidArtifact, ModelbayError
from modelbay.runtimes.base import Checked
from modelbay.tensors import Signature

VALIDATE_TIMEOUT_S = 300.0
log = logging.getLogger("modelbay.validator")


class WorkerValidator:
    """The catalog's validator: each check in a new child of the zygote."""

    def __init__(self, launcher: Any, *, timeout_s: float = VALIDATE_TIMEOUT_S):
        self.launcher = launcher  # a zygote.Launcher
        self.timeout_s = timeout_s

    def __call__(
        self,
        format: str,
        model_dir: Path,
        entrypoint: str,
        signature: Signature | None,
        *,
        threads: int,
    ) -> Checked:
        from modelbay.serving.zygote import recv_json, send_json

        job = {
            "format": format,
            "dir": str(model_dir),
            "entrypoint": entrypoint,
            "signature": signature.model_dump() if signature is not None else None,
            "threads": threads,
        }
        ours, theirs = socket.socketpair()
        try:
            pid = self.launcher.fork("validate", theirs, threads)
        finally:
            theirs.close()
        with ours:
            ours.settimeout(self.timeout_s)
            try:
                send_json(ours, job)
                result = recv_json(ours)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise InvalidArtifact(
                    f"the model did not load within {self.timeout_s:g} s", param="files"
                ) from None
            except OSError:
                result = None
        if result is None:
            raise InvalidArtifact(
                "loading the model ended its process before it could be checked",
                param="files",
            )
        return _signature_of(result)


def validate_here(
    format: str, model_dir: Path, entrypoint: str, signature: Signature | None, *, threads: int
) -> Checked:
    """The same check in this process (``MODELBAY_REPLICA_MODE=inprocess``: debugging)."""
    return _signature_of(
        answer(
            {
                "format": format,
                "dir": str(model_dir),
                "entrypoint": entrypoint,
                "signature": signature.model_dump() if signature is not None else None,
                "threads": threads,
            }
        )
    )


def answer(job: dict[str, Any]) -> dict[str, Any]:
    """Check the model a job names: ``{"signature": ..., "metadata": ...}`` or
    ``{"error": ...}``."""
    from modelbay.runtimes import runtime_class

    given = job["signature"]
    try:
        checked = runtime_class(job["format"]).check(
            Path(job["dir"]),
            job["entrypoint"],
            Signature.model_validate(given) if given is not None else None,
            threads=job["threads"],
        )
        return {"signature": checked.signature.model_dump(), "metadata": checked.metadata}
    except ModelbayError as exc:
        return {"error": {"status": exc.status, "message": exc.message, "param": exc.param}}
    except Exception as exc:  # a runtime bug: logged here, never shown to the client
        log.error("checking a model failed: %s", "".join(traceback.format_exception(exc)))
        return {
            "error": {"status": 500, "message": "the model could not be checked", "param": None}
        }


def _signature_of(result: dict[str, Any]) -> Checked:
    if "error" in result:
        error = result["error"]
        raise ModelbayError(error["message"], status=error["status"], param=error["param"])
    return Checked(Signature.model_validate(result["signature"]), result.get("metadata") or {})
