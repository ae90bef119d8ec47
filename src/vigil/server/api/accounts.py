"""The caller's own password and TOTP second factor, and an administrator's resets of another user's."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.rbac import Permission
from vigil.server import accounts, totp
from vigil.server.auth import Principal, client_ip, requires, services, signed_in
from vigil.server.errors import APIError
from vigil.store.users import User, find_user, get_user

router = APIRouter()
ADMIN = Permission.MANAGE_PORTAL_SETTINGS


class Status(BaseModel):
    status: str


class UserStatus(Status):
    username: str


class MfaOverview(BaseModel):
    totp: bool
    state: str
    required: bool
    deadline: str | None
    recoveryCodesLeft: int


class TotpEnrolment(BaseModel):
    secret: str
    otpauthUri: str


class RecoveryCodes(BaseModel):
    recoveryCodes: list[str]


class TotpOn(RecoveryCodes, Status):
    pass


def _session_user(request: Request, who: Principal) -> User:
    """The caller, freshly read; an API token cannot change how its owner signs in."""
    if who.api_token_id is not None:
        raise APIError(403, "session_required", "sign in with a password to change the account's password or "
                       "second factor; an API token cannot")
    with services(request).engine.connect() as conn:
        user = get_user(conn, who.user.id)
    if user is None:
        raise APIError(401, "unauthenticated", "sign in again")
    return user


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currentPassword: str = Field(min_length=1, max_length=1024)
    newPassword: str = Field(min_length=1, max_length=1024)


@router.post("/auth/password")
def change_own_password(body: PasswordChange, request: Request, who: Principal = signed_in()) -> Status:
    user = _session_user(request, who)
    try:
        accounts.change_password(services(request), user, body.newPassword, user.username, client_ip(request),
                                 current=body.currentPassword)
    except APIError as e:
        if e.field == "password":
            e.field = "newPassword"
        raise
    return Status(status="password changed; every session of this account was signed out")


@router.get("/auth/mfa")
def own_mfa(request: Request, who: Principal = signed_in()) -> MfaOverview:
    with services(request).engine.connect() as conn:
        user = get_user(conn, who.user.id) or who.user
    return MfaOverview.model_validate(accounts.mfa_overview(services(request), user))


@router.post("/auth/mfa/totp")
def start_totp(request: Request, who: Principal = signed_in()) -> TotpEnrolment:
    """Begin the enrolment: the secret to put into an authenticator app (confirm it with one of its codes)."""
    user = _session_user(request, who)
    secret = accounts.totp_enrolment(services(request), user)
    return TotpEnrolment(secret=secret, otpauthUri=totp.provisioning_uri(secret, user.username, accounts.ISSUER))


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=16)


@router.post("/auth/mfa/totp/confirm")
def confirm_totp(body: CodeBody, request: Request, who: Principal = signed_in()) -> TotpOn:
    user = _session_user(request, who)
    codes = accounts.confirm_totp(services(request), user, body.code, client_ip(request))
    return TotpOn(recoveryCodes=codes, status="TOTP on; every session of this account was signed out")


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/mfa/recoveryCodes")
def new_recovery_codes(body: PasswordBody, request: Request, who: Principal = signed_in()) -> RecoveryCodes:
    user = _session_user(request, who)
    return RecoveryCodes(recoveryCodes=accounts.new_codes(services(request), user, body.password, client_ip(request)))


@router.post("/auth/mfa/disable")
def disable_own_totp(body: PasswordBody, request: Request, who: Principal = signed_in()) -> Status:
    user = _session_user(request, who)
    if not accounts.turn_off_totp(services(request), user, user.username, client_ip(request), password=body.password):
        raise APIError(409, "mfa_disabled", "TOTP is not on for this account")
    return Status(status="TOTP off; every session of this account was signed out")


def _target(request: Request, username: str) -> User:
    with services(request).engine.connect() as conn:
        found = find_user(conn, username)  # a disabled account too: reset before it is enabled again
    if found is None:
        raise APIError(404, "not_found", f"no user named {username!r}", field="username")
    return found[0]


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


@router.put("/users/{username}/password")
def reset_password(username: str, body: PasswordReset, request: Request,
                   who: Principal = requires(ADMIN)) -> UserStatus:
    user = _target(request, username)
    accounts.change_password(services(request), user, body.password, who.user.username, client_ip(request))
    return UserStatus(username=username, status="password reset; every session of this user was signed out")


@router.delete("/users/{username}/mfa")
def reset_mfa(username: str, request: Request, who: Principal = requires(ADMIN)) -> UserStatus:
    """For a user who lost both the authenticator and the recovery codes: they enrol again at next sign-in."""
    user = _target(request, username)
    if not accounts.turn_off_totp(services(request), user, who.user.username, client_ip(request)):
        raise APIError(409, "mfa_disabled", f"{username} has no second factor to reset", field="username")
    return UserStatus(username=username, status="second factor removed; every session of this user was signed out")
