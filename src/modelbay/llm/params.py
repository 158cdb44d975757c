"""Sampling parameters of one request, validated against OpenAI's ranges."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_STOP_STRINGS = 4
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class InvalidParameter(ValueError):
    """A sampling parameter out of range; `param` names the field, the message the valid range."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token and when to stop; 0 / 1.0 / () mean "off" where it applies."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1
    json_schema: str | None = None
    json_object: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (
            self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.repetition_penalty != 1.0
        )

    @property
    def has_grammar(self) -> bool:
        return self.json_schema is not None or self.json_object

    def validate(self) -> None:
        """Raise InvalidParameter for the first field outside its valid range."""
        _check_int("max_tokens", self.max_tokens, 1, None)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_int("top_k", self.top_k, -1, None, note=" (0 or -1: no top-k)")
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _check_float("repetition_penalty", self.repetition_penalty, 0.0, math.inf, low_open=True)
        _check_int("n", self.n, 1, MAX_N, note=f" (this server returns at most {MAX_N} choices)")
        _check_int("top_logprobs", self.top_logprobs, 0, MAX_TOP_LOGPROBS)
        if self.top_logprobs > 0 and not self.logprobs:
            raise InvalidParameter("top_logprobs", "top_logprobs requires logprobs to be true")
        if self.seed is not None:
            _check_int("seed", self.seed, _INT64_MIN, _INT64_MAX)
        self._validate_stop()
        self._validate_response_format()

    def _validate_stop(self) -> None:
        if len(self.stop) > MAX_STOP_STRINGS:
            raise InvalidParameter(
                "stop", f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(self.stop)}"
            )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidParameter("stop", "stop strings must be non-empty strings")
        for token_id in self.stop_token_ids:
            _check_int("stop_token_ids", token_id, 0, None)

    def _validate_response_format(self) -> None:
        if self.json_schema is None:
            return
        if self.json_object:
            raise InvalidParameter(
                "json_schema", "json_schema and json_object are exclusive; set one of them"
            )
        try:
            schema = json.loads(self.json_schema)
        except json.JSONDecodeError as exc:
            raise InvalidParameter("json_schema", f"json_schema is not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise InvalidParameter(
                "json_schema", "json_schema must be a JSON object (a JSON Schema document)"
            )


def _check_int(param: str, value: object, low: int, high: int | None, note: str = "") -> None:
    valid = f">= {low}" if high is None else f"between {low} and {high}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(param, f"{param} must be an integer {valid}{note}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise InvalidParameter(param, f"{param} must be {valid}{note}, got {value}")


def _check_float(
    param: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    if low_open:
        valid = f"> {low:g}" if math.isinf(high) else f"in ({low:g}, {high:g}]"
    else:
        valid = f"between {low:g} and {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(param, f"{param} must be a number {valid}, got {value!r}")
    in_range = (low < value if low_open else low <= value) and value <= high
    if not in_range or not math.isfinite(value):
        raise InvalidParameter(param, f"{param} must be {valid}, got {value}")
