"""Bounded field types for what clients send: every number finite and in a documented range,
every string within its column and free of NUL (PostgreSQL refuses NUL in text).

The bounds are part of the OpenAPI schema, so clients and fuzzers see them; a value outside
them is answered 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import Field

from modelbay.registry.repository import MAX_VERSION
from modelbay.security.limits import MAX_QUOTA, MAX_RATE_RPS, MIN_RATE_RPS

NO_NUL = r"^[^\x00]*$"
NAME_LENGTH = 128
"""Model, deployment, account and key names."""
TENANT_LENGTH = 64
DESCRIPTION_LENGTH = 10_000
LABEL_LENGTH = 256
TAG_LENGTH = 256


def text(max_length: int, *, min_length: int = 0, description: str | None = None) -> Any:
    """A string of at most ``max_length`` characters without NUL."""
    return Field(
        min_length=min_length, max_length=max_length, pattern=NO_NUL, description=description
    )


def query_text(max_length: int, description: str) -> Any:
    """``text`` for a query parameter."""
    return Query(max_length=max_length, pattern=NO_NUL, description=description)


RateLimitRps = Annotated[
    float,
    Field(
        ge=MIN_RATE_RPS,
        le=MAX_RATE_RPS,
        allow_inf_nan=False,
        strict=True,  # `true` is no rate
        description=f"Requests per second, {MIN_RATE_RPS:g} to {MAX_RATE_RPS:,.0f}",
    ),
]
DailyQuota = Annotated[
    int, Field(ge=1, le=MAX_QUOTA, strict=True, description="Requests per UTC day, 1 to 2^63-1")
]
TokensPerMinute = Annotated[
    int,
    Field(ge=1, le=MAX_QUOTA, strict=True, description="LLM tokens per minute, 1 to 2^63-1"),
]
MaxJobs = Annotated[
    int,
    Field(ge=1, le=10_000, strict=True, description="Training jobs queued or running at once"),
]
TrainingSecondsPerDay = Annotated[
    float,
    Field(gt=0, le=1e12, description="CPU seconds of training per UTC day, over all its keys"),
]
TokensPerDay = Annotated[
    int,
    Field(ge=1, le=MAX_QUOTA, strict=True, description="LLM tokens per UTC day, 1 to 2^63-1"),
]
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]
Name = Annotated[str, text(NAME_LENGTH)]
TenantName = Annotated[str, text(TENANT_LENGTH)]
Reference = Annotated[str, text(64, description="A version number, an alias or 'latest'")]
Task = Annotated[str, text(64)]
Labels = Annotated[list[Annotated[str, text(LABEL_LENGTH)]], Field(max_length=100_000)]
Tags = dict[Annotated[str, text(TAG_LENGTH)], Annotated[str, text(TAG_LENGTH)]]
Description = Annotated[str, text(DESCRIPTION_LENGTH)]
