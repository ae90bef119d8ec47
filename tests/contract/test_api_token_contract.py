"""API tokens through the service on the in-memory fake, SQLite and PostgreSQL: a user mints tokens within their
own permissions, sees only their own, revokes them; a token cannot mint tokens; an administrator revokes anyone's;
every change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.app import tokens
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import Store
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission

CLOCK = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
VIEW, SETTINGS = Permission.VIEW_DATA_SECOPS, Permission.MANAGE_PORTAL_SETTINGS


def user(name: str, *perms: Permission, token: int | None = None) -> Principal:
    return Principal(name, frozenset(perms), None, username=name, api_token_id=token)


def seed(store: Store, *names: str) -> None:
    with store.begin() as uow:
        for name in names:
            assert uow.users.create(name, "a long passphrase here", "read-only", None, CLOCK.now()) is not None


def test_tokens_are_minted_within_ones_permissions_listed_per_owner_and_revoked(store: Store) -> None:
    seed(store, "ana", "bo")
    ana, bo = user("ana", VIEW), user("bo", VIEW)
    token, secret = tokens.create(store, CLOCK, ana, name="reporting", scopes=[VIEW.value], days=7)
    assert secret.startswith("vgt_") and token.owner == "ana" and token.scopes == frozenset({VIEW})
    assert token.expires_at == CLOCK.now() + timedelta(days=7) and not token.revoked
    tokens.create(store, CLOCK, bo, name="bo's", scopes=[VIEW.value], days=1)
    assert [t.name for t in tokens.mine(store, ana)] == ["reporting"]

    with pytest.raises(NotFound):  # bo cannot revoke ana's token, nor learn it exists
        tokens.revoke(store, CLOCK, bo, token.id)
    tokens.revoke(store, CLOCK, ana, token.id)
    assert [t.revoked for t in tokens.mine(store, ana)] == [True]
    with pytest.raises(NotFound):  # twice is not a live token any more
        tokens.revoke(store, CLOCK, ana, token.id)

    admin = user("root", VIEW, SETTINGS)
    other = tokens.mine(store, bo)[0]
    tokens.revoke(store, CLOCK, admin, other.id)
    assert tokens.mine(store, bo)[0].revoked
    with store.begin() as uow:
        actions = [(e.actor, e.action, e.target_id) for e in uow.audit.entries()
                   if e.action.startswith("api_token.")]
    assert actions == [("ana", "api_token.create", str(token.id)), ("bo", "api_token.create", str(other.id)),
                       ("ana", "api_token.revoke", str(token.id)), ("root", "api_token.revoke", str(other.id))]


def test_no_escalation_no_token_from_a_token_and_bad_input_named(store: Store) -> None:
    seed(store, "ana")
    ana = user("ana", VIEW)
    with pytest.raises(Forbidden) as beyond:
        tokens.create(store, CLOCK, ana, name="x", scopes=[SETTINGS.value], days=1)
    assert beyond.value.field == "scopes" and SETTINGS.value in beyond.value.message
    with pytest.raises(Forbidden, match="cannot mint"):
        tokens.create(store, CLOCK, user("ana", VIEW, token=3), name="child", scopes=[VIEW.value], days=1)
    with pytest.raises(InvalidInput) as unknown:
        tokens.create(store, CLOCK, ana, name="x", scopes=[VIEW.value, "Root everything"], days=1)
    assert unknown.value.field == "scopes[1]"
    with pytest.raises(InvalidInput) as days:
        tokens.create(store, CLOCK, ana, name="x", scopes=[VIEW.value], days=400)
    assert days.value.field == "expiresInDays"
    with pytest.raises(NotFound):  # a principal with no account behind it owns nothing
        tokens.create(store, CLOCK, user("ghost", VIEW), name="x", scopes=[VIEW.value], days=1)
    assert tokens.mine(store, ana) == []
