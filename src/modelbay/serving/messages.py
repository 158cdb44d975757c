"""Typed messages between the frontend and replica worker processes.

Errors cross as data (status, message, type), never as pickled exceptions. Tensors travel
as raw buffers next to a small JSON header (see ``ipc``), so no per-element Python work
happens for numeric data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelbay.registry import VersionRecord
from modelbay.store.crypto import Keyring


@dataclass
class ReplicaSpec:
    """What a worker needs to load one version: the record, where blobs live, threads.

    The keyring travels on the worker's stdin pipe only, never in argv or the environment.
    """

    record: VersionRecord
    blob_dir: str
    threads: int
    keyring: Keyring | None = field(default=None, repr=False)
    listen: str | None = None
    """A Unix socket path where the replica also takes tasks from other frontends."""
    options: dict[str, Any] = field(default_factory=dict)
    """Runtime options from the deployment (an LLM engine's sequences and cache size)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record.model_dump(mode="json"),
            "blob_dir": self.blob_dir,
            "threads": self.threads,
            "keys": self.keyring.encoded() if self.keyring is not None else None,
            "listen": self.listen,
            "options": self.options,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicaSpec:
        keys = data.get("keys")
        return cls(
            VersionRecord.model_validate(data["record"]),
            data["blob_dir"],
            data["threads"],
            Keyring.decode(keys) if keys else None,
            data.get("listen"),
            data.get("options") or {},
        )


@dataclass
class InferTask:
    """Frontend -> replica: run these inputs, return these outputs (None: all)."""

    id: int
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None


@dataclass
class InferDone:
    """Replica -> frontend: the outputs of task ``id``."""

    id: int
    outputs: dict[str, np.ndarray]
    compute_s: float = 0.0


@dataclass
class TaskFailed:
    """Replica -> frontend: task ``id`` (or loading, id -1) failed; ``status`` as in HTTP,
    ``param`` the request field at fault and ``code`` a machine-readable reason, if any."""

    id: int
    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None


@dataclass
class GenerateTask:
    """Frontend -> LLM replica: start generating for ``request`` (``protocols.openai``'s
    engine request: messages or prompt, and sampling parameters); events stream back."""

    id: int
    request: dict[str, Any]


@dataclass
class GenerateEvent:
    """LLM replica -> frontend: what task ``id`` generated in one engine step (the text
    and tokens of each choice since the last event); ``final`` on its last event, with
    the usage."""

    id: int
    data: dict[str, Any]
    final: bool = False


@dataclass
class AbortTask:
    """Frontend -> LLM replica: the client of task ``id`` went away; free its sequences."""

    id: int


@dataclass
class ReplicaReady:
    """Replica -> frontend, once: the model is loaded and the replica takes tasks."""

    pid: int
    load_s: float
    signature: dict[str, Any] = field(default_factory=dict)


@dataclass
class Shutdown:
    """Frontend -> replica: finish and exit."""


Message = (
    InferTask
    | InferDone
    | TaskFailed
    | ReplicaReady
    | Shutdown
    | GenerateTask
    | GenerateEvent
    | AbortTask
)
