"""API tokens: a user's own bearer tokens, scoped to a subset of that user's permissions, with an expiry.

A token cannot mint tokens (it would outlive and outreach the sign-in that made it); a user revokes their own
tokens, an administrator with portal settings anyone's. Creation and revocation are audited; the secret is shown
once, to its maker, and never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import ApiTokenRecord, AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission, UnknownPermission, parse_permissions

MAX_LIFETIME_DAYS = 365


def _owner(who: Principal) -> str:
    if not who.username:
        raise Forbidden("API tokens belong to a signed-in user")
    return who.username


def summary(t: ApiTokenRecord) -> dict[str, object]:
    return {"id": t.id, "name": t.name, "scopes": sorted(s.value for s in t.scopes), "revoked": t.revoked}


def mine(store: Store, who: Principal) -> Sequence[ApiTokenRecord]:
    owner = _owner(who)
    with store.begin() as uow:
        return uow.api_tokens.listing(owner)


def create(
    store: Store, clock: Clock, who: Principal, *, name: str, scopes: Sequence[str], days: int,
) -> tuple[ApiTokenRecord, str]:
    owner = _owner(who)
    if who.api_token_id is not None:
        raise Forbidden("an API token cannot mint other tokens; sign in")
    if not name.strip():
        raise InvalidInput("name may not be empty", field="name")
    if not 1 <= days <= MAX_LIFETIME_DAYS:
        raise InvalidInput(f"expiresInDays: from 1 to {MAX_LIFETIME_DAYS}, not {days}", field="expiresInDays")
    try:
        wanted = frozenset(parse_permissions(list(scopes), "scopes"))
    except UnknownPermission as e:
        raise InvalidInput(str(e), field=e.where) from None
    if not wanted:
        raise InvalidInput("scopes: name at least one permission", field="scopes")
    beyond = wanted - who.permissions
    if beyond:
        raise Forbidden(f"you do not hold {', '.join(sorted(beyond))}", field="scopes")
    now = clock.now()
    with store.begin() as uow:
        made = uow.api_tokens.create(owner, name, wanted, now + timedelta(days=days), now)
        if made is None:
            raise NotFound(f"no user {owner!r} to own the token", field="username")
        token, secret = made
        uow.audit.append(AuditRecord(who.actor, "api_token.create", "api_token", str(token.id),
                                     after={**summary(token), "owner": owner, "expiresInDays": days},
                                     source_ip=who.source_ip), now)
    return token, secret


def revoke(store: Store, clock: Clock, who: Principal, token_id: int) -> None:
    owner = None if Permission.MANAGE_PORTAL_SETTINGS in who.permissions else _owner(who)
    now = clock.now()
    with store.begin() as uow:
        if not uow.api_tokens.revoke(token_id, now, owner):
            raise NotFound(f"no live token {token_id} of yours", field="id")
        uow.audit.append(AuditRecord(who.actor, "api_token.revoke", "api_token", str(token_id),
                                     source_ip=who.source_ip), now)
