"""Authorization: may this principal do this to this resource? One function decides.

A resource (model, deployment, tenant, key) belongs to a tenant. Models may be made
public or shared with named tenants; others may then read their metadata and infer, and
nothing more. A principal never learns of a resource it may not see: the answer is the
same 404 an unknown name gets (raised as ``Hidden`` so the caller can audit it).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload, sessionmaker

from modelbay.errors import Conflict, Forbidden, NotFound, Unauthenticated
from modelbay.registry.repository import MODEL_NAME
from modelbay.registry.tables import (
    ApiKeyRow,
    DatasetRow,
    DeploymentRow,
    JobRow,
    ModelRow,
    TenantRow,
)
from modelbay.security.keys import TENANT_NAME
from modelbay.security.principals import ROLE_FOR_SCOPE, Principal, Scope
from modelbay.security.tokens import KEY_ID

Resource = Literal["model", "deployment", "tenant", "key", "dataset", "job"]
JOB_ID = re.compile(r"[1-9][0-9]{0,9}\Z")
MAX_JOB_ID = 2**31 - 1
"""Job ids are SQL integers: 32 bits on PostgreSQL."""
_NAMES = {
    "model": MODEL_NAME,
    "deployment": MODEL_NAME,
    "tenant": TENANT_NAME,
    "key": KEY_ID,
    "dataset": MODEL_NAME,
    "job": JOB_ID,
}
_MODEL_TTL_S = 2.0
_MAX_CACHED = 10_000


class Hidden(NotFound):
    """A 404 for a resource that exists but that the principal may not see."""


@dataclass(frozen=True)
class Rule:
    """What a route needs: ``public`` routes need nothing; others a key, and ``scope``
    (None: any valid key). ``resource`` names the path parameter (or, with
    ``from_body``, the JSON body field) holding the resource's name."""

    scope: Scope | None = None
    public: bool = False
    resource: Resource | None = None
    param: str = "name"
    from_body: bool = False
    creates: bool = False
    owner_only: bool = False


PUBLIC = Rule(public=True)
AUTHENTICATED = Rule()


@dataclass(frozen=True)
class Ownership:
    """Which tenant holds a resource and who else may see it (models only)."""

    tenant_id: int
    public: bool = False
    shared_with: frozenset[int] = frozenset()

    def visible_to(self, p: Principal) -> bool:
        return p.sees_tenant(self.tenant_id) or self.public or p.tenant_id in self.shared_with


class ResourceDirectory:
    """Looks up who owns a resource; model answers are cached for ``_MODEL_TTL_S``."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic):
        self._sessions = sessionmaker(engine)
        self._clock = clock
        self._models: dict[str, tuple[float, Ownership | None]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # counts invalidations: an older read is not cached after one

    def cached_model(self, name: str) -> tuple[bool, Ownership | None]:
        """(hit, ownership) from the cache alone."""
        entry = self._models.get(name)
        if entry is None or self._clock() - entry[0] > _MODEL_TTL_S:
            return False, None
        return True, entry[1]

    def model_due(self, name: str) -> bool:
        """Whether the model's cached owner is fresh but past half its lifetime (time to
        read it again in the background)."""
        entry = self._models.get(name)
        return entry is not None and _MODEL_TTL_S / 2 < self._clock() - entry[0] <= _MODEL_TTL_S

    def refresh_model(self, name: str) -> Ownership | None:
        """Read the model's owner from the database (not the cache) and cache it, unless
        the cache was invalidated meanwhile (the owner may have changed after this read)."""
        generation = self._generation
        found = self._model(name)
        with self._lock:
            if generation != self._generation:
                return found
            if len(self._models) > _MAX_CACHED:
                self._models.clear()
            self._models[name] = (self._clock(), found)
        return found

    def owner(self, kind: Resource, name: str) -> Ownership | None:
        if not _NAMES[kind].match(name):  # cannot exist; and PostgreSQL refuses NUL in text
            return None
        if kind == "model":
            hit, found = self.cached_model(name)
            if hit:
                return found
            return self.refresh_model(name)
        with self._sessions() as s:
            if kind == "deployment":
                model = s.scalar(
                    select(ModelRow.name).join(DeploymentRow).where(DeploymentRow.name == name)
                )
                return None if model is None else self.owner("model", model)
            if kind == "tenant":
                tenant_id = s.scalar(select(TenantRow.id).where(TenantRow.name == name))
            elif kind == "dataset":
                tenant_id = s.scalar(select(DatasetRow.tenant_id).where(DatasetRow.name == name))
            elif kind == "job":
                if int(name) > MAX_JOB_ID:
                    return None
                tenant_id = s.scalar(select(JobRow.tenant_id).where(JobRow.id == int(name)))
            else:
                tenant_id = s.scalar(select(ApiKeyRow.tenant_id).where(ApiKeyRow.key_id == name))
            return None if tenant_id is None else Ownership(tenant_id)

    def invalidate(self, name: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            if name is None:
                self._models.clear()
            else:
                self._models.pop(name, None)

    def _model(self, name: str) -> Ownership | None:
        with self._sessions() as s:
            row = s.scalar(
                select(ModelRow).where(ModelRow.name == name).options(selectinload(ModelRow.shares))
            )
            if row is None:
                return None
            return Ownership(
                row.tenant_id,
                public=row.visibility == "public",
                shared_with=frozenset(share.tenant_id for share in row.shares),
            )


def authorize(p: Principal | None, rule: Rule, name: str | None, owner: Ownership | None) -> None:
    """Raise the answer a request gets if ``p`` may not do ``rule`` to ``name``."""
    if rule.public:
        return
    if p is None:
        raise Unauthenticated("this route needs an API key: send 'Authorization: Bearer <key>'")
    if rule.resource is not None and name is not None:
        if rule.creates:
            _check_scope(p, rule)  # the name's owner is no business of who may not create
        _check_resource(p, rule, name, owner)
    _check_scope(p, rule)


def _check_scope(p: Principal, rule: Rule) -> None:
    if rule.scope is not None and not p.can(rule.scope):
        raise Forbidden(
            f"key '{p.key_id}' (role {p.role}) may not {rule.scope.value}: "
            f"that needs role {ROLE_FOR_SCOPE[rule.scope]} or higher"
        )


def _check_resource(p: Principal, rule: Rule, name: str, owner: Ownership | None) -> None:
    kind = "API key" if rule.resource == "key" else rule.resource
    if owner is None:
        if rule.creates:
            return  # created in the principal's own tenant
        raise NotFound(f"{kind} '{name}' not found", param=rule.resource)
    if not owner.visible_to(p):
        if rule.creates:
            raise Conflict(f"the name '{name}' is taken; {kind} names are global", param="name")
        raise Hidden(f"{kind} '{name}' not found", param=rule.resource)
    if p.sees_tenant(owner.tenant_id):
        return
    # A model another tenant made public or shared: metadata and inference only.
    if rule.resource != "model":
        raise Hidden(f"{kind} '{name}' not found", param=rule.resource)
    if rule.owner_only or rule.scope not in (Scope.READ, Scope.INFER):
        raise Forbidden(
            f"model '{name}' belongs to another tenant, which shares it for inference only"
        )
