"""The control plane's record of what exists, in SQL (SQLite by default, PostgreSQL too)."""

from modelbay.registry.db import make_engine, migrate
from modelbay.registry.deployments import DeploymentStore
from modelbay.registry.records import (
    DeploymentConfig,
    DeploymentRecord,
    FileEntry,
    ModelRecord,
    NewVersion,
    VersionRecord,
)
from modelbay.registry.repository import LATEST, Registry, parse_ref

__all__ = [
    "LATEST",
    "DeploymentConfig",
    "DeploymentRecord",
    "DeploymentStore",
    "FileEntry",
    "ModelRecord",
    "NewVersion",
    "Registry",
    "VersionRecord",
    "make_engine",
    "migrate",
    "parse_ref",
]
