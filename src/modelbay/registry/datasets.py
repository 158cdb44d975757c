"""Dataset rows: named, tenant-owned, versioned; each version one file in the artifact store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelbay.errors import Conflict, NotFound
from modelbay.registry.repository import check_model_name, unreferenced
from modelbay.registry.tables import DatasetRow, DatasetVersionRow, as_utc


class DatasetVersionRecord(BaseModel):
    """One uploaded file of a dataset and what reading it found."""

    dataset: str
    version: int
    format: str
    filename: str
    digest: str = Field(description="sha256 of the uploaded file")
    size: int
    schema_: dict[str, Any] = Field(
        alias="schema", description="Rows, columns and their statistics, classes"
    )
    created_by: str | None
    created_at: datetime

    model_config = {"populate_by_name": True}


class DatasetRecord(BaseModel):
    """A dataset and its newest version."""

    name: str
    tenant: str
    description: str
    versions: int
    latest: DatasetVersionRecord | None
    created_at: datetime
    updated_at: datetime


class DatasetStore:
    """Create, list, read and delete datasets; the caller stores and collects the blobs."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add_version(
        self,
        name: str,
        *,
        tenant_id: int,
        own: bool,
        format: str,
        filename: str,
        digest: str,
        size: int,
        schema: dict[str, Any],
        created_by: str | None,
        description: str = "",
    ) -> DatasetVersionRecord:
        """Record a new version of ``name`` (the dataset is created on its first version).

        With ``own``, an existing dataset must belong to ``tenant_id`` (409 otherwise).
        """
        check_model_name(name, what="dataset")
        for _ in range(3):  # two first pushes of one name race on the unique constraint
            try:
                with self._sessions.begin() as s:
                    row = _find(s, name)
                    if row is None:
                        row = DatasetRow(name=name, tenant_id=tenant_id, description=description)
                        s.add(row)
                        s.flush()
                    elif own and row.tenant_id != tenant_id:
                        raise Conflict(f"dataset '{name}' belongs to another tenant", param="name")
                    number = (
                        s.scalar(
                            select(func.max(DatasetVersionRow.number)).where(
                                DatasetVersionRow.dataset_id == row.id
                            )
                        )
                        or 0
                    ) + 1
                    version = DatasetVersionRow(
                        dataset=row,
                        number=number,
                        format=format,
                        filename=filename,
                        digest=digest,
                        size=size,
                        schema_=schema,
                        created_by=created_by,
                    )
                    s.add(version)
                    s.flush()
                    return _version_record(name, version)
            except IntegrityError:
                continue
        raise Conflict(f"dataset '{name}' is being pushed concurrently; retry", param="name")

    def list_datasets(self, tenant_id: int | None = None) -> list[DatasetRecord]:
        """Every dataset, or those of ``tenant_id``, by name."""
        with self._sessions.begin() as s:
            query = select(DatasetRow).options(*_loads()).order_by(DatasetRow.name)
            if tenant_id is not None:
                query = query.where(DatasetRow.tenant_id == tenant_id)
            return [_record(r) for r in s.scalars(query)]

    def get(self, name: str) -> DatasetRecord:
        with self._sessions.begin() as s:
            return _record(_row(s, name))

    def owner(self, name: str) -> int | None:
        """The tenant owning ``name``, or None when there is no such dataset."""
        with self._sessions.begin() as s:
            return s.scalar(select(DatasetRow.tenant_id).where(DatasetRow.name == name))

    def version(self, name: str, number: int | None = None) -> DatasetVersionRecord:
        """Version ``number`` of ``name`` (None: the newest)."""
        with self._sessions.begin() as s:
            row = _row(s, name)
            if not row.versions:
                raise NotFound(f"dataset '{name}' has no versions", param="name")
            if number is None:
                return _version_record(name, row.versions[-1])
            for v in row.versions:
                if v.number == number:
                    return _version_record(name, v)
            raise NotFound(f"dataset '{name}' has no version {number}", param="version")

    def versions(self, name: str) -> list[DatasetVersionRecord]:
        with self._sessions.begin() as s:
            row = _row(s, name)
            return [_version_record(name, v) for v in row.versions]

    def delete(self, name: str) -> set[str]:
        """Delete a dataset and its versions; returns the digests nothing uses any more."""
        with self._sessions.begin() as s:
            row = _row(s, name)
            digests = {v.digest for v in row.versions}
            s.delete(row)
            s.flush()
            return unreferenced(s, digests)


def _loads() -> list[Any]:
    return [selectinload(DatasetRow.versions), selectinload(DatasetRow.tenant)]


def _find(s: Session, name: str) -> DatasetRow | None:
    return s.scalar(select(DatasetRow).where(DatasetRow.name == name).options(*_loads()))


def _row(s: Session, name: str) -> DatasetRow:
    row = _find(s, name)
    if row is None:
        raise NotFound(f"dataset '{name}' not found", param="name")
    return row


def _version_record(name: str, v: DatasetVersionRow) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        dataset=name,
        version=v.number,
        format=v.format,
        filename=v.filename,
        digest=v.digest,
        size=v.size,
        schema=v.schema_,
        created_by=v.created_by,
        created_at=as_utc(v.created_at),
    )


def _record(row: DatasetRow) -> DatasetRecord:
    return DatasetRecord(
        name=row.name,
        tenant=row.tenant.name,
        description=row.description,
        versions=len(row.versions),
        latest=_version_record(row.name, row.versions[-1]) if row.versions else None,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
