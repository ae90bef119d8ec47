"""OAuth2 client-credentials applications: register (secret shown once), list, revoke, and issue access tokens.

Defender's scripts get a token from ``/oauth2/v2.0/token`` with a client id and secret and call the API with it;
this service is both halves. The token endpoint has no caller yet, so its refusals are ``TokenRefused`` carrying
the OAuth2 error code (RFC 6749 section 5.2), which the edge answers with as that RFC says.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import AuditRecord
from vigil.app.principal import Principal
from vigil.core.app_roles import UnknownAppRole, parse_app_roles, permissions_for, requested_roles
from vigil.core.clock import Clock
from vigil.core.rbac import Permission

TOKEN_PREFIX = "vgo_"
SECRET_PREFIX = "vgs_"
TOKEN_LIFETIME = timedelta(hours=1)  # Defender's (Entra ID's) access-token lifetime
MAX_SECRET_DAYS = 730  # Entra ID's longest client-secret expiry
MANAGE = Permission.MANAGE_SECURITY_SETTINGS


@dataclass(frozen=True)
class Application:
    id: int
    name: str
    client_id: str
    roles: frozenset[str]
    created_by: str
    created_at: datetime
    secret_expires_at: datetime
    revoked_at: datetime | None = None
    last_token_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.secret_expires_at


@dataclass(frozen=True)
class AppToken:
    app_id: int
    roles: frozenset[str]
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Registered:
    app: Application
    client_secret: str  # shown once, stored only as a hash


@dataclass(frozen=True)
class IssuedAccessToken:
    access_token: str
    expires_in: int
    roles: frozenset[str]


@dataclass(frozen=True)
class AppCaller:
    """Who a bearer access token speaks for: the application, its roles and what they open."""

    app: Application
    roles: frozenset[str]
    permissions: frozenset[Permission]


class TokenRefused(Exception):
    """A refused token request; ``error`` is the OAuth2 error code, ``status`` its HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class ApplicationUnit(Protocol):
    def create(self, app: Application, secret_hash: str) -> Application: ...
    def named(self, name: str) -> Application | None: ...
    def get(self, app_id: int) -> Application | None: ...
    def listing(self) -> Sequence[Application]: ...
    def with_secret(self, client_id: str) -> tuple[Application, str] | None: ...
    def revoke(self, app_id: int, now: datetime) -> bool:
        """Revoke the app and delete its tokens; False when it was already revoked."""
        ...
    def add_token(self, token: AppToken, token_hash: str) -> None: ...
    def token(self, token_hash: str) -> tuple[AppToken, Application] | None: ...
    def audit(self, record: AuditRecord, now: datetime) -> None: ...


class ApplicationStore(Protocol):
    def begin(self) -> AbstractContextManager[ApplicationUnit]: ...


def _digest(secret: str) -> str:
    # A fast hash is right here: these secrets are 256 random bits, not passwords.
    return hashlib.sha256(secret.encode()).hexdigest()


def app_json(a: Application) -> dict[str, object]:
    return {"id": a.id, "name": a.name, "clientId": a.client_id, "roles": sorted(a.roles),
            "createdBy": a.created_by, "secretExpiresAt": a.secret_expires_at.isoformat(),
            "revoked": a.revoked_at is not None}


def register(store: ApplicationStore, clock: Clock, who: Principal, name: str, roles: list[str],
             secret_days: int) -> Registered:
    """A new application with ``roles``; the caller must hold every permission they open (no escalation)."""
    who.require(MANAGE)
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be empty", field="name")
    if not 1 <= secret_days <= MAX_SECRET_DAYS:
        raise InvalidInput(f"secretExpiresInDays: between 1 and {MAX_SECRET_DAYS}", field="secretExpiresInDays")
    try:
        granted = parse_app_roles(roles)
    except UnknownAppRole as e:
        raise InvalidInput(str(e), field=e.where) from None
    if not granted:
        raise InvalidInput("roles: give the application at least one permission", field="roles")
    beyond = permissions_for(granted) - who.permissions
    if beyond:
        raise Forbidden(f"roles: they open {', '.join(sorted(beyond))}, which you do not hold")
    now = clock.now()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    draft = Application(0, name, str(uuid.uuid4()), granted, who.actor, now, now + timedelta(days=secret_days))
    with store.begin() as uow:
        if uow.named(name) is not None:
            raise InvalidInput(f"name: an application named {name!r} exists", field="name")
        app = uow.create(draft, _digest(secret))
        uow.audit(AuditRecord(who.actor, "application.create", "application", str(app.id), after=app_json(app),
                              source_ip=who.source_ip), now)
    return Registered(app, secret)


def list_applications(store: ApplicationStore, who: Principal) -> Sequence[Application]:
    who.require(MANAGE)
    with store.begin() as uow:
        return uow.listing()


def revoke(store: ApplicationStore, clock: Clock, who: Principal, app_id: int) -> Application:
    who.require(MANAGE)
    now = clock.now()
    with store.begin() as uow:
        app = uow.get(app_id)
        if app is None:
            raise NotFound(f"no application {app_id}", field="id")
        if uow.revoke(app_id, now):
            uow.audit(AuditRecord(who.actor, "application.revoke", "application", str(app_id),
                                  before=app_json(app), source_ip=who.source_ip), now)
        revoked = uow.get(app_id)
    assert revoked is not None
    return revoked


def issue_token(store: ApplicationStore, clock: Clock, grant_type: str, client_id: str, client_secret: str,
                scope: str, source_ip: str | None = None) -> IssuedAccessToken:
    """The client-credentials grant: a bearer token for the app's roles (or the subset ``scope`` names)."""
    if grant_type != "client_credentials":
        raise TokenRefused("unsupported_grant_type", f"grant_type {grant_type!r}: only client_credentials")
    now = clock.now()
    with store.begin() as uow:
        found = uow.with_secret(client_id)
        # Same answer for an unknown client and a wrong secret; the hash is compared in constant time.
        if found is None or not hmac.compare_digest(_digest(client_secret), found[1]):
            raise TokenRefused("invalid_client", "unknown client_id or wrong client_secret", 401)
        app = found[0]
        if app.revoked_at is not None:
            raise TokenRefused("invalid_client", "the application is revoked", 401)
        if now >= app.secret_expires_at:
            raise TokenRefused("invalid_client", "the client secret has expired", 401)
        try:
            roles = requested_roles(scope, app.roles)
        except UnknownAppRole as e:
            raise TokenRefused("invalid_scope", f"{e.name!r} is not granted to this application") from None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        uow.add_token(AppToken(app.id, roles, now, now + TOKEN_LIFETIME), _digest(token))
        uow.audit(AuditRecord(f"app:{app.name}", "application.token", "application", str(app.id),
                              after={"roles": sorted(roles)}, source_ip=source_ip), now)
    return IssuedAccessToken(token, int(TOKEN_LIFETIME.total_seconds()), roles)


def caller(store: ApplicationStore, clock: Clock, access_token: str) -> AppCaller | None:
    """The app behind a bearer token; None when unknown, expired or its app revoked."""
    now = clock.now()
    with store.begin() as uow:
        found = uow.token(_digest(access_token))
    if found is None:
        return None
    token, app = found
    if now >= token.expires_at or app.revoked_at is not None:
        return None
    return AppCaller(app, token.roles, permissions_for(token.roles))
