"""Authorization decisions: roles, tenants, sharing, and 404 for what one may not see."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import Engine
from tests.pausing import Pause

from modelbay.errors import Conflict, Forbidden, NotFound, Unauthenticated, UnknownReference
from modelbay.registry import NewVersion, Registry
from modelbay.security.access import (
    PUBLIC,
    Hidden,
    Ownership,
    ResourceDirectory,
    Rule,
    authorize,
)
from modelbay.security.keys import KeyStore
from modelbay.security.principals import ROLE_SCOPES, Principal, Role, Scope
from modelbay.tensors import Signature

ACME, OTHER = 2, 3


def who(role: Role, tenant_id: int = ACME) -> Principal:
    return Principal(
        key_id="mb_0123456789ab",
        key_name="k",
        tenant_id=tenant_id,
        tenant="acme" if tenant_id == ACME else "other",
        role=role,
        scopes=ROLE_SCOPES[role],
    )


READ = Rule(Scope.READ, resource="model")
INFER = Rule(Scope.INFER, resource="model")
WRITE = Rule(Scope.WRITE, resource="model")
CREATE = Rule(Scope.WRITE, resource="model", creates=True)
DOWNLOAD = Rule(Scope.READ, resource="model", owner_only=True)
OWN = Ownership(ACME)


def test_public_rules_need_no_key_and_others_do() -> None:
    authorize(None, PUBLIC, None, None)
    with pytest.raises(Unauthenticated):
        authorize(None, READ, "m", OWN)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {"read", "download"}),
        (Role.CONSUMER, {"read", "download", "infer"}),
        (Role.DEVELOPER, {"read", "download", "infer", "write"}),
        (Role.OWNER, {"read", "download", "infer", "write"}),
        (Role.ADMIN, {"read", "download", "infer", "write"}),
    ],
)
def test_roles_on_their_own_tenants_model(role: Role, allowed: set[str]) -> None:
    for name, rule in {"read": READ, "infer": INFER, "write": WRITE, "download": DOWNLOAD}.items():
        if name in allowed:
            authorize(who(role), rule, "m", OWN)
        else:
            with pytest.raises(Forbidden, match="needs role"):
                authorize(who(role), rule, "m", OWN)


def test_another_tenants_private_model_is_not_found_whatever_the_role() -> None:
    for role in (Role.VIEWER, Role.DEVELOPER, Role.OWNER):
        for rule in (READ, INFER, WRITE, DOWNLOAD):
            with pytest.raises(Hidden, match="model 'm' not found") as caught:
                authorize(who(role, OTHER), rule, "m", OWN)
            assert caught.value.status == 404


def test_unknown_and_invisible_models_get_the_same_answer() -> None:
    with pytest.raises(NotFound) as unknown:
        authorize(who(Role.CONSUMER, OTHER), INFER, "m", None)
    with pytest.raises(NotFound) as hidden:
        authorize(who(Role.CONSUMER, OTHER), INFER, "m", OWN)
    assert (unknown.value.status, unknown.value.message) == (
        hidden.value.status,
        hidden.value.message,
    )


def test_admin_sees_every_tenant() -> None:
    for rule in (READ, INFER, WRITE, DOWNLOAD):
        authorize(who(Role.ADMIN, OTHER), rule, "m", OWN)


@pytest.mark.parametrize(
    "ownership", [Ownership(ACME, public=True), Ownership(ACME, shared_with=frozenset({OTHER}))]
)
def test_public_or_shared_models_are_for_inference_only(ownership: Ownership) -> None:
    guest = who(Role.OWNER, OTHER)
    authorize(guest, READ, "m", ownership)
    authorize(guest, INFER, "m", ownership)
    for rule in (WRITE, DOWNLOAD):
        with pytest.raises(Forbidden, match="for inference only"):
            authorize(guest, rule, "m", ownership)
    with pytest.raises(Forbidden, match="needs role"):
        authorize(who(Role.VIEWER, OTHER), INFER, "m", ownership)


def test_creating_a_new_name_is_allowed_and_a_taken_one_conflicts() -> None:
    authorize(who(Role.DEVELOPER, OTHER), CREATE, "new", None)
    with pytest.raises(Conflict, match="taken"):
        authorize(who(Role.DEVELOPER, OTHER), CREATE, "m", OWN)
    with pytest.raises(Forbidden):
        authorize(who(Role.CONSUMER, OTHER), CREATE, "new", None)


def test_deployments_of_shared_models_stay_invisible() -> None:
    rule = Rule(Scope.READ, resource="deployment")
    with pytest.raises(Hidden, match="deployment 'd' not found"):
        authorize(who(Role.OWNER, OTHER), rule, "d", Ownership(ACME, public=True))


def test_directory_and_registry_agree_on_ownership_and_visibility(engine: Engine) -> None:
    keys = KeyStore(engine)
    acme = keys.create_tenant("acme")
    keys.create_tenant("other")
    acme_id, other_id = keys.tenant_id(acme.name), keys.tenant_id("other")
    registry = Registry(engine)
    registry.create_model("private-m", tenant_id=acme_id)
    registry.create_model("shared-m", tenant_id=acme_id)
    registry.create_model("public-m", tenant_id=acme_id)
    registry.set_access("shared-m", public=False, shared_with=["other"])
    record = registry.set_access("public-m", public=True, shared_with=[])
    assert (record.tenant, record.visibility) == ("acme", "public")

    directory = ResourceDirectory(engine)
    guest = replace(who(Role.CONSUMER, other_id), tenant_id=other_id)
    visible = {
        name
        for name in ("private-m", "shared-m", "public-m")
        if (owner := directory.owner("model", name)) is not None and owner.visible_to(guest)
    }
    assert visible == {"shared-m", "public-m"}
    assert {m.name for m in registry.list_models(visible_to=other_id)} == visible
    assert {m.name for m in registry.list_models(visible_to=acme_id)} == {
        "private-m",
        "shared-m",
        "public-m",
    }
    assert directory.owner("model", "missing") is None
    assert directory.owner("tenant", "other") == Ownership(other_id)
    with pytest.raises(UnknownReference, match="shared_with: tenant 'nobody' not found"):
        registry.set_access("shared-m", public=False, shared_with=["nobody"])


def test_directory_forgets_a_model_when_told(engine: Engine) -> None:
    directory = ResourceDirectory(engine)
    assert directory.owner("model", "late") is None
    Registry(engine).create_model("late")
    assert directory.owner("model", "late") is None  # cached for a moment
    directory.invalidate("late")
    assert directory.owner("model", "late") is not None


def test_pushing_into_another_tenants_model_conflicts(engine: Engine) -> None:
    keys = KeyStore(engine)
    keys.create_tenant("acme")
    registry = Registry(engine)
    registry.create_model("theirs")
    new = NewVersion(
        format="onnx", entrypoint="m.onnx", files=[], signature=Signature(inputs=[], outputs=[])
    )
    with pytest.raises(Conflict, match="taken"):
        registry.add_version("theirs", new, tenant_id=keys.tenant_id("acme"), own=True)


class PausedDirectory(ResourceDirectory):
    """The real directory, whose read of a model can be paused after the read."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.pause = Pause()

    def _model(self, name: str) -> Ownership | None:
        found = super()._model(name)
        self.pause.hit()
        return found


def test_an_owner_read_before_an_invalidation_is_not_cached_after_it(engine: Engine) -> None:
    # A renewal in the background that read the owner before a change on this server
    # (sharing, visibility) must not cache the old owner after the change invalidated it.
    directory = PausedDirectory(engine)
    Registry(engine).create_model("moving")
    directory.pause.armed = True
    renewal = threading.Thread(target=directory.refresh_model, args=("moving",))
    renewal.start()
    assert directory.pause.read.wait(5)
    directory.invalidate("moving")
    directory.pause.go.set()
    renewal.join(5)
    assert directory.cached_model("moving") == (False, None)
