"""Registry operations over SQL: models, versions, version files and aliases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelbay.errors import Conflict, InvalidRequest, NotFound, UnknownReference
from modelbay.registry.records import FileEntry, ModelRecord, NewVersion, VersionRecord
from modelbay.registry.tables import (
    DEFAULT_TENANT_ID,
    AliasRow,
    DatasetVersionRow,
    DeploymentRow,
    FileRow,
    JobRow,
    ModelRow,
    ModelShareRow,
    TenantRow,
    VersionRow,
    as_utc,
    utcnow,
)
from modelbay.tensors import Signature

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
LATEST = "latest"
MAX_VERSION = 2**31 - 1
"""The largest version number (a 32-bit column on PostgreSQL)."""


def check_model_name(name: str, what: str = "model") -> str:
    if not MODEL_NAME.match(name):
        raise InvalidRequest(
            f"invalid {what} name '{name}': use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="name",
        )
    return name


def check_alias_name(alias: str) -> str:
    if not ALIAS_NAME.match(alias) or alias == LATEST:
        raise InvalidRequest(
            f"invalid alias '{alias}': use 1-64 letters, digits, '_' or '-', starting with a "
            f"letter; '{LATEST}' is reserved",
            param="alias",
        )
    return alias


class Registry:
    """What exists: models, their immutable versions and movable aliases."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # models

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        task: str | None = None,
        labels: list[str] | None = None,
        tags: dict[str, str] | None = None,
        tenant_id: int = DEFAULT_TENANT_ID,
    ) -> ModelRecord:
        check_model_name(name)
        try:
            with self._session() as s:
                row = ModelRow(
                    name=name,
                    description=description,
                    task=task,
                    labels=labels,
                    tags=tags or {},
                    tenant_id=tenant_id,
                )
                s.add(row)
                s.flush()
                s.refresh(row)
                return _model_record(row)
        except IntegrityError:
            raise Conflict(f"model '{name}' already exists", param="name") from None

    def reachable(self) -> bool:
        """Whether the database answers (``SELECT 1``): the readiness check, cheap."""
        try:
            with self._session() as s:
                s.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def list_models(self, visible_to: int | None = None) -> list[ModelRecord]:
        """Every model, or those tenant ``visible_to`` owns or was given (shared, public)."""
        with self._session() as s:
            query = select(ModelRow).options(*_model_loads()).order_by(ModelRow.name)
            if visible_to is not None:
                shared = select(ModelShareRow.model_id).where(ModelShareRow.tenant_id == visible_to)
                query = query.where(
                    or_(
                        ModelRow.tenant_id == visible_to,
                        ModelRow.visibility == "public",
                        ModelRow.id.in_(shared),
                    )
                )
            return [_model_record(r) for r in s.scalars(query)]

    def set_access(self, name: str, *, public: bool, shared_with: list[str]) -> ModelRecord:
        """Make a model public or private, and share it with exactly these tenants."""
        with self._session() as s:
            row = _model_row(s, name)
            tenants = []
            for tenant in dict.fromkeys(shared_with):
                found = s.scalar(select(TenantRow).where(TenantRow.name == tenant))
                if found is None:
                    raise UnknownReference(
                        f"shared_with: tenant '{tenant}' not found", param="shared_with"
                    )
                tenants.append(found)
            row.visibility = "public" if public else "private"
            row.shares = [ModelShareRow(tenant=t) for t in tenants if t.id != row.tenant_id]
            s.flush()
            s.refresh(row)
            return _model_record(row)

    def get_model(self, name: str) -> ModelRecord:
        with self._session() as s:
            return _model_record(_model_row(s, name))

    def update_model(self, name: str, **fields: Any) -> ModelRecord:
        """Set the given fields; ``None`` clears one."""
        with self._session() as s:
            row = _model_row(s, name)
            for key, value in fields.items():
                setattr(row, key, _cleared(key) if value is None else value)
            s.flush()
            return _model_record(row)

    def delete_model(self, name: str) -> set[str]:
        """Delete a model with its versions and aliases; returns digests no longer used."""
        with self._session() as s:
            row = _model_row(s, name)
            digests = {f.digest for v in row.versions for f in v.files}
            s.delete(row)
            s.flush()
            return unreferenced(s, digests)

    # versions

    def add_version(
        self, name: str, new: NewVersion, *, tenant_id: int = DEFAULT_TENANT_ID, own: bool = False
    ) -> VersionRecord:
        """Record a new version numbered one past the highest; creates the model in
        ``tenant_id`` if needed. With ``own`` the model must belong to that tenant."""
        check_model_name(name)
        for _ in range(5):
            try:
                with self._session() as s:
                    model = s.scalar(select(ModelRow).where(ModelRow.name == name))
                    if model is None:
                        model = ModelRow(name=name, description="", tags={}, tenant_id=tenant_id)
                        s.add(model)
                        s.flush()
                    elif own and model.tenant_id != tenant_id:
                        raise Conflict(
                            f"the name '{name}' is taken; model names are global", param="name"
                        )
                    number = (
                        s.scalar(
                            select(func.max(VersionRow.number)).where(
                                VersionRow.model_id == model.id
                            )
                        )
                        or 0
                    ) + 1
                    row = VersionRow(
                        model=model,
                        number=number,
                        format=new.format,
                        entrypoint=new.entrypoint,
                        signature=new.signature.model_dump(),
                        description=new.description,
                        meta=new.metadata,
                        metrics=new.metrics,
                        source=new.source,
                        tags=new.tags,
                        created_by=new.created_by,
                        files=[FileRow(**f.model_dump()) for f in new.files],
                    )
                    s.add(row)
                    model.updated_at = utcnow()
                    s.flush()
                    return _version_record(row, [])
            except IntegrityError:
                continue  # another push took the same number; take the next one
        raise Conflict(f"could not assign a version number to '{name}'; retry the push")

    def list_versions(self, name: str) -> list[VersionRecord]:
        with self._session() as s:
            model = _model_row(s, name)
            aliases = _aliases_by_version(model)
            return [_version_record(v, aliases.get(v.id, [])) for v in model.versions]

    def get_version(self, name: str, ref: str | int) -> VersionRecord:
        """A version by number, alias or ``latest``."""
        with self._session() as s:
            model = _model_row(s, name)
            row = _resolve(model, ref)
            return _version_record(row, _aliases_by_version(model).get(row.id, []))

    def delete_version(self, name: str, number: int) -> set[str]:
        """Delete one version; returns digests no longer used by any version."""
        with self._session() as s:
            model = _model_row(s, name)
            row = _resolve(model, number)
            pointing = [a.name for a in model.aliases if a.version_id == row.id]
            if pointing:
                raise Conflict(
                    f"version {number} of '{name}' is the target of alias(es) "
                    f"{', '.join(pointing)}; move or delete them first",
                    param="version",
                )
            pinned = s.scalar(
                select(DeploymentRow.name).where(
                    DeploymentRow.model_id == model.id,
                    or_(
                        DeploymentRow.target == str(number),
                        DeploymentRow.canary_target == str(number),
                    ),
                )
            )
            if pinned is not None:
                raise Conflict(
                    f"version {number} of '{name}' is served by deployment '{pinned}'; "
                    "change or undeploy it first",
                    param="version",
                )
            following = s.scalar(
                select(DeploymentRow.name).where(
                    DeploymentRow.model_id == model.id,
                    or_(DeploymentRow.target == LATEST, DeploymentRow.canary_target == LATEST),
                )
            )
            if following is not None and len(model.versions) == 1:
                raise Conflict(
                    f"version {number} is the last version of '{name}', and deployment "
                    f"'{following}' serves its latest; undeploy it first",
                    param="version",
                )
            digests = {f.digest for f in row.files}
            s.delete(row)
            model.updated_at = utcnow()
            s.flush()
            return unreferenced(s, digests)

    # aliases

    def set_alias(self, name: str, alias: str, version: int) -> VersionRecord:
        check_alias_name(alias)
        with self._session() as s:
            model = _model_row(s, name)
            target = _resolve(model, version)
            existing = next((a for a in model.aliases if a.name == alias), None)
            if existing is None:
                model.aliases.append(AliasRow(name=alias, version=target))
            else:
                existing.version = target
            model.updated_at = utcnow()
            s.flush()
            return _version_record(target, _aliases_by_version(model).get(target.id, []))

    def delete_alias(self, name: str, alias: str) -> None:
        with self._session() as s:
            model = _model_row(s, name)
            row = next((a for a in model.aliases if a.name == alias), None)
            if row is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'", param="alias")
            s.delete(row)
            model.updated_at = utcnow()


def parse_ref(ref: str | int) -> str | int:
    """A version reference from a URL: an integer version, an alias or ``latest``."""
    if isinstance(ref, int):
        return ref
    return int(ref) if ref.isascii() and ref.isdigit() else ref


def _model_loads() -> list[Any]:
    return [
        selectinload(ModelRow.tenant),
        selectinload(ModelRow.shares).selectinload(ModelShareRow.tenant),
        selectinload(ModelRow.versions).selectinload(VersionRow.files),
        selectinload(ModelRow.aliases).selectinload(AliasRow.version),
    ]


def _model_row(s: Session, name: str) -> ModelRow:
    if not MODEL_NAME.match(name):  # no such name can exist; and PostgreSQL refuses NUL
        raise NotFound(f"model '{name}' not found", param="model")
    row = s.scalar(select(ModelRow).where(ModelRow.name == name).options(*_model_loads()))
    if row is None:
        raise NotFound(f"model '{name}' not found", param="model")
    return row


def _resolve(model: ModelRow, ref: str | int) -> VersionRow:
    ref = parse_ref(ref)
    if isinstance(ref, int):
        for v in model.versions:
            if v.number == ref:
                return v
        raise NotFound(f"model '{model.name}' has no version {ref}", param="version")
    if ref == LATEST:
        if not model.versions:
            raise NotFound(f"model '{model.name}' has no versions yet", param="version")
        return model.versions[-1]
    for a in model.aliases:
        if a.name == ref:
            return a.version
    raise NotFound(f"model '{model.name}' has no version or alias '{ref}'", param="version")


def _aliases_by_version(model: ModelRow) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    for a in model.aliases:
        result.setdefault(a.version_id, []).append(a.name)
    return result


def unreferenced(s: Session, digests: set[str]) -> set[str]:
    """Which of ``digests`` no model file, dataset version or job checkpoint uses."""
    if not digests:
        return set()
    used = set(s.scalars(select(FileRow.digest).where(FileRow.digest.in_(digests))))
    used |= set(
        s.scalars(select(DatasetVersionRow.digest).where(DatasetVersionRow.digest.in_(digests)))
    )
    used |= set(
        s.scalars(select(JobRow.checkpoint_digest).where(JobRow.checkpoint_digest.in_(digests)))
    )
    return digests - used


def _cleared(field: str) -> Any:
    """A cleared model field: the NOT NULL columns hold their empty value instead."""
    return {"description": "", "tags": {}}.get(field)


def _model_record(row: ModelRow) -> ModelRecord:
    return ModelRecord(
        name=row.name,
        description=row.description,
        task=row.task,
        labels=row.labels,
        tags=row.tags or {},
        latest_version=row.versions[-1].number if row.versions else None,
        aliases={a.name: a.version.number for a in row.aliases},
        tenant=row.tenant.name,
        visibility=row.visibility,
        shared_with=sorted(share.tenant.name for share in row.shares),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _version_record(row: VersionRow, aliases: list[str]) -> VersionRecord:
    return VersionRecord(
        model=row.model.name,
        version=row.number,
        format=row.format,
        entrypoint=row.entrypoint,
        files=[FileEntry(path=f.path, digest=f.digest, size=f.size) for f in row.files],
        signature=Signature.model_validate(row.signature),
        description=row.description,
        metadata=row.meta or {},
        metrics=row.metrics or {},
        source=row.source or {},
        tags=row.tags or {},
        aliases=sorted(aliases),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )
