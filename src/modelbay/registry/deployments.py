"""Deployment rows: the desired state that the serving controller converges to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelbay.errors import Conflict, InvalidRequest, NotFound
from modelbay.registry.records import DeploymentConfig, DeploymentRecord
from modelbay.registry.repository import LATEST, MAX_VERSION, check_alias_name, parse_ref
from modelbay.registry.tables import DeploymentRow, ModelRow, as_utc, utcnow


def check_target(target: str) -> str:
    """A deployment target is a version number, an alias or ``latest``."""
    ref = parse_ref(target)
    if isinstance(ref, int):
        if not 1 <= ref <= MAX_VERSION:
            raise InvalidRequest(
                f"invalid version {ref}: versions are 1 to {MAX_VERSION}", param="target"
            )
        return str(ref)
    return ref if ref == LATEST else check_alias_name(ref)


class DeploymentStore:
    """Create, read, change and delete deployment rows (one deployment per model)."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(
        self,
        model: str,
        target: str,
        config: DeploymentConfig,
        canary_target: str | None = None,
        canary_weight: int = 0,
    ) -> DeploymentRecord:
        try:
            with self._sessions.begin() as s:
                model_row = s.scalar(select(ModelRow).where(ModelRow.name == model))
                if model_row is None:
                    raise NotFound(f"model '{model}' not found", param="model")
                row = DeploymentRow(
                    name=model,
                    model=model_row,
                    target=check_target(target),
                    canary_target=check_target(canary_target) if canary_target else None,
                    canary_weight=canary_weight,
                    config=config.model_dump(),
                )
                s.add(row)
                s.flush()
                return _record(row)
        except IntegrityError:
            raise Conflict(
                f"model '{model}' is already deployed; change the deployment or undeploy it",
                param="model",
            ) from None

    def list(self, tenant_id: int | None = None) -> list[DeploymentRecord]:
        """Every deployment, or those of models tenant ``tenant_id`` owns."""
        with self._sessions.begin() as s:
            query = select(DeploymentRow).order_by(DeploymentRow.name)
            if tenant_id is not None:
                query = query.join(ModelRow).where(ModelRow.tenant_id == tenant_id)
            return [_record(r) for r in s.scalars(query)]

    def get(self, name: str) -> DeploymentRecord:
        with self._sessions.begin() as s:
            return _record(_row(s, name))

    def update(self, name: str, **changes: Any) -> DeploymentRecord:
        """Change target, canary or config fields; config changes merge into the current one."""
        with self._sessions.begin() as s:
            row = _row(s, name)
            if "target" in changes:
                row.target = check_target(changes.pop("target"))
            if "canary_target" in changes:
                canary = changes.pop("canary_target")
                row.canary_target = check_target(canary) if canary else None
            if "canary_weight" in changes:
                row.canary_weight = changes.pop("canary_weight")
            if changes:
                merged = DeploymentConfig.parse({**row.config, **changes})
                row.config = merged.model_dump()
            row.updated_at = utcnow()
            s.flush()
            return _record(row)

    def delete(self, name: str) -> None:
        with self._sessions.begin() as s:
            s.delete(_row(s, name))


def _row(s: Session, name: str) -> DeploymentRow:
    row = s.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
    if row is None:
        raise NotFound(f"deployment '{name}' not found", param="deployment")
    return row


def _record(row: DeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        name=row.name,
        model=row.model.name,
        target=row.target,
        canary_target=row.canary_target,
        canary_weight=row.canary_weight,
        config=DeploymentConfig.model_validate(row.config),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
