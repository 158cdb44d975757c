"""Users and service accounts: keys act for them, and disabling one revokes its keys."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from modelbay.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    Unauthenticated,
    UnknownReference,
)
from modelbay.security.accounts import AccountKind, AccountStore
from modelbay.security.authn import Authenticator
from modelbay.security.keys import KeyStore
from modelbay.security.principals import Role


@pytest.fixture(autouse=True)
def _acme(engine: Engine) -> None:
    KeyStore(engine).create_tenant("acme")


def test_keys_of_an_account_act_for_it(engine: Engine) -> None:
    keys, accounts = KeyStore(engine), AccountStore(engine)
    created = accounts.create("acme", "ana@acme.example", AccountKind.USER)
    assert (created.kind, created.status, created.active_keys) == ("user", "active", 0)
    record, secret = keys.create_key(
        tenant="acme", role=Role.DEVELOPER, name="laptop", account="ana@acme.example"
    )
    assert record.account == "ana@acme.example"
    assert Authenticator(keys).resolve(secret).account == "ana@acme.example"
    assert accounts.list("acme")[0].active_keys == 1


def test_disabling_an_account_revokes_all_its_keys_and_no_others(engine: Engine) -> None:
    keys, accounts = KeyStore(engine), AccountStore(engine)
    accounts.create("acme", "ci", AccountKind.SERVICE)
    owner_record, owner_secret = keys.create_key(tenant="acme", role=Role.OWNER, name="owner")
    secrets = [
        keys.create_key(tenant="acme", role=Role.CONSUMER, name=f"k{i}", account="ci")[1]
        for i in range(2)
    ]
    authn = Authenticator(keys)
    owner = authn.resolve(owner_secret)
    disabled = accounts.disable("acme", "ci", by=owner)
    assert (disabled.status, disabled.active_keys) == ("disabled", 0)
    authn.forget()
    for secret in secrets:
        with pytest.raises(Unauthenticated, match="revoked"):
            authn.resolve(secret)
    assert authn.resolve(owner_secret).key_id == owner_record.key_id
    with pytest.raises(Conflict, match="disabled"):
        keys.create_key(tenant="acme", role=Role.CONSUMER, name="again", account="ci")


def test_only_admins_disable_an_account_holding_admin_keys(engine: Engine) -> None:
    keys, accounts = KeyStore(engine), AccountStore(engine)
    accounts.create("acme", "root", AccountKind.USER)
    keys.create_key(tenant="acme", role=Role.ADMIN, name="a", account="root")
    _, admin_secret = keys.create_key(tenant="acme", role=Role.ADMIN, name="b")
    _, owner_secret = keys.create_key(tenant="acme", role=Role.OWNER, name="o")
    authn = Authenticator(keys)
    with pytest.raises(Forbidden, match="admin keys"):
        accounts.disable("acme", "root", by=authn.resolve(owner_secret))
    assert accounts.disable("acme", "root", by=authn.resolve(admin_secret)).status == "disabled"


def test_account_names_are_unique_per_tenant_and_checked(engine: Engine) -> None:
    accounts = AccountStore(engine)
    KeyStore(engine).create_tenant("other")
    accounts.create("acme", "bob", AccountKind.USER)
    accounts.create("other", "bob", AccountKind.USER)  # another tenant's bob
    with pytest.raises(Conflict):
        accounts.create("acme", "bob", AccountKind.SERVICE)
    with pytest.raises(InvalidRequest, match="invalid account name"):
        accounts.create("acme", "no spaces", AccountKind.USER)
    with pytest.raises(UnknownReference, match="account 'nobody' not found in tenant 'acme'"):
        KeyStore(engine).create_key(tenant="acme", role=Role.VIEWER, name="x", account="nobody")
