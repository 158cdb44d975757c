"""Turning framework exceptions into short messages a client can act on."""

from __future__ import annotations

import re

# "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : " and "RuntimeError: " say nothing to a client.
_NOISE_PREFIX = re.compile(
    r"^(\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*|\w*(Error|Exception):\s*)"
)

# ORT_ENFORCE failures name the C++ source line, function and condition before the reason.
_FAILED_CHECK = re.compile(r"\S+\.(?:h|hpp|cc|cpp|cu):\d+ .*? was false\.\s*")


# Absolute paths reveal the server's layout (staging and cache directories); keep the name.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^\s/:'\"]+)+/([^\s/:'\"]+)")


def framework_message(exc: BaseException) -> str:
    """The gist of a framework exception on one line, without traceback or error-code prefix."""
    text = str(exc).strip()
    if "Traceback" in text:
        # TorchScript prepends the interpreter stack; the cause is the last line.
        text = [line for line in text.splitlines() if line.strip()][-1]
    text = _FAILED_CHECK.sub("", _NOISE_PREFIX.sub("", text.strip()))
    text = _ABSOLUTE_PATH.sub(r"\1", text)
    return " ".join(text.split()) or type(exc).__name__
